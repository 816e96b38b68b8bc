//! The shared store of a cluster: MySQL or MariaDB through an r2d2 pool, prepared statements only.
//!
//! Connections time out on connect, read and write, so a database that goes away turns into
//! [`StoreError::Unavailable`] (errno 109) within seconds instead of hanging a connection's thread.

use std::time::Duration;

use r2d2_mysql::MySqlConnectionManager;
use r2d2_mysql::mysql::prelude::Queryable;
use r2d2_mysql::mysql::{self, Opts, OptsBuilder, TxOpts};

use super::{GroupRow, MemberRow, Offline, Result, Store, StoreError, assemble_groups};
use crate::model::{Contact, Group, UserRecord};
use crate::model::{GroupId, UserId};

const SCHEMA: &str = include_str!("../../sql/mysql.sql");

/// MySQL's "duplicate entry" error code.
const ER_DUP_ENTRY: u16 = 1062;
/// "Lock wait timeout exceeded" and "Deadlock found": the transaction was rolled back and may be retried.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
/// How often a transaction that lost a deadlock is tried again.
const RETRIES: u32 = 5;

/// SQL true when user `u` is online: claimed, and their node's heartbeat is fresh (liveness bound last).
macro_rules! online {
    () => {
        "(u.state = 'online' AND EXISTS (SELECT 1 FROM node n WHERE n.id = u.node \
         AND n.heartbeat >= UNIX_TIMESTAMP() - ?))"
    };
}

/// MySQL through an r2d2 pool.
pub struct MysqlStore {
    pool: r2d2::Pool<MySqlConnectionManager>,
    liveness: i64,
}

type Conn = r2d2::PooledConnection<MySqlConnectionManager>;

impl From<mysql::Error> for StoreError {
    fn from(e: mysql::Error) -> Self {
        match &e {
            mysql::Error::MySqlError(server) if server.code == ER_DUP_ENTRY => StoreError::Conflict,
            mysql::Error::MySqlError(server)
                if server.code == ER_LOCK_DEADLOCK || server.code == ER_LOCK_WAIT_TIMEOUT =>
            {
                StoreError::Busy(e.to_string())
            }
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl MysqlStore {
    /// Connects to the database a `mysql://` URL names and creates missing tables.
    pub fn open(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let timeout = Some(Duration::from_secs(5));
        let opts = OptsBuilder::from_opts(Opts::from_url(url)?)
            .tcp_connect_timeout(timeout)
            .read_timeout(timeout)
            .write_timeout(timeout)
            .tcp_nodelay(true);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(pool_size.clamp(1, 2)))
            .connection_timeout(Duration::from_secs(3))
            .build(MySqlConnectionManager::new(opts))?;
        let mut conn = pool.get()?;
        for statement in schema_statements(SCHEMA) {
            conn.query_drop(&statement)
                .map_err(|e| anyhow::anyhow!("creating tables: {e}"))?;
        }
        Ok(MysqlStore {
            pool,
            liveness: super::LIVENESS.as_secs() as i64,
        })
    }

    fn conn(&self) -> Result<Conn> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a transaction and commits it (a dropped, uncommitted transaction rolls back). InnoDB
    /// resolves deadlocks by rolling one transaction back (for example taking a user's stored messages
    /// while new ones are inserted for them): such a transaction is run again, a few times.
    fn write<T>(&self, mut f: impl FnMut(&mut mysql::Transaction) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let result = self.conn().and_then(|mut conn| {
                let mut tx = conn.start_transaction(TxOpts::default())?;
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            });
            match result {
                Err(StoreError::Busy(detail)) if attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, %detail, "transaction rolled back by a deadlock; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
                }
                other => return other,
            }
        }
    }
}

/// The statements of a schema file: comment lines dropped, then split at `;`.
fn schema_statements(schema: &str) -> Vec<String> {
    let code: Vec<&str> = schema
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Store for MysqlStore {
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let mut conn = self.conn()?;
        conn.exec_drop(
            "INSERT INTO user (name, password) VALUES (?, ?)",
            (name, password_hash),
        )?;
        Ok(conn.last_insert_id() as UserId)
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>> {
        let row: Option<(UserId, Vec<u8>, String)> = self
            .conn()?
            .exec_first("SELECT id, name, password FROM user WHERE id = ?", (id,))?;
        Ok(row.map(|(id, name, password_hash)| UserRecord {
            id,
            name: utf8(name),
            password_hash,
        }))
    }

    fn claim_presence(&self, user: UserId, node: &str) -> Result<bool> {
        let mut conn = self.conn()?;
        conn.exec_drop(
            "UPDATE user SET state = 'online', node = ? WHERE id = ? AND (state = 'offline' \
             OR (node <> ? AND NOT EXISTS (SELECT 1 FROM node n WHERE n.id = user.node \
             AND n.heartbeat >= UNIX_TIMESTAMP() - ?)))",
            (node, user, node, self.liveness),
        )?;
        Ok(conn.affected_rows() == 1)
    }

    fn release_presence(&self, user: UserId, node: &str) -> Result<()> {
        self.conn()?.exec_drop(
            "UPDATE user SET state = 'offline', node = NULL WHERE id = ? AND node = ?",
            (user, node),
        )?;
        Ok(())
    }

    fn heartbeat(&self, node: &str) -> Result<()> {
        self.conn()?.exec_drop(
            "INSERT INTO node (id, heartbeat) VALUES (?, UNIX_TIMESTAMP()) \
             ON DUPLICATE KEY UPDATE heartbeat = VALUES(heartbeat)",
            (node,),
        )?;
        Ok(())
    }

    fn release_node(&self, node: &str) -> Result<()> {
        self.conn()?.exec_drop(
            "UPDATE user SET state = 'offline', node = NULL WHERE node = ?",
            (node,),
        )?;
        Ok(())
    }

    fn add_friend(&self, a: UserId, b: UserId) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i32> = tx.exec_first("SELECT 1 FROM user WHERE id = ?", (b,))?;
            exists.ok_or(StoreError::NotFound)?;
            tx.exec_batch(
                "INSERT IGNORE INTO friend (userid, friendid) VALUES (?, ?)",
                [(a, b), (b, a)],
            )?;
            Ok(())
        })
    }

    fn friends(&self, user: UserId) -> Result<Vec<Contact>> {
        let rows: Vec<(UserId, Vec<u8>, bool)> = self.conn()?.exec(
            concat!(
                "SELECT u.id, u.name, ",
                online!(),
                " FROM friend f JOIN user u ON u.id = f.friendid WHERE f.userid = ? ORDER BY u.id"
            ),
            (self.liveness, user),
        )?;
        Ok(rows
            .into_iter()
            .map(|(id, name, online)| Contact {
                id,
                name: utf8(name),
                online,
            })
            .collect())
    }

    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId> {
        self.write(|tx| {
            tx.exec_drop(
                "INSERT INTO allgroup (groupname, groupdesc) VALUES (?, ?)",
                (name, desc),
            )?;
            let id = tx.last_insert_id().unwrap_or_default() as GroupId;
            tx.exec_drop(
                "INSERT INTO groupuser (groupid, userid, grouprole) VALUES (?, ?, 'creator')",
                (id, creator),
            )?;
            Ok(id)
        })
    }

    fn join_group(&self, group: GroupId, user: UserId) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i32> =
                tx.exec_first("SELECT 1 FROM allgroup WHERE id = ? FOR UPDATE", (group,))?;
            exists.ok_or(StoreError::NotFound)?;
            tx.exec_drop(
                "INSERT IGNORE INTO groupuser (groupid, userid, grouprole) VALUES (?, ?, 'normal')",
                (group, user),
            )?;
            Ok(())
        })
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        let mut conn = self.conn()?;
        let groups: Vec<(GroupId, Vec<u8>, String)> = conn.exec(
            "SELECT g.id, g.groupname, g.groupdesc FROM allgroup g \
             JOIN groupuser gu ON gu.groupid = g.id WHERE gu.userid = ? ORDER BY g.id",
            (user,),
        )?;
        let members: Vec<(GroupId, UserId, Vec<u8>, bool, String)> = conn.exec(
            concat!(
                "SELECT gu.groupid, u.id, u.name, ",
                online!(),
                ", gu.grouprole FROM groupuser gu JOIN user u ON u.id = gu.userid \
                 WHERE gu.groupid IN (SELECT groupid FROM groupuser WHERE userid = ?) \
                 ORDER BY gu.groupid, u.id"
            ),
            (self.liveness, user),
        )?;
        let groups: Vec<GroupRow> = groups
            .into_iter()
            .map(|(id, name, desc)| (id, utf8(name), desc))
            .collect();
        let members: Vec<MemberRow> = members
            .into_iter()
            .map(|(g, u, name, online, role)| (g, u, utf8(name), online, role))
            .collect();
        Ok(assemble_groups(groups, members))
    }

    fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>> {
        let mut conn = self.conn()?;
        let exists: Option<i32> =
            conn.exec_first("SELECT 1 FROM allgroup WHERE id = ?", (group,))?;
        if exists.is_none() {
            return Ok(None);
        }
        let ids = conn.exec("SELECT userid FROM groupuser WHERE groupid = ?", (group,))?;
        Ok(Some(ids))
    }

    fn store_offline(&self, messages: &[Offline]) -> Result<usize> {
        Ok(self.store_offline_many(&[messages])?[0])
    }

    fn store_offline_many(&self, batches: &[&[Offline]]) -> Result<Vec<usize>> {
        self.write(|tx| {
            let insert = tx.prep(
                "INSERT INTO offlinemessage (userid, message) SELECT id, ? FROM user WHERE id = ?",
            )?;
            let mut counts = Vec::with_capacity(batches.len());
            for batch in batches {
                let mut stored = 0;
                for m in *batch {
                    tx.exec_drop(&insert, (&*m.frame, m.to))?;
                    stored += tx.affected_rows() as usize;
                }
                counts.push(stored);
            }
            Ok(counts)
        })
    }

    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<String>> {
        self.write(|tx| {
            let rows: Vec<(i64, String)> = tx.exec(
                "SELECT id, message FROM offlinemessage WHERE userid = ? ORDER BY id LIMIT ? FOR UPDATE",
                (user, limit as u64),
            )?;
            if let Some((last, _)) = rows.last() {
                tx.exec_drop(
                    "DELETE FROM offlinemessage WHERE userid = ? AND id <= ?",
                    (user, last),
                )?;
            }
            Ok(rows.into_iter().map(|(_, m)| m).collect())
        })
    }

    fn save_token(&self, user: UserId, hash: &[u8]) -> Result<()> {
        self.conn()?.exec_drop(
            "INSERT INTO token (userid, hash, created) VALUES (?, ?, UNIX_TIMESTAMP()) \
             ON DUPLICATE KEY UPDATE hash = VALUES(hash), created = VALUES(created)",
            (user, hash),
        )?;
        Ok(())
    }

    fn token_hash(&self, user: UserId) -> Result<Option<Vec<u8>>> {
        let hash = self.conn()?.exec_first(
            "SELECT hash FROM token WHERE userid = ? AND created >= UNIX_TIMESTAMP() - ?",
            (user, super::TOKEN_TTL.as_secs()),
        )?;
        Ok(hash)
    }

    fn revoke_token(&self, user: UserId) -> Result<()> {
        self.conn()?
            .exec_drop("DELETE FROM token WHERE userid = ?", (user,))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_splits_into_create_statements() {
        let statements = super::schema_statements(super::SCHEMA);
        assert_eq!(statements.len(), 7);
        assert!(
            statements
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
    }
}
