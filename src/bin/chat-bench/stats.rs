//! Counting: the state of one load step shared by senders and receivers (per-message delivery counters,
//! latency histograms), the run-wide counters (errors by errno, disconnects), and the pure arithmetic
//! that turns them into loss and percentiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

use crate::setup::latency_histogram;

/// The bench's clock: nanoseconds since the start, shared by senders (due times) and receivers.
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// One load step (one rate of a sweep).
pub struct Step {
    pub id: u32,
    /// Messages the schedule holds; sequence numbers are `0..planned`.
    pub planned: u64,
    /// Deliveries each message should get (0 until it was written).
    pub expected: Vec<AtomicU16>,
    /// Deliveries each message got.
    pub delivered: Vec<AtomicU16>,
    pub sent: AtomicU64,
    pub expected_total: AtomicU64,
    pub received: AtomicU64,
    /// Frames the tool could not write (the connection failed or stalled).
    pub send_failures: AtomicU64,
    /// Frames that did not fit in one `write()` (the server was not reading fast enough).
    pub split_writes: AtomicU64,
    /// Latest a message was written after its due time (the tool's own lag), nanoseconds.
    pub max_lag_ns: AtomicU64,
    /// When the last frame was written (clock nanoseconds), for the achieved rate.
    pub last_send_ns: AtomicU64,
    /// End-to-end latency in µs, one histogram per receiver thread (merged at the end).
    pub latency: Vec<Mutex<Histogram<u64>>>,
    /// The same since the last progress line.
    pub interval: Vec<Mutex<Histogram<u64>>>,
    /// With acknowledged sends: whether each message's ack came (empty otherwise).
    pub acks: Vec<AtomicBool>,
    /// Messages acknowledged (each once), acks beyond the first for a message (a resend's answer), and
    /// frames written again because their ack was late.
    pub acked: AtomicU64,
    pub dup_acks: AtomicU64,
    pub resends: AtomicU64,
    /// Due time to first ack in µs, one histogram per receiver thread.
    pub ack_latency: Vec<Mutex<Histogram<u64>>>,
}

impl Step {
    /// A step of `planned` messages read by `receivers` threads; `ack` keeps per-message ack state.
    pub fn new(id: u32, planned: u64, receivers: usize, ack: bool) -> Step {
        let counters = || (0..planned).map(|_| AtomicU16::new(0)).collect();
        let histograms = || {
            (0..receivers)
                .map(|_| Mutex::new(latency_histogram()))
                .collect()
        };
        Step {
            id,
            planned,
            expected: counters(),
            delivered: counters(),
            sent: AtomicU64::new(0),
            expected_total: AtomicU64::new(0),
            received: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            split_writes: AtomicU64::new(0),
            max_lag_ns: AtomicU64::new(0),
            last_send_ns: AtomicU64::new(0),
            latency: histograms(),
            interval: histograms(),
            acks: if ack {
                (0..planned).map(|_| AtomicBool::new(false)).collect()
            } else {
                Vec::new()
            },
            acked: AtomicU64::new(0),
            dup_acks: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            ack_latency: if ack { histograms() } else { Vec::new() },
        }
    }

    /// Counts an ack of message `seq`: `Some(true)` for its first, `Some(false)` for a later one, `None`
    /// when the number is not of this step.
    pub fn ack(&self, seq: u64) -> Option<bool> {
        let slot = self.acks.get(seq as usize)?;
        if slot.swap(true, Ordering::Relaxed) {
            self.dup_acks.fetch_add(1, Ordering::Relaxed);
            Some(false)
        } else {
            self.acked.fetch_add(1, Ordering::Relaxed);
            Some(true)
        }
    }

    /// Whether message `seq` was acknowledged.
    pub fn is_acked(&self, seq: u64) -> bool {
        self.acks
            .get(seq as usize)
            .is_some_and(|a| a.load(Ordering::Relaxed))
    }

    /// Merges the receivers' ack-latency histograms.
    pub fn ack_latency(&self) -> Histogram<u64> {
        merge(&self.ack_latency, false)
    }

    /// Notes that message `seq` was written and should reach `deliveries` receivers.
    pub fn sent(&self, seq: u64, deliveries: u16) {
        if let Some(slot) = self.expected.get(seq as usize) {
            slot.store(deliveries, Ordering::Relaxed);
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.expected_total
                .fetch_add(u64::from(deliveries), Ordering::Relaxed);
        }
    }

    /// Counts one delivery of message `seq`; `false` if the number is not of this step.
    pub fn delivered(&self, seq: u64) -> bool {
        match self.delivered.get(seq as usize) {
            Some(slot) => {
                // Saturating: a u16 counter never wraps into a small number.
                let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    Some(c.saturating_add(1))
                });
                self.received.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Merges the receivers' whole-step histograms.
    pub fn latency(&self) -> Histogram<u64> {
        merge(&self.latency, false)
    }

    /// Merges and clears the since-last-time histograms (for the progress line).
    pub fn take_interval(&self) -> Histogram<u64> {
        merge(&self.interval, true)
    }

    /// Expected, delivered and duplicate counts per message, summed.
    pub fn tally(&self) -> Tally {
        let load =
            |v: &[AtomicU16]| -> Vec<u16> { v.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
        tally(&load(&self.expected), &load(&self.delivered))
    }
}

fn merge(parts: &[Mutex<Histogram<u64>>], clear: bool) -> Histogram<u64> {
    let mut out = latency_histogram();
    for part in parts {
        let mut h = part.lock();
        // Same bounds everywhere, so adding cannot fail.
        let _ = out.add(&*h);
        if clear {
            h.reset();
        }
    }
    out
}

/// Counters that span the whole run (frames are not always attributable to a step).
pub struct Shared {
    pub clock: Clock,
    step: RwLock<Option<Arc<Step>>>,
    /// Deliveries stamped with an earlier step (late arrivals after its grace period).
    pub stale: AtomicU64,
    /// Chat frames whose text is not a bench stamp (someone else's messages).
    pub foreign: AtomicU64,
    /// ERROR_MSG frames by errno.
    pub errors: Mutex<BTreeMap<i64, u64>>,
    /// Frames of any other kind (acks, unknown).
    pub other_frames: AtomicU64,
    /// Bytes the decoder could not read as frames, and frames that were not JSON.
    pub malformed: AtomicU64,
    /// Connections the server closed or that failed during the load.
    pub disconnects: AtomicU64,
    /// Acks of an earlier step (after its grace period).
    pub late_acks: AtomicU64,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            clock: Clock::new(),
            step: RwLock::new(None),
            stale: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            other_frames: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            late_acks: AtomicU64::new(0),
        }
    }

    pub fn step(&self) -> Option<Arc<Step>> {
        self.step.read().clone()
    }

    pub fn set_step(&self, step: Option<Arc<Step>>) {
        *self.step.write() = step;
    }

    pub fn error(&self, errno: i64) {
        *self.errors.lock().entry(errno).or_insert(0) += 1;
    }

    /// A copy of the counters, to subtract from a later one.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stale: self.stale.load(Ordering::Relaxed),
            foreign: self.foreign.load(Ordering::Relaxed),
            errors: self.errors.lock().clone(),
            other_frames: self.other_frames.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            late_acks: self.late_acks.load(Ordering::Relaxed),
        }
    }
}

/// The run-wide counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub stale: u64,
    pub foreign: u64,
    pub errors: BTreeMap<i64, u64>,
    pub other_frames: u64,
    pub malformed: u64,
    pub disconnects: u64,
    pub late_acks: u64,
}

impl Snapshot {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let errors = self
            .errors
            .iter()
            .map(|(&errno, &n)| (errno, n - earlier.errors.get(&errno).copied().unwrap_or(0)))
            .filter(|&(_, n)| n > 0)
            .collect();
        Snapshot {
            stale: self.stale - earlier.stale,
            foreign: self.foreign - earlier.foreign,
            errors,
            other_frames: self.other_frames - earlier.other_frames,
            malformed: self.malformed - earlier.malformed,
            disconnects: self.disconnects - earlier.disconnects,
            late_acks: self.late_acks - earlier.late_acks,
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Deliveries of one step, per message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries the written messages should get.
    pub expected: u64,
    /// Deliveries that came, each message counted at most as often as expected.
    pub received: u64,
    /// Deliveries beyond the expected count of their message.
    pub duplicates: u64,
    /// Messages that got fewer deliveries than expected.
    pub short_messages: u64,
}

/// Compares expected and delivered counts message by message.
pub fn tally(expected: &[u16], delivered: &[u16]) -> Tally {
    let mut t = Tally::default();
    for (&want, &got) in expected.iter().zip(delivered) {
        let (want, got) = (u64::from(want), u64::from(got));
        t.expected += want;
        t.received += want.min(got);
        t.duplicates += got.saturating_sub(want);
        if got < want {
            t.short_messages += 1;
        }
    }
    t
}

/// Lost deliveries as a percentage of those expected (0 when nothing was expected).
pub fn loss_pct(t: &Tally) -> f64 {
    if t.expected == 0 {
        0.0
    } else {
        (t.expected - t.received) as f64 * 100.0 / t.expected as f64
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Percentiles of a histogram of microseconds; all zero when it is empty.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_loss_and_duplicates_per_message() {
        // Group of 4: each message expects 3; one message unsent (0 expected).
        let expected = [3, 3, 3, 0];
        let delivered = [3, 1, 5, 0];
        let t = tally(&expected, &delivered);
        assert_eq!(
            t,
            Tally {
                expected: 9,
                received: 7,
                duplicates: 2,
                short_messages: 1
            }
        );
        assert!((loss_pct(&t) - 200.0 / 9.0).abs() < 1e-9);
        assert_eq!(loss_pct(&Tally::default()), 0.0);
    }

    #[test]
    fn percentiles_from_microseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us * 100).unwrap(); // 0.1 ms .. 100 ms
        }
        let p = percentiles(&h);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p90 - 90.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
        assert_eq!(percentiles(&latency_histogram()), Percentiles::default());
    }

    #[test]
    fn step_counts_sent_and_delivered() {
        let step = Step::new(1, 3, 2, false);
        step.sent(0, 1);
        step.sent(2, 1);
        step.sent(7, 1); // outside the plan: ignored
        assert!(step.delivered(0));
        assert!(step.delivered(0));
        assert!(!step.delivered(3));
        let t = step.tally();
        assert_eq!((t.expected, t.received, t.duplicates), (2, 1, 1));
        assert_eq!(step.sent.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn acks_count_once_per_message() {
        let step = Step::new(1, 3, 1, true);
        assert!(!step.is_acked(1));
        assert_eq!(step.ack(1), Some(true));
        assert_eq!(step.ack(1), Some(false));
        assert_eq!(step.ack(3), None);
        assert!(step.is_acked(1) && !step.is_acked(0));
        assert_eq!(step.acked.load(Ordering::Relaxed), 1);
        assert_eq!(step.dup_acks.load(Ordering::Relaxed), 1);
        let no_acks = Step::new(1, 3, 1, false);
        assert_eq!(no_acks.ack(0), None);
    }

    #[test]
    fn snapshot_difference() {
        let shared = Shared::new();
        shared.error(104);
        let before = shared.snapshot();
        shared.error(104);
        shared.error(107);
        shared.disconnects.fetch_add(2, Ordering::Relaxed);
        let d = shared.snapshot().since(&before);
        assert_eq!(d.errors, BTreeMap::from([(104, 1), (107, 1)]));
        assert_eq!(d.errors_total(), 2);
        assert_eq!(d.disconnects, 2);
    }
}
