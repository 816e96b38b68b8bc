//! The shared store of a cluster: MySQL or MariaDB through an r2d2 pool, prepared statements only.
//!
//! Connections time out on connect, read and write, so a database that goes away turns into
//! [`StoreError::Unavailable`] (errno 109) within seconds instead of hanging a connection's thread.
//!
//! Appending to the log costs a handful of round trips per batch, not per message: one multi-row upsert
//! gives every conversation of the batch its positions (its rows stay locked until the commit, so nodes
//! appending to one conversation at once queue up and get consecutive positions), then multi-row inserts
//! write the messages, the read positions and the offline pointers. Rows are locked in key order, so two
//! batches cannot deadlock on conversations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use r2d2_mysql::MySqlConnectionManager;
use r2d2_mysql::mysql::prelude::Queryable;
use r2d2_mysql::mysql::{self, Opts, OptsBuilder, TxOpts, Value};

use super::migrate::{self, MIGRATIONS};
use super::{
    Accounts, Appended, Claim, Committed, GroupRow, GroupUpdate, Groups, Joined, Log, MemberRow,
    NewMessage, Pointer, Presence, Refusal, Removal, Require, Result, Social, StoreError, Tokens,
    assemble_groups, now_ms,
};
use crate::model::{
    Contact, Conv, Group, LogMessage, Members, Page, Pos, Relation, Request, Requests, Role,
    Summary, UserRecord,
};
use crate::model::{GroupId, UserId};

/// MySQL's "duplicate entry" error code.
const ER_DUP_ENTRY: u16 = 1062;
/// "Lock wait timeout exceeded" and "Deadlock found": the transaction was rolled back and may be retried.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
/// How often a transaction that lost a deadlock is tried again.
const RETRIES: u32 = 5;
/// Read and write timeout of the connection that migrates the schema.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Rows per multi-row insert, and the text bytes at which one is sent early (under max_allowed_packet).
const ROWS_PER_INSERT: usize = 1000;
const BYTES_PER_INSERT: usize = 1 << 20;
/// Prepared statements the log writer's connection keeps (the driver's default is 32). A batch's
/// multi-row statements are prepared once per row count, and with 32 the writer prepared and closed one
/// for nearly every batch it committed under load (docs/BENCHMARKS.md, "MariaDB: the log writer's own
/// connection"). One such connection per node, so a node adds at most this many to the server's
/// `max_prepared_stmt_count` (16,382 by default) beyond its pool's 32 per connection.
const LOG_STMT_CACHE: usize = 512;

/// SQL true when user `u` has a device online: held by a node whose heartbeat is fresh (liveness bound).
macro_rules! online {
    () => {
        "EXISTS (SELECT 1 FROM device d JOIN node n ON n.id = d.node WHERE d.userid = u.id \
         AND n.heartbeat >= UNIX_TIMESTAMP() - ?)"
    };
}

/// The columns of a [`LogMessage`] row, from `message m` joined with its sender `u`.
macro_rules! message_columns {
    () => {
        "m.conv, m.pos, m.ts, m.sender, u.name, m.cid, m.time, m.text"
    };
}

/// MySQL through r2d2 pools: one for requests, and one connection of its own for the log's writer.
pub struct MysqlStore {
    pool: r2d2::Pool<MySqlConnectionManager>,
    /// The log writer's connection ([`Log::append`], [`Log::store_offline`]): its multi-row statements
    /// differ with every batch size, so it caches [`LOG_STMT_CACHE`] prepared statements where the pool's
    /// connections keep the driver's default; and the writer never queues behind requests for a
    /// connection.
    log: r2d2::Pool<MySqlConnectionManager>,
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
    /// Connects to the database a `mysql://` URL names and brings its schema up to date.
    pub fn open(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let timeout = Some(Duration::from_secs(5));
        let opts = OptsBuilder::from_opts(Opts::from_url(url)?)
            .tcp_connect_timeout(timeout)
            .read_timeout(timeout)
            .write_timeout(timeout)
            .tcp_nodelay(true);
        // One plain connection first, so that a wrong URL is said once and plainly (access denied,
        // unknown database, nothing listening) rather than as the pool's retries timing out. It then
        // migrates the schema, with timeouts long enough for converting a large old offline table on a
        // busy machine (the pool's few seconds are for requests, which must fail fast).
        let long = Some(MIGRATION_TIMEOUT);
        let mut migrator = mysql::Conn::new(opts.clone().read_timeout(long).write_timeout(long))
            .map_err(|e| anyhow::anyhow!("cannot use the MySQL database: {e}"))?;
        let url_cache = Opts::from(opts.clone()).get_stmt_cache_size();
        let log_opts = opts.clone().stmt_cache_size(url_cache.max(LOG_STMT_CACHE));
        let store = MysqlStore {
            pool: pool(opts, pool_size.max(1))?,
            log: pool(log_opts, 1)?,
            liveness: super::LIVENESS.as_secs() as i64,
        };
        migrate_schema(&mut migrator).context("migrating the MySQL schema")?;
        Ok(store)
    }

    fn conn(&self) -> Result<Conn> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a transaction on one of the pool's connections and commits it.
    fn write<T>(&self, f: impl FnMut(&mut mysql::Transaction) -> Result<T>) -> Result<T> {
        write_on(&self.pool, f)
    }
}

/// A pool of `size` connections with `opts`, at least one (two at most) kept open.
fn pool(opts: OptsBuilder, size: u32) -> anyhow::Result<r2d2::Pool<MySqlConnectionManager>> {
    Ok(r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(size.clamp(1, 2)))
        .connection_timeout(Duration::from_secs(3))
        // Our own callers report what a failed checkout means (109); the pool need not log each try.
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build(MySqlConnectionManager::new(opts))?)
}

/// Runs `f` in a transaction on a connection of `pool` and commits it (a dropped, uncommitted
/// transaction rolls back). InnoDB resolves deadlocks by rolling one transaction back (for example taking
/// a user's stored messages while new ones are inserted for them): such a transaction is run again, a
/// few times.
fn write_on<T>(
    pool: &r2d2::Pool<MySqlConnectionManager>,
    mut f: impl FnMut(&mut mysql::Transaction) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        let result = pool.get().map_err(StoreError::from).and_then(|mut conn| {
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

/// Applies the migrations the database does not have yet, one node at a time (a named lock). MySQL
/// commits DDL statement by statement, so progress is recorded per statement and a migration cut short
/// goes on where it stopped.
fn migrate_schema(conn: &mut mysql::Conn) -> anyhow::Result<()> {
    let locked: Option<i64> = conn.query_first("SELECT GET_LOCK('clusterchat.migrate', 60)")?;
    anyhow::ensure!(
        locked == Some(1),
        "another node holds the migration lock for over 60 s"
    );
    let result = migrate_locked(conn);
    let _ = conn.query_drop("SELECT RELEASE_LOCK('clusterchat.migrate')");
    result
}

fn migrate_locked(conn: &mut mysql::Conn) -> anyhow::Result<()> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL PRIMARY KEY, \
         steps INT NOT NULL, done TINYINT NOT NULL, applied BIGINT NOT NULL) ENGINE = InnoDB",
    )?;
    let progress: Vec<(u32, usize, bool)> =
        conn.query("SELECT version, steps, done FROM schema_version")?;
    for m in MIGRATIONS {
        let (steps, done) = progress
            .iter()
            .find(|(v, ..)| *v == m.version)
            .map_or((0, false), |(_, s, d)| (*s, *d));
        if done {
            continue;
        }
        for (i, statement) in migrate::statements(m.mysql.unwrap_or_default())
            .iter()
            .enumerate()
            .skip(steps)
        {
            conn.query_drop(statement)
                .with_context(|| format!("migration {}, statement {}", m.version, i + 1))?;
            conn.exec_drop(
                "INSERT INTO schema_version (version, steps, done, applied) \
                 VALUES (?, ?, 0, UNIX_TIMESTAMP()) ON DUPLICATE KEY UPDATE steps = VALUES(steps)",
                (m.version, i + 1),
            )?;
        }
        conn.exec_drop(
            "INSERT INTO schema_version (version, steps, done, applied) \
             VALUES (?, 0, 1, UNIX_TIMESTAMP()) ON DUPLICATE KEY UPDATE done = 1",
            (m.version,),
        )?;
        tracing::info!(version = m.version, "applied schema migration");
    }
    convert_legacy(conn)?;
    Ok(())
}

/// Turns the old offline frames left by migration 2, if any, into log messages and pointers in one
/// transaction that also deletes them (a group message stored once per member must be seen whole to
/// become one message), then drops their table. A crash before the drop leaves an empty table, converted
/// again as nothing at the next start.
fn convert_legacy(conn: &mut mysql::Conn) -> Result<()> {
    let legacy: Vec<String> = conn.query("SHOW TABLES LIKE 'offline_legacy'")?;
    if legacy.is_empty() {
        return Ok(());
    }
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let rows: Vec<(i64, UserId, String)> =
        tx.query("SELECT id, userid, message FROM offline_legacy ORDER BY id")?;
    let messages = migrate::legacy_messages(&rows);
    append_in(&mut tx, &messages.iter().collect::<Vec<_>>(), now_ms())?;
    tx.query_drop("DELETE FROM offline_legacy")?;
    tx.commit()?;
    if !rows.is_empty() {
        tracing::info!(
            frames = rows.len(),
            "converted stored offline frames into the log"
        );
    }
    conn.query_drop("DROP TABLE offline_legacy")?;
    Ok(())
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Runs `INSERT … VALUES (…), (…) [suffix]` for `rows` (each `width` values), in as few statements as the
/// size limits allow.
fn insert_rows(
    tx: &mut mysql::Transaction,
    head: &str,
    width: usize,
    suffix: &str,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut chunk: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let send = |tx: &mut mysql::Transaction, chunk: &mut Vec<Value>| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let tuples = vec![tuple.as_str(); chunk.len() / width].join(", ");
        tx.exec_drop(
            format!("{head} VALUES {tuples} {suffix}"),
            std::mem::take(chunk),
        )?;
        Ok(())
    };
    for row in rows {
        bytes += row
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => b.len(),
                _ => 8,
            })
            .sum::<usize>();
        chunk.extend(row);
        if chunk.len() / width >= ROWS_PER_INSERT || bytes >= BYTES_PER_INSERT {
            send(tx, &mut chunk)?;
            bytes = 0;
        }
    }
    send(tx, &mut chunk)
}

/// The messages a sender already committed with one of these cids: `(sender, cid)` → where they are.
fn committed_cids(
    tx: &mut mysql::Transaction,
    wanted: &[(UserId, &str)],
) -> Result<HashMap<(UserId, String), Committed>> {
    let mut found = HashMap::new();
    for chunk in wanted.chunks(ROWS_PER_INSERT) {
        let condition = pairs_in("sender", "cid", chunk.len());
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|&(sender, cid)| [Value::from(sender), Value::from(cid)])
            .collect();
        let rows: Vec<(UserId, Vec<u8>, i64, Pos, i64)> = tx.exec(
            format!("SELECT sender, cid, conv, pos, ts FROM message WHERE {condition}"),
            params,
        )?;
        for (sender, cid, key, pos, ts) in rows {
            if let Some(conv) = Conv::from_key(key) {
                let committed = Committed {
                    conv,
                    pos,
                    ts,
                    duplicate: true,
                    members_version: 0,
                };
                found.insert((sender, utf8(cid)), committed);
            }
        }
    }
    Ok(found)
}

/// The condition `(a, b) IN ((?, ?), …)` for `n` pairs, which MariaDB answers with one index lookup
/// each. Not `(a = ? AND b = ?) OR …`: the range optimizer's time for that form grows with the square of
/// the list (151 ms for 1,000 pairs on an empty `userblock`), so a log writer a few hundred messages
/// behind fell further behind with every commit (docs/BENCHMARKS.md, "MariaDB: the optimizer's spiral").
fn pairs_in(a: &str, b: &str, n: usize) -> String {
    format!("({a}, {b}) IN ({})", vec!["(?, ?)"; n].join(", "))
}

/// The rows of `SELECT two columns FROM table WHERE column IN (…)` for `values` (in chunks), as pairs
/// (a set to look pairs up in, or a map). A list of single values costs the optimizer about the same
/// for any table, where one of pairs cost it 22 ms for 250 on an empty table, 1 ms for 500.
fn select_in<C: Default + Extend<(i64, i64)>>(
    tx: &mut mysql::Transaction,
    select: &str,
    column: &str,
    values: &[i64],
) -> Result<C> {
    let mut out = C::default();
    for chunk in values.chunks(ROWS_PER_INSERT) {
        let marks = vec!["?"; chunk.len()].join(", ");
        out.extend(tx.exec::<(i64, i64), _, _>(
            format!("{select} WHERE {column} IN ({marks})"),
            chunk.to_vec(),
        )?);
    }
    Ok(out)
}

/// `values` sorted, each once.
fn distinct(values: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut values: Vec<i64> = values.collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// The `userblock` row (blocker, blocked) that would refuse one-to-one message `m`: its peer blocking its
/// sender.
fn block_row(m: &NewMessage) -> (i64, i64) {
    let peer = m.conv.peer_of(m.sender).unwrap_or(m.sender);
    (i64::from(peer), i64::from(m.sender))
}

/// Checks the [`Require`] of each message (those `wanted`), with a few queries for the whole batch: the
/// group's member-list version (0 for one-to-one) or why the message may not be appended.
fn conditions(
    tx: &mut mysql::Transaction,
    messages: &[&NewMessage],
    wanted: &[bool],
) -> Result<Vec<std::result::Result<i64, Refusal>>> {
    let (mut blocks, mut memberships) = (Vec::new(), Vec::new());
    for (m, _) in messages.iter().zip(wanted).filter(|(_, w)| **w) {
        match (m.require, m.conv) {
            (Require::NotBlocked, _) => blocks.push(block_row(m)),
            (Require::Member, Conv::Group(g)) => {
                memberships.push((i64::from(g), i64::from(m.sender)))
            }
            _ => {}
        }
    }
    // Both kinds of pair are looked up by their second member, the sender: its blockers, its groups.
    let blocked: HashSet<(i64, i64)> = select_in(
        tx,
        "SELECT userid, blockedid FROM userblock",
        "blockedid",
        &distinct(blocks.iter().map(|&(_, sender)| sender)),
    )?;
    let members: HashSet<(i64, i64)> = select_in(
        tx,
        "SELECT groupid, userid FROM groupuser",
        "userid",
        &distinct(memberships.iter().map(|&(_, sender)| sender)),
    )?;
    let versions: HashMap<i64, i64> = select_in(
        tx,
        "SELECT id, version FROM allgroup",
        "id",
        &distinct(memberships.iter().map(|&(group, _)| group)),
    )?;
    Ok(messages
        .iter()
        .map(|m| match (m.require, m.conv) {
            (Require::NotBlocked, _) => {
                if blocked.contains(&block_row(m)) {
                    Err(Refusal::Blocked)
                } else {
                    Ok(0)
                }
            }
            (Require::Member, Conv::Group(g)) => match versions.get(&i64::from(g)) {
                None => Err(Refusal::NoGroup),
                Some(_) if !members.contains(&(i64::from(g), i64::from(m.sender))) => {
                    Err(Refusal::NotMember)
                }
                Some(&version) => Ok(version),
            },
            _ => Ok(0),
        })
        .collect())
}

/// [`Log::append`] inside a transaction, every message committed at `ts`.
fn append_in(
    tx: &mut mysql::Transaction,
    messages: &[&NewMessage],
    ts: i64,
) -> Result<Vec<Appended>> {
    let wanted: Vec<(UserId, &str)> = messages
        .iter()
        .filter_map(|m| Some((m.sender, m.cid.as_deref()?)))
        .collect();
    let mut cids = if wanted.is_empty() {
        HashMap::new()
    } else {
        committed_cids(tx, &wanted)?
    };
    // Which messages are new (the first of their cid), and what each conversation gets.
    let mut fresh = Vec::with_capacity(messages.len());
    let mut bumps: BTreeMap<i64, Bump> = BTreeMap::new();
    let mut batch_cids: HashMap<(UserId, &str), usize> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let first = match m.cid.as_deref() {
            Some(cid) if cids.contains_key(&(m.sender, cid.to_owned())) => false,
            Some(cid) => batch_cids.insert((m.sender, cid), i).is_none(),
            None => true,
        };
        fresh.push(first);
    }
    let allowed = conditions(tx, messages, &fresh)?;
    for ((m, first), allowed) in messages.iter().zip(&fresh).zip(&allowed) {
        if *first && allowed.is_ok() {
            bumps
                .entry(m.conv.key())
                .or_insert_with(|| Bump::new(m.conv))
                .add(m.sender);
        }
    }
    let mut next = HashMap::new();
    if !bumps.is_empty() {
        let rows = bumps.values().map(|bump| bump.row(ts)).collect();
        // A side's read position is the old last_pos plus its offset; MySQL assigns left to right, so
        // the reads come before last_pos changes (MariaDB's SIMULTANEOUS_ASSIGNMENT reads the old
        // last_pos anyway).
        insert_rows(
            tx,
            "INSERT INTO conversation (id, lo, hi, last_pos, last_ts, lo_read, hi_read)",
            7,
            "ON DUPLICATE KEY UPDATE \
             lo_read = IF(VALUES(lo_read) > 0, last_pos + VALUES(lo_read), lo_read), \
             hi_read = IF(VALUES(hi_read) > 0, last_pos + VALUES(hi_read), hi_read), \
             last_pos = last_pos + VALUES(last_pos), last_ts = VALUES(last_ts)",
            rows,
        )?;
        let keys: Vec<Value> = bumps.keys().map(|&k| Value::from(k)).collect();
        let marks = vec!["?"; keys.len()].join(", ");
        let lasts: Vec<(i64, Pos)> = tx.exec(
            format!("SELECT id, last_pos FROM conversation WHERE id IN ({marks})"),
            keys,
        )?;
        for (key, last) in lasts {
            next.insert(key, last - bumps[&key].count + 1);
        }
    }
    let mut out = Vec::with_capacity(messages.len());
    let (mut rows, mut reads, mut pointers) = (Vec::new(), Vec::new(), Vec::new());
    for ((m, first), allowed) in messages.iter().zip(fresh).zip(allowed) {
        if !first {
            let cid = m.cid.clone().expect("only messages with a cid repeat");
            let earlier = match cids.get(&(m.sender, cid.clone())) {
                Some(c) => Ok(*c),
                None => out[batch_cids[&(m.sender, cid.as_str())]],
            };
            out.push(earlier.map(|c| Committed {
                duplicate: true,
                ..c
            }));
            continue;
        }
        let members_version = match allowed {
            Ok(version) => version,
            Err(refusal) => {
                out.push(Err(refusal));
                continue;
            }
        };
        let key = m.conv.key();
        let slot = next
            .get_mut(&key)
            .ok_or_else(|| StoreError::Unavailable("conversation row missing".into()))?;
        let pos = *slot;
        *slot += 1;
        rows.push(vec![
            Value::from(key),
            Value::from(pos),
            Value::from(m.sender),
            Value::from(ts),
            m.cid.as_deref().map_or(Value::NULL, Value::from),
            Value::from(m.time.as_str()),
            Value::from(m.text.as_str()),
        ]);
        if let Conv::Group(_) = m.conv {
            reads.push((m.sender, key, pos));
        }
        pointers.extend(m.offline.iter().map(|&user| Pointer {
            user,
            conv: m.conv,
            pos,
        }));
        let committed = Committed {
            conv: m.conv,
            pos,
            ts,
            duplicate: false,
            members_version,
        };
        if let Some(cid) = &m.cid {
            cids.insert((m.sender, cid.clone()), committed);
        }
        out.push(Ok(committed));
    }
    insert_rows(
        tx,
        "INSERT INTO message (conv, pos, sender, ts, cid, time, text)",
        7,
        "",
        rows,
    )?;
    reads.sort_unstable();
    let reads = reads
        .into_iter()
        .map(|(user, key, pos)| vec![Value::from(user), Value::from(key), Value::from(pos)])
        .collect();
    insert_rows(
        tx,
        "INSERT INTO readpos (userid, conv, pos)",
        3,
        "ON DUPLICATE KEY UPDATE pos = GREATEST(pos, VALUES(pos))",
        reads,
    )?;
    let pointers = members_only(tx, pointers)?;
    insert_pointers(tx, &pointers)?;
    Ok(out)
}

/// `pointers` without those of group messages to users who are not members now, read in the append's
/// transaction: a group message's offline recipients were worked out before the commit, and one who has
/// left or been removed since gets nothing committed after that.
fn members_only(tx: &mut mysql::Transaction, pointers: Vec<Pointer>) -> Result<Vec<Pointer>> {
    let in_groups = pointers.iter().filter(|p| matches!(p.conv, Conv::Group(_)));
    let users = distinct(in_groups.map(|p| i64::from(p.user)));
    if users.is_empty() {
        return Ok(pointers);
    }
    let members: HashSet<(i64, i64)> = select_in(
        tx,
        "SELECT groupid, userid FROM groupuser",
        "userid",
        &users,
    )?;
    Ok(pointers
        .into_iter()
        .filter(|p| match p.conv {
            Conv::Group(g) => members.contains(&(i64::from(g), i64::from(p.user))),
            _ => true,
        })
        .collect())
}

/// What one batch's messages do to their conversation's row: how many positions they take, and for each
/// side of a one-to-one conversation the offset (1-based, within the batch's messages) of that side's
/// last message, where its read position moves to; 0 for a side that sent none.
struct Bump {
    conv: Conv,
    count: i64,
    lo_read: i64,
    hi_read: i64,
}

impl Bump {
    fn new(conv: Conv) -> Bump {
        Bump {
            conv,
            count: 0,
            lo_read: 0,
            hi_read: 0,
        }
    }

    fn add(&mut self, sender: UserId) {
        self.count += 1;
        let [lo, hi] = self.conv.read_sides(sender);
        if lo {
            self.lo_read = self.count;
        }
        if hi {
            self.hi_read = self.count;
        }
    }

    /// The row `(id, lo, hi, last_pos, last_ts, lo_read, hi_read)` that inserts the conversation with
    /// these messages, or whose values update it.
    fn row(&self, ts: i64) -> Vec<Value> {
        let (lo, hi) = self.conv.users().unzip();
        vec![
            Value::from(self.conv.key()),
            Value::from(lo),
            Value::from(hi),
            Value::from(self.count),
            Value::from(ts),
            Value::from(self.lo_read),
            Value::from(self.hi_read),
        ]
    }
}

fn insert_pointers(tx: &mut mysql::Transaction, pointers: &[Pointer]) -> Result<()> {
    let rows = pointers
        .iter()
        .map(|p| {
            vec![
                Value::from(p.user),
                Value::from(p.conv.key()),
                Value::from(p.pos),
            ]
        })
        .collect();
    insert_rows(
        tx,
        // At most once per user and message (migration 7): a record written again after an unknown
        // COMMIT outcome finds its first attempt there.
        "INSERT IGNORE INTO offlinemessage (userid, conv, pos)",
        3,
        "",
        rows,
    )
}

/// A row of [`message_columns`].
type MessageRow = (
    i64,
    Pos,
    i64,
    UserId,
    Vec<u8>,
    Option<Vec<u8>>,
    String,
    String,
);

fn log_message((key, pos, ts, sender, name, cid, time, text): MessageRow) -> Option<LogMessage> {
    Some(LogMessage {
        conv: Conv::from_key(key)?,
        pos,
        ts,
        sender,
        sender_name: utf8(name),
        cid: cid.map(utf8),
        time,
        text,
    })
}

impl Accounts for MysqlStore {
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

    fn find_user_by_name(&self, name: &str) -> Result<Option<UserId>> {
        Ok(self
            .conn()?
            .exec_first("SELECT id FROM user WHERE name = ?", (name,))?)
    }

    fn change_password(&self, user: UserId, password_hash: &str) -> Result<()> {
        self.write(|tx| {
            tx.exec_drop(
                "UPDATE user SET password = ? WHERE id = ?",
                (password_hash, user),
            )?;
            tx.exec_drop("DELETE FROM token WHERE userid = ?", (user,))?;
            Ok(())
        })
    }
}

impl Presence for MysqlStore {
    fn claim_device(
        &self,
        user: UserId,
        device: &str,
        node: &str,
        max_devices: usize,
    ) -> Result<Claim> {
        self.write(|tx| {
            // The user's row serialises claims of one user across nodes.
            let exists: Option<i32> =
                tx.exec_first("SELECT 1 FROM user WHERE id = ? FOR UPDATE", (user,))?;
            exists.ok_or(StoreError::NotFound)?;
            tx.exec_drop(
                "DELETE FROM device WHERE userid = ? AND node NOT IN \
                 (SELECT id FROM node WHERE heartbeat >= UNIX_TIMESTAMP() - ?)",
                (user, self.liveness),
            )?;
            let online: Vec<Vec<u8>> =
                tx.exec("SELECT device FROM device WHERE userid = ?", (user,))?;
            if online.iter().any(|d| d == device.as_bytes()) {
                return Ok(Claim::DeviceInUse);
            }
            if online.len() >= max_devices {
                return Ok(Claim::TooMany);
            }
            tx.exec_drop(
                "INSERT INTO device (userid, device, node) VALUES (?, ?, ?)",
                (user, device, node),
            )?;
            Ok(Claim::Claimed {
                first: online.is_empty(),
            })
        })
    }

    fn release_device(&self, user: UserId, device: &str, node: &str) -> Result<bool> {
        self.write(|tx| {
            tx.exec_drop(
                "DELETE FROM device WHERE userid = ? AND device = ? AND node = ?",
                (user, device, node),
            )?;
            let left: Option<i64> = tx.exec_first(
                "SELECT COUNT(*) FROM device d JOIN node n ON n.id = d.node \
                 WHERE d.userid = ? AND n.heartbeat >= UNIX_TIMESTAMP() - ?",
                (user, self.liveness),
            )?;
            Ok(left.unwrap_or(0) == 0)
        })
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
        self.conn()?
            .exec_drop("DELETE FROM device WHERE node = ?", (node,))?;
        Ok(())
    }

    fn reap_stale(&self) -> Result<Vec<UserId>> {
        self.write(|tx| {
            let stale: Vec<Vec<u8>> = tx.exec(
                "SELECT id FROM node WHERE heartbeat < UNIX_TIMESTAMP() - ?",
                (self.liveness,),
            )?;
            if stale.is_empty() {
                return Ok(Vec::new());
            }
            let marks = vec!["?"; stale.len()].join(", ");
            // Locking reads: a node reaping at the same moment waits, then finds the rows gone.
            let users: Vec<UserId> = tx.exec(
                format!("SELECT DISTINCT userid FROM device WHERE node IN ({marks}) FOR UPDATE"),
                stale.clone(),
            )?;
            if users.is_empty() {
                return Ok(users);
            }
            tx.exec_drop(format!("DELETE FROM device WHERE node IN ({marks})"), stale)?;
            let mut gone = Vec::new();
            for user in users {
                let left: Option<i32> =
                    tx.exec_first("SELECT 1 FROM device WHERE userid = ? LIMIT 1", (user,))?;
                if left.is_none() {
                    gone.push(user);
                }
            }
            Ok(gone)
        })
    }
}

impl Social for MysqlStore {
    fn add_friend(&self, a: UserId, b: UserId) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i32> = tx.exec_first("SELECT 1 FROM user WHERE id = ?", (b,))?;
            exists.ok_or(StoreError::NotFound)?;
            befriend(tx, a, b)
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

    fn relation(&self, a: UserId, b: UserId) -> Result<Option<Relation>> {
        let row: Option<(bool, bool, bool, bool, bool)> = self.conn()?.exec_first(
            "SELECT EXISTS (SELECT 1 FROM friend WHERE userid = ? AND friendid = ?), \
             EXISTS (SELECT 1 FROM friendrequest WHERE userid = ? AND friendid = ?), \
             EXISTS (SELECT 1 FROM friendrequest WHERE userid = ? AND friendid = ?), \
             EXISTS (SELECT 1 FROM userblock WHERE userid = ? AND blockedid = ?), \
             EXISTS (SELECT 1 FROM userblock WHERE userid = ? AND blockedid = ?) \
             FROM user WHERE id = ?",
            vec![a, b, a, b, b, a, a, b, b, a, b],
        )?;
        Ok(row.map(
            |(friends, i_asked, they_asked, i_block, they_block)| Relation {
                friends,
                i_asked,
                they_asked,
                i_block,
                they_block,
            },
        ))
    }

    fn request_friend(&self, from: UserId, to: UserId, text: &str) -> Result<()> {
        self.conn()?.exec_drop(
            "INSERT IGNORE INTO friendrequest (userid, friendid, text, created) \
             VALUES (?, ?, ?, UNIX_TIMESTAMP())",
            (from, to, text),
        )?;
        Ok(())
    }

    fn accept_request(&self, from: UserId, to: UserId) -> Result<bool> {
        self.write(|tx| {
            tx.exec_drop(
                "DELETE FROM friendrequest WHERE userid = ? AND friendid = ?",
                (from, to),
            )?;
            let asked = tx.affected_rows() > 0;
            if asked {
                befriend(tx, from, to)?;
            }
            Ok(asked)
        })
    }

    fn decline_request(&self, from: UserId, to: UserId) -> Result<bool> {
        let mut conn = self.conn()?;
        conn.exec_drop(
            "DELETE FROM friendrequest WHERE userid = ? AND friendid = ?",
            (from, to),
        )?;
        Ok(conn.affected_rows() > 0)
    }

    fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool> {
        self.write(|tx| unfriend(tx, a, b))
    }

    fn set_block(&self, a: UserId, b: UserId, block: bool) -> Result<()> {
        self.write(|tx| {
            if block {
                unfriend(tx, a, b)?;
                tx.exec_drop(
                    "INSERT IGNORE INTO userblock (userid, blockedid) VALUES (?, ?)",
                    (a, b),
                )?;
            } else {
                tx.exec_drop(
                    "DELETE FROM userblock WHERE userid = ? AND blockedid = ?",
                    (a, b),
                )?;
            }
            Ok(())
        })
    }

    fn requests(&self, user: UserId) -> Result<Requests> {
        let mut conn = self.conn()?;
        let mut list = |sql: &str| -> Result<Vec<Request>> {
            let rows: Vec<(UserId, Vec<u8>, String)> = conn.exec(sql, (user,))?;
            Ok(rows
                .into_iter()
                .map(|(id, name, text)| Request {
                    id,
                    name: utf8(name),
                    text,
                })
                .collect())
        };
        Ok(Requests {
            incoming: list(
                "SELECT u.id, u.name, f.text FROM friendrequest f JOIN user u ON u.id = f.userid \
                 WHERE f.friendid = ? ORDER BY u.id",
            )?,
            outgoing: list(
                "SELECT u.id, u.name, f.text FROM friendrequest f JOIN user u ON u.id = f.friendid \
                 WHERE f.userid = ? ORDER BY u.id",
            )?,
        })
    }

    fn blocked(&self, user: UserId) -> Result<Vec<(UserId, String)>> {
        self.named_users(
            "SELECT u.id, u.name FROM userblock b JOIN user u ON u.id = b.blockedid \
             WHERE b.userid = ? ORDER BY u.id",
            user,
        )
    }

    fn blockers_of(&self, user: UserId) -> Result<Vec<UserId>> {
        Ok(self
            .conn()?
            .exec("SELECT userid FROM userblock WHERE blockedid = ?", (user,))?)
    }
}

/// Makes `a` and `b` friends both ways and drops the requests between them.
fn befriend(tx: &mut mysql::Transaction, a: UserId, b: UserId) -> Result<()> {
    tx.exec_batch(
        "INSERT IGNORE INTO friend (userid, friendid) VALUES (?, ?)",
        [(a, b), (b, a)],
    )?;
    drop_requests(tx, a, b)?;
    Ok(())
}

/// Ends the friendship of `a` and `b` and drops the requests between them; whether anything was there.
fn unfriend(tx: &mut mysql::Transaction, a: UserId, b: UserId) -> Result<bool> {
    tx.exec_drop(
        "DELETE FROM friend WHERE (userid = ? AND friendid = ?) OR (userid = ? AND friendid = ?)",
        (a, b, b, a),
    )?;
    let friends = tx.affected_rows();
    Ok(friends + drop_requests(tx, a, b)? > 0)
}

/// Drops the friend requests between `a` and `b`, both ways; how many there were.
fn drop_requests(tx: &mut mysql::Transaction, a: UserId, b: UserId) -> Result<u64> {
    tx.exec_drop(
        "DELETE FROM friendrequest WHERE (userid = ? AND friendid = ?) \
         OR (userid = ? AND friendid = ?)",
        (a, b, b, a),
    )?;
    Ok(tx.affected_rows())
}

impl Groups for MysqlStore {
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

    fn join_group(&self, group: GroupId, user: UserId) -> Result<Joined> {
        self.write(|tx| {
            // The group's row lock orders this join after a kick of the same user (which takes it
            // first) or before it; the ban is read as committed, not as of a snapshot.
            let exists: Option<i32> =
                tx.exec_first("SELECT 1 FROM allgroup WHERE id = ? FOR UPDATE", (group,))?;
            exists.ok_or(StoreError::NotFound)?;
            let banned: Option<i32> = tx.exec_first(
                "SELECT 1 FROM groupban WHERE groupid = ? AND userid = ? FOR UPDATE",
                (group, user),
            )?;
            if banned.is_some() {
                return Ok(Joined::Banned);
            }
            tx.exec_drop(
                "INSERT IGNORE INTO groupuser (groupid, userid, grouprole) VALUES (?, ?, 'normal')",
                (group, user),
            )?;
            if tx.affected_rows() == 0 {
                return Ok(Joined::Already);
            }
            bump_version(tx, group)?;
            Ok(Joined::Now)
        })
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        let mut conn = self.conn()?;
        let groups: Vec<(GroupId, Vec<u8>, String)> = conn.exec(
            "SELECT g.id, g.groupname, g.groupdesc FROM allgroup g \
             JOIN groupuser gu ON gu.groupid = g.id WHERE gu.userid = ? ORDER BY g.id",
            (user,),
        )?;
        let members = self.member_rows(
            &mut conn,
            "gu.groupid IN (SELECT groupid FROM groupuser WHERE userid = ?)",
            user,
        )?;
        Ok(assemble_groups(group_rows(groups), members))
    }

    fn group_info(&self, group: GroupId) -> Result<Option<Group>> {
        let mut conn = self.conn()?;
        let row: Option<(GroupId, Vec<u8>, String)> = conn.exec_first(
            "SELECT id, groupname, groupdesc FROM allgroup WHERE id = ?",
            (group,),
        )?;
        let Some(row) = row else { return Ok(None) };
        let members = self.member_rows(&mut conn, "gu.groupid = ?", group)?;
        Ok(assemble_groups(group_rows(vec![row]), members).pop())
    }

    fn group_members(&self, group: GroupId) -> Result<Option<Members>> {
        let mut conn = self.conn()?;
        let version: Option<i64> =
            conn.exec_first("SELECT version FROM allgroup WHERE id = ?", (group,))?;
        let Some(version) = version else {
            return Ok(None);
        };
        let rows: Vec<(UserId, String)> = conn.exec(
            "SELECT userid, grouprole FROM groupuser WHERE groupid = ?",
            (group,),
        )?;
        let list = rows
            .into_iter()
            .map(|(user, role)| (user, Role::from_column(&role)))
            .collect();
        Ok(Some(Members { version, list }))
    }

    fn set_roles(&self, group: GroupId, version: i64, roles: &[(UserId, Role)]) -> Result<bool> {
        self.write(|tx| {
            tx.exec_drop(
                "UPDATE allgroup SET version = version + 1 WHERE id = ? AND version = ?",
                (group, version),
            )?;
            let current = tx.affected_rows() > 0;
            if current {
                tx.exec_batch(
                    "UPDATE groupuser SET grouprole = ? WHERE groupid = ? AND userid = ?",
                    roles
                        .iter()
                        .map(|&(user, role)| (role.as_str(), group, user)),
                )?;
            }
            Ok(current)
        })
    }

    fn remove_member(&self, group: GroupId, user: UserId, how: Removal) -> Result<bool> {
        self.write(|tx| {
            // The group's row first, as a join takes it: the two wait for each other in one order.
            let exists: Option<i32> =
                tx.exec_first("SELECT 1 FROM allgroup WHERE id = ? FOR UPDATE", (group,))?;
            if exists.is_none() {
                return Ok(false);
            }
            tx.exec_drop(
                "DELETE FROM groupuser WHERE groupid = ? AND userid = ?",
                (group, user),
            )?;
            let removed = tx.affected_rows() > 0;
            if removed {
                bump_version(tx, group)?;
                if how == Removal::Kicked {
                    tx.exec_drop(
                        "INSERT IGNORE INTO groupban (groupid, userid) VALUES (?, ?)",
                        (group, user),
                    )?;
                }
            }
            Ok(removed)
        })
    }

    fn unban(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.write(|tx| {
            tx.exec_drop(
                "DELETE FROM groupban WHERE groupid = ? AND userid = ?",
                (group, user),
            )?;
            Ok(tx.affected_rows() > 0)
        })
    }

    fn bans(&self, group: GroupId) -> Result<Vec<(UserId, String)>> {
        self.named_users(
            "SELECT u.id, u.name FROM groupban b JOIN user u ON u.id = b.userid \
             WHERE b.groupid = ? ORDER BY u.id",
            group,
        )
    }

    fn update_group(&self, group: GroupId, update: GroupUpdate) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i32> =
                tx.exec_first("SELECT 1 FROM allgroup WHERE id = ? FOR UPDATE", (group,))?;
            exists.ok_or(StoreError::NotFound)?;
            tx.exec_drop(
                "UPDATE allgroup SET groupname = COALESCE(?, groupname), \
                 groupdesc = COALESCE(?, groupdesc) WHERE id = ?",
                (update.name, update.desc, group),
            )?;
            Ok(())
        })
    }

    fn dissolve_group(&self, group: GroupId) -> Result<()> {
        self.write(|tx| {
            let key = Conv::Group(group).key();
            tx.exec_drop("DELETE FROM allgroup WHERE id = ?", (group,))?;
            tx.exec_drop("DELETE FROM groupuser WHERE groupid = ?", (group,))?;
            tx.exec_drop("DELETE FROM groupban WHERE groupid = ?", (group,))?;
            for table in ["message", "readpos", "offlinemessage"] {
                tx.exec_drop(format!("DELETE FROM {table} WHERE conv = ?"), (key,))?;
            }
            tx.exec_drop("DELETE FROM conversation WHERE id = ?", (key,))?;
            Ok(())
        })
    }
}

impl MysqlStore {
    /// The `(id, name)` rows `sql` selects with its `?` = `arg`.
    fn named_users(&self, sql: &str, arg: i32) -> Result<Vec<(UserId, String)>> {
        let rows: Vec<(UserId, Vec<u8>)> = self.conn()?.exec(sql, (arg,))?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| (id, utf8(name)))
            .collect())
    }

    /// Member rows (ordered by group, then user) of the groups `filter` selects with its `?` = `arg`.
    fn member_rows(&self, conn: &mut Conn, filter: &str, arg: i32) -> Result<Vec<MemberRow>> {
        let sql = format!(
            concat!(
                "SELECT gu.groupid, u.id, u.name, ",
                online!(),
                ", gu.grouprole FROM groupuser gu JOIN user u ON u.id = gu.userid \
                 WHERE {} ORDER BY gu.groupid, u.id"
            ),
            filter
        );
        let rows: Vec<(GroupId, UserId, Vec<u8>, bool, String)> =
            conn.exec(sql, (self.liveness, arg))?;
        Ok(rows
            .into_iter()
            .map(|(g, u, name, online, role)| (g, u, utf8(name), online, role))
            .collect())
    }
}

/// Group rows with their names decoded.
fn group_rows(rows: Vec<(GroupId, Vec<u8>, String)>) -> Vec<GroupRow> {
    rows.into_iter()
        .map(|(id, name, desc)| (id, utf8(name), desc))
        .collect()
}

/// Marks a change of the group's members (see [`Members::version`]).
fn bump_version(tx: &mut mysql::Transaction, group: GroupId) -> Result<()> {
    tx.exec_drop(
        "UPDATE allgroup SET version = version + 1 WHERE id = ?",
        (group,),
    )?;
    Ok(())
}

impl Log for MysqlStore {
    fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        let ts = now_ms();
        write_on(&self.log, |tx| {
            // The same cid committed by another node a moment ago: run again, and find it.
            append_in(tx, messages, ts).map_err(|e| match e {
                StoreError::Conflict => StoreError::Busy("a cid committed concurrently".into()),
                other => other,
            })
        })
    }

    fn store_offline(&self, pointers: &[Pointer]) -> Result<()> {
        if pointers.is_empty() {
            return Ok(());
        }
        write_on(&self.log, |tx| insert_pointers(tx, pointers))
    }

    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>> {
        self.write(|tx| {
            let ids: Vec<i64> = tx.exec(
                "SELECT id FROM offlinemessage WHERE userid = ? ORDER BY id LIMIT ? FOR UPDATE",
                (user, limit as u64),
            )?;
            let Some(&last) = ids.last() else {
                return Ok(Vec::new());
            };
            let rows: Vec<MessageRow> = tx.exec(
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM offlinemessage o JOIN message m ON m.conv = o.conv AND m.pos = o.pos \
                     JOIN user u ON u.id = m.sender WHERE o.userid = ? AND o.id <= ? ORDER BY o.id"
                ),
                (user, last),
            )?;
            tx.exec_drop(
                "DELETE FROM offlinemessage WHERE userid = ? AND id <= ?",
                (user, last),
            )?;
            Ok(rows.into_iter().filter_map(log_message).collect())
        })
    }

    fn conversations(&self, user: UserId) -> Result<Vec<Summary>> {
        let mut conn = self.conn()?;
        let (first, last) = Conv::keys_led_by(user);
        let direct: Vec<(i64, Vec<u8>, Pos, i64, Pos, Pos)> = conn.exec(
            "SELECT c.id, u.name, c.last_pos, c.last_ts, c.lo_read, c.hi_read FROM conversation c \
             JOIN user u ON u.id = c.hi WHERE c.id BETWEEN ? AND ? \
             UNION ALL \
             SELECT c.id, u.name, c.last_pos, c.last_ts, c.hi_read, c.lo_read FROM conversation c \
             JOIN user u ON u.id = c.lo WHERE c.hi = ? AND c.lo <> ?",
            (first, last, user, user),
        )?;
        let groups: Vec<(GroupId, Vec<u8>, Pos, i64, Pos)> = conn.exec(
            "SELECT g.id, g.groupname, COALESCE(c.last_pos, 0), COALESCE(c.last_ts, 0), \
             COALESCE(r.pos, 0) FROM groupuser gu JOIN allgroup g ON g.id = gu.groupid \
             LEFT JOIN conversation c ON c.id = -g.id \
             LEFT JOIN readpos r ON r.userid = gu.userid AND r.conv = -g.id WHERE gu.userid = ?",
            (user,),
        )?;
        let direct =
            direct
                .into_iter()
                .filter_map(|(key, name, last, last_ts, read, peer_read)| {
                    Some(Summary {
                        conv: Conv::from_key(key)?,
                        name: utf8(name),
                        last,
                        read,
                        peer_read: Some(peer_read),
                        last_ts,
                    })
                });
        let groups = groups
            .into_iter()
            .map(|(g, name, last, last_ts, read)| Summary {
                conv: Conv::Group(g),
                name: utf8(name),
                last,
                read,
                peer_read: None,
                last_ts,
            });
        Ok(direct.chain(groups).collect())
    }

    fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)> {
        let (condition, order, at) = match page {
            Page::Latest => ("", "DESC", 0),
            Page::Before(p) => ("AND m.pos < ?", "DESC", p),
            Page::After(p) => ("AND m.pos > ?", "ASC", p),
        };
        let sql = format!(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM message m JOIN user u ON u.id = m.sender WHERE m.conv = ? {} \
                 ORDER BY m.pos {} LIMIT ?"
            ),
            condition, order
        );
        let mut params = vec![Value::from(conv.key())];
        if page != Page::Latest {
            params.push(Value::from(at));
        }
        params.push(Value::from(limit as u64 + 1));
        let rows: Vec<MessageRow> = self.conn()?.exec(sql, params)?;
        let mut messages: Vec<LogMessage> = rows.into_iter().filter_map(log_message).collect();
        Ok(super::page_out(&mut messages, page, limit))
    }

    fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)> {
        self.write(|tx| {
            let key = conv.key();
            let [lo_reads, hi_reads] = conv.read_sides(user);
            let (last, current): (Pos, Pos) = if let Conv::Group(_) = conv {
                let last: Option<Pos> =
                    tx.exec_first("SELECT last_pos FROM conversation WHERE id = ?", (key,))?;
                let current: Option<Pos> = tx.exec_first(
                    "SELECT pos FROM readpos WHERE userid = ? AND conv = ? FOR UPDATE",
                    (user, key),
                )?;
                (last.unwrap_or(0), current.unwrap_or(0))
            } else {
                let row: Option<(Pos, Pos, Pos)> = tx.exec_first(
                    "SELECT last_pos, lo_read, hi_read FROM conversation WHERE id = ? FOR UPDATE",
                    (key,),
                )?;
                row.map_or((0, 0), |(last, lo, hi)| {
                    (last, if lo_reads { lo } else if hi_reads { hi } else { 0 })
                })
            };
            let target = pos.min(last);
            if target <= current {
                return Ok((current, false));
            }
            if let Conv::Group(_) = conv {
                tx.exec_drop(
                    "INSERT INTO readpos (userid, conv, pos) VALUES (?, ?, ?) \
                     ON DUPLICATE KEY UPDATE pos = VALUES(pos)",
                    (user, key, target),
                )?;
            } else {
                tx.exec_drop(
                    "UPDATE conversation SET lo_read = IF(?, ?, lo_read), hi_read = IF(?, ?, hi_read) \
                     WHERE id = ?",
                    (lo_reads, target, hi_reads, target, key),
                )?;
            }
            Ok((target, true))
        })
    }
}

impl Tokens for MysqlStore {
    fn save_token(&self, user: UserId, device: &str, hash: &[u8]) -> Result<()> {
        self.conn()?.exec_drop(
            "INSERT INTO token (userid, device, hash, created) VALUES (?, ?, ?, UNIX_TIMESTAMP()) \
             ON DUPLICATE KEY UPDATE hash = VALUES(hash), created = VALUES(created)",
            (user, device, hash),
        )?;
        Ok(())
    }

    fn token_hash(&self, user: UserId, device: &str) -> Result<Option<Vec<u8>>> {
        let hash = self.conn()?.exec_first(
            "SELECT hash FROM token WHERE userid = ? AND device = ? AND created >= UNIX_TIMESTAMP() - ?",
            (user, device, super::TOKEN_TTL.as_secs()),
        )?;
        Ok(hash)
    }

    fn revoke_token(&self, user: UserId, device: &str) -> Result<()> {
        self.conn()?.exec_drop(
            "DELETE FROM token WHERE userid = ? AND device = ?",
            (user, device),
        )?;
        Ok(())
    }
}
