//! The rules of a connection's write side, without a socket: what is written, and in which order.
//!
//! Each item a mailbox hands over becomes a list of [`Action`]s through [`Outbox::step`]; the server's
//! writer ([`super::writer`]) carries them out on the socket (at once without blocking where it can, else
//! on a writer thread), and the fuzz harness carries them out against its model of a client. The rules:
//! the login ack is the first frame after a login (the C++ client reads it as such), so chat frames and
//! pushes for the user that come before it are held and written right after it, in the order they came
//! (a push read before the ack could contradict what the ack lists); offline messages the ack could not
//! carry, and any recorded while the ack was on its way, are fetched before those held frames (they were
//! sent earlier); frames held for a login that never completed are recorded offline at logout; a
//! message this connection has just written (by its place in the log) is not written again.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::mailbox::{Live, Outgoing};
use crate::model::{Conv, Pos, UserId};
use crate::protocol::Version;

/// One thing to do on the socket or the store, in order.
#[derive(Debug)]
pub enum Action {
    /// Write `frame` and the connection's separator in one call; `chats` are the chat frames it carries
    /// (itself, or the offline messages inside a login ack), recorded offline if it cannot be written.
    Write { frame: Arc<str>, chats: Vec<Live> },
    /// Write bytes framed already (the unwritten end of a frame that went out only in part, say).
    WriteBytes { bytes: Vec<u8>, chats: Vec<Live> },
    /// Fetch `user`'s offline messages as `version` frames and write them, batch after batch.
    Fetch { user: UserId, version: Version },
    /// Record these chat frames offline: they were held for a login that did not complete.
    Store(Vec<Live>),
}

/// What the write side remembers between items (and between writer threads).
#[derive(Debug, Default)]
pub struct Outbox {
    /// The user whose login ack has gone out, and the version of their frames.
    acked: Option<(UserId, Version)>,
    /// A nudge came before the login ack: fetch right after it.
    nudge_pending: bool,
    /// Chat frames and pushes that came between the user's registration in the online map and their
    /// login ack, in order.
    held: Vec<Held>,
    written: Recent,
}

/// How many of the messages written last a connection remembers (24 bytes each, allocated as they come).
const RECENT: usize = 256;

/// The chat messages a connection wrote last: for whom, and their places in the log. A message can
/// reach one connection twice: a node that Redis did not answer within its wait records the message
/// offline, and a Redis that had only stalled then delivers it live as well; the recipient's node
/// fetches the offline record too. The second copy is not written: a v1 client could not tell it from
/// a new message. Within one login a message never legitimately comes twice (one that was not written
/// broke the connection, and everything after it is stored); the list is for the logged-in user and is
/// forgotten at logout, so a user logging in next on the same connection gets what is theirs.
#[derive(Debug, Default)]
struct Recent(VecDeque<(UserId, Conv, Pos)>);

impl Recent {
    /// Remembers that `live` was handed to be written; `false` if it was already. A carbon (no place in
    /// the log) is never remembered.
    fn first(&mut self, live: &Live) -> bool {
        let Some((conv, pos)) = live.at else {
            return true;
        };
        let entry = (live.to, conv, pos);
        if self.0.contains(&entry) {
            return false;
        }
        if self.0.len() == RECENT {
            self.0.pop_front();
        }
        self.0.push_back(entry);
        true
    }
}

/// A frame waiting for the login ack.
#[derive(Debug)]
enum Held {
    Chat(Live),
    Push(String),
}

impl Held {
    fn write(self) -> Action {
        match self {
            Held::Chat(live) => Action::Write {
                frame: live.frame.clone(),
                chats: vec![live],
            },
            Held::Push(frame) => Action::Write {
                frame: frame.into(),
                chats: Vec::new(),
            },
        }
    }
}

impl Outbox {
    /// The actions `item` leads to, in order.
    pub fn step(&mut self, item: Outgoing) -> Vec<Action> {
        match item {
            Outgoing::Reply(frame) => vec![Action::Write {
                frame: frame.into(),
                chats: Vec::new(),
            }],
            Outgoing::Chat(live) if self.acked_user() != Some(live.to) => {
                self.held.push(Held::Chat(live));
                Vec::new()
            }
            Outgoing::Push { to, frame } if self.acked_user() != Some(to) => {
                self.held.push(Held::Push(frame));
                Vec::new()
            }
            Outgoing::Push { frame, .. } => vec![Action::Write {
                frame: frame.into(),
                chats: Vec::new(),
            }],
            Outgoing::Chat(live) => self.first_time(live).map_or_else(Vec::new, |live| {
                vec![Action::Write {
                    frame: live.frame.clone(),
                    chats: vec![live],
                }]
            }),
            Outgoing::Bytes { bytes, chats } => vec![Action::WriteBytes { bytes, chats }],
            Outgoing::LoginAck {
                user,
                version,
                frame,
                offline,
                more,
            } => {
                self.acked = Some((user, version));
                for live in &offline {
                    self.written.first(live);
                }
                let mut actions = vec![Action::Write {
                    frame: frame.into(),
                    chats: offline,
                }];
                if more || std::mem::take(&mut self.nudge_pending) {
                    actions.push(Action::Fetch { user, version });
                }
                for held in std::mem::take(&mut self.held) {
                    let held = match held {
                        Held::Chat(live) => self.first_time(live).map(Held::Chat),
                        push => Some(push),
                    };
                    actions.extend(held.map(Held::write));
                }
                actions
            }
            Outgoing::Nudge(user) => match self.acked {
                Some((acked, version)) if acked == user => vec![Action::Fetch { user, version }],
                _ => {
                    self.nudge_pending = true;
                    Vec::new()
                }
            },
            Outgoing::LoggedOut => {
                self.acked = None;
                self.nudge_pending = false;
                self.written = Recent::default();
                let held = self.take_held();
                if held.is_empty() {
                    Vec::new()
                } else {
                    vec![Action::Store(held)]
                }
            }
        }
    }

    /// `live`, unless this connection wrote its message lately ([`Recent`]): then it counts as written
    /// (the device has it) and is not written again. Fetched offline messages go through here too.
    pub fn first_time(&mut self, live: Live) -> Option<Live> {
        if self.written.first(&live) {
            Some(live)
        } else {
            live.written();
            None
        }
    }

    /// The chat frames still held when the connection ends, to record offline (held pushes go).
    pub fn take_held(&mut self) -> Vec<Live> {
        self.held
            .drain(..)
            .filter_map(|h| match h {
                Held::Chat(live) => Some(live),
                Held::Push(_) => None,
            })
            .collect()
    }

    fn acked_user(&self) -> Option<UserId> {
        self.acked.map(|(user, _)| user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(to: UserId, text: &str) -> Outgoing {
        Outgoing::Chat(Live::carbon(to, text.into()))
    }

    fn writes(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Write { frame, .. } => frame.to_string(),
                Action::Fetch { .. } => "fetch".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn ack(user: UserId, more: bool) -> Outgoing {
        Outgoing::LoginAck {
            user,
            version: Version::V2,
            frame: "ack".into(),
            offline: Vec::new(),
            more,
        }
    }

    #[test]
    fn frames_before_the_login_ack_follow_it_after_the_fetch() {
        let mut out = Outbox::default();
        assert!(out.step(chat(1, "early")).is_empty(), "held");
        assert!(out.step(Outgoing::Nudge(1)).is_empty(), "remembered");
        let actions = out.step(ack(1, false));
        assert_eq!(writes(&actions), ["ack", "fetch", "early"]);
        assert_eq!(writes(&out.step(chat(1, "live"))), ["live"]);
        assert_eq!(writes(&out.step(Outgoing::Nudge(1))), ["fetch"]);
    }

    #[test]
    fn pushes_before_the_login_ack_follow_it_in_order_and_are_not_stored() {
        let mut out = Outbox::default();
        let push = |text: &str| Outgoing::Push {
            to: 1,
            frame: text.into(),
        };
        assert!(out.step(push("presence")).is_empty(), "held");
        assert!(out.step(chat(1, "early")).is_empty(), "held");
        assert_eq!(
            writes(&out.step(ack(1, false))),
            ["ack", "presence", "early"]
        );
        assert_eq!(writes(&out.step(push("typing"))), ["typing"]);
        assert!(out.step(Outgoing::LoggedOut).is_empty());
        out.step(push("for a login that failed"));
        assert!(out.step(Outgoing::LoggedOut).is_empty(), "nothing to store");
    }

    fn message(to: UserId, pos: Pos) -> Live {
        Live::single(to, format!("m{pos}").into(), (Conv::direct(1, 2), pos))
    }

    #[test]
    fn a_message_written_lately_is_not_written_again() {
        let mut out = Outbox::default();
        let offline = vec![message(1, 1)];
        let ack = Outgoing::LoginAck {
            user: 1,
            version: Version::V1,
            frame: "ack".into(),
            offline,
            more: false,
        };
        assert!(out.step(Outgoing::Chat(message(1, 2))).is_empty(), "held");
        assert!(out.step(Outgoing::Chat(message(1, 2))).is_empty(), "held");
        assert_eq!(writes(&out.step(ack)), ["ack", "m2"], "held once");
        assert!(
            out.step(Outgoing::Chat(message(1, 1))).is_empty(),
            "in the ack"
        );
        assert!(out.step(Outgoing::Chat(message(1, 2))).is_empty());
        assert_eq!(writes(&out.step(Outgoing::Chat(message(1, 3)))), ["m3"]);
        assert!(out.first_time(message(1, 3)).is_none(), "fetched after");
        assert!(out.first_time(message(1, 4)).is_some(), "fetched first");
        assert!(out.step(Outgoing::Chat(message(1, 4))).is_empty());
        let other = Live::single(1, "g4".into(), (Conv::Group(7), 4));
        assert_eq!(writes(&out.step(Outgoing::Chat(other))), ["g4"]);
        assert_eq!(
            writes(&out.step(chat(1, "a carbon"))),
            ["a carbon"],
            "carbons have no place and are not remembered"
        );
        assert_eq!(writes(&out.step(chat(1, "a carbon"))), ["a carbon"]);
    }

    /// A user logging in after another on the same connection gets their own copies of messages the
    /// first user was written (a group's, say), from the offline list as live.
    #[test]
    fn what_one_login_was_written_does_not_hold_back_the_next() {
        let mut out = Outbox::default();
        out.step(ack(1, false));
        assert_eq!(writes(&out.step(Outgoing::Chat(message(1, 1)))), ["m1"]);
        assert!(out.step(Outgoing::LoggedOut).is_empty());
        out.step(ack(2, false));
        assert!(
            out.first_time(message(2, 1)).is_some(),
            "fetched for the next user"
        );
        assert!(out.step(Outgoing::LoggedOut).is_empty());
        out.step(ack(1, false));
        assert_eq!(
            writes(&out.step(Outgoing::Chat(message(1, 1)))),
            ["m1"],
            "forgotten at logout"
        );
    }

    #[test]
    fn only_the_last_messages_are_remembered() {
        let mut out = Outbox::default();
        out.step(ack(1, false));
        for pos in 1..=RECENT as Pos {
            assert_eq!(out.step(Outgoing::Chat(message(1, pos))).len(), 1);
        }
        assert!(out.step(Outgoing::Chat(message(1, 1))).is_empty());
        assert_eq!(out.step(Outgoing::Chat(message(1, 0))).len(), 1);
        assert_eq!(
            out.step(Outgoing::Chat(message(1, 1))).len(),
            1,
            "forgotten for the newer one"
        );
    }

    #[test]
    fn a_full_ack_asks_for_more_and_logout_stores_what_is_held() {
        let mut out = Outbox::default();
        assert_eq!(writes(&out.step(ack(1, true))), ["ack", "fetch"]);
        assert!(out.step(Outgoing::LoggedOut).is_empty());
        out.step(chat(2, "for a login that failed"));
        match out.step(Outgoing::LoggedOut).as_slice() {
            [Action::Store(held)] => assert_eq!(held.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(out.take_held().is_empty());
    }
}
