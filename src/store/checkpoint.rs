//! SQLite's WAL checkpoints, on a thread of their own.
//!
//! A commit in WAL mode appends pages to the WAL; a checkpoint copies them back into the database file
//! and syncs both files. Left to SQLite, the commit that fills the WAL past its threshold runs the
//! checkpoint itself, on the log writer's thread: every message waiting for that commit waited for two
//! fsyncs and a few megabytes of copying, which on a slow disk made the p99 of a loaded node (the
//! writer sat in fsync while a thousand senders waited). Here no connection checkpoints on commit; this
//! thread, on its own connection, copies what the writer has committed every [`EVERY`] without taking
//! the writer's lock (a passive checkpoint), so the writer's commits never sync a file. SQLite starts
//! the WAL again from its beginning at the first commit after a checkpoint has copied all of it; under
//! a load that never pauses that moment may not come, so once the WAL holds [`RESTART_FRAMES`] this
//! thread restarts it (a restart checkpoint, which makes the writer wait while it copies the few
//! frames committed since the passive one), which bounds the WAL on disk.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::priority::spawn_log_thread;

/// How often the WAL is copied back into the database.
const EVERY: Duration = Duration::from_millis(100);

/// The WAL's length, in pages, at which the checkpointer makes it start again (256 MiB of 4 KiB pages:
/// the WAL file grows to that and stays). Each restart holds the writer up; at 10,000 one-to-one msg/s
/// the bench's load writes over 100 MB of WAL a second (three random pages a message), so with 64 MiB
/// the writer was held up about twice a second, and the p99 at 10,000 to 16,000 msg/s was longer in
/// each of five alternating rounds (docs/BENCHMARKS.md, "Delivery after the commit").
const RESTART_FRAMES: i64 = 64 * 1024;

/// The thread that checkpoints one database; it stops when this is dropped.
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Checkpoints, through `conn`, the database it is open on.
    pub fn start(conn: rusqlite::Connection) -> std::io::Result<Checkpointer> {
        let (stop, stopped) = bounded(0);
        let thread = spawn_log_thread("wal-checkpoint", move || run(&conn, &stopped))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &rusqlite::Connection, stopped: &Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

/// Copies the WAL back into the database, and makes it start again once it is long.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    if wal_checkpoint(conn, "PASSIVE")? >= RESTART_FRAMES {
        wal_checkpoint(conn, "RESTART")?;
    }
    Ok(())
}

/// Runs one checkpoint in `mode`; the WAL's length in pages when it ran.
fn wal_checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA busy_timeout = 5000",
        )
        .unwrap();
        conn
    }

    /// A new database in `dir` with one table, and the writer's connection to it.
    fn database(dir: &tempfile::TempDir) -> (std::path::PathBuf, rusqlite::Connection) {
        let path = dir.path().join("c.db");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        (path, writer)
    }

    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn what_the_writer_commits_reaches_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(&dir);
        let _checkpointer = Checkpointer::start(open(&path)).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        writer
            .execute("INSERT INTO t (v) VALUES (zeroblob(100000))", [])
            .unwrap();
        eventually("the row's pages copied into the database file", || {
            size() > before + 100_000
        });
    }

    #[test]
    fn a_long_wal_starts_again_though_a_reader_held_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(&dir);
        // A reader on an early snapshot: a passive checkpoint copies nothing past it.
        let reader = open(&path);
        reader.execute_batch("BEGIN").unwrap();
        reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let rows = RESTART_FRAMES / 100 + 1;
        for _ in 0..rows {
            writer
                .execute("INSERT INTO t (v) VALUES (zeroblob(409600))", [])
                .unwrap();
        }
        let done = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            reader.execute_batch("COMMIT").unwrap();
        });
        checkpoint(&open(&path)).unwrap();
        done.join().unwrap();
        // The restart waited for the reader, then copied everything: the next commit starts the WAL
        // again, which then holds only that commit's pages.
        writer.execute("INSERT INTO t (v) VALUES (1)", []).unwrap();
        assert!(wal_checkpoint(&writer, "PASSIVE").unwrap() < 10);
        assert_eq!(
            writer
                .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            rows + 1
        );
    }
}
