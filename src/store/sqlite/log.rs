//! The message log on SQLite: messages stored in the order they commit, indexed by position later.
//!
//! A commit appends each message at the end of `message` (its `seq`) and writes nothing at a random place
//! in the file: on a busy node, where most messages go to a conversation whose pages are not cached, the
//! (conv, pos) tree, the `conversation` row and its `hi` index had cost three random pages (about 20 KB
//! written) a message (docs/BENCHMARKS.md, "Storage layouts replayed by hand"). The rest is brought up
//! to date from the messages past `indexed.seq` (the tail) in sorted batches, once the tail holds
//! [`INDEX_AT`] messages (or the writer has had no work for a while: [`Log::catch_up`]), a step
//! between appends ([`super::index`]).
//!
//! Reads add the tail to what is indexed, by scanning it: it is short (a batch and what came during
//! it), and one statement sees `indexed.seq` and the index as of one commit, so nothing is missed. A
//! message may be both in the tail and already indexed while a batch is under way: history selects
//! messages by seq `IN` the two (a set), and the other reads take the larger of the two values, so
//! nothing is counted twice either.
//!
//! Positions are given out from memory ([`Memory`]): SQLite has one writer, and while this store's
//! writer is the only one appending, the last position of a conversation is either in its memory or in
//! the conversation's row. If anyone else appended (another process on the same file), the writer
//! indexes the whole tail first and forgets what it remembered, so positions stay gapless and distinct
//! even then.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::index::Indexing;
use super::{Conn, SqliteStore};
use crate::model::{Conv, LogMessage, Page, Pos, Summary, UserId};
use crate::store::{Appended, Committed, Log, NewMessage, Pointer, Refusal, Require, Result};

/// The number of messages appended since the last batch began at which the writer begins the next one.
/// Larger batches write each page of the index fewer times (docs/BENCHMARKS.md, "The log in commit
/// order": in one transaction, 2,048 cost the log nearly twice what 8,192 did on the bench's load),
/// and every read scans the tail.
const INDEX_AT: usize = 8192;

/// How many conversations' last positions the writer keeps in memory at most; past that, at the end of
/// a batch, it forgets those whose rows now hold them.
const REMEMBER: usize = 1 << 20;

/// The columns of a [`LogMessage`] row, from `message m` joined with its sender `u`.
macro_rules! message_columns {
    () => {
        "m.conv, m.pos, m.ts, m.sender, u.name, m.cid, m.time, m.text"
    };
}

/// The messages not yet indexed, as a condition on `message`'s seq (a range of its rowid).
macro_rules! in_tail {
    () => {
        "seq > (SELECT seq FROM indexed)"
    };
}

/// The seqs of conversation `?1`'s messages, indexed or in the tail.
macro_rules! conversation_seqs {
    () => {
        concat!(
            "SELECT seq FROM position WHERE conv = ?1 UNION ALL SELECT seq FROM message WHERE ",
            in_tail!(),
            " AND conv = ?1"
        )
    };
}

/// A page of history: the indexed part's first `?2` positions beyond `?3` (compared with `$cmp`, in
/// `$order`) and the tail's, merged.
macro_rules! history_page {
    ($cmp:literal, $order:literal) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM message m JOIN user u ON u.id = m.sender WHERE m.seq IN (\
             SELECT seq FROM (SELECT seq FROM position WHERE conv = ?1 AND pos ",
            $cmp,
            " ?3 ORDER BY pos ",
            $order,
            " LIMIT ?2) UNION ALL SELECT seq FROM message WHERE ",
            in_tail!(),
            " AND conv = ?1 AND pos ",
            $cmp,
            " ?3) ORDER BY m.pos ",
            $order,
            " LIMIT ?2"
        )
    };
}

/// What the writer remembers of the log between its commits, owned with its connection.
#[derive(Default)]
pub(super) struct Memory {
    /// The last position of each conversation appended to (and the seq of that message) since the
    /// writer last forgot: every conversation with a message in the tail is here.
    last: HashMap<i64, (Pos, i64)>,
    /// Whether `last` holds every conversation of the log (read at start, while the log has at most
    /// [`REMEMBER`], and none forgotten since): then one it does not hold has no message yet, and a
    /// new conversation's first position costs no lookup of a row that is not there (on the bench's
    /// load nearly every message opens a conversation, and that lookup was an eighth of the writer's
    /// time: docs/BENCHMARKS.md, "Where the SQLite log's cost goes").
    complete: bool,
    /// Where the tail's messages with a cid are, by sender and cid (`sent` holds the indexed ones).
    cids: HashMap<(UserId, String), (Committed, i64)>,
    /// Messages appended since the last batch began.
    since_batch: usize,
    /// The seq of the last message in `message` as this writer left it: a different one means someone
    /// else has appended (or deleted the last messages).
    seq: i64,
    /// The batch being indexed, if one is.
    indexing: Option<Indexing>,
}

/// What one append changes in the writer's [`Memory`], applied once its transaction has committed (a
/// failed commit gives out no position).
#[derive(Default)]
struct Changes {
    /// The whole tail was indexed inside the transaction: forget what the [`Memory`] held first.
    indexed: bool,
    last: HashMap<i64, (Pos, i64)>,
    cids: HashMap<(UserId, String), (Committed, i64)>,
    appended: usize,
    seq: i64,
}

impl Memory {
    fn absorb(&mut self, changes: Changes) {
        if changes.indexed {
            *self = Memory::default();
        }
        self.last.extend(changes.last);
        self.cids.extend(changes.cids);
        self.since_batch += changes.appended;
        self.seq = changes.seq;
    }

    /// After [`delete_conversation`] has committed: forgets the conversation's cids (a resend is then
    /// a new message, refused if its group is gone) and the batch under way (it would write their
    /// index rows back; the next begins at the next append).
    pub(super) fn forget(&mut self, deleted: Deleted) {
        if let Some(seq) = deleted.seq {
            self.seq = seq;
        }
        self.cids
            .retain(|_, (committed, _)| committed.conv.key() != deleted.key);
        self.last.remove(&deleted.key);
        self.indexing = None;
        self.since_batch = self.since_batch.max(INDEX_AT);
    }

    /// Writes the next step of the batch under way, beginning one if `at` messages or more have come
    /// since the last began; whether a batch is still under way. A batch that fails is dropped: the
    /// tail is still read, and the next batch begins after `at` more messages.
    fn index_step(&mut self, conn: &mut Connection, at: usize) -> bool {
        if let Err(e) = self.try_index_step(conn, at) {
            tracing::warn!(error = %e, "could not index the log's tail");
            self.indexing = None;
        }
        self.indexing.is_some()
    }

    fn try_index_step(&mut self, conn: &mut Connection, at: usize) -> Result<()> {
        if self.indexing.is_none() && self.since_batch >= at.max(1) {
            self.indexing = Some(Indexing::load(conn)?);
            self.since_batch = 0;
        }
        let Some(batch) = self.indexing.as_mut() else {
            return Ok(());
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if last_seq(&tx)? != self.seq {
            // Someone else has written `message`: the append indexes the whole tail anyway, and this
            // batch's rows may be gone.
            self.indexing = None;
            return Ok(());
        }
        let done = batch.step(&tx)?;
        tx.commit()?;
        if done {
            let upto = batch.upto;
            self.indexing = None;
            // Up to `upto`, cids are in `sent` and last positions in the conversation rows.
            self.cids.retain(|_, (_, seq)| *seq > upto);
            if self.last.len() > REMEMBER {
                self.last.retain(|_, (_, seq)| *seq > upto);
                self.complete = false;
            }
        }
        Ok(())
    }
}

/// A conversation [`delete_conversation`] deleted, for [`Memory::forget`].
pub(super) struct Deleted {
    key: i64,
    /// The last seq now, if the writer was up to date before: the last messages may have gone, and
    /// that is still its own doing, not another writer's.
    seq: Option<i64>,
}

/// Deletes a conversation's messages and everything that points at them, their cids in `sent` first
/// (found through the messages, indexed or in the tail: a batch under way may have written some of the
/// tail's).
pub(super) fn delete_conversation(tx: &Transaction, memory: &Memory, key: i64) -> Result<Deleted> {
    let up_to_date = memory.seq == last_seq(tx)?;
    for statement in [
        concat!(
            "DELETE FROM sent WHERE (sender, cid) IN (SELECT sender, cid FROM message \
             WHERE cid IS NOT NULL AND seq IN (",
            conversation_seqs!(),
            "))"
        ),
        concat!(
            "DELETE FROM message WHERE seq IN (",
            conversation_seqs!(),
            ")"
        ),
        "DELETE FROM position WHERE conv = ?1",
        "DELETE FROM readpos WHERE conv = ?1",
        "DELETE FROM offlinemessage WHERE conv = ?1",
        "DELETE FROM conversation WHERE id = ?1",
    ] {
        tx.execute(statement, params![key])?;
    }
    let seq = if up_to_date {
        Some(last_seq(tx)?)
    } else {
        None
    };
    Ok(Deleted { key, seq })
}

/// The seq of the last message stored.
fn last_seq(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM message")?
        .query_row([], |r| r.get(0))?)
}

/// Indexes the whole tail in one transaction (at start: what a stopped node left unindexed), and
/// what the writer then remembers: every conversation's last position, complete unless there are
/// more than [`REMEMBER`].
pub(super) fn index(conn: &mut Connection) -> Result<Memory> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    Indexing::load(&tx)?.finish(&tx)?;
    let seq = last_seq(&tx)?;
    // One row more than it remembers says there are too many. Seq 0: indexed, so the first forgetting
    // drops them (and makes the memory incomplete).
    let last: HashMap<i64, (Pos, i64)> = tx
        .prepare("SELECT id, last_pos FROM conversation LIMIT ?1")?
        .query_map(params![REMEMBER as i64 + 1], |r| {
            Ok((r.get(0)?, (r.get(1)?, 0)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    tx.commit()?;
    Ok(Memory {
        seq,
        complete: last.len() <= REMEMBER,
        last,
        ..Memory::default()
    })
}

impl SqliteStore {
    /// [`Memory::index_step`] on the writer's connection.
    fn index_step(&self, at: usize) -> bool {
        let mut writer = self.writer.lock();
        let writer = &mut *writer;
        writer.log.index_step(&mut writer.conn, at)
    }

    /// [`Log::append`] on the writer's connection, after a step of indexing if one is due.
    fn append_now(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        self.index_step(INDEX_AT);
        self.write_then(
            |tx, memory| append_in(tx, Some(memory), messages, crate::store::now_ms()),
            Memory::absorb,
        )
    }
}

/// Appends messages inside the migration's transaction, with nothing remembered, and indexes them.
pub(super) fn append_indexed(tx: &Transaction, messages: &[&NewMessage], ts: i64) -> Result<()> {
    append_in(tx, None, messages, ts)?;
    Indexing::load(tx)?.finish(tx)
}

/// [`Log::append`] inside a transaction, every message committed at `ts`, with what the writer
/// remembers (`None`: nothing); and what it changes in memory.
fn append_in(
    tx: &Transaction,
    memory: Option<&Memory>,
    messages: &[&NewMessage],
    ts: i64,
) -> Result<(Vec<Appended>, Changes)> {
    // The last seq before this append; each insert then moves it (AUTOINCREMENT: the newest is the last).
    let mut changes = Changes {
        seq: last_seq(tx)?,
        ..Changes::default()
    };
    let memory = match memory {
        Some(m) if m.seq == changes.seq => Some(m),
        _ => {
            Indexing::load(tx)?.finish(tx)?;
            changes.indexed = true;
            None
        }
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO message (conv, pos, sender, ts, cid, time, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    // A group message's offline recipients were worked out before the commit: one who has left or been
    // removed since gets nothing committed after that (a group's key is minus its id).
    let mut offline = tx.prepare_cached(
        "INSERT INTO offlinemessage (userid, conv, pos) SELECT ?1, ?2, ?3 WHERE ?2 > 0 \
         OR EXISTS (SELECT 1 FROM groupuser WHERE groupid = -?2 AND userid = ?1)",
    )?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(cid) = m.cid.as_deref()
            && let Some(first) = earlier(tx, memory, &changes, m.sender, cid)?
        {
            out.push(Ok(Committed {
                duplicate: true,
                ..first
            }));
            continue;
        }
        let members_version = match condition(tx, m)? {
            Ok(version) => version,
            Err(refusal) => {
                out.push(Err(refusal));
                continue;
            }
        };
        let key = m.conv.key();
        let pos = next_pos(tx, memory, &changes, key)?;
        insert.execute(params![key, pos, m.sender, ts, m.cid, m.time, m.text])?;
        let seq = tx.last_insert_rowid();
        changes.seq = seq;
        changes.last.insert(key, (pos, seq));
        changes.appended += 1;
        for &user in &m.offline {
            offline.execute(params![user, key, pos])?;
        }
        let committed = Committed {
            conv: m.conv,
            pos,
            ts,
            duplicate: false,
            members_version,
        };
        if let Some(cid) = &m.cid {
            changes
                .cids
                .insert((m.sender, cid.clone()), (committed, seq));
        }
        out.push(Ok(committed));
    }
    Ok((out, changes))
}

/// The conversation's next position: one past the last this batch, the writer's memory or its row has
/// (none when the memory is complete and does not know it).
fn next_pos(tx: &Transaction, memory: Option<&Memory>, changes: &Changes, key: i64) -> Result<Pos> {
    let remembered = changes
        .last
        .get(&key)
        .or_else(|| memory.and_then(|m| m.last.get(&key)));
    let last = match remembered {
        Some(&(last, _)) => last,
        None if memory.is_some_and(|m| m.complete) => 0,
        None => tx
            .prepare_cached("SELECT last_pos FROM conversation WHERE id = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    };
    Ok(last + 1)
}

/// Where the sender's message with this cid was committed, if it was: in this batch, in the tail, or
/// indexed in `sent` (a message since deleted with its group counts as never sent).
fn earlier(
    tx: &Transaction,
    memory: Option<&Memory>,
    changes: &Changes,
    sender: UserId,
    cid: &str,
) -> Result<Option<Committed>> {
    let key = (sender, cid.to_owned());
    if let Some((c, _)) = changes
        .cids
        .get(&key)
        .or_else(|| memory.and_then(|m| m.cids.get(&key)))
    {
        return Ok(Some(*c));
    }
    let found: Option<(i64, Pos, i64)> = tx
        .prepare_cached(
            "SELECT m.conv, m.pos, m.ts FROM sent s JOIN message m ON m.seq = s.seq \
             WHERE s.sender = ?1 AND s.cid = ?2",
        )?
        .query_row(params![sender, cid], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(found.and_then(|(key, pos, ts)| {
        Some(Committed {
            conv: Conv::from_key(key)?,
            pos,
            ts,
            duplicate: true,
            members_version: 0,
        })
    }))
}

/// Whether `m` may be appended, checking its [`Require`] inside the append's transaction `tx`: the group's
/// member-list version (0 for one-to-one), or why not. Statements are prepared (cached) at their first
/// use: the conversion of migration 2 appends before the tables of later migrations exist.
fn condition(tx: &Transaction, m: &NewMessage) -> Result<std::result::Result<i64, Refusal>> {
    Ok(match (m.require, m.conv) {
        (Require::NotBlocked, conv) => {
            let peer = conv.peer_of(m.sender).unwrap_or(m.sender);
            let blocked = tx
                .prepare_cached("SELECT 1 FROM userblock WHERE userid = ?1 AND blockedid = ?2")?
                .query_row(params![peer, m.sender], |_| Ok(()))
                .optional()?;
            blocked.map_or(Ok(0), |()| Err(Refusal::Blocked))
        }
        (Require::Member, Conv::Group(group)) => {
            let row: Option<(i64, bool)> = tx
                .prepare_cached(
                    "SELECT g.version, EXISTS (SELECT 1 FROM groupuser gu WHERE gu.groupid = g.id \
                     AND gu.userid = ?2) FROM allgroup g WHERE g.id = ?1",
                )?
                .query_row(params![group, m.sender], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match row {
                None => Err(Refusal::NoGroup),
                Some((_, false)) => Err(Refusal::NotMember),
                Some((version, true)) => Ok(version),
            }
        }
        _ => Ok(0),
    })
}

/// A [`LogMessage`] from a row of [`message_columns`] (starting at column `at`).
fn log_message(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Option<LogMessage>> {
    let key: i64 = r.get(at)?;
    let Some(conv) = Conv::from_key(key) else {
        return Ok(None);
    };
    Ok(Some(LogMessage {
        conv,
        pos: r.get(at + 1)?,
        ts: r.get(at + 2)?,
        sender: r.get(at + 3)?,
        sender_name: r.get(at + 4)?,
        cid: r.get(at + 5)?,
        time: r.get(at + 6)?,
        text: r.get(at + 7)?,
    }))
}

/// A [`Summary`] from `(key, name, last, last_ts, read, peer_read)`, for the conversation `conv`.
fn summary(r: &rusqlite::Row, conv: Option<Conv>) -> rusqlite::Result<Option<Summary>> {
    let peer_read: Option<Pos> = r.get(5)?;
    Ok(conv.map(|conv| Summary {
        conv,
        name: r.get(1).unwrap_or_default(),
        last: r.get(2).unwrap_or_default(),
        last_ts: r.get(3).unwrap_or_default(),
        read: r.get(4).unwrap_or_default(),
        peer_read,
    }))
}

/// `user`'s one-to-one conversations, rows and tail merged: the rows where they are `lo` (a range of
/// keys: ?2..?3) or `hi`, and the tail's messages of either kind. `mine` and `theirs` are the read
/// positions of the user and of the peer (whose own messages count as read).
const DIRECT_SUMMARIES: &str = concat!(
    "WITH parts (id, last, ts, mine, theirs) AS (\
     SELECT id, last_pos, last_ts, lo_read, hi_read FROM conversation WHERE id BETWEEN ?2 AND ?3 \
     UNION ALL SELECT id, last_pos, last_ts, hi_read, lo_read FROM conversation WHERE hi = ?1 AND lo <> ?1 \
     UNION ALL SELECT conv, max(pos), max(ts), max(iif(sender = ?1, pos, 0)), \
     max(iif(sender = iif(conv BETWEEN ?2 AND ?3, conv % 2147483648, conv / 2147483648), pos, 0)) \
     FROM message WHERE ",
    in_tail!(),
    " AND (conv BETWEEN ?2 AND ?3 OR (conv > 0 AND conv % 2147483648 = ?1)) GROUP BY conv) \
     SELECT p.id, u.name, max(p.last), max(p.ts), max(p.mine), max(p.theirs) FROM parts p \
     JOIN user u ON u.id = iif(p.id BETWEEN ?2 AND ?3, p.id % 2147483648, p.id / 2147483648) \
     GROUP BY p.id"
);

/// `user`'s groups, their rows and their tail merged (`?1`: the user).
const GROUP_SUMMARIES: &str = concat!(
    "SELECT g.id, g.groupname, max(COALESCE(c.last_pos, 0), COALESCE(t.last, 0)), \
     max(COALESCE(c.last_ts, 0), COALESCE(t.ts, 0)), max(COALESCE(r.pos, 0), COALESCE(t.mine, 0)), NULL \
     FROM groupuser gu JOIN allgroup g ON g.id = gu.groupid \
     LEFT JOIN conversation c ON c.id = -g.id \
     LEFT JOIN readpos r ON r.userid = gu.userid AND r.conv = -g.id \
     LEFT JOIN (SELECT conv, max(pos) AS last, max(ts) AS ts, max(iif(sender = ?1, pos, 0)) AS mine \
     FROM message WHERE ",
    in_tail!(),
    " AND conv < 0 GROUP BY conv) t ON t.conv = -g.id WHERE gu.userid = ?1"
);

impl Log for SqliteStore {
    fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        self.append_now(messages)
    }

    /// A step of indexing, beginning a batch of whatever the tail holds.
    fn catch_up(&self) -> bool {
        self.index_step(1)
    }

    fn store_offline(&self, pointers: &[Pointer]) -> Result<()> {
        if pointers.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO offlinemessage (userid, conv, pos) VALUES (?1, ?2, ?3)",
            )?;
            for p in pointers {
                insert.execute(params![p.user, p.conv.key(), p.pos])?;
            }
            Ok(())
        })
    }

    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>> {
        self.write(|tx| {
            let mut select = tx.prepare_cached(concat!(
                "SELECT o.id, ",
                message_columns!(),
                " FROM offlinemessage o JOIN message m ON m.seq = COALESCE(\
                 (SELECT p.seq FROM position p WHERE p.conv = o.conv AND p.pos = o.pos), \
                 (SELECT t.seq FROM message t WHERE t.",
                in_tail!(),
                " AND t.conv = o.conv AND t.pos = o.pos)) \
                 JOIN user u ON u.id = m.sender WHERE o.userid = ?1 ORDER BY o.id LIMIT ?2"
            ))?;
            let rows: Vec<(i64, Option<LogMessage>)> = select
                .query_map(params![user, limit as i64], |r| {
                    Ok((r.get(0)?, log_message(r, 1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            if let Some((last, _)) = rows.last() {
                tx.execute(
                    "DELETE FROM offlinemessage WHERE userid = ?1 AND id <= ?2",
                    params![user, last],
                )?;
            }
            Ok(rows.into_iter().filter_map(|(_, m)| m).collect())
        })
    }

    fn conversations(&self, user: UserId) -> Result<Vec<Summary>> {
        let conn = self.conn()?;
        let (first, last) = Conv::keys_led_by(user);
        let mut out: Vec<Summary> = conn
            .prepare_cached(DIRECT_SUMMARIES)?
            .query_map(params![user, first, last], |r| {
                summary(r, Conv::from_key(r.get(0)?))
            })?
            .filter_map(|s| s.transpose())
            .collect::<rusqlite::Result<_>>()?;
        let groups = conn
            .prepare_cached(GROUP_SUMMARIES)?
            .query_map(params![user], |r| summary(r, Some(Conv::Group(r.get(0)?))))?
            .filter_map(|s| s.transpose())
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.extend(groups);
        Ok(out)
    }

    fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)> {
        let conn: Conn = self.conn()?;
        let (sql, at) = match page {
            Page::Latest => (history_page!("<", "DESC"), Pos::MAX),
            Page::Before(p) => (history_page!("<", "DESC"), p),
            Page::After(p) => (history_page!(">", "ASC"), p),
        };
        let mut messages: Vec<LogMessage> = conn
            .prepare_cached(sql)?
            .query_map(params![conv.key(), limit as i64 + 1, at], |r| {
                log_message(r, 0)
            })?
            .filter_map(|m| m.transpose())
            .collect::<rusqlite::Result<_>>()?;
        Ok(crate::store::page_out(&mut messages, page, limit))
    }

    fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)> {
        self.write(|tx| {
            let key = conv.key();
            let [lo_reads, hi_reads] = conv.read_sides(user);
            // The last message and the user's read position (their own messages count as read), the
            // row's and the tail's.
            let (last, last_ts, current): (Pos, i64, Pos) = tx
                .prepare_cached(concat!(
                    "SELECT max(COALESCE(c.last_pos, 0), COALESCE(t.last, 0)), \
                     max(COALESCE(c.last_ts, 0), COALESCE(t.ts, 0)), \
                     max(COALESCE(CASE WHEN ?1 < 0 THEN \
                     (SELECT r.pos FROM readpos r WHERE r.userid = ?2 AND r.conv = ?1) \
                     WHEN ?3 THEN c.lo_read WHEN ?4 THEN c.hi_read END, 0), COALESCE(t.mine, 0)) \
                     FROM (SELECT max(pos) AS last, max(ts) AS ts, max(iif(sender = ?2, pos, 0)) AS mine \
                     FROM message WHERE ",
                    in_tail!(),
                    " AND conv = ?1) t LEFT JOIN conversation c ON c.id = ?1"
                ))?
                .query_row(params![key, user, lo_reads, hi_reads], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let target = pos.min(last);
            if target <= current {
                return Ok((current, false));
            }
            if let Conv::Group(_) = conv {
                tx.execute(
                    "INSERT INTO readpos (userid, conv, pos) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (userid, conv) DO UPDATE SET pos = max(pos, excluded.pos)",
                    params![user, key, target],
                )?;
            } else {
                // The row may not exist yet (the conversation is all in the tail); indexing keeps the
                // larger of each position.
                let (lo, hi) = conv.users().unzip();
                tx.execute(
                    "INSERT INTO conversation (id, lo, hi, last_pos, last_ts, lo_read, hi_read) \
                     VALUES (?1, ?5, ?6, ?7, ?8, iif(?2, ?4, 0), iif(?3, ?4, 0)) \
                     ON CONFLICT (id) DO UPDATE SET lo_read = iif(?2, ?4, lo_read), \
                     hi_read = iif(?3, ?4, hi_read)",
                    params![key, lo_reads, hi_reads, target, lo, hi, last, last_ts],
                )?;
            }
            Ok((target, true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GroupId;
    use crate::store::{Accounts, Groups};

    fn open(path: &std::path::Path) -> SqliteStore {
        SqliteStore::open(path.join("chat.db").to_str().unwrap(), 2).unwrap()
    }

    fn message(sender: UserId, conv: Conv, cid: Option<&str>, offline: &[UserId]) -> NewMessage {
        NewMessage {
            conv,
            sender,
            cid: cid.map(str::to_owned),
            time: "t".to_owned(),
            text: format!("{sender} to {conv:?}"),
            offline: offline.to_vec(),
            require: Require::Nothing,
        }
    }

    /// Appends one message and returns where it went.
    fn send(store: &SqliteStore, m: NewMessage) -> Committed {
        store.append(&[&m]).unwrap().remove(0).unwrap()
    }

    fn positions(page: (Vec<LogMessage>, bool)) -> (Vec<Pos>, bool) {
        (page.0.iter().map(|m| m.pos).collect(), page.1)
    }

    type Listed = (Conv, Pos, Pos, Option<Pos>);

    fn sorted(mut list: Vec<Listed>) -> Vec<Listed> {
        list.sort_by_key(|s| s.0.key());
        list
    }

    /// `(conv, last, read, peer_read)` of each of the user's conversations, by conversation.
    fn listed(store: &SqliteStore, user: UserId) -> Vec<Listed> {
        sorted(
            store
                .conversations(user)
                .unwrap()
                .into_iter()
                .map(|s| (s.conv, s.last, s.read, s.peer_read))
                .collect(),
        )
    }

    /// A store with users `a` and `b` and the group `g` that `a` created and `b` joined.
    fn two_in_a_group(dir: &std::path::Path) -> (SqliteStore, [UserId; 2], GroupId) {
        let store = open(dir);
        let [a, b] = ["a", "b"].map(|n| store.create_user(n, "h").unwrap());
        let g = store.create_group(a, "g", "").unwrap();
        store.join_group(g, b).unwrap();
        (store, [a, b], g)
    }

    fn index_now(store: &SqliteStore) {
        let mut writer = store.writer.lock();
        let writer = &mut *writer;
        writer.log = index(&mut writer.conn).unwrap();
    }

    /// Whether every message stored is indexed.
    fn all_indexed(store: &SqliteStore) -> bool {
        let conn = store.conn().unwrap();
        let indexed: i64 = conn
            .query_row("SELECT seq FROM indexed", [], |r| r.get(0))
            .unwrap();
        indexed == last_seq(&conn).unwrap()
    }

    /// Every read gives the same answer whether the messages are in the tail or indexed, and positions,
    /// cids and offline pointers go on across the index.
    #[test]
    fn reads_are_the_same_before_and_after_the_tail_is_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let [a, b, c] = ["a", "b", "c"].map(|n| store.create_user(n, "h").unwrap());
        let g = store.create_group(a, "g", "").unwrap();
        store.join_group(g, b).unwrap();
        let (ab, aa, ac, group) = (
            Conv::direct(a, b),
            Conv::direct(a, a),
            Conv::direct(a, c),
            Conv::Group(g),
        );
        for (i, sender) in [a, b, a, b, a].into_iter().enumerate() {
            let cid = format!("ab{i}");
            assert_eq!(
                send(&store, message(sender, ab, Some(&cid), &[])).pos,
                i as Pos + 1
            );
        }
        send(&store, message(a, aa, None, &[]));
        for sender in [a, a, b] {
            send(&store, message(sender, group, None, &[]));
        }
        send(&store, message(a, ac, None, &[c]));
        assert_eq!(store.mark_read(b, ab, 9).unwrap(), (5, true));
        assert_eq!(store.mark_read(b, ab, 3).unwrap(), (5, false));
        let reads = |store: &SqliteStore| {
            (
                listed(store, a),
                listed(store, b),
                listed(store, c),
                positions(store.history(ab, Page::Latest, 2).unwrap()),
                positions(store.history(ab, Page::Before(3), 5).unwrap()),
                positions(store.history(ab, Page::After(3), 1).unwrap()),
                positions(store.history(group, Page::After(0), 5).unwrap()),
            )
        };
        let before = reads(&store);
        assert_eq!(
            before.0,
            sorted(vec![
                (ab, 5, 5, Some(5)),
                (aa, 1, 1, Some(1)),
                (ac, 1, 1, Some(0)),
                (group, 3, 2, None),
            ])
        );
        assert_eq!(
            before.1,
            sorted(vec![(ab, 5, 5, Some(5)), (group, 3, 3, None)])
        );
        assert_eq!(before.2, vec![(ac, 1, 0, Some(1))]);
        assert_eq!(before.3, (vec![4, 5], true));
        assert_eq!(before.4, (vec![1, 2], false));
        assert_eq!(before.5, (vec![4], true));
        assert_eq!(before.6, (vec![1, 2, 3], false));

        // A batch written a step at a time: between steps, some messages are both indexed and in the
        // tail, and every read is still the same.
        let mut batch = Indexing::load(&store.writer.lock().conn).unwrap();
        let mut steps = 0;
        loop {
            let done = {
                let mut writer = store.writer.lock();
                let tx = writer.conn.transaction().unwrap();
                let done = batch.step(&tx).unwrap();
                tx.commit().unwrap();
                done
            };
            steps += 1;
            if done {
                break;
            }
            assert_eq!(reads(&store), before, "after step {steps}");
        }
        assert_eq!(steps, 4, "positions, conversations, cids, group reads");
        assert!(all_indexed(&store));
        assert_eq!(reads(&store), before);
        // Written again (a batch cut short by a crash is), it changes nothing.
        {
            let mut writer = store.writer.lock();
            let tx = writer.conn.transaction().unwrap();
            tx.execute("UPDATE indexed SET seq = 0", []).unwrap();
            tx.commit().unwrap();
        }
        index_now(&store);
        assert!(all_indexed(&store));
        assert_eq!(reads(&store), before);

        // A resent cid, now indexed, is the first message; new messages go on from the last position,
        // the new one in the tail and the rest indexed, read as one.
        let again = send(&store, message(b, ab, Some("ab1"), &[]));
        assert_eq!((again.pos, again.duplicate), (2, true));
        assert_eq!(send(&store, message(b, ab, None, &[])).pos, 6);
        assert_eq!(send(&store, message(b, group, None, &[])).pos, 4);
        assert_eq!(
            positions(store.history(ab, Page::Latest, 3).unwrap()),
            (vec![4, 5, 6], true)
        );
        assert_eq!(
            positions(store.history(ab, Page::After(4), 5).unwrap()),
            (vec![5, 6], false)
        );
        let offline = store.take_offline(c, 10).unwrap();
        assert_eq!(
            offline.iter().map(|m| (m.conv, m.pos)).collect::<Vec<_>>(),
            vec![(ac, 1)]
        );
        assert!(store.take_offline(c, 10).unwrap().is_empty());
    }

    /// A group dissolved while a batch is half written leaves nothing of it behind: not in the tail,
    /// not in what the batch had written, not in what it would have written after.
    #[test]
    fn a_group_dissolved_during_a_batch_leaves_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, [a, b], g) = two_in_a_group(dir.path());
        let (ab, group) = (Conv::direct(a, b), Conv::Group(g));
        for sender in [a, b, a] {
            send(&store, message(sender, group, None, &[]));
            send(&store, message(sender, ab, None, &[]));
        }
        // The next append begins a batch and writes its first step (the positions).
        store.writer.lock().log.since_batch = INDEX_AT;
        send(&store, message(a, ab, None, &[]));
        assert!(store.writer.lock().log.indexing.is_some());
        store.dissolve_group(g).unwrap();
        while {
            send(&store, message(b, ab, None, &[]));
            store.writer.lock().log.indexing.is_some()
        } {}
        let conn = store.conn().unwrap();
        for table in ["position", "conversation", "readpos", "message"] {
            let column = if table == "conversation" {
                "id"
            } else {
                "conv"
            };
            let rows: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"),
                    params![group.key()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rows, 0, "{table}");
        }
        let (read, more) = positions(store.history(ab, Page::After(0), 20).unwrap());
        assert_eq!(read, (1..=read.len() as Pos).collect::<Vec<_>>());
        assert!(read.len() > 5 && !more);
    }

    /// Dissolving a group takes its messages' cids out of `sent`: those indexed, and those a batch under
    /// way had already written for the tail; the one-to-one cids stay.
    #[test]
    fn a_dissolved_groups_cids_leave_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, [a, b], g) = two_in_a_group(dir.path());
        let (ab, group) = (Conv::direct(a, b), Conv::Group(g));
        send(&store, message(a, group, Some("g-1"), &[]));
        send(&store, message(b, ab, Some("ab-1"), &[]));
        index_now(&store);
        send(&store, message(b, group, Some("g-2"), &[]));
        store.writer.lock().log.since_batch = INDEX_AT;
        let conn = store.conn().unwrap();
        let cids = || -> Vec<String> {
            conn.prepare("SELECT cid FROM sent ORDER BY cid")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        // One step an append: the batch writes the tail's positions and conversation rows, then its cids.
        let mut n = 2;
        while !cids().contains(&"g-2".to_owned()) {
            assert!(n < 10, "the batch never wrote the tail's cids");
            send(&store, message(a, ab, Some(&format!("ab-{n}")), &[]));
            n += 1;
        }
        store.dissolve_group(g).unwrap();
        index_now(&store);
        let expected: Vec<String> = (1..n).map(|i| format!("ab-{i}")).collect();
        assert_eq!(cids(), expected);
    }

    /// A group dissolved while its newest message, with a cid, is still in the tail: a resend of that
    /// cid is refused (the group is gone), not acknowledged as the deleted message; and the writer,
    /// whose last message was deleted, still catches up at rest.
    #[test]
    fn a_dissolved_groups_tail_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let [a, b] = ["a", "b"].map(|n| store.create_user(n, "h").unwrap());
        let g = store.create_group(a, "g", "").unwrap();
        let member = |cid: &str| NewMessage {
            require: Require::Member,
            ..message(a, Conv::Group(g), Some(cid), &[])
        };
        send(&store, message(a, Conv::direct(a, b), None, &[]));
        assert_eq!(send(&store, member("x")).pos, 1);
        store.dissolve_group(g).unwrap();
        assert_eq!(
            store.append(&[&member("x")]).unwrap(),
            vec![Err(Refusal::NoGroup)]
        );
        assert!(!all_indexed(&store));
        while store.catch_up() {}
        assert!(
            all_indexed(&store),
            "the writer still knows the tail is its own"
        );
    }

    /// A reopened store goes on from every conversation's last position, indexed or left in the tail
    /// when it stopped, without asking the database for any (its memory is complete); a conversation
    /// it does not know starts at 1.
    #[test]
    fn a_reopened_store_goes_on_from_every_conversations_last_position() {
        let dir = tempfile::tempdir().unwrap();
        let (store, [a, b], g) = two_in_a_group(dir.path());
        let c = store.create_user("c", "h").unwrap();
        send(&store, message(a, Conv::direct(a, b), None, &[]));
        send(&store, message(b, Conv::direct(a, b), None, &[]));
        while store.catch_up() {}
        send(&store, message(a, Conv::Group(g), None, &[]));
        drop(store);
        let store = open(dir.path());
        assert!(store.writer.lock().log.complete);
        let next = |sender, conv| send(&store, message(sender, conv, None, &[])).pos;
        assert_eq!(next(a, Conv::direct(a, b)), 3);
        assert_eq!(next(b, Conv::Group(g)), 2);
        assert_eq!(next(c, Conv::direct(a, c)), 1);
        assert_eq!(next(a, Conv::direct(a, c)), 2);
    }

    /// `catch_up` indexes whatever the tail holds, a step a call, and then has nothing left to do.
    #[test]
    fn catching_up_indexes_the_whole_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let [a, b] = ["a", "b"].map(|n| store.create_user(n, "h").unwrap());
        assert!(!store.catch_up(), "nothing to do on a fresh database");
        for (i, sender) in [a, b, a].into_iter().enumerate() {
            let cid = format!("m{i}");
            send(&store, message(sender, Conv::direct(a, b), Some(&cid), &[]));
        }
        assert!(!all_indexed(&store));
        let mut steps = 1;
        while store.catch_up() {
            steps += 1;
        }
        assert!(all_indexed(&store));
        assert_eq!(steps, 3, "positions, conversation, cids");
        assert!(!store.catch_up());
        let again = send(&store, message(a, Conv::direct(a, b), Some("m2"), &[]));
        assert_eq!((again.pos, again.duplicate), (3, true));
    }

    /// One append of many messages (more than a commit gathers): every message at its position with its
    /// own text, a cid repeated inside the append answered with the first, and the writer's memory left
    /// at the last seq (else the next append would index the whole tail again).
    #[test]
    fn one_append_of_many_messages_keeps_each_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let [a, b, c] = ["a", "b", "c"].map(|n| store.create_user(n, "h").unwrap());
        let convs = [Conv::direct(a, b), Conv::direct(a, c), Conv::direct(b, c)];
        let batch: Vec<NewMessage> = (0..37)
            .map(|i| NewMessage {
                text: format!("m{i}"),
                ..message(a, convs[i % 3], Some(&format!("c{}", i.min(35))), &[])
            })
            .collect();
        let placed: Vec<Committed> = store
            .append(&batch.iter().collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<(Conv, Pos, bool)> = (0..37)
            .map(|i| match i {
                36 => (convs[35 % 3], 12, true),
                _ => (convs[i % 3], i as Pos / 3 + 1, false),
            })
            .collect();
        let got: Vec<(Conv, Pos, bool)> = placed
            .iter()
            .map(|c| (c.conv, c.pos, c.duplicate))
            .collect();
        assert_eq!(got, expected);
        let remembered = store.writer.lock().log.seq;
        assert_eq!(remembered, last_seq(&store.conn().unwrap()).unwrap());
        let texts = |conv: Conv| -> Vec<String> {
            let page = store.history(conv, Page::After(0), 50).unwrap().0;
            page.into_iter().map(|m| m.text).collect()
        };
        let before = convs.map(texts);
        assert_eq!(
            before[0],
            (0..36)
                .step_by(3)
                .map(|i| format!("m{i}"))
                .collect::<Vec<_>>()
        );
        index_now(&store);
        assert_eq!(convs.map(texts), before);
        let again = send(&store, message(a, convs[1], Some("c34"), &[]));
        assert_eq!(
            (again.conv, again.pos, again.duplicate),
            (convs[1], 12, true)
        );
    }

    /// Two stores appending to one file in turn (two processes on one database) give out consecutive,
    /// distinct positions, and each sees the other's cids.
    #[test]
    fn another_writer_on_the_same_file_gets_the_next_positions() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path());
        let [a, b] = ["a", "b"].map(|n| first.create_user(n, "h").unwrap());
        let second = open(dir.path());
        let ab = Conv::direct(a, b);
        let mut given = Vec::new();
        for i in 0..10 {
            let store = if i % 3 == 0 { &second } else { &first };
            let cid = format!("m{i}");
            given.push(send(store, message(a, ab, Some(&cid), &[])).pos);
        }
        assert_eq!(given, (1..=10).collect::<Vec<Pos>>());
        let resent = send(&second, message(a, ab, Some("m8"), &[]));
        assert_eq!((resent.pos, resent.duplicate), (9, true));
        assert_eq!(
            positions(first.history(ab, Page::Latest, 20).unwrap()),
            ((1..=10).collect(), false)
        );
    }
}
