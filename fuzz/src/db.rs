//! The dispatch target's database: the server's own [`SqliteStore`] on a file in a directory of this
//! process (under `/dev/shm` when there is one, so no write reaches a disk), emptied before every input,
//! and a connection of the harness's own to empty it and to read what the store holds (presence and the
//! offline list, which the store's traits only hand out destructively or not at all).
//!
//! Two ways to start every input from an empty database, chosen by `CLUSTERCHAT_FUZZ_RESET`:
//! - `rows` (the default): every table's rows deleted in one transaction, `sqlite_sequence` included, so ids
//!   count from 1 again; the schema, the pool's connections and their prepared statements stay;
//! - `file`: a new database file per input (migrations run again; the context is rebuilt around it).
//!
//! `fuzz/README.md` has the rates of both. The directory is `clusterchat-fuzz-<pid>`; directories of
//! processes that no longer run are removed when the next process starts (a fuzzing process ends by
//! `exit`, so nothing of its own would).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clusterchat::model::{Conv, Pos, UserId};
use clusterchat::store::sqlite::SqliteStore;
use rusqlite::Connection;

/// How every input starts from an empty database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    Rows,
    File,
}

impl Reset {
    /// From `CLUSTERCHAT_FUZZ_RESET` (`rows` when unset).
    pub fn from_env() -> Reset {
        match std::env::var("CLUSTERCHAT_FUZZ_RESET").as_deref() {
            Ok("file") => Reset::File,
            Ok("rows") | Err(_) => Reset::Rows,
            Ok(other) => panic!("CLUSTERCHAT_FUZZ_RESET={other:?}: use rows or file"),
        }
    }
}

/// The harness's own connection to the store's database file.
pub struct Db {
    conn: Connection,
    /// The store, whose log index is read again once its tables are emptied.
    store: Arc<SqliteStore>,
    path: PathBuf,
    /// Every table but `schema_version` (and SQLite's own), as the migrations left them.
    tables: Vec<String>,
}

/// The directory of this process's database files, created (and older processes' removed) on first use.
pub fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("clusterchat-fuzz-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("clusterchat-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the fuzz database");
    dir
}

impl Db {
    /// Opens (creating and migrating) the store on `path`, and the harness's connection beside it.
    pub fn open(path: PathBuf) -> (Arc<SqliteStore>, Db) {
        let store = SqliteStore::open(path.to_str().expect("a UTF-8 path"), 2)
            .expect("the SQLite store opens on a fresh file");
        let conn = Connection::open(&path).expect("a second connection to the database");
        conn.execute_batch("PRAGMA busy_timeout = 5000;")
            .expect("pragma");
        let tables = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version' ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .expect("the table list");
        let store = Arc::new(store);
        let db = Db {
            conn,
            store: store.clone(),
            path,
            tables,
        };
        (store, db)
    }

    /// Puts the database back as a fresh one is: every row of every table deleted (and the
    /// AUTOINCREMENT counters), in one transaction.
    pub fn clear(&self) {
        let mut sql = String::from("BEGIN IMMEDIATE;");
        for table in &self.tables {
            sql.push_str(&format!("DELETE FROM \"{table}\";"));
        }
        sql.push_str("DELETE FROM sqlite_sequence; COMMIT;");
        self.conn
            .execute_batch(&sql)
            .expect("emptying the database");
        self.store
            .reload_index()
            .expect("the log's index read again");
    }

    /// Closes the store (the context around it must be gone already) and removes the database file,
    /// its WAL files and its lock.
    pub fn remove_files(self) {
        let Db {
            conn, store, path, ..
        } = self;
        drop(conn);
        drop(store);
        for suffix in ["", "-wal", "-shm", "-lock"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    /// The logged-in devices as the `device` table holds them.
    pub fn devices(&self) -> BTreeSet<(UserId, String)> {
        self.conn
            .prepare_cached("SELECT userid, device FROM device")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .expect("reading the device table")
    }

    /// Each user's offline list, oldest first, as (conversation, position) pointers.
    pub fn offline(&self) -> BTreeMap<UserId, Vec<(Conv, Pos)>> {
        let rows: Vec<(UserId, i64, Pos)> = self
            .conn
            .prepare_cached("SELECT userid, conv, pos FROM offlinemessage ORDER BY id")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .expect("reading the offline list");
        let mut out: BTreeMap<UserId, Vec<(Conv, Pos)>> = BTreeMap::new();
        for (user, key, pos) in rows {
            let conv = Conv::from_key(key)
                .unwrap_or_else(|| panic!("offline pointer with conversation key {key}"));
            out.entry(user).or_default().push((conv, pos));
        }
        out
    }

    /// How many messages the log holds, all conversations together.
    pub fn messages(&self) -> usize {
        self.conn
            // A chunk's head is 28 bytes a message (src/store/sqlite/chunk.rs); the harness dissolves
            // no group, so no chunk holds a deleted message.
            .query_row(
                "SELECT COALESCE(SUM(length(head)), 0) / 28 FROM chunk",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("counting the log") as usize
    }
}
