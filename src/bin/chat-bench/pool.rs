//! Bounded concurrency for setup: a fixed number of worker threads take items from one queue. Logins are
//! slow by design (argon2), so they are spread over many connections at once, but never all at once
//! unless asked: the login storm is a scenario of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Applies `f` to every item with at most `workers` in flight; results come back in the items' order.
/// Prints `label: done/total` to stderr once a second while it runs.
pub fn map<T, R, F>(items: Vec<T>, workers: usize, label: &str, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync,
{
    let total = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..total).map(|_| None).collect());
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, total.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().next();
                        let Some((index, item)) = next else { break };
                        let result = f(index, item);
                        results.lock()[index] = Some(result);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let start = Instant::now();
        let mut last = start;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                eprintln!(
                    "{label}: {}/{total} ({:.0} s)",
                    done.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64()
                );
            }
        }
    });
    results
        .into_inner()
        .into_iter()
        .map(|r| r.expect("every item was mapped (a worker panicked otherwise)"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_bounds_concurrency() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = map((0..50).collect(), 4, "test", |i, x: u32| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            (i, x * 2)
        });
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|&(i, x)| x == 2 * i as u32));
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn empty_input() {
        let out: Vec<u8> = map(Vec::<u8>::new(), 8, "test", |_, x| x);
        assert!(out.is_empty());
    }
}
