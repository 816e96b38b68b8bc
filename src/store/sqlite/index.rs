//! The log's index, in memory: where each position of each conversation is ([`Loc`]: a chunk and a
//! place in it), the time of each conversation's last message, the one-to-one conversations each user
//! takes part in, and the last position each participant sent (their own messages count as read).
//!
//! Nothing of it is written: a commit writes its messages as one row and nothing at a random place in
//! the file, which is what an index on disk costs on a busy node, where most messages go to
//! conversations whose pages are not cached (docs/BENCHMARKS.md, "A log written a commit at a time").
//! It is read back from the chunks' heads at start (28 bytes a message). This makes the embedded store
//! one process's: the store locks its file for itself ([`super::SqliteStore::open`]).

use std::collections::HashMap;

use rusqlite::Connection;

use super::chunk::{self, Head, Loc};
use crate::model::{Conv, Pos, UserId};
use crate::store::{Indexed, Result};

/// More positions than one conversation could hold (a billion messages).
const MAX_POSITIONS: usize = 1 << 30;

/// The index of the whole log.
#[derive(Debug, Default)]
pub(super) struct Index {
    threads: HashMap<i64, Thread>,
    /// The one-to-one conversations of each user (by key), in the order of their first messages.
    direct: HashMap<UserId, Vec<i64>>,
    /// The last position each member sent in each group: `(user, key)`.
    group_sent: HashMap<(UserId, i64), Pos>,
    /// Positions held, over every conversation.
    positions: usize,
}

/// One conversation.
#[derive(Debug, Default)]
struct Thread {
    /// Where position `i + 1` is.
    at: Vec<Loc>,
    last_ts: i64,
    /// The last position the lower and the higher user sent (a one-to-one conversation).
    sent: [Pos; 2],
}

/// One conversation as a list of conversations shows it, from one user's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub key: i64,
    pub last: Pos,
    pub last_ts: i64,
    /// The last position the user sent.
    pub mine: Pos,
    /// The last position the peer sent (one's own again in the chat with oneself).
    pub theirs: Pos,
}

impl Index {
    /// Reads the heads of every chunk.
    pub fn load(conn: &Connection) -> Result<Index> {
        let mut index = Index::default();
        let mut rows = conn.prepare("SELECT seq, head FROM chunk ORDER BY seq")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let head: Vec<u8> = row.get(1)?;
            for (n, h) in chunk::heads(&head)?.into_iter().enumerate() {
                index.add(h, Loc::new(seq, n));
            }
        }
        Ok(index)
    }

    /// Takes in a committed message (a tombstone changes nothing).
    pub fn add(&mut self, head: Head, loc: Loc) {
        let Some(conv) = Conv::from_key(head.conv) else {
            return;
        };
        // A position the writer could not have given (a damaged file) is not taken in.
        let Some(i) = usize::try_from(head.pos.saturating_sub(1))
            .ok()
            .filter(|&i| i < MAX_POSITIONS)
        else {
            return;
        };
        let thread = self.threads.entry(head.conv).or_insert_with(|| {
            if let Some((lo, hi)) = conv.users() {
                self.direct.entry(lo).or_default().push(head.conv);
                if hi != lo {
                    self.direct.entry(hi).or_default().push(head.conv);
                }
            }
            Thread::default()
        });
        if thread.at.len() <= i {
            self.positions += i + 1 - thread.at.len();
            thread.at.resize(i + 1, loc);
        }
        thread.at[i] = loc;
        thread.last_ts = thread.last_ts.max(head.ts);
        match conv.users() {
            Some((lo, hi)) => {
                for (side, user) in [lo, hi].into_iter().enumerate() {
                    if user == head.sender {
                        thread.sent[side] = thread.sent[side].max(head.pos);
                    }
                }
            }
            None => {
                let sent = self.group_sent.entry((head.sender, head.conv)).or_default();
                *sent = (*sent).max(head.pos);
            }
        }
    }

    /// The conversation's last position (0 without messages).
    pub fn last(&self, key: i64) -> Pos {
        self.threads.get(&key).map_or(0, |t| t.at.len() as Pos)
    }

    /// Where positions `from..=to` of the conversation are, those that exist.
    pub fn locate(&self, key: i64, from: Pos, to: Pos) -> Vec<(Pos, Loc)> {
        let Some(thread) = self.threads.get(&key) else {
            return Vec::new();
        };
        let from = from.max(1);
        let to = to.min(thread.at.len() as Pos);
        (from..=to)
            .map(|pos| (pos, thread.at[(pos - 1) as usize]))
            .collect()
    }

    /// Where one message is.
    pub fn find(&self, key: i64, pos: Pos) -> Option<Loc> {
        let thread = self.threads.get(&key)?;
        let i = usize::try_from(pos.checked_sub(1)?).ok()?;
        thread.at.get(i).copied()
    }

    /// The last position `user` sent in the conversation (both sides, in the chat with oneself).
    pub fn sent_by(&self, user: UserId, conv: Conv) -> Pos {
        let key = conv.key();
        match conv.users() {
            Some((lo, hi)) => self.threads.get(&key).map_or(0, |t| {
                let [l, h] = t.sent;
                let mut sent = 0;
                if lo == user {
                    sent = sent.max(l);
                }
                if hi == user {
                    sent = sent.max(h);
                }
                sent
            }),
            None => self.group_sent.get(&(user, key)).copied().unwrap_or(0),
        }
    }

    /// `user`'s one-to-one conversations.
    pub fn direct_of(&self, user: UserId) -> Vec<Seen> {
        let Some(keys) = self.direct.get(&user) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|&key| {
                let conv = Conv::from_key(key)?;
                let peer = conv.peer_of(user)?;
                let thread = self.threads.get(&key)?;
                Some(Seen {
                    key,
                    last: thread.at.len() as Pos,
                    last_ts: thread.last_ts,
                    mine: self.sent_by(user, conv),
                    theirs: self.sent_by(peer, conv),
                })
            })
            .collect()
    }

    /// A group's last position and time, and what `user` sent there last.
    pub fn group_of(&self, user: UserId, key: i64) -> (Pos, i64, Pos) {
        let (last, ts) = self
            .threads
            .get(&key)
            .map_or((0, 0), |t| (t.at.len() as Pos, t.last_ts));
        let mine = self.group_sent.get(&(user, key)).copied().unwrap_or(0);
        (last, ts, mine)
    }

    /// How many messages and conversations it holds.
    pub fn size(&self) -> Indexed {
        Indexed {
            messages: self.positions,
            conversations: self.threads.len(),
        }
    }

    /// Forgets a deleted conversation (a dissolved group).
    pub fn remove(&mut self, key: i64) {
        if let Some(thread) = self.threads.remove(&key) {
            self.positions -= thread.at.len();
        }
        self.group_sent.retain(|(_, k), _| *k != key);
        if let Some((lo, hi)) = Conv::from_key(key).and_then(Conv::users) {
            for user in [lo, hi] {
                if let Some(keys) = self.direct.get_mut(&user) {
                    keys.retain(|&k| k != key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(conv: Conv, pos: Pos, sender: UserId) -> Head {
        Head {
            conv: conv.key(),
            pos,
            sender,
            ts: pos * 10,
        }
    }

    #[test]
    fn the_index_finds_positions_and_who_sent_last() {
        let mut index = Index::default();
        let (ab, me, g) = (Conv::direct(1, 2), Conv::direct(1, 1), Conv::Group(7));
        for (n, h) in [
            head(ab, 1, 1),
            head(ab, 2, 2),
            head(me, 1, 1),
            head(g, 1, 2),
            head(ab, 3, 1),
        ]
        .into_iter()
        .enumerate()
        {
            index.add(h, Loc::new(5, n));
        }
        index.add(
            Head {
                conv: 0,
                pos: 1,
                sender: 1,
                ts: 0,
            },
            Loc::new(5, 5),
        );
        assert_eq!(index.last(ab.key()), 3);
        assert_eq!(index.find(ab.key(), 3), Some(Loc::new(5, 4)));
        assert_eq!(index.find(ab.key(), 4), None);
        assert_eq!(
            index.locate(ab.key(), 2, 9),
            vec![(2, Loc::new(5, 1)), (3, Loc::new(5, 4))]
        );
        let seen: Vec<(i64, Pos, Pos, Pos)> = index
            .direct_of(1)
            .into_iter()
            .map(|s| (s.key, s.last, s.mine, s.theirs))
            .collect();
        assert_eq!(seen, vec![(ab.key(), 3, 3, 2), (me.key(), 1, 1, 1)]);
        assert_eq!(index.group_of(2, g.key()), (1, 10, 1));
        assert_eq!(index.group_of(1, g.key()), (1, 10, 0));
        assert_eq!(
            index.size(),
            Indexed {
                messages: 5,
                conversations: 3
            }
        );
        index.remove(g.key());
        assert_eq!(index.group_of(2, g.key()), (0, 0, 0));
        assert_eq!(
            index.size(),
            Indexed {
                messages: 4,
                conversations: 2
            }
        );
    }
}
