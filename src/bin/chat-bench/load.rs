//! The open-loop schedule: message `seq` of a step is due at `start + seq / rate`, and is written at its
//! due time whether or not earlier messages were answered, so a slow server shows up as latency (queueing
//! included) rather than as a politely lower rate. Sender thread `k` of `S` sends messages `k, k+S, ...`
//! from its own slice of connections; each message goes out as one NUL-terminated frame in one `write()`,
//! as the C++ client sends it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conn::{WriteError, wire, write_frame};
use crate::msgtext::{self, Stamp};
use crate::setup::User;
use crate::stats::{Clock, Step};
use crate::ws::{Masks, Transport};

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
    /// NUL-terminated frames, or WebSocket text messages (masked with `masks`, built in `wire`).
    pub transport: Transport,
    pub masks: Masks,
    pub wire: Vec<u8>,
}

/// A possible recipient of one-to-one messages.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub id: i64,
    pub addr_index: usize,
}

/// What is sent.
pub enum Kind {
    /// One-to-one chat to random live users; with `cross_node`, always to a user on another node; with
    /// `peers` above 0, each user only to the `peers` users after it in `recipients`.
    One {
        recipients: Vec<Target>,
        cross_node: bool,
        peers: usize,
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
    /// Acknowledged sends (v2, with cids), or `None` for the C++ client's fire-and-forget v1 sends.
    pub ack: Option<AckPlan>,
}

/// How acknowledged sends are resent.
#[derive(Debug, Clone, Copy)]
pub struct AckPlan {
    /// A message still unacknowledged this long after it was last written is written again.
    pub timeout_ns: u64,
    /// After the schedule, senders keep resending until every message is acknowledged or this long
    /// after the last one was due.
    pub grace_ns: u64,
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

/// A message written but not yet acknowledged: enough to write the same frame again, and when to.
/// Ordered by `resend_ns` first: the queue hands out the one due soonest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Unacked {
    /// When it is written again unless acknowledged before (clock nanoseconds).
    resend_ns: u64,
    seq: u64,
    writer: usize,
    /// The recipient's user id, or the group id.
    to: i64,
    /// How long it waited for its ack this time: the plan's timeout, doubled with each resend.
    wait_ns: u64,
}

/// A sender thread's messages awaiting their acks, the one to resend soonest first.
struct Resender {
    plan: AckPlan,
    queue: BinaryHeap<Reverse<Unacked>>,
}

/// The most a message's wait for its ack grows to, in multiples of the plan's timeout. A client that
/// resent at a fixed interval would double the load of a server already too slow to answer within it,
/// and a little more with each round (the resend spiral docs/BENCHMARKS.md describes); a client backs off.
const MAX_BACKOFF: u64 = 8;

/// How long a message waits for its ack after a resend, having waited `wait_ns` before it.
fn backoff(wait_ns: u64, timeout_ns: u64) -> u64 {
    (wait_ns * 2).min(timeout_ns * MAX_BACKOFF)
}

/// Longest a sender sleeps at once while it has messages awaiting acks (it checks for late ones between).
const RESEND_TICK: Duration = Duration::from_millis(5);

/// Sender thread `k`: sends its share of the step's messages on schedule, from `writers`; with acks,
/// resends what stays unacknowledged.
pub fn send(k: usize, writers: &mut [Writer], plan: &Plan<'_>) {
    let mut rng = Rng::new(plan.seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let mut frame = String::with_capacity(plan.msg_bytes + 200);
    let mut resender = plan.ack.map(|plan| Resender {
        plan,
        queue: BinaryHeap::new(),
    });
    let mut seq = k as u64;
    while seq < plan.step.planned {
        let due = plan.due_ns(seq);
        wait_until(due, writers, plan, &time, resender.as_mut(), &mut frame);
        let lag = plan.clock.now_ns().saturating_sub(due);
        plan.step.max_lag_ns.fetch_max(lag, Ordering::Relaxed);
        let Some(w) = pick_live(writers, &mut rng) else {
            return;
        };
        if let Some((to, deliveries)) = pick_target(&writers[w], plan.kind, &mut rng) {
            let stamp = Stamp {
                step: plan.step.id,
                seq,
                due_ns: due,
            };
            build_frame(&writers[w], plan, stamp, to, &time, &mut frame);
            if write_one(&mut writers[w], frame.as_bytes(), plan.step, plan.clock) {
                plan.step.sent(seq, deliveries);
                if let Some(r) = resender.as_mut() {
                    let wait_ns = r.plan.timeout_ns;
                    r.queue.push(Reverse(Unacked {
                        resend_ns: plan.clock.now_ns() + wait_ns,
                        seq,
                        writer: w,
                        to,
                        wait_ns,
                    }));
                }
            }
        }
        seq += plan.senders as u64;
    }
    if let Some(r) = resender.as_mut() {
        let end = plan.due_ns(plan.step.planned) + r.plan.grace_ns;
        loop {
            resend_late(r, writers, plan, &time, &mut frame);
            let now = plan.clock.now_ns();
            if r.queue.is_empty() || now >= end {
                break;
            }
            std::thread::sleep(RESEND_TICK.min(Duration::from_nanos(end - now)));
        }
    }
}

/// Sleeps until `due`; with acks, resends late messages meanwhile.
fn wait_until(
    due: u64,
    writers: &mut [Writer],
    plan: &Plan<'_>,
    time: &str,
    mut resender: Option<&mut Resender>,
    frame: &mut String,
) {
    loop {
        if let Some(r) = resender.as_deref_mut() {
            resend_late(r, writers, plan, time, frame);
        }
        let now = plan.clock.now_ns();
        if due <= now {
            return;
        }
        let mut nap = Duration::from_nanos(due - now);
        if resender.is_some() {
            nap = nap.min(RESEND_TICK);
        }
        std::thread::sleep(nap);
    }
}

/// Forgets acknowledged messages at the front of the queue and writes again, with the same cid and
/// text, those whose wait for their ack is over, each then waiting twice as long ([`backoff`]).
fn resend_late(
    r: &mut Resender,
    writers: &mut [Writer],
    plan: &Plan<'_>,
    time: &str,
    frame: &mut String,
) {
    let step = plan.step;
    while let Some(Reverse(front)) = r.queue.peek() {
        if step.is_acked(front.seq) || !writers[front.writer].alive {
            r.queue.pop();
            continue;
        }
        if plan.clock.now_ns() < front.resend_ns {
            return;
        }
        let Some(Reverse(mut late)) = r.queue.pop() else {
            return;
        };
        let stamp = Stamp {
            step: step.id,
            seq: late.seq,
            due_ns: plan.due_ns(late.seq),
        };
        build_frame(&writers[late.writer], plan, stamp, late.to, time, frame);
        if write_one(
            &mut writers[late.writer],
            frame.as_bytes(),
            step,
            plan.clock,
        ) {
            step.resends.fetch_add(1, Ordering::Relaxed);
            late.wait_ns = backoff(late.wait_ns, r.plan.timeout_ns);
            late.resend_ns = plan.clock.now_ns() + late.wait_ns;
            r.queue.push(Reverse(late));
        }
    }
}

/// Writes one frame and counts the outcome; `false` when the connection failed (it is not used again).
fn write_one(writer: &mut Writer, frame: &[u8], step: &Step, clock: &Clock) -> bool {
    let bytes = wire(writer.transport, &mut writer.masks, frame, &mut writer.wire);
    match write_frame(&mut writer.stream, bytes, STALL_LIMIT) {
        Ok(split) => {
            step.last_send_ns
                .fetch_max(clock.now_ns(), Ordering::Relaxed);
            if split {
                step.split_writes.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
        Err(WriteError::Stalled | WriteError::Failed) => {
            step.send_failures.fetch_add(1, Ordering::Relaxed);
            writer.alive = false;
            false
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

/// Where `writer`'s next message goes (a user id, or its group's id) and how many deliveries it should
/// get; `None` when there is nobody to send to.
fn pick_target(writer: &Writer, kind: &Kind, rng: &mut Rng) -> Option<(i64, u16)> {
    match kind {
        Kind::One {
            recipients,
            cross_node,
            peers,
        } => pick_recipient(recipients, &writer.user, *cross_node, *peers, rng).map(|t| (t.id, 1)),
        Kind::Group {
            group_size,
            live_members,
        } => {
            let gid = writer.group?;
            let live = live_members.get(writer.user.index / group_size).copied()?;
            Some((gid, u16::try_from(live.saturating_sub(1)).ok()?))
        }
    }
}

/// Builds the frame of message `stamp` to `to` (with its NUL) into `out`; with acks it carries the cid
/// `"<step>:<seq>:<due_ns>:"`, unique per sender within a run and the same for every resend.
fn build_frame(
    writer: &Writer,
    plan: &Plan<'_>,
    stamp: Stamp,
    to: i64,
    time: &str,
    out: &mut String,
) {
    let mut text = String::with_capacity(plan.msg_bytes);
    msgtext::encode(stamp, plan.msg_bytes, &mut text);
    let user = &writer.user;
    out.clear();
    // Names and texts are ASCII letters, digits, `_` and `:`: nothing to escape. Writing to a String
    // cannot fail.
    let (msgid, to_key) = match plan.kind {
        Kind::One { .. } => (6, "toid"),
        Kind::Group { .. } => (10, "groupid"),
    };
    let _ = write!(
        out,
        r#"{{"msgid":{msgid},"id":{},"name":"{}","{to_key}":{to},"msg":"{text}","time":"{time}""#,
        user.id, user.name
    );
    if plan.ack.is_some() {
        out.push_str(r#","cid":""#);
        msgtext::encode(stamp, 0, out);
        out.push('"');
    }
    out.push_str("}\0");
}

/// A random recipient other than the sender; with `cross_node`, one on another node; with `peers` above
/// 0, one of the `peers` after the sender's index (or the next one that will do), so that each sender
/// writes to the same few users, as people mostly do.
fn pick_recipient(
    recipients: &[Target],
    sender: &User,
    cross_node: bool,
    peers: usize,
    rng: &mut Rng,
) -> Option<Target> {
    let n = recipients.len();
    if n == 0 {
        return None;
    }
    let start = match peers {
        0 => rng.below(n),
        peers => (sender.index + 1 + rng.below(peers.min(n))) % n,
    };
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

    #[test]
    fn the_wait_for_an_ack_doubles_with_each_resend_up_to_a_limit() {
        let timeout = 1_000;
        let mut wait = timeout;
        let waits: Vec<u64> = (0..5)
            .map(|_| {
                wait = backoff(wait, timeout);
                wait
            })
            .collect();
        assert_eq!(waits, [2_000, 4_000, 8_000, 8_000, 8_000]);
    }

    #[test]
    fn the_message_due_soonest_is_resent_first_whatever_its_place_in_the_queue() {
        let unacked = |resend_ns, seq| {
            Reverse(Unacked {
                resend_ns,
                seq,
                writer: 0,
                to: 2,
                wait_ns: 0,
            })
        };
        // Message 1 was resent and now waits longer than message 2, written after it.
        let mut queue = BinaryHeap::from([unacked(5_000, 1), unacked(3_000, 2), unacked(4_000, 3)]);
        let order: Vec<u64> = std::iter::from_fn(|| queue.pop().map(|Reverse(u)| u.seq)).collect();
        assert_eq!(order, [2, 3, 1]);
    }

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
            let t = pick_recipient(&recipients, &sender, true, 0, &mut rng).unwrap();
            assert_ne!(t.id, 1);
            assert_eq!(t.addr_index, 1);
            let t = pick_recipient(&recipients, &sender, false, 0, &mut rng).unwrap();
            assert_ne!(t.id, 1);
        }
        let alone = [Target {
            id: 1,
            addr_index: 0,
        }];
        assert!(pick_recipient(&alone, &sender, false, 0, &mut rng).is_none());
    }

    #[test]
    fn with_peers_each_sender_writes_to_the_same_few() {
        let recipients: Vec<Target> = (0..100)
            .map(|i| Target {
                id: i + 1,
                addr_index: 0,
            })
            .collect();
        let mut rng = Rng::new(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let t = pick_recipient(&recipients, &user(98, 99, 0), false, 3, &mut rng).unwrap();
            seen.insert(t.id);
        }
        // Users 99 and 100 (indexes 98 and 99 after the sender's), then the list wraps to user 1.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 100]);
    }

    #[test]
    fn frames_carry_a_cid_only_with_acks() {
        let step = Step::new(3, 10, 1, true);
        let clock = Clock::new();
        let kind = Kind::One {
            recipients: Vec::new(),
            cross_node: false,
            peers: 0,
        };
        let mut plan = Plan {
            step: &step,
            clock: &clock,
            kind: &kind,
            rate: 100.0,
            start_ns: 0,
            senders: 1,
            msg_bytes: 64,
            seed: 1,
            ack: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = Writer {
            user: user(0, 7, 0),
            stream: TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
            alive: true,
            group: None,
            transport: Transport::Tcp,
            masks: Masks::new(1),
            wire: Vec::new(),
        };
        let stamp = Stamp {
            step: 3,
            seq: 5,
            due_ns: 42,
        };
        let mut out = String::new();
        build_frame(&writer, &plan, stamp, 9, "t", &mut out);
        assert!(out.ends_with("}\0"));
        let v: serde_json::Value = serde_json::from_str(out.trim_end_matches('\0')).unwrap();
        assert_eq!(v["toid"], 9);
        assert_eq!(v["msg"].as_str().unwrap().len(), 64);
        assert!(v.get("cid").is_none());
        plan.ack = Some(AckPlan {
            timeout_ns: 1,
            grace_ns: 1,
        });
        build_frame(&writer, &plan, stamp, 9, "t", &mut out);
        let v: serde_json::Value = serde_json::from_str(out.trim_end_matches('\0')).unwrap();
        assert_eq!(v["cid"], "3:5:42:");
        assert_eq!(msgtext::decode(v["cid"].as_str().unwrap()), Some(stamp));
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
