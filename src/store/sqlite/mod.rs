//! The embedded default store: SQLite (bundled, no server needed) behind an r2d2 pool.
//!
//! Writes take the database lock up front (`BEGIN IMMEDIATE`) so two writers never deadlock upgrading a
//! read lock; WAL lets readers go on meanwhile. One writer at a time, and one store on the file, also
//! let the log keep its index in memory ([`index`]) and give out positions from it.

mod chunk;
mod index;
mod log;

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;
use parking_lot::{Mutex, RwLock};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params};

use super::checkpoint::Checkpointer;
use super::migrate::{self, MIGRATIONS};
use super::{
    Accounts, Claim, GroupRow, GroupUpdate, Groups, Joined, MemberRow, Presence, Removal, Result,
    Social, StoreError, Tokens, assemble_groups, now_ms,
};
use crate::model::{Contact, Conv, Group, Members, Relation, Request, Requests, Role, UserRecord};
use crate::model::{GroupId, UserId};

/// SQL true when user `u` has a device online: held by a node whose heartbeat is fresh (liveness in `?2`).
macro_rules! online {
    () => {
        "EXISTS (SELECT 1 FROM device d JOIN node n ON n.id = d.node WHERE d.userid = u.id \
         AND n.heartbeat >= unixepoch() - ?2)"
    };
}

/// SQLite through a small connection pool.
pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    liveness: i64,
    /// The one connection every write goes through, held for the write. SQLite lets one writer in at
    /// a time anyway; waiting here, in turn, replaces its busy handler's sleep-and-retry, under which one
    /// writer among many (a login, a friend request, while the log writer commits back to back) could
    /// wait past the busy timeout and fail with 109. Being the only writer also keeps its page cache
    /// valid from one commit to the next: a connection discards its cache whenever another one has
    /// committed, and the log's writes taking turns on pooled connections re-read their pages from the
    /// file at every commit (docs/BENCHMARKS.md, "The writer's own connection").
    writer: Mutex<rusqlite::Connection>,
    /// The log's index: read by anyone, changed by the writer once its commit is in.
    index: RwLock<index::Index>,
    /// One taker of a user's offline list at a time ([`log`]'s `take_offline`).
    takers: log::Takers,
    /// Copies the WAL back into the database off the writer's thread (see [`Checkpointer`]).
    _checkpointer: Checkpointer,
    /// Held for the store's life: no other store opens the file meanwhile (see [`lock`]).
    _lock: File,
}

type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date. The file's
    /// directory must exist: a mistyped path is an error, not a new directory tree.
    pub fn open(path: &str, pool_size: u32) -> anyhow::Result<Self> {
        if let Some(dir) = Path::new(path).parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            anyhow::bail!(
                "cannot open the SQLite database {path:?}: the directory {dir:?} does not exist"
            );
        }
        let lock = lock(path)?;
        // WAL is a property of the database file: set it once, before the pool opens connections in
        // parallel (each asking for it would contend for the lock at start-up). This first connection
        // migrates the schema and then stays the writer's.
        let mut writer = rusqlite::Connection::open(path)
            .with_context(|| format!("cannot open the SQLite database {path:?}"))?;
        writer.execute_batch("PRAGMA journal_mode = WAL")?;
        configure(&writer)?;
        migrate(&mut writer).context("migrating the SQLite schema")?;
        // The writer's pages stay cached between its commits (see `writer`): 64 MiB, where SQLite's
        // default is 2 MB (sized when the log still wrote an index; a chunk row is written once, at the
        // end of the table, so the users, groups and cids an append reads are what it keeps now).
        writer.execute_batch("PRAGMA cache_size = -65536")?;
        let index = index::Index::load(&writer).context("reading the log's index")?;
        let checkpointer = rusqlite::Connection::open(path)?;
        configure(&checkpointer)?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| configure(c));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(std::time::Duration::from_secs(5))
            .build(manager)?;
        Ok(SqliteStore {
            pool,
            liveness: super::LIVENESS.as_secs() as i64,
            writer: Mutex::new(writer),
            index: RwLock::new(index),
            takers: log::Takers::default(),
            _checkpointer: Checkpointer::start(checkpointer)?,
            _lock: lock,
        })
    }

    fn conn(&self) -> Result<Conn> {
        Ok(self.pool.get()?)
    }

    /// Reads the log's index from the file again, for a tool that changed the database under the store
    /// (the fuzz harness empties every table between its inputs).
    pub fn reload_index(&self) -> Result<()> {
        let conn = self.writer.lock();
        *self.index.write() = index::Index::load(&conn)?;
        Ok(())
    }

    /// One writing statement, in its turn among the writers; how many rows it changed.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        self.write(|tx| Ok(tx.execute(sql, params)?))
    }

    /// Runs `f` in a write transaction and commits it, one writer at a time.
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        self.write_then(|tx, _| Ok((f(tx)?, ())), |_, ()| {})
    }

    /// [`Self::write`] with the log's index: `f` reads it, and `then` changes it with what `f` left for
    /// it, only once the transaction has committed (a failed commit changes nothing, in the database or
    /// in memory), and before the next write begins.
    fn write_then<T, U>(
        &self,
        f: impl FnOnce(&Transaction, &index::Index) -> Result<(T, U)>,
        then: impl FnOnce(&mut index::Index, U),
    ) -> Result<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (out, change) = f(&tx, &self.index.read())?;
        tx.commit()?;
        then(&mut self.index.write(), change);
        Ok(out)
    }
}

/// Locks `<path>-lock` for this store: the log's index is one store's memory, so a second store on the
/// same database (another node given the same file, or a second `open` in this process) would give out
/// positions it does not know are taken. A lock dies with its process.
fn lock(path: &str) -> anyhow::Result<File> {
    let name = format!("{path}-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .with_context(|| format!("cannot open {name:?}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the SQLite database {path:?} is in use by another server (it holds {name:?}): the embedded \
             store serves one node; several nodes share MySQL or MariaDB"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| {
            format!("cannot lock {name:?} (the file system may not support locks)")
        }),
    }
}

/// The settings of every connection, the pool's, the writer's and the checkpointer's. None checkpoints
/// when it commits: [`Checkpointer`] does it on its own thread, so no commit waits for a checkpoint's
/// copying and syncing (docs/BENCHMARKS.md, "Checkpoints off the writer's thread").
fn configure(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;",
    )
}

/// Applies the migrations the database does not have yet, all in one transaction.
fn migrate(conn: &mut rusqlite::Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
    )?;
    let current: u32 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sqlite.unwrap_or_default())?;
        tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, unixepoch())",
            params![m.version],
        )?;
        tracing::info!(version = m.version, "applied schema migration");
    }
    log::convert_rows(&tx)?;
    convert_legacy(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Whether the database has a table of this name (what a migration left to convert).
fn table_exists(conn: &rusqlite::Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        params![name],
        |r| r.get(0),
    )?)
}

/// Turns the old offline frames left by migration 2, if any, into log messages and pointers, then drops
/// their table.
fn convert_legacy(tx: &Transaction) -> Result<()> {
    if !table_exists(tx, "offline_legacy")? {
        return Ok(());
    }
    let rows: Vec<(i64, UserId, String)> = tx
        .prepare("SELECT id, userid, message FROM offline_legacy ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let messages = migrate::legacy_messages(&rows);
    log::append_converted(tx, &messages.iter().collect::<Vec<_>>(), now_ms())?;
    tx.execute_batch("DROP TABLE offline_legacy")?;
    if !rows.is_empty() {
        tracing::info!(
            frames = rows.len(),
            messages = messages.len(),
            "converted stored offline frames into the log"
        );
    }
    Ok(())
}

impl Accounts for SqliteStore {
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO user (name, password) VALUES (?1, ?2)",
                params![name, password_hash],
            )?;
            Ok(tx.last_insert_rowid() as UserId)
        })
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>> {
        let conn = self.conn()?;
        let user = conn
            .prepare_cached("SELECT id, name, password FROM user WHERE id = ?1")?
            .query_row(params![id], |r| {
                Ok(UserRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    password_hash: r.get(2)?,
                })
            })
            .optional()?;
        Ok(user)
    }

    fn find_user_by_name(&self, name: &str) -> Result<Option<UserId>> {
        let id = self
            .conn()?
            .prepare_cached("SELECT id FROM user WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?;
        Ok(id)
    }

    fn change_password(&self, user: UserId, password_hash: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE user SET password = ?2 WHERE id = ?1",
                params![user, password_hash],
            )?;
            tx.execute("DELETE FROM token WHERE userid = ?1", params![user])?;
            Ok(())
        })
    }
}

impl Presence for SqliteStore {
    fn claim_device(
        &self,
        user: UserId,
        device: &str,
        node: &str,
        max_devices: usize,
    ) -> Result<Claim> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM device WHERE userid = ?1 AND node NOT IN \
                 (SELECT id FROM node WHERE heartbeat >= unixepoch() - ?2)",
                params![user, self.liveness],
            )?;
            let online: Vec<String> = tx
                .prepare_cached("SELECT device FROM device WHERE userid = ?1")?
                .query_map(params![user], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if online.iter().any(|d| d == device) {
                return Ok(Claim::DeviceInUse);
            }
            if online.len() >= max_devices {
                return Ok(Claim::TooMany);
            }
            tx.execute(
                "INSERT INTO device (userid, device, node) VALUES (?1, ?2, ?3)",
                params![user, device, node],
            )?;
            Ok(Claim::Claimed {
                first: online.is_empty(),
            })
        })
    }

    fn release_device(&self, user: UserId, device: &str, node: &str) -> Result<bool> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM device WHERE userid = ?1 AND device = ?2 AND node = ?3",
                params![user, device, node],
            )?;
            let left: i64 = tx.query_row(
                "SELECT COUNT(*) FROM device d JOIN node n ON n.id = d.node \
                 WHERE d.userid = ?1 AND n.heartbeat >= unixepoch() - ?2",
                params![user, self.liveness],
                |r| r.get(0),
            )?;
            Ok(left == 0)
        })
    }

    fn heartbeat(&self, node: &str) -> Result<()> {
        self.execute(
            "INSERT INTO node (id, heartbeat) VALUES (?1, unixepoch()) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
            params![node],
        )?;
        Ok(())
    }

    fn release_node(&self, node: &str) -> Result<()> {
        self.execute("DELETE FROM device WHERE node = ?1", params![node])?;
        Ok(())
    }

    fn reap_stale(&self) -> Result<Vec<UserId>> {
        self.write(|tx| {
            let stale = "SELECT id FROM node WHERE heartbeat < unixepoch() - ?1";
            let users: Vec<UserId> = tx
                .prepare_cached(&format!(
                    "SELECT DISTINCT userid FROM device WHERE node IN ({stale})"
                ))?
                .query_map(params![self.liveness], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if users.is_empty() {
                return Ok(users);
            }
            tx.execute(
                &format!("DELETE FROM device WHERE node IN ({stale})"),
                params![self.liveness],
            )?;
            let mut left = tx.prepare_cached("SELECT 1 FROM device WHERE userid = ?1 LIMIT 1")?;
            let mut gone = Vec::new();
            for user in users {
                if left
                    .query_row(params![user], |_| Ok(()))
                    .optional()?
                    .is_none()
                {
                    gone.push(user);
                }
            }
            Ok(gone)
        })
    }
}

impl Social for SqliteStore {
    fn add_friend(&self, a: UserId, b: UserId) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM user WHERE id = ?1", params![b], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            befriend(tx, a, b)
        })
    }

    fn friends(&self, user: UserId) -> Result<Vec<Contact>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT u.id, u.name, ",
            online!(),
            " FROM friend f JOIN user u ON u.id = f.friendid WHERE f.userid = ?1 ORDER BY u.id"
        ))?;
        let rows = stmt.query_map(params![user, self.liveness], |r| {
            Ok(Contact {
                id: r.get(0)?,
                name: r.get(1)?,
                online: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn relation(&self, a: UserId, b: UserId) -> Result<Option<Relation>> {
        let conn = self.conn()?;
        let relation = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM friend WHERE userid = ?1 AND friendid = ?2), \
                 EXISTS (SELECT 1 FROM friendrequest WHERE userid = ?1 AND friendid = ?2), \
                 EXISTS (SELECT 1 FROM friendrequest WHERE userid = ?2 AND friendid = ?1), \
                 EXISTS (SELECT 1 FROM userblock WHERE userid = ?1 AND blockedid = ?2), \
                 EXISTS (SELECT 1 FROM userblock WHERE userid = ?2 AND blockedid = ?1) \
                 FROM user WHERE id = ?2",
            )?
            .query_row(params![a, b], |r| {
                Ok(Relation {
                    friends: r.get(0)?,
                    i_asked: r.get(1)?,
                    they_asked: r.get(2)?,
                    i_block: r.get(3)?,
                    they_block: r.get(4)?,
                })
            })
            .optional()?;
        Ok(relation)
    }

    fn request_friend(&self, from: UserId, to: UserId, text: &str) -> Result<()> {
        self.execute(
            "INSERT OR IGNORE INTO friendrequest (userid, friendid, text, created) \
             VALUES (?1, ?2, ?3, unixepoch())",
            params![from, to, text],
        )?;
        Ok(())
    }

    fn accept_request(&self, from: UserId, to: UserId) -> Result<bool> {
        self.write(|tx| {
            let asked = tx.execute(
                "DELETE FROM friendrequest WHERE userid = ?1 AND friendid = ?2",
                params![from, to],
            )? > 0;
            if asked {
                befriend(tx, from, to)?;
            }
            Ok(asked)
        })
    }

    fn decline_request(&self, from: UserId, to: UserId) -> Result<bool> {
        let deleted = self.execute(
            "DELETE FROM friendrequest WHERE userid = ?1 AND friendid = ?2",
            params![from, to],
        )?;
        Ok(deleted > 0)
    }

    fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool> {
        self.write(|tx| unfriend(tx, a, b))
    }

    fn set_block(&self, a: UserId, b: UserId, block: bool) -> Result<()> {
        self.write(|tx| {
            if block {
                unfriend(tx, a, b)?;
                tx.execute(
                    "INSERT OR IGNORE INTO userblock (userid, blockedid) VALUES (?1, ?2)",
                    params![a, b],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM userblock WHERE userid = ?1 AND blockedid = ?2",
                    params![a, b],
                )?;
            }
            Ok(())
        })
    }

    fn requests(&self, user: UserId) -> Result<Requests> {
        let conn = self.conn()?;
        let list = |sql: &str| -> Result<Vec<Request>> {
            let rows = conn
                .prepare_cached(sql)?
                .query_map(params![user], |r| {
                    Ok(Request {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        text: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        };
        Ok(Requests {
            incoming: list(
                "SELECT u.id, u.name, f.text FROM friendrequest f JOIN user u ON u.id = f.userid \
                 WHERE f.friendid = ?1 ORDER BY u.id",
            )?,
            outgoing: list(
                "SELECT u.id, u.name, f.text FROM friendrequest f JOIN user u ON u.id = f.friendid \
                 WHERE f.userid = ?1 ORDER BY u.id",
            )?,
        })
    }

    fn blocked(&self, user: UserId) -> Result<Vec<(UserId, String)>> {
        self.named_users(
            "SELECT u.id, u.name FROM userblock b JOIN user u ON u.id = b.blockedid \
             WHERE b.userid = ?1 ORDER BY u.id",
            user,
        )
    }

    fn blockers_of(&self, user: UserId) -> Result<Vec<UserId>> {
        let conn = self.conn()?;
        let rows = conn
            .prepare_cached("SELECT userid FROM userblock WHERE blockedid = ?1")?
            .query_map(params![user], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

/// Makes `a` and `b` friends both ways and drops the requests between them.
fn befriend(tx: &Transaction, a: UserId, b: UserId) -> Result<()> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO friend (userid, friendid) VALUES (?1, ?2)")?;
    insert.execute(params![a, b])?;
    insert.execute(params![b, a])?;
    drop_requests(tx, a, b)?;
    Ok(())
}

/// Ends the friendship of `a` and `b` and drops the requests between them; whether anything was there.
fn unfriend(tx: &Transaction, a: UserId, b: UserId) -> Result<bool> {
    let friends = tx.execute(
        "DELETE FROM friend WHERE (userid = ?1 AND friendid = ?2) OR (userid = ?2 AND friendid = ?1)",
        params![a, b],
    )?;
    Ok(friends + drop_requests(tx, a, b)? > 0)
}

/// Drops the friend requests between `a` and `b`, both ways; how many there were.
fn drop_requests(tx: &Transaction, a: UserId, b: UserId) -> Result<usize> {
    Ok(tx.execute(
        "DELETE FROM friendrequest WHERE (userid = ?1 AND friendid = ?2) \
         OR (userid = ?2 AND friendid = ?1)",
        params![a, b],
    )?)
}

impl Groups for SqliteStore {
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO allgroup (groupname, groupdesc) VALUES (?1, ?2)",
                params![name, desc],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO groupuser (groupid, userid, grouprole) VALUES (?1, ?2, 'creator')",
                params![id, creator],
            )?;
            Ok(id as GroupId)
        })
    }

    fn join_group(&self, group: GroupId, user: UserId) -> Result<Joined> {
        self.write(|tx| {
            // Bans go with their group, so a banned user's group exists.
            let banned = tx
                .prepare_cached("SELECT 1 FROM groupban WHERE groupid = ?1 AND userid = ?2")?
                .exists(params![group, user])?;
            if banned {
                return Ok(Joined::Banned);
            }
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO groupuser (groupid, userid, grouprole) \
                 SELECT id, ?2, 'normal' FROM allgroup WHERE id = ?1",
                params![group, user],
            )?;
            if inserted == 0 {
                group_exists(tx, group)?;
                return Ok(Joined::Already);
            }
            bump_version(tx, group)?;
            Ok(Joined::Now)
        })
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT g.id, g.groupname, g.groupdesc FROM allgroup g \
             JOIN groupuser gu ON gu.groupid = g.id WHERE gu.userid = ?1 ORDER BY g.id",
        )?;
        let groups: Vec<GroupRow> = stmt
            .query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let members = self.member_rows(
            &conn,
            "gu.groupid IN (SELECT groupid FROM groupuser WHERE userid = ?1)",
            user,
        )?;
        Ok(assemble_groups(groups, members))
    }

    fn group_info(&self, group: GroupId) -> Result<Option<Group>> {
        let conn = self.conn()?;
        let row: Option<GroupRow> = conn
            .prepare_cached("SELECT id, groupname, groupdesc FROM allgroup WHERE id = ?1")?
            .query_row(params![group], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let members = self.member_rows(&conn, "gu.groupid = ?1", group)?;
        Ok(assemble_groups(vec![row], members).pop())
    }

    fn group_members(&self, group: GroupId) -> Result<Option<Members>> {
        let conn = self.conn()?;
        let version: Option<i64> = conn
            .prepare_cached("SELECT version FROM allgroup WHERE id = ?1")?
            .query_row(params![group], |r| r.get(0))
            .optional()?;
        let Some(version) = version else {
            return Ok(None);
        };
        let list = conn
            .prepare_cached("SELECT userid, grouprole FROM groupuser WHERE groupid = ?1")?
            .query_map(params![group], |r| {
                Ok((r.get(0)?, Role::from_column(&r.get::<_, String>(1)?)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(Members { version, list }))
    }

    fn set_roles(&self, group: GroupId, version: i64, roles: &[(UserId, Role)]) -> Result<bool> {
        self.write(|tx| {
            let current = tx.execute(
                "UPDATE allgroup SET version = version + 1 WHERE id = ?1 AND version = ?2",
                params![group, version],
            )? > 0;
            if current {
                let mut update = tx.prepare_cached(
                    "UPDATE groupuser SET grouprole = ?3 WHERE groupid = ?1 AND userid = ?2",
                )?;
                for &(user, role) in roles {
                    update.execute(params![group, user, role.as_str()])?;
                }
            }
            Ok(current)
        })
    }

    fn remove_member(&self, group: GroupId, user: UserId, how: Removal) -> Result<bool> {
        self.write(|tx| {
            let removed = tx.execute(
                "DELETE FROM groupuser WHERE groupid = ?1 AND userid = ?2",
                params![group, user],
            )? > 0;
            if removed {
                bump_version(tx, group)?;
                if how == Removal::Kicked {
                    tx.execute(
                        "INSERT OR IGNORE INTO groupban (groupid, userid) VALUES (?1, ?2)",
                        params![group, user],
                    )?;
                }
            }
            Ok(removed)
        })
    }

    fn unban(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM groupban WHERE groupid = ?1 AND userid = ?2",
            params![group, user],
        )? > 0)
    }

    fn bans(&self, group: GroupId) -> Result<Vec<(UserId, String)>> {
        self.named_users(
            "SELECT u.id, u.name FROM groupban b JOIN user u ON u.id = b.userid \
             WHERE b.groupid = ?1 ORDER BY u.id",
            group,
        )
    }

    fn update_group(&self, group: GroupId, update: GroupUpdate) -> Result<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE allgroup SET groupname = COALESCE(?2, groupname), \
                 groupdesc = COALESCE(?3, groupdesc) WHERE id = ?1",
                params![group, update.name, update.desc],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn dissolve_group(&self, group: GroupId) -> Result<()> {
        self.write_then(
            |tx, log| {
                tx.execute("DELETE FROM allgroup WHERE id = ?1", params![group])?;
                tx.execute("DELETE FROM groupuser WHERE groupid = ?1", params![group])?;
                tx.execute("DELETE FROM groupban WHERE groupid = ?1", params![group])?;
                Ok((
                    (),
                    log::delete_conversation(tx, log, Conv::Group(group).key())?,
                ))
            },
            |index, key| index.remove(key),
        )
    }
}

impl SqliteStore {
    /// The `(id, name)` rows `sql` selects with `?1` = `arg`.
    fn named_users(&self, sql: &str, arg: i32) -> Result<Vec<(UserId, String)>> {
        let rows = self
            .conn()?
            .prepare_cached(sql)?
            .query_map(params![arg], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Member rows (ordered by group, then user) of the groups `filter` selects with `?1` = `arg`.
    fn member_rows(&self, conn: &Conn, filter: &str, arg: i32) -> Result<Vec<MemberRow>> {
        let sql = format!(
            concat!(
                "SELECT gu.groupid, u.id, u.name, ",
                online!(),
                ", gu.grouprole FROM groupuser gu JOIN user u ON u.id = gu.userid \
                 WHERE {} ORDER BY gu.groupid, u.id"
            ),
            filter
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![arg, self.liveness], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

/// [`StoreError::NotFound`] unless the group exists.
fn group_exists(tx: &Transaction, group: GroupId) -> Result<()> {
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM allgroup WHERE id = ?1",
            params![group],
            |r| r.get(0),
        )
        .optional()?;
    exists.map(|_| ()).ok_or(StoreError::NotFound)
}

/// Marks a change of the group's members (see [`Members::version`]).
fn bump_version(tx: &Transaction, group: GroupId) -> Result<()> {
    tx.execute(
        "UPDATE allgroup SET version = version + 1 WHERE id = ?1",
        params![group],
    )?;
    Ok(())
}

impl Tokens for SqliteStore {
    fn save_token(&self, user: UserId, device: &str, hash: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO token (userid, device, hash, created) VALUES (?1, ?2, ?3, unixepoch()) \
             ON CONFLICT (userid, device) DO UPDATE SET hash = excluded.hash, created = excluded.created",
            params![user, device, hash],
        )?;
        Ok(())
    }

    fn token_hash(&self, user: UserId, device: &str) -> Result<Option<Vec<u8>>> {
        let hash = self
            .conn()?
            .query_row(
                "SELECT hash FROM token WHERE userid = ?1 AND device = ?2 AND created >= unixepoch() - ?3",
                params![user, device, super::TOKEN_TTL.as_secs() as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash)
    }

    fn revoke_token(&self, user: UserId, device: &str) -> Result<()> {
        self.execute(
            "DELETE FROM token WHERE userid = ?1 AND device = ?2",
            params![user, device],
        )?;
        Ok(())
    }
}
