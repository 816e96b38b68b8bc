//! The open-loop schedule: message `seq` of a step is due at `start + seq / rate`, and is written at its
//! due time whether or not earlier messages were answered, so a slow server shows up as latency (queueing
//! included) rather than as a politely lower rate. Sender thread `k` of `S` sends messages `k, k+S, ...`
//! from its own slice of connections; each message goes out as one NUL-terminated frame in one `write()`,
//! as the C++ client sends it.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conn::{WriteError, write_frame};
use crate::msgtext::{self, Stamp};
use crate::setup::User;
use crate::stats::{Clock, Step};

/// How long a frame may wait for room in a full socket before the connection counts as failed.
const STALL_LIMIT: Duration = Duration::from_secs(2);

/// The writing half of one connection, owned by one sender thread.
pub struct Writer {
    pub user: User,
    pub stream: TcpStream,
    /// Cleared when a write fails; the connection is not used again.
    pub alive: bool,
    /// The user's group, in the group scenario.
    pub group: Option<i64>,
}

/// A possible recipient of one-to-one messages.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub id: i64,
    pub addr_index: usize,
}

/// What is sent.
pub enum Kind {
    /// One-to-one chat to random live users; with `cross_node`, always to a user on another node.
    One {
        recipients: Vec<Target>,
        cross_node: bool,
    },
    /// Group chat; each message reaches the other live members of the sender's group.
    Group {
        group_size: usize,
        /// Live members per group number (user index / group size).
        live_members: Vec<usize>,
    },
}

/// One step's schedule, shared by its sender threads.
pub struct Plan<'a> {
    pub step: &'a Step,
    pub clock: &'a Clock,
    pub kind: &'a Kind,
    pub rate: f64,
    /// When message 0 is due (clock nanoseconds).
    pub start_ns: u64,
    pub senders: usize,
    pub msg_bytes: usize,
    pub seed: u64,
}

impl Plan<'_> {
    /// When message `seq` is due.
    pub fn due_ns(&self, seq: u64) -> u64 {
        due_ns(self.start_ns, self.rate, seq)
    }
}

/// Message `seq` of a schedule starting at `start_ns` at `rate` per second is due at this time.
pub fn due_ns(start_ns: u64, rate: f64, seq: u64) -> u64 {
    start_ns + (seq as f64 * 1e9 / rate) as u64
}

/// Sender thread `k`: sends its share of the step's messages on schedule, from `writers`.
pub fn send(k: usize, writers: &mut [Writer], plan: &Plan<'_>) {
    let mut rng = Rng::new(plan.seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let mut frame = String::with_capacity(plan.msg_bytes + 200);
    let mut seq = k as u64;
    while seq < plan.step.planned {
        let due = plan.due_ns(seq);
        let now = plan.clock.now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let lag = plan.clock.now_ns().saturating_sub(due);
        plan.step.max_lag_ns.fetch_max(lag, Ordering::Relaxed);
        let Some(w) = pick_live(writers, &mut rng) else {
            return;
        };
        let stamp = Stamp {
            step: plan.step.id,
            seq,
            due_ns: due,
        };
        if let Some(deliveries) = build_frame(&writers[w], plan, stamp, &time, &mut rng, &mut frame)
        {
            write_one(
                &mut writers[w],
                frame.as_bytes(),
                seq,
                deliveries,
                plan.step,
                plan.clock,
            );
        }
        seq += plan.senders as u64;
    }
}

/// Writes one frame and counts the outcome.
fn write_one(
    writer: &mut Writer,
    bytes: &[u8],
    seq: u64,
    deliveries: u16,
    step: &Step,
    clock: &Clock,
) {
    match write_frame(&mut writer.stream, bytes, STALL_LIMIT) {
        Ok(split) => {
            step.sent(seq, deliveries);
            step.last_send_ns
                .fetch_max(clock.now_ns(), Ordering::Relaxed);
            if split {
                step.split_writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(WriteError::Stalled | WriteError::Failed) => {
            step.send_failures.fetch_add(1, Ordering::Relaxed);
            writer.alive = false;
        }
    }
}

/// A random live writer, or `None` when all have failed.
fn pick_live(writers: &[Writer], rng: &mut Rng) -> Option<usize> {
    let n = writers.len();
    if n == 0 {
        return None;
    }
    let start = rng.below(n);
    (0..n).map(|i| (start + i) % n).find(|&i| writers[i].alive)
}

/// Builds the frame (with its NUL) into `out`; returns how many deliveries it should get, or `None` when
/// there is nobody to send to.
fn build_frame(
    writer: &Writer,
    plan: &Plan<'_>,
    stamp: Stamp,
    time: &str,
    rng: &mut Rng,
    out: &mut String,
) -> Option<u16> {
    let mut text = String::with_capacity(plan.msg_bytes);
    msgtext::encode(stamp, plan.msg_bytes, &mut text);
    let user = &writer.user;
    out.clear();
    // Names and texts are ASCII letters, digits, `_` and `:`: nothing to escape. Writing to a String
    // cannot fail.
    let deliveries = match plan.kind {
        Kind::One {
            recipients,
            cross_node,
        } => {
            let to = pick_recipient(recipients, user, *cross_node, rng)?;
            let _ = write!(
                out,
                r#"{{"msgid":6,"id":{},"name":"{}","toid":{},"msg":"{text}","time":"{time}"}}"#,
                user.id, user.name, to.id
            );
            1
        }
        Kind::Group {
            group_size,
            live_members,
        } => {
            let gid = writer.group?;
            let live = live_members.get(user.index / group_size).copied()?;
            let _ = write!(
                out,
                r#"{{"msgid":10,"id":{},"name":"{}","groupid":{gid},"msg":"{text}","time":"{time}"}}"#,
                user.id, user.name
            );
            u16::try_from(live.saturating_sub(1)).ok()?
        }
    };
    out.push('\0');
    Some(deliveries)
}

/// A random recipient other than the sender; with `cross_node`, one on another node.
fn pick_recipient(
    recipients: &[Target],
    sender: &User,
    cross_node: bool,
    rng: &mut Rng,
) -> Option<Target> {
    let n = recipients.len();
    if n == 0 {
        return None;
    }
    let start = rng.below(n);
    (0..n)
        .map(|i| recipients[(start + i) % n])
        .find(|t| t.id != sender.id && (!cross_node || t.addr_index != sender.addr_index))
}

/// xorshift64*: fast, seedable, good enough to pick users at random.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), close enough for n far below 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(index: usize, id: i64, addr_index: usize) -> User {
        User {
            index,
            id,
            name: format!("u{index}"),
            addr_index,
        }
    }

    #[test]
    fn schedule_is_evenly_spaced() {
        assert_eq!(due_ns(1_000, 1_000.0, 0), 1_000);
        assert_eq!(due_ns(1_000, 1_000.0, 1), 1_001_000);
        assert_eq!(due_ns(0, 25_000.0, 25_000), 1_000_000_000);
    }

    #[test]
    fn recipient_is_never_the_sender_and_crosses_nodes_when_asked() {
        let recipients: Vec<Target> = (0..10)
            .map(|i| Target {
                id: i as i64 + 1,
                addr_index: i % 2,
            })
            .collect();
        let sender = user(0, 1, 0);
        let mut rng = Rng::new(7);
        for _ in 0..1_000 {
            let t = pick_recipient(&recipients, &sender, true, &mut rng).unwrap();
            assert_ne!(t.id, 1);
            assert_eq!(t.addr_index, 1);
            let t = pick_recipient(&recipients, &sender, false, &mut rng).unwrap();
            assert_ne!(t.id, 1);
        }
        let alone = [Target {
            id: 1,
            addr_index: 0,
        }];
        assert!(pick_recipient(&alone, &sender, false, &mut rng).is_none());
    }

    #[test]
    fn rng_covers_its_range() {
        let mut rng = Rng::new(42);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            seen[rng.below(10)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
