//! Bringing the log's index up to date with its tail, a step at a time.
//!
//! The tail (the messages past `indexed.seq`) is read once into memory, without texts, and sorted into
//! what it adds to each indexed table: `position` (conv, pos) → seq, `conversation` rows (last position
//! and time, the one-to-one read positions), `sent` (sender, cid) → seq and the group senders' `readpos`
//! rows. Written in key order, many entries share a page, so each page is written about once per batch
//! instead of once per message (docs/BENCHMARKS.md, "The log in commit order"). The writer writes one
//! [`Step`] of at most [`STEP_ROWS`] rows per transaction, before each append (and one after another
//! while it has no work), so no append waits for a whole batch; the last step moves `indexed.seq`.
//! Every step can be written twice (positions are inserted only if absent, every other value only ever
//! grows), so a batch cut short by a crash, or one overtaken by another writer's, is simply written
//! again from the watermark.

use std::collections::{BTreeMap, VecDeque};

use rusqlite::{Connection, Transaction, params};

use crate::model::{Conv, Pos, UserId};
use crate::store::Result;

/// The most rows one step writes: a transaction of a few milliseconds.
const STEP_ROWS: usize = 512;

/// A batch of the tail being indexed: the steps left to write, and the last seq it covers.
pub(super) struct Indexing {
    pub(super) upto: i64,
    steps: VecDeque<Step>,
}

/// Rows for one indexed table, in key order.
enum Step {
    Positions(Vec<(i64, Pos, i64)>),
    Conversations(Vec<(i64, Aggregate)>),
    Sent(Vec<(UserId, String, i64)>),
    Reads(Vec<((UserId, i64), Pos)>),
}

/// What a batch's messages say of one conversation.
#[derive(Default, Clone, Copy)]
struct Aggregate {
    last: Pos,
    ts: i64,
    lo_read: Pos,
    hi_read: Pos,
}

/// One message of the tail, as the index needs it.
struct Row {
    seq: i64,
    conv: i64,
    pos: Pos,
    sender: UserId,
    ts: i64,
    cid: Option<String>,
}

/// The users of the one-to-one conversation a key names; `None` for a group.
fn users(conv: i64) -> Option<(UserId, UserId)> {
    Conv::from_key(conv).and_then(Conv::users)
}

impl Indexing {
    /// Reads the tail, up to the last message stored, and sorts it into steps.
    pub(super) fn load(conn: &Connection) -> Result<Indexing> {
        let (from, upto): (i64, i64) = conn.query_row(
            "SELECT (SELECT seq FROM indexed), (SELECT COALESCE(MAX(seq), 0) FROM message)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let rows = conn
            .prepare_cached(
                "SELECT seq, conv, pos, sender, ts, cid FROM message WHERE seq > ?1 AND seq <= ?2",
            )?
            .query_map(params![from, upto], |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    conv: r.get(1)?,
                    pos: r.get(2)?,
                    sender: r.get(3)?,
                    ts: r.get(4)?,
                    cid: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<Row>>>()?;
        Ok(Indexing {
            upto,
            steps: steps(rows),
        })
    }

    /// Writes the next step in `tx`; whether that was the last (and `indexed.seq` moved).
    pub(super) fn step(&mut self, tx: &Transaction) -> Result<bool> {
        if let Some(step) = self.steps.pop_front() {
            step.write(tx)?;
        }
        if !self.steps.is_empty() {
            return Ok(false);
        }
        tx.execute("UPDATE indexed SET seq = max(seq, ?1)", params![self.upto])?;
        Ok(true)
    }

    /// Writes every step in `tx`.
    pub(super) fn finish(mut self, tx: &Transaction) -> Result<()> {
        while !self.step(tx)? {}
        Ok(())
    }
}

/// The tail's rows as steps: positions, conversations, cids, group read positions, each sorted by key
/// and cut at [`STEP_ROWS`].
fn steps(rows: Vec<Row>) -> VecDeque<Step> {
    let mut positions: Vec<(i64, Pos, i64)> = Vec::with_capacity(rows.len());
    let mut conversations: BTreeMap<i64, Aggregate> = BTreeMap::new();
    let mut sent: Vec<(UserId, String, i64)> = Vec::new();
    let mut reads: BTreeMap<(UserId, i64), Pos> = BTreeMap::new();
    for row in rows {
        positions.push((row.conv, row.pos, row.seq));
        let c = conversations.entry(row.conv).or_default();
        c.last = c.last.max(row.pos);
        c.ts = c.ts.max(row.ts);
        match users(row.conv) {
            Some((lo, hi)) => {
                let sender = row.sender;
                if sender == lo {
                    c.lo_read = c.lo_read.max(row.pos);
                }
                if sender == hi {
                    c.hi_read = c.hi_read.max(row.pos);
                }
            }
            None => {
                let read = reads.entry((row.sender, row.conv)).or_default();
                *read = (*read).max(row.pos);
            }
        }
        if let Some(cid) = row.cid {
            sent.push((row.sender, cid, row.seq));
        }
    }
    positions.sort_unstable();
    sent.sort_unstable();
    let mut steps = VecDeque::new();
    cut(&mut steps, positions, Step::Positions);
    cut(
        &mut steps,
        conversations.into_iter().collect(),
        Step::Conversations,
    );
    cut(&mut steps, sent, Step::Sent);
    cut(&mut steps, reads.into_iter().collect(), Step::Reads);
    steps
}

/// Appends `rows` to `steps` in pieces of at most [`STEP_ROWS`].
fn cut<T>(steps: &mut VecDeque<Step>, mut rows: Vec<T>, step: fn(Vec<T>) -> Step) {
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(STEP_ROWS));
        steps.push_back(step(rows));
        rows = rest;
    }
}

impl Step {
    fn write(self, tx: &Transaction) -> Result<()> {
        match self {
            Step::Positions(rows) => {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO position (conv, pos, seq) VALUES (?1, ?2, ?3)",
                )?;
                for (conv, pos, seq) in rows {
                    insert.execute(params![conv, pos, seq])?;
                }
            }
            Step::Conversations(rows) => {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO conversation (id, lo, hi, last_pos, last_ts, lo_read, hi_read) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET \
                     last_pos = max(last_pos, excluded.last_pos), \
                     last_ts = max(last_ts, excluded.last_ts), \
                     lo_read = max(lo_read, excluded.lo_read), hi_read = max(hi_read, excluded.hi_read)",
                )?;
                for (conv, c) in rows {
                    let (lo, hi) = users(conv).unzip();
                    upsert.execute(params![conv, lo, hi, c.last, c.ts, c.lo_read, c.hi_read])?;
                }
            }
            Step::Sent(rows) => {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO sent (sender, cid, seq) VALUES (?1, ?2, ?3)",
                )?;
                for (sender, cid, seq) in rows {
                    insert.execute(params![sender, cid, seq])?;
                }
            }
            Step::Reads(rows) => {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO readpos (userid, conv, pos) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (userid, conv) DO UPDATE SET pos = max(pos, excluded.pos)",
                )?;
                for ((user, conv), pos) in rows {
                    upsert.execute(params![user, conv, pos])?;
                }
            }
        }
        Ok(())
    }
}
