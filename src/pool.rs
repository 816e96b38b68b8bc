//! The bounded pool of connection workers: one thread serves one connection with blocking reads.
//!
//! Threads are started on demand up to `max` and stay around for a while when idle, so a quiet node holds
//! few threads and a busy one reuses them. A connection is handed to an idle worker through a zero-capacity
//! channel (the hand-off succeeds only if a worker is waiting); otherwise a new worker is started if the pool
//! is under its bound; otherwise the caller gets the connection back and refuses it. Nothing waits in a queue
//! behind a full pool, and a failed thread start is a refusal, never a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// How long an idle worker waits for another connection before its thread exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// At the bound, how long a new connection may wait for a worker that is just finishing.
const FULL_GRACE: Duration = Duration::from_millis(20);

/// A pool of threads each running `handler` on one item at a time.
pub struct Pool<T: Send + 'static> {
    tx: Sender<T>,
    rx: Receiver<T>,
    handler: Arc<dyn Fn(T) + Send + Sync>,
    /// Live worker threads, busy or idle.
    live: Arc<AtomicUsize>,
    /// Busy workers (serving an item).
    busy: Arc<AtomicUsize>,
    max: usize,
    stack_bytes: usize,
    name: String,
}

impl<T: Send + 'static> Pool<T> {
    /// A pool of at most `max` threads named `name`, each with a stack of `stack_bytes`.
    pub fn new(
        name: &str,
        max: usize,
        stack_bytes: usize,
        handler: impl Fn(T) + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Pool {
            tx,
            rx,
            handler: Arc::new(handler),
            live: Arc::new(AtomicUsize::new(0)),
            busy: Arc::new(AtomicUsize::new(0)),
            max,
            stack_bytes,
            name: name.to_owned(),
        }
    }

    /// Hands `item` to a worker, or gives it back when the pool is full or no thread can be started.
    pub fn submit(&self, item: T) -> Result<(), T> {
        let item = match self.tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => item,
        };
        if self.live.fetch_add(1, Ordering::SeqCst) < self.max {
            return self.spawn(item);
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.tx
            .send_timeout(item, FULL_GRACE)
            .map_err(|e| e.into_inner())
    }

    /// Items being served right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Starts a worker whose first item is `item`; `live` already counts it.
    fn spawn(&self, item: T) -> Result<(), T> {
        let handoff = Arc::new(parking_lot::Mutex::new(Some(item)));
        let first = handoff.clone();
        let rx = self.rx.clone();
        let handler = self.handler.clone();
        let live = self.live.clone();
        let busy = self.busy.clone();
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                let mut next = first.lock().take();
                while let Some(item) = next {
                    busy.fetch_add(1, Ordering::SeqCst);
                    handler(item);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    next = rx.recv_timeout(IDLE_EXIT).ok();
                }
                live.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "could not start a worker thread");
                Err(handoff.lock().take().expect("the thread never started"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn refuses_beyond_the_bound_and_reuses_idle_workers() {
        let gate = Arc::new(Barrier::new(3));
        let g = gate.clone();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let pool = Pool::new("test-worker", 2, 64 * 1024, move |wait: bool| {
            if wait {
                g.wait();
            }
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert!(pool.submit(true).is_ok());
        assert!(pool.submit(true).is_ok());
        assert_eq!(
            pool.submit(false),
            Err(false),
            "third item refused while two are busy"
        );
        gate.wait();
        while done.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        // Both workers are idle now (or about to be): items are accepted again without new threads.
        for _ in 0..10 {
            pool.submit(false).expect("an idle worker takes it");
        }
        while done.load(Ordering::SeqCst) < 12 {
            std::thread::yield_now();
        }
        assert!(pool.live.load(Ordering::SeqCst) <= 2);
    }
}
