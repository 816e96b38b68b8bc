//! The message log on SQLite: each commit's messages as one row of `chunk` ([`super::chunk`]), found
//! through an index in memory ([`Index`]).
//!
//! An append writes one row (or one per [`CHUNK_MAX`] messages), the offline pointers and the cids it
//! has, and nothing else: a row per message cost a b-tree entry per message, and an index on disk three
//! more at random places in the file on a busy node (docs/BENCHMARKS.md, "A log written a commit at a
//! time"). Positions come from the index: SQLite has one writer, and this store is the only one on its
//! file. Read positions are `readpos` rows, moved only by READ; a participant's own messages count as
//! read through the index. A resent cid is found in `sent`, written with its message.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::chunk::{self, Body, BodyRef, CHUNK_MAX, Head, Loc};
use super::index::Index;
use super::{Conn, SqliteStore};
use crate::model::{Conv, LogMessage, Page, Pos, Summary, UserId};
use crate::store::{
    Appended, Committed, Indexed, Log, NewMessage, Pointer, Refusal, Require, Result,
};

/// What an append leaves for the index once it has committed: each message's head and place.
pub(super) type Placed = Vec<(Head, Loc)>;

impl SqliteStore {
    /// [`Log::append`] on the writer's connection; the index learns the messages once they are committed.
    fn append_now(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        self.write_then(
            |tx, index| append_in(tx, index, messages, crate::store::now_ms()),
            |index, placed| {
                for (head, loc) in placed {
                    index.add(head, loc);
                }
            },
        )
    }
}

/// Appends messages inside the migration's transaction (the old offline frames converted).
pub(super) fn append_converted(tx: &Transaction, messages: &[&NewMessage], ts: i64) -> Result<()> {
    append_in(tx, &Index::load(tx)?, messages, ts)?;
    Ok(())
}

/// [`Log::append`] inside a transaction, every message committed at `ts`, positions given on from
/// `index`; and where each message went.
fn append_in(
    tx: &Transaction,
    index: &Index,
    messages: &[&NewMessage],
    ts: i64,
) -> Result<(Vec<Appended>, Placed)> {
    // A group message's offline recipients were worked out before the commit: one who has left or been
    // removed since gets nothing committed after that (a group's key is minus its id).
    let mut offline = tx.prepare_cached(
        "INSERT INTO offlinemessage (userid, conv, pos) SELECT ?1, ?2, ?3 WHERE ?2 > 0 \
         OR EXISTS (SELECT 1 FROM groupuser WHERE groupid = -?2 AND userid = ?1)",
    )?;
    let mut sent = tx.prepare_cached(
        "INSERT INTO sent (sender, cid, conv, pos, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut last: HashMap<i64, Pos> = HashMap::new();
    let mut rows: Vec<(Head, BodyRef)> = Vec::with_capacity(messages.len());
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(cid) = m.cid.as_deref()
            && let Some(first) = earlier(tx, m.sender, cid)?
        {
            out.push(Ok(first));
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
        let pos = last.get(&key).copied().unwrap_or_else(|| index.last(key)) + 1;
        last.insert(key, pos);
        for &user in &m.offline {
            offline.execute(params![user, key, pos])?;
        }
        if let Some(cid) = &m.cid {
            sent.execute(params![m.sender, cid, key, pos, ts])?;
        }
        let head = Head {
            conv: key,
            pos,
            sender: m.sender,
            ts,
        };
        let body = BodyRef {
            cid: m.cid.as_deref(),
            time: &m.time,
            text: &m.text,
        };
        rows.push((head, body));
        out.push(Ok(Committed {
            conv: m.conv,
            pos,
            ts,
            duplicate: false,
            members_version,
        }));
    }
    Ok((out, write_chunks(tx, &rows)?))
}

/// Writes messages as chunk rows of at most [`CHUNK_MAX`]; where each one went.
fn write_chunks(tx: &Transaction, rows: &[(Head, BodyRef)]) -> Result<Placed> {
    let mut insert = tx.prepare_cached("INSERT INTO chunk (head, body) VALUES (?1, ?2)")?;
    let mut placed = Vec::with_capacity(rows.len());
    for part in rows.chunks(CHUNK_MAX) {
        let (head, body) = chunk::encode(part.iter().copied());
        insert.execute(params![head, body])?;
        let seq = tx.last_insert_rowid();
        placed.extend(
            part.iter()
                .enumerate()
                .map(|(n, (h, _))| (*h, Loc::new(seq, n))),
        );
    }
    Ok(placed)
}

/// Where the sender's message with this cid was committed, if it was (in this append too: `sent` is
/// written with each message). A message deleted with its group counts as never sent.
fn earlier(tx: &Transaction, sender: UserId, cid: &str) -> Result<Option<Committed>> {
    let found: Option<(i64, Pos, i64)> = tx
        .prepare_cached("SELECT conv, pos, ts FROM sent WHERE sender = ?1 AND cid = ?2")?
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
/// member-list version (0 for one-to-one), or why not.
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

/// `user`'s read position in a conversation as READ set it (0 if never); their own messages are the
/// index's business.
fn explicit_read(conn: &Connection, user: UserId, key: i64) -> Result<Pos> {
    Ok(conn
        .prepare_cached("SELECT pos FROM readpos WHERE userid = ?1 AND conv = ?2")?
        .query_row(params![user, key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// A user's name ("" for one that does not exist).
fn name_of(conn: &Connection, user: UserId) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT name FROM user WHERE id = ?1")?
        .query_row(params![user], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}

/// A chunk row: its heads, and its raw body.
fn read_chunk(conn: &Connection, seq: i64) -> Result<Option<(Vec<Head>, Vec<u8>)>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT head, body FROM chunk WHERE seq = ?1")?
        .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(head, body)| Ok((chunk::heads(&head)?, body)))
        .transpose()
}

/// The messages at these places, in the order asked (any that are gone, left out), each chunk read once.
fn fetch(conn: &Connection, wanted: &[(Conv, Pos, Loc)]) -> Result<Vec<LogMessage>> {
    let mut by_seq: BTreeMap<i64, BTreeMap<usize, usize>> = BTreeMap::new();
    for (i, (_, _, loc)) in wanted.iter().enumerate() {
        // A message asked for twice (two pointers to it) is given once, at its first place.
        by_seq
            .entry(loc.seq())
            .or_default()
            .entry(loc.n())
            .or_insert(i);
    }
    let mut found: Vec<Option<LogMessage>> = vec![None; wanted.len()];
    let mut names: HashMap<UserId, String> = HashMap::new();
    for (seq, places) in by_seq {
        let Some((heads, body)) = read_chunk(conn, seq)? else {
            continue;
        };
        let ns: Vec<usize> = places
            .keys()
            .copied()
            .filter(|&n| n < heads.len())
            .collect();
        for (body, n) in chunk::bodies_at(&body, &ns)?.into_iter().zip(ns) {
            let i = places[&n];
            let (conv, pos, _) = wanted[i];
            let head = heads[n];
            if head.conv != conv.key() || head.pos != pos {
                continue;
            }
            let sender_name = match names.get(&head.sender) {
                Some(name) => name.clone(),
                None => {
                    let name = name_of(conn, head.sender)?;
                    names.insert(head.sender, name.clone());
                    name
                }
            };
            found[i] = Some(LogMessage {
                conv,
                pos,
                ts: head.ts,
                sender: head.sender,
                sender_name,
                cid: body.cid,
                time: body.time,
                text: body.text,
            });
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// Deletes a conversation's messages (tombstones in their chunks; a chunk left with nothing but
/// tombstones goes) and everything that points at them: their cids, read positions, offline pointers.
/// The index forgets the conversation once this has committed ([`Index::remove`]).
pub(super) fn delete_conversation(tx: &Transaction, index: &Index, key: i64) -> Result<i64> {
    let mut by_seq: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (_, loc) in index.locate(key, 1, index.last(key)) {
        by_seq.entry(loc.seq()).or_default().push(loc.n());
    }
    let mut cids: Vec<(UserId, String)> = Vec::new();
    for (seq, places) in by_seq {
        let Some((mut heads, body)) = read_chunk(tx, seq)? else {
            continue;
        };
        let mut bodies = chunk::bodies(&heads, &body)?;
        for n in places {
            if let Some(&Head { conv, sender, .. }) = heads.get(n)
                && conv == key
            {
                // Nothing of the message stays: not who sent it, nor when.
                heads[n] = Head {
                    conv: 0,
                    pos: 0,
                    sender: 0,
                    ts: 0,
                };
                let body = std::mem::take(&mut bodies[n]);
                cids.extend(body.cid.map(|cid| (sender, cid)));
            }
        }
        if heads.iter().all(|h| h.conv == 0) {
            tx.execute("DELETE FROM chunk WHERE seq = ?1", params![seq])?;
        } else {
            let (head, body) =
                chunk::encode(heads.iter().copied().zip(bodies.iter().map(Body::as_ref)));
            tx.execute(
                "UPDATE chunk SET head = ?2, body = ?3 WHERE seq = ?1",
                params![seq, head, body],
            )?;
        }
    }
    for (sender, cid) in cids {
        tx.execute(
            "DELETE FROM sent WHERE sender = ?1 AND cid = ?2",
            params![sender, cid],
        )?;
    }
    for statement in [
        "DELETE FROM readpos WHERE conv = ?1",
        "DELETE FROM offlinemessage WHERE conv = ?1",
    ] {
        tx.execute(statement, params![key])?;
    }
    Ok(key)
}

/// [`write_chunks`] for messages read back whole.
fn write_converted(tx: &Transaction, part: &[(Head, Body)]) -> Result<()> {
    let rows: Vec<(Head, BodyRef)> = part.iter().map(|(h, b)| (*h, b.as_ref())).collect();
    write_chunks(tx, &rows)?;
    Ok(())
}

/// Migration 8's second half: turns the rows of `message` (one a message, in commit order) into chunks,
/// then drops the tables that indexed them. Nothing to do once they are gone.
pub(super) fn convert_rows(tx: &Transaction) -> Result<()> {
    if !super::table_exists(tx, "message")? {
        return Ok(());
    }
    let mut select =
        tx.prepare("SELECT conv, pos, sender, ts, cid, time, text FROM message ORDER BY seq")?;
    let mut messages = select.query([])?;
    let mut part: Vec<(Head, Body)> = Vec::with_capacity(CHUNK_MAX);
    let mut count = 0usize;
    while let Some(r) = messages.next()? {
        let head = Head {
            conv: r.get(0)?,
            pos: r.get(1)?,
            sender: r.get(2)?,
            ts: r.get(3)?,
        };
        let body = Body {
            cid: r.get(4)?,
            time: r.get(5)?,
            text: r.get(6)?,
        };
        part.push((head, body));
        if part.len() == CHUNK_MAX {
            count += part.len();
            write_converted(tx, &part)?;
            part.clear();
        }
    }
    count += part.len();
    write_converted(tx, &part)?;
    drop(messages);
    drop(select);
    tx.execute_batch(
        "DROP TABLE message; DROP TABLE position; DROP TABLE conversation; DROP TABLE indexed;",
    )?;
    if count > 0 {
        tracing::info!(messages = count, "rewrote the log as a row per commit");
    }
    Ok(())
}

impl SqliteStore {
    /// The first `limit` of `user`'s offline pointers. Read on the writer's connection, in its turn:
    /// the index then holds every message a committed pointer points to (it learns them right after
    /// their commit, before the writer's next turn). The messages themselves are read after it, on a
    /// pooled connection, so that a login with a long list does not hold up every append meanwhile.
    fn offline_page(&self, user: UserId, limit: usize) -> Result<OfflinePage> {
        let conn = self.writer.lock();
        let rows: Vec<(i64, i64, Pos)> = conn
            .prepare_cached(
                "SELECT id, conv, pos FROM offlinemessage WHERE userid = ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![user, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let index = self.index.read();
        let wanted = rows
            .iter()
            .filter_map(|&(_, key, pos)| Some((Conv::from_key(key)?, pos, index.find(key, pos)?)))
            .collect();
        Ok(OfflinePage {
            last: rows.last().map(|r| r.0),
            pointers: rows.len(),
            wanted,
        })
    }

    /// Takes the first `want` of `user`'s offline pointers off the list, their messages into `out`;
    /// whether there were that many.
    fn take_page(&self, user: UserId, want: usize, out: &mut Vec<LogMessage>) -> Result<bool> {
        let page = self.offline_page(user, want)?;
        let Some(last) = page.last else {
            return Ok(false);
        };
        let messages = fetch(&*self.conn()?, &page.wanted)?;
        self.execute(
            "DELETE FROM offlinemessage WHERE userid = ?1 AND id <= ?2",
            params![user, last],
        )?;
        out.extend(messages);
        Ok(page.pointers == want)
    }
}

/// A page of a user's offline list.
struct OfflinePage {
    /// The id of its last pointer (none: the list is empty).
    last: Option<i64>,
    /// How many pointers it has.
    pointers: usize,
    /// Where the messages they point to are (those that are gone left out).
    wanted: Vec<(Conv, Pos, Loc)>,
}

/// Turns at a user's offline list: whoever takes it holds the user's turn from reading the pointers to
/// deleting them, so two takers (a login and a nudged connection of another device) never hand out the
/// same message; users share [`TAKER_TURNS`] turns.
pub(super) struct Takers([parking_lot::Mutex<()>; TAKER_TURNS]);

impl Default for Takers {
    fn default() -> Takers {
        Takers(std::array::from_fn(|_| parking_lot::Mutex::new(())))
    }
}

/// How many turns users share.
const TAKER_TURNS: usize = 64;

impl Takers {
    fn turn(&self, user: UserId) -> parking_lot::MutexGuard<'_, ()> {
        self.0[user.unsigned_abs() as usize % TAKER_TURNS].lock()
    }
}

impl Log for SqliteStore {
    fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        self.append_now(messages)
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
        let _turn = self.takers.turn(user);
        let mut out = Vec::new();
        // Pointers to messages that are gone (a dissolved group) give nothing: read on, so that a
        // batch short of `limit` still means the list is empty.
        while out.len() < limit {
            match self.take_page(user, limit - out.len(), &mut out) {
                Ok(true) => {}
                Ok(false) => break,
                // What earlier pages took is deleted already: hand it out; the rest stays listed.
                Err(e) if !out.is_empty() => {
                    tracing::warn!(user, error = %e, "could not read on in an offline list");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn conversations(&self, user: UserId) -> Result<Vec<Summary>> {
        let conn: Conn = self.conn()?;
        let direct = self.index.read().direct_of(user);
        let mut out = Vec::new();
        for seen in direct {
            let Some(conv) = Conv::from_key(seen.key) else {
                continue;
            };
            let peer = conv.peer_of(user).unwrap_or(user);
            out.push(Summary {
                conv,
                name: name_of(&conn, peer)?,
                last: seen.last,
                last_ts: seen.last_ts,
                read: seen.mine.max(explicit_read(&conn, user, seen.key)?),
                peer_read: Some(seen.theirs.max(explicit_read(&conn, peer, seen.key)?)),
            });
        }
        out.sort_by_key(|s| s.conv.key());
        let groups: Vec<(i64, String, Pos)> = conn
            .prepare_cached(
                "SELECT g.id, g.groupname, COALESCE(r.pos, 0) FROM groupuser gu \
                 JOIN allgroup g ON g.id = gu.groupid \
                 LEFT JOIN readpos r ON r.userid = gu.userid AND r.conv = -g.id \
                 WHERE gu.userid = ?1 ORDER BY g.id",
            )?
            .query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let index = self.index.read();
        for (id, name, explicit) in groups {
            let Ok(group) = i32::try_from(id) else {
                continue;
            };
            let conv = Conv::Group(group);
            let (last, last_ts, mine) = index.group_of(user, conv.key());
            out.push(Summary {
                conv,
                name,
                last,
                last_ts,
                read: mine.max(explicit),
                peer_read: None,
            });
        }
        Ok(out)
    }

    fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)> {
        let key = conv.key();
        let span = limit as Pos;
        let wanted: Vec<(Conv, Pos, Loc)> = {
            let index = self.index.read();
            let last = index.last(key);
            // `limit + 1` positions, to tell whether there are more; newest first but for After.
            let (from, to) = match page {
                Page::Latest => (last - span, last),
                Page::Before(p) => {
                    let to = p.saturating_sub(1).min(last);
                    (to.saturating_sub(span), to)
                }
                Page::After(p) => {
                    let from = p.saturating_add(1).max(1);
                    (from, from.saturating_add(span))
                }
            };
            let mut found: Vec<(Conv, Pos, Loc)> = index
                .locate(key, from, to)
                .into_iter()
                .map(|(pos, loc)| (conv, pos, loc))
                .collect();
            if !matches!(page, Page::After(_)) {
                found.reverse();
            }
            found
        };
        let conn: Conn = self.conn()?;
        let mut messages = fetch(&conn, &wanted)?;
        Ok(crate::store::page_out(&mut messages, page, limit))
    }

    fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)> {
        self.write(|tx| {
            let key = conv.key();
            let (last, sent) = {
                let index = self.index.read();
                (index.last(key), index.sent_by(user, conv))
            };
            let current = explicit_read(tx, user, key)?.max(sent);
            let target = pos.min(last);
            if target <= current {
                return Ok((current, false));
            }
            tx.execute(
                "INSERT INTO readpos (userid, conv, pos) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (userid, conv) DO UPDATE SET pos = max(pos, excluded.pos)",
                params![user, key, target],
            )?;
            Ok((target, true))
        })
    }

    fn indexed(&self) -> Option<Indexed> {
        Some(self.index.read().size())
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

    /// Every read gives the same answer from a store reopened on the file (its index read back from
    /// the chunks), and positions, cids and offline pointers go on from where they were.
    #[test]
    fn a_reopened_store_reads_and_goes_on_as_before() {
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
        let texts = store.history(ab, Page::After(0), 9).unwrap().0;
        drop(store);

        let store = open(dir.path());
        assert_eq!(reads(&store), before);
        assert_eq!(store.history(ab, Page::After(0), 9).unwrap().0, texts);
        // A resent cid is the first message; new messages go on from the last position.
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
        assert_eq!(offline[0].sender_name, "a");
        assert!(store.take_offline(c, 10).unwrap().is_empty());
    }

    /// Dissolving a group leaves nothing of its messages: not in their chunks (a chunk of its messages
    /// alone goes), not their cids (a resend is refused: the group is gone), not after a reopen; the
    /// one-to-one messages that shared its chunks stay whole.
    #[test]
    fn a_dissolved_group_leaves_no_message() {
        let dir = tempfile::tempdir().unwrap();
        let (store, [a, b], g) = two_in_a_group(dir.path());
        let (ab, group) = (Conv::direct(a, b), Conv::Group(g));
        let member = |cid: &str| NewMessage {
            require: Require::Member,
            ..message(a, group, Some(cid), &[b])
        };
        send(&store, member("alone"));
        let shared = [
            member("g-1"),
            message(b, ab, Some("ab-1"), &[]),
            member("g-2"),
        ];
        store.append(&shared.iter().collect::<Vec<_>>()).unwrap();
        send(&store, message(a, ab, None, &[]));
        let ab_before = store.history(ab, Page::After(0), 9).unwrap();
        store.dissolve_group(g).unwrap();
        let conn = store.conn().unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT COUNT(*) FROM chunk"),
            2,
            "the group's own chunk went"
        );
        assert_eq!(count("SELECT COUNT(*) FROM sent"), 1, "ab-1 only");
        assert_eq!(count("SELECT COUNT(*) FROM offlinemessage"), 0);
        assert_eq!(
            store.append(&[&member("g-1")]).unwrap(),
            vec![Err(Refusal::NoGroup)]
        );
        assert_eq!(store.history(ab, Page::After(0), 9).unwrap(), ab_before);
        assert_eq!(
            store.history(group, Page::Latest, 9).unwrap(),
            (vec![], false)
        );
        drop(conn);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.history(ab, Page::After(0), 9).unwrap(), ab_before);
        assert_eq!(
            store.history(group, Page::Latest, 9).unwrap(),
            (vec![], false)
        );
        assert_eq!(listed(&store, b), vec![(ab, 2, 1, Some(2))]);
    }

    /// One append of more messages than a chunk holds: every message at its position with its own text,
    /// a cid repeated inside the append answered with the first, and all of it read back after a reopen.
    #[test]
    fn one_append_of_many_messages_keeps_each_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let [a, b, c] = ["a", "b", "c"].map(|n| store.create_user(n, "h").unwrap());
        let convs = [Conv::direct(a, b), Conv::direct(a, c), Conv::direct(b, c)];
        let n = CHUNK_MAX + 37;
        let batch: Vec<NewMessage> = (0..n)
            .map(|i| NewMessage {
                text: format!("m{i}"),
                ..message(a, convs[i % 3], Some(&format!("c{}", i.min(n - 2))), &[])
            })
            .collect();
        let placed: Vec<Committed> = store
            .append(&batch.iter().collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<(Conv, Pos, bool)> = (0..n)
            .map(|i| {
                if i == n - 1 {
                    (convs[(n - 2) % 3], (n - 2) as Pos / 3 + 1, true)
                } else {
                    (convs[i % 3], i as Pos / 3 + 1, false)
                }
            })
            .collect();
        let got: Vec<(Conv, Pos, bool)> = placed
            .iter()
            .map(|c| (c.conv, c.pos, c.duplicate))
            .collect();
        assert_eq!(got, expected);
        let texts = |store: &SqliteStore, conv: Conv| -> Vec<String> {
            let page = store.history(conv, Page::After(0), n).unwrap().0;
            page.into_iter().map(|m| m.text).collect()
        };
        let wanted: Vec<String> = (0..n - 1).step_by(3).map(|i| format!("m{i}")).collect();
        assert_eq!(texts(&store, convs[0]), wanted);
        drop(store);
        let store = open(dir.path());
        assert_eq!(texts(&store, convs[0]), wanted);
        let again = send(&store, message(a, convs[1], Some("c34"), &[]));
        assert_eq!(
            (again.conv, again.pos, again.duplicate),
            (convs[1], 12, true)
        );
    }

    /// Takers of one user's offline list at once (two devices, a login and a nudge) share it out: each
    /// message goes to one of them, and all go, while appends go on meanwhile.
    #[test]
    fn takers_at_once_share_an_offline_list_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(open(dir.path()));
        let conv = Conv::direct(1, 2);
        let batch: Vec<NewMessage> = (0..2000).map(|_| message(1, conv, None, &[2])).collect();
        store.append(&batch.iter().collect::<Vec<_>>()).unwrap();
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let got = store.take_offline(2, 50).unwrap();
                        if got.is_empty() {
                            return mine;
                        }
                        mine.extend(got.iter().map(|m| m.pos));
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            send(&store, message(2, conv, None, &[]));
        }
        let mut all: Vec<Pos> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=2000).collect::<Vec<Pos>>());
    }

    /// The index is one store's memory: a second store on the same file, in this process or another,
    /// is refused, and the file is free again once the first is gone.
    #[test]
    fn a_second_store_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path());
        let path = dir.path().join("chat.db");
        let second = SqliteStore::open(path.to_str().unwrap(), 2);
        let why = second.err().expect("refused").to_string();
        assert!(why.contains("another"), "{why}");
        drop(first);
        open(dir.path());
    }
}
