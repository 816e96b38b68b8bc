//! The embedded default store: SQLite (bundled, no server needed) behind an r2d2 pool.
//!
//! Writes take the database lock up front (`BEGIN IMMEDIATE`) so two writers never deadlock upgrading a
//! read lock; WAL lets readers go on meanwhile.

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::{GroupRow, MemberRow, Offline, Result, Store, StoreError, assemble_groups};
use crate::model::{Contact, Group, UserRecord};
use crate::model::{GroupId, UserId};

const SCHEMA: &str = include_str!("../../sql/sqlite.sql");

/// SQL true when user `u` is online: claimed, and their node's heartbeat is fresh (liveness in `?2`).
macro_rules! online {
    () => {
        "(u.state = 'online' AND EXISTS (SELECT 1 FROM node n WHERE n.id = u.node \
         AND n.heartbeat >= unixepoch() - ?2))"
    };
}

/// SQLite through a small connection pool.
pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    liveness: i64,
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
    /// Opens (creating if needed) the database file and its tables.
    pub fn open(path: &str, pool_size: u32) -> anyhow::Result<Self> {
        if let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        // WAL is a property of the database file: set it once, before the pool opens connections in
        // parallel (each asking for it would contend for the lock at start-up).
        rusqlite::Connection::open(path)?.execute_batch("PRAGMA journal_mode = WAL;")?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(std::time::Duration::from_secs(5))
            .build(manager)?;
        pool.get()?.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            pool,
            liveness: super::LIVENESS.as_secs() as i64,
        })
    }

    fn conn(&self) -> Result<Conn> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a write transaction and commits it.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO user (name, password) VALUES (?1, ?2)",
            params![name, password_hash],
        )?;
        Ok(conn.last_insert_rowid() as UserId)
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>> {
        let conn = self.conn()?;
        let user = conn
            .query_row(
                "SELECT id, name, password FROM user WHERE id = ?1",
                params![id],
                |r| {
                    Ok(UserRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(user)
    }

    fn claim_presence(&self, user: UserId, node: &str) -> Result<bool> {
        let conn = self.conn()?;
        let changed = conn.execute(
            "UPDATE user SET state = 'online', node = ?1 WHERE id = ?2 AND (state = 'offline' \
             OR (node <> ?1 AND NOT EXISTS (SELECT 1 FROM node n WHERE n.id = user.node \
             AND n.heartbeat >= unixepoch() - ?3)))",
            params![node, user, self.liveness],
        )?;
        Ok(changed == 1)
    }

    fn release_presence(&self, user: UserId, node: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE user SET state = 'offline', node = NULL WHERE id = ?1 AND node = ?2",
            params![user, node],
        )?;
        Ok(())
    }

    fn heartbeat(&self, node: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO node (id, heartbeat) VALUES (?1, unixepoch()) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
            params![node],
        )?;
        Ok(())
    }

    fn release_node(&self, node: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE user SET state = 'offline', node = NULL WHERE node = ?1",
            params![node],
        )?;
        Ok(())
    }

    fn add_friend(&self, a: UserId, b: UserId) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM user WHERE id = ?1", params![b], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            let mut insert =
                tx.prepare("INSERT OR IGNORE INTO friend (userid, friendid) VALUES (?1, ?2)")?;
            insert.execute(params![a, b])?;
            insert.execute(params![b, a])?;
            Ok(())
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

    fn join_group(&self, group: GroupId, user: UserId) -> Result<()> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO groupuser (groupid, userid, grouprole) \
                 SELECT id, ?2, 'normal' FROM allgroup WHERE id = ?1",
                params![group, user],
            )?;
            if inserted == 0 {
                let exists: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM allgroup WHERE id = ?1",
                        params![group],
                        |r| r.get(0),
                    )
                    .optional()?;
                exists.ok_or(StoreError::NotFound)?;
            }
            Ok(())
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
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT gu.groupid, u.id, u.name, ",
            online!(),
            ", gu.grouprole FROM groupuser gu JOIN user u ON u.id = gu.userid \
             WHERE gu.groupid IN (SELECT groupid FROM groupuser WHERE userid = ?1) \
             ORDER BY gu.groupid, u.id"
        ))?;
        let members: Vec<MemberRow> = stmt
            .query_map(params![user, self.liveness], |r| {
                let role: String = r.get(4)?;
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, role))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(assemble_groups(groups, members))
    }

    fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>> {
        let conn = self.conn()?;
        let exists: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM allgroup WHERE id = ?1",
                params![group],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached("SELECT userid FROM groupuser WHERE groupid = ?1")?;
        let ids = stmt
            .query_map(params![group], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(ids))
    }

    fn store_offline(&self, messages: &[Offline]) -> Result<usize> {
        Ok(self.store_offline_many(&[messages])?[0])
    }

    fn store_offline_many(&self, batches: &[&[Offline]]) -> Result<Vec<usize>> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO offlinemessage (userid, message) SELECT id, ?2 FROM user WHERE id = ?1",
            )?;
            let mut counts = Vec::with_capacity(batches.len());
            for batch in batches {
                let mut stored = 0;
                for m in *batch {
                    stored += insert.execute(params![m.to, &*m.frame])?;
                }
                counts.push(stored);
            }
            Ok(counts)
        })
    }

    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<String>> {
        self.write(|tx| {
            let mut select = tx.prepare_cached(
                "SELECT id, message FROM offlinemessage WHERE userid = ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows: Vec<(i64, String)> = select
                .query_map(params![user, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            if let Some((last, _)) = rows.last() {
                tx.execute(
                    "DELETE FROM offlinemessage WHERE userid = ?1 AND id <= ?2",
                    params![user, last],
                )?;
            }
            Ok(rows.into_iter().map(|(_, m)| m).collect())
        })
    }

    fn save_token(&self, user: UserId, hash: &[u8]) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO token (userid, hash, created) VALUES (?1, ?2, unixepoch()) \
             ON CONFLICT (userid) DO UPDATE SET hash = excluded.hash, created = excluded.created",
            params![user, hash],
        )?;
        Ok(())
    }

    fn token_hash(&self, user: UserId) -> Result<Option<Vec<u8>>> {
        let hash = self
            .conn()?
            .query_row(
                "SELECT hash FROM token WHERE userid = ?1 AND created >= unixepoch() - ?2",
                params![user, super::TOKEN_TTL.as_secs() as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash)
    }

    fn revoke_token(&self, user: UserId) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM token WHERE userid = ?1", params![user])?;
        Ok(())
    }
}
