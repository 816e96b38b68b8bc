//! The priority of the log's threads over the connections'.
//!
//! Every chat message passes through the same few threads of the log (its writer, the thread that
//! delivers what it committed, SQLite's checkpointer), while each connection reads on a thread of its
//! own. The kernel's fair scheduler gives every runnable thread an equal share of the cores, so under load
//! a thousand busy connection threads leave those few, through which all their messages must go, a
//! thousandth each: queues build up in front of them and the tail latency grows, though the cores are not
//! all busy with the log. Run at a higher priority (nice −10), the log's threads take the core as soon
//! as they have work: one node on two cores went from 14,000 to 16,000–18,000 one-to-one messages a
//! second within the latency bound, with fewer context switches per message (docs/BENCHMARKS.md,
//! "Delivery after the commit").
//!
//! Raising a priority needs root, `CAP_SYS_NICE`, or a nice limit that allows it (`LimitNICE=-10` in
//! the systemd unit, `ulimit -e 30`). Without, the node says so once at start and runs as before.

use std::io;
use std::sync::Once;
use std::thread::JoinHandle;

/// The nice value of the log's threads (the connections' is the process's, normally 0). Each step
/// weighs about 1.25 times the one above it with the fair scheduler: −10 gives such a thread about nine
/// times the share of a connection's thread.
const LOG_NICE: i32 = -10;

/// Starts a named thread of the log, at the log's priority.
pub fn spawn_log_thread<T, F>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name.into()).spawn(|| {
        raise_current_thread();
        f()
    })
}

/// Gives the calling thread the log's priority, or warns once that it cannot.
fn raise_current_thread() {
    // On Linux the nice value belongs to a thread, and `None` names the calling one.
    if let Err(e) = rustix::process::setpriority_process(None, LOG_NICE) {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                error = %e,
                nice = LOG_NICE,
                "could not raise the priority of the log's threads (needs root, CAP_SYS_NICE or \
                 LimitNICE=-10): under load, messages wait longer"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log's thread runs at the log's priority where it may be raised (root, as the tests run), and
    /// the spawning thread keeps its own.
    #[test]
    fn a_log_thread_runs_ahead_of_the_others() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let inside = spawn_log_thread("test-log", || {
            rustix::process::getpriority_process(None).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
        if rustix::process::geteuid().is_root() {
            assert_eq!(inside, LOG_NICE);
        } else {
            assert!(inside == LOG_NICE || inside == before, "{inside}");
        }
    }
}
