//! Group commit for the log: one thread takes every append (and every late offline record) that has
//! queued up and writes them in one transaction each, so a burst of messages costs one commit (one fsync)
//! per batch instead of one per message. Each caller gets its own result only once its messages are
//! committed, so an acknowledgement is only sent then: either it waits for it, or it leaves work to run
//! with it on a second thread, which runs the work of each commit in commit order.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parking_lot::{Condvar, Mutex};

use super::{Appended, NewMessage, Pointer, Result, Store, StoreError};
use crate::metrics::Metrics;
use crate::priority::spawn_log_thread;

/// Messages at which the writer stops adding waiting jobs to a transaction (one job may take it past
/// this), so that one commit does not hold the database for long.
const MAX_MESSAGES: usize = 4096;

/// The longest the writer waits for more work before it commits.
const MAX_LINGER: Duration = Duration::from_millis(2);

/// How many messages the writer waits to gather for one commit, never longer than [`MAX_LINGER`]. A
/// commit's own cost is large beside a message's on SQLite: besides the transaction and the wake-ups,
/// SQLite scans the writer's whole page-cache hash at the end of nearly every commit (a b-tree balance
/// parks a page at the pending-byte page number, which makes the cache look larger than the file), so
/// 32 at up to 2 ms, not 8 at up to 1 ms (docs/BENCHMARKS.md, "Delivery after the commit").
const GATHER: f64 = 32.0;

/// The fewest messages worth waiting for: below this many within [`MAX_LINGER`] (2 a millisecond), the
/// writer commits at once.
const MIN_GATHER: f64 = 4.0;

/// One caller's work, done in the same transaction as everything else of its kind that is waiting.
enum Job {
    Append {
        messages: Vec<NewMessage>,
        reply: Reply<Placed>,
    },
    Offline {
        pointers: Vec<Pointer>,
        reply: Reply<()>,
    },
}

impl Job {
    fn size(&self) -> usize {
        match self {
            Job::Append { messages, .. } => messages.len(),
            Job::Offline { pointers, .. } => pointers.len(),
        }
    }
}

/// What an append comes to: the messages placed, or why the log could not write at all.
pub type Done = Result<Placed>;

/// A caller's messages handed back with where the log put each one (or why not).
pub type Placed = (Vec<NewMessage>, Vec<Appended>);

/// Where the writer puts one caller's result: a slot the caller sleeps on until it is filled, or work to
/// run with the result once committed ([`LogWriter::append_then`]). The caller parks at once rather than
/// spinning and yielding first, as a channel's receiver does: with a thousand connections waiting for
/// commits, that spinning took a seventh of the node's CPU (docs/BENCHMARKS.md, the durable log's
/// profile). A reply dropped unfilled (the writer stopped) gets an error, so no caller waits for ever and
/// no work is left unrun.
struct Reply<T> {
    to: Option<To<T>>,
}

enum To<T> {
    Slot(Arc<Slot<T>>),
    Then(Box<dyn FnOnce(Result<T>) + Send>),
}

struct Slot<T> {
    value: Mutex<Option<Result<T>>>,
    ready: Condvar,
}

/// Work the writer leaves to the completion thread, with its result bound in.
type Later = Box<dyn FnOnce() + Send>;

impl<T: Send + 'static> Reply<T> {
    /// A reply and the slot its caller waits on.
    fn new() -> (Reply<T>, Arc<Slot<T>>) {
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            ready: Condvar::new(),
        });
        let reply = Reply {
            to: Some(To::Slot(slot.clone())),
        };
        (reply, slot)
    }

    /// A reply that runs `then` with the result.
    fn then(then: impl FnOnce(Result<T>) + Send + 'static) -> Reply<T> {
        Reply {
            to: Some(To::Then(Box::new(then))),
        }
    }

    /// Fills the slot, or runs the work here.
    fn send(mut self, result: Result<T>) {
        if let Some(to) = self.to.take() {
            to.fill(result);
        }
    }

    /// Fills the slot now, or leaves the work, with its result, to `later`.
    fn send_later(mut self, result: Result<T>, later: &mut Vec<Later>) {
        match self.to.take() {
            Some(To::Then(then)) => later.push(Box::new(move || then(result))),
            Some(to) => to.fill(result),
            None => {}
        }
    }
}

impl<T> To<T> {
    fn fill(self, result: Result<T>) {
        match self {
            To::Slot(slot) => {
                *slot.value.lock() = Some(result);
                slot.ready.notify_one();
            }
            To::Then(then) => then(result),
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            to.fill(Err(stopped()));
        }
    }
}

impl<T> Slot<T> {
    /// Sleeps until the writer has put the result.
    fn wait(&self) -> Result<T> {
        let mut value = self.value.lock();
        loop {
            if let Some(result) = value.take() {
                return result;
            }
            self.ready.wait(&mut value);
        }
    }
}

/// An append handed on with [`LogWriter::append_then`]: wait on it for its work to have run.
pub struct Landing(Arc<Slot<()>>);

impl Landing {
    /// Sleeps until the append's work has run (or the writer stopped).
    pub fn wait(self) {
        let _ = self.0.wait();
    }
}

/// The handle through which the service writes to the log.
pub struct LogWriter {
    jobs: Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("log writer stopped".into())
}

impl LogWriter {
    /// Starts the writer thread over `store`; each commit's size and time go to `metrics`.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> std::io::Result<LogWriter> {
        let (jobs, rx) = bounded(16 * 1024);
        // Unbounded: the writer never waits for the work it leaves, which may itself wait for the writer
        // (recording offline what it could not deliver).
        let (later, run) = unbounded();
        spawn_log_thread("log-landed", move || run_later(&run))?;
        spawn_log_thread("log-writer", move || {
            write_loop(store.as_ref(), &metrics, &rx, &later)
        })?;
        Ok(LogWriter { jobs })
    }

    /// Appends `messages` (see [`super::Log::append`]) in one transaction with whatever else is waiting,
    /// and hands them back with where each one is.
    pub fn append(&self, messages: Vec<NewMessage>) -> Done {
        if messages.is_empty() {
            return Ok((messages, Vec::new()));
        }
        let (reply, slot) = Reply::new();
        self.jobs
            .send(Job::Append { messages, reply })
            .map_err(|_| stopped())?;
        slot.wait()
    }

    /// Appends `messages` like [`append`](Self::append), without waiting: `then` runs with the outcome
    /// once it is committed, on the log's completion thread, the work of one commit after the work of the
    /// commit before. A connection hands its chats on this way, so that its thread goes back to reading
    /// instead of sleeping until the commit and being woken for it: that took about a fifth off the
    /// node's CPU per message and half its context switches (docs/BENCHMARKS.md, "Delivery after the
    /// commit, and the log's priority"). The returned [`Landing`] says when `then` has run.
    pub fn append_then(
        &self,
        messages: Vec<NewMessage>,
        then: impl FnOnce(Done) + Send + 'static,
    ) -> Landing {
        let (landed, slot) = Reply::new();
        let reply = Reply::then(move |done| {
            then(done);
            landed.send(Ok(()));
        });
        // A writer that stopped drops the job, whose reply then runs `then` with the error, here.
        let _ = self.jobs.send(Job::Append { messages, reply });
        Landing(slot)
    }

    /// Records messages offline (see [`super::Log::store_offline`]), batched likewise.
    pub fn store_offline(&self, pointers: Vec<Pointer>) -> Result<()> {
        if pointers.is_empty() {
            return Ok(());
        }
        let (reply, slot) = Reply::new();
        self.jobs
            .send(Job::Offline { pointers, reply })
            .map_err(|_| stopped())?;
        slot.wait()
    }
}

/// Runs what the writer left after each commit, in commit order; a panic in one caller's work is that
/// caller's (its [`Landing`] still ends), not the thread's.
fn run_later(run: &Receiver<Vec<Later>>) {
    for batch in run {
        for work in batch {
            if catch_unwind(AssertUnwindSafe(work)).is_err() {
                tracing::error!("the work after a commit panicked");
            }
        }
    }
}

fn write_loop(
    store: &dyn Store,
    metrics: &Metrics,
    jobs: &Receiver<Job>,
    later: &Sender<Vec<Later>>,
) {
    let mut pace = Pace::new();
    while let Ok(first) = jobs.recv() {
        if let Some(linger) = pace.linger() {
            // Asleep rather than waiting on the channel: senders do not wake a writer that is not
            // receiving, so the jobs that come in meanwhile cost no wake-up each.
            std::thread::sleep(linger);
        }
        let mut size = first.size();
        let mut batch = vec![first];
        while size < MAX_MESSAGES {
            let Ok(job) = jobs.try_recv() else { break };
            size += job.size();
            batch.push(job);
        }
        pace.batch(size);
        let (mut appends, mut offline) = (Vec::new(), Vec::new());
        for job in batch {
            match job {
                Job::Append { messages, reply } => appends.push((messages, reply)),
                Job::Offline { pointers, reply } => offline.push((pointers, reply)),
            }
        }
        let mut landed = Vec::new();
        append_all(store, metrics, appends, &mut landed);
        store_all(store, metrics, offline);
        if !landed.is_empty() {
            let _ = later.send(landed);
        }
    }
}

/// The rate work reaches the writer, and from it how long to wait before a commit. A commit costs
/// about the same for one message as for ten (the transaction, the wake-up of the writer and of each
/// caller), so under load the writer waits for [`GATHER`] messages, never longer than [`MAX_LINGER`];
/// when fewer than [`MIN_GATHER`] would come in that time, it commits at once and adds no latency (this
/// is PostgreSQL's `commit_delay` with `commit_siblings`, computed instead of configured). Waiting from
/// two messages a millisecond on, not from eight, took a tenth off the CPU of a message at 5,000 msg/s
/// (docs/BENCHMARKS.md, "Checkpoints off the writer's thread").
struct Pace {
    /// Messages per second, a moving average over batches.
    rate: f64,
    since: Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            rate: 0.0,
            since: Instant::now(),
        }
    }

    /// A batch of `messages` was taken; the rate counts them over the time since the batch before.
    fn batch(&mut self, messages: usize) {
        let now = Instant::now();
        let secs = now.duration_since(self.since).as_secs_f64().max(1e-6);
        self.since = now;
        self.rate = 0.8 * self.rate + 0.2 * (messages as f64 / secs);
    }

    /// How long to wait for more work, if it is worth waiting. The time since the last batch was taken
    /// (the commit that followed it, or an idle spell) has gathered work already and counts against the
    /// wait, so a writer back from a long commit, or a lone message after a quiet spell whose rate the
    /// average still remembers as high, does not wait at all.
    fn linger(&self) -> Option<Duration> {
        let max = MAX_LINGER.as_secs_f64();
        let wait = (GATHER / self.rate).min(max) - self.since.elapsed().as_secs_f64();
        (self.rate * max >= MIN_GATHER && wait > 0.0).then(|| Duration::from_secs_f64(wait))
    }
}

/// One transaction for every waiting append; each caller gets the results of its own messages.
fn append_all(
    store: &dyn Store,
    metrics: &Metrics,
    jobs: Vec<(Vec<NewMessage>, Reply<Placed>)>,
    later: &mut Vec<Later>,
) {
    if jobs.is_empty() {
        return;
    }
    let all: Vec<&NewMessage> = jobs.iter().flat_map(|(m, _)| m.iter()).collect();
    let started = Instant::now();
    let result = store.append(&all);
    let total = all.len();
    metrics.commit(total, started.elapsed());
    drop(all);
    match result {
        Ok(committed) if committed.len() == total => {
            let mut committed = committed.into_iter();
            for (messages, reply) in jobs {
                let mine = committed.by_ref().take(messages.len()).collect();
                reply.send_later(Ok((messages, mine)), later);
            }
        }
        result => {
            metrics.error("store");
            let text = match result {
                Err(e) => e.to_string(),
                Ok(c) => format!("the store committed {} of {total} messages", c.len()),
            };
            for (_, reply) in jobs {
                reply.send_later(Err(StoreError::Unavailable(text.clone())), later);
            }
        }
    }
}

/// One transaction for every waiting offline record.
fn store_all(store: &dyn Store, metrics: &Metrics, jobs: Vec<(Vec<Pointer>, Reply<()>)>) {
    if jobs.is_empty() {
        return;
    }
    let all: Vec<Pointer> = jobs.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    let result = store.store_offline(&all).map_err(|e| e.to_string());
    if result.is_err() {
        metrics.error("store");
    }
    for (_, reply) in jobs {
        reply.send(result.clone().map_err(StoreError::Unavailable));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conv, Pos};
    use crate::store::Require;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn a_reply_dropped_unfilled_wakes_its_caller_with_an_error() {
        let (reply, slot) = Reply::<u8>::new();
        let waiter = std::thread::spawn(move || slot.wait());
        drop(reply);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn the_writer_lingers_only_when_work_comes_fast() {
        let mut pace = Pace::new();
        assert_eq!(pace.linger(), None, "no work seen yet");
        std::thread::sleep(Duration::from_millis(20));
        pace.batch(1);
        assert_eq!(pace.linger(), None, "50 messages a second");
        for _ in 0..50 {
            pace.since -= Duration::from_millis(1);
            pace.batch(100);
        }
        let linger = pace.linger().expect("about 100,000 messages a second");
        assert!(
            linger <= MAX_LINGER && linger > Duration::ZERO,
            "{linger:?}"
        );
        pace.rate = 3000.0;
        pace.since = Instant::now();
        let linger = pace.linger().expect("3 messages a millisecond");
        assert!(linger <= MAX_LINGER, "{linger:?}");
        pace.rate = 1000.0;
        assert_eq!(pace.linger(), None, "1 message a millisecond");
        pace.rate = 100_000.0;
        pace.since -= Duration::from_secs(1);
        assert_eq!(
            pace.linger(),
            None,
            "a second idle since: the rate is stale"
        );
    }

    #[test]
    fn a_filled_reply_hands_over_its_result() {
        let (reply, slot) = Reply::new();
        reply.send(Ok(7));
        assert_eq!(slot.wait().unwrap(), 7);
    }

    fn message(conv: Conv, n: usize) -> NewMessage {
        NewMessage {
            conv,
            sender: 1,
            cid: None,
            time: String::new(),
            text: n.to_string(),
            offline: Vec::new(),
            require: Require::Nothing,
        }
    }

    /// A log writer over a SQLite store on a new file (kept while the directory is).
    fn writer_on_a_new_file() -> (tempfile::TempDir, std::path::PathBuf, LogWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let writer = LogWriter::start(Arc::new(store), Default::default()).unwrap();
        (dir, path, writer)
    }

    /// Work handed on runs once committed, the work of each commit after that of the commit before: the
    /// positions it sees in one conversation only grow, though four threads append at once.
    #[test]
    fn work_after_commits_runs_in_commit_order() {
        let (_dir, _, writer) = writer_on_a_new_file();
        let writer = Arc::new(writer);
        let conv = Conv::direct(1, 2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (writer, seen) = (writer.clone(), seen.clone());
                std::thread::spawn(move || {
                    for n in 0..200 {
                        let seen = seen.clone();
                        writer
                            .append_then(vec![message(conv, n)], move |done| {
                                let (_, appended) = done.unwrap();
                                seen.lock().push(appended[0].unwrap().pos);
                            })
                            .wait();
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        let seen = seen.lock();
        assert_eq!(*seen, (1..=800).collect::<Vec<Pos>>());
    }

    /// A panic in the work after a commit ends its landing (nobody waits for ever), and the work of
    /// later commits still runs.
    #[test]
    fn a_panic_after_a_commit_is_only_its_callers() {
        let (_dir, _, writer) = writer_on_a_new_file();
        let conv = Conv::direct(1, 2);
        writer
            .append_then(vec![message(conv, 0)], |_| panic!("a handler's bug"))
            .wait();
        let (tx, rx) = crossbeam_channel::bounded(1);
        writer
            .append_then(vec![message(conv, 1)], move |done| {
                tx.send(done.is_ok()).unwrap()
            })
            .wait();
        assert!(rx.try_recv().unwrap(), "the next append ran its work");
    }

    #[test]
    fn work_left_for_a_stopped_writer_runs_with_an_error() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reply = Reply::<u8>::then(move |r| tx.send(r.is_err()).unwrap());
        drop(reply);
        assert!(rx.try_recv().unwrap());
    }
}
