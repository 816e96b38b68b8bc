//! What a connection's chats leave to do until everything it read at once has been handled: their
//! messages, committed to the log together in one transaction, then delivered, and the replies that wait
//! for them.
//!
//! A client that pipelines chats would otherwise wait for one commit per message, and a flood of chats
//! would make the disk sync for each one, slowing everyone. Replies keep the order of the frames they
//! answer: once something waits here, every later reply waits behind it.

use std::mem;

use serde_json::Value;

use super::{Caller, Context, Failure, chat};
use crate::mailbox::Outgoing;
use crate::model::UserId;
use crate::store::NewMessage;

/// Messages held at which they are committed at once, before the read's other frames, so that a flood
/// does not pile up in memory.
const COMMIT_AT: usize = 1024;

/// Chats and replies of one connection waiting for a commit, in frame order.
#[derive(Default)]
pub struct Pending {
    entries: Vec<Entry>,
    /// The messages of the [`Entry::Chat`]s, in order.
    messages: Vec<NewMessage>,
}

enum Entry {
    /// A reply to send as it is.
    Reply(Outgoing),
    /// A chat (the next of `messages`), delivered and answered once committed.
    Chat(Chat),
}

/// What a chat needs once its message is committed.
pub struct Chat {
    /// Who gets the message (a one-to-one chat's peer, a group's other members).
    pub recipients: Vec<UserId>,
    /// The version of the group's member list `recipients` came from (0 for one-to-one).
    pub members_version: i64,
    /// The request's msgid, echoed as `ref` in an error.
    pub msgid: i64,
    /// The request's `seq`, echoed in the answer.
    pub seq: Option<Value>,
    /// The sender's id for the message, echoed in the acknowledgement.
    pub cid: Option<String>,
}

impl Pending {
    /// Whether nothing waits, so a reply can go out at once.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues a reply behind what waits.
    pub fn reply(&mut self, item: Outgoing) {
        self.entries.push(Entry::Reply(item));
    }

    /// Holds a chat's message until the commit; returns whether it is time to commit.
    pub fn hold(&mut self, message: NewMessage, chat: Chat) -> bool {
        self.messages.push(message);
        self.entries.push(Entry::Chat(chat));
        self.messages.len() >= COMMIT_AT
    }
}

/// Commits everything the caller's chats left waiting, in one transaction, delivers each message, then
/// sends the waiting replies in order. Run when a turn ends, before handling any request but a chat
/// (once it passed the checks of dispatch), and when [`COMMIT_AT`] messages wait.
pub fn flush(ctx: &Context, caller: &mut Caller) {
    let Pending {
        entries,
        mut messages,
    } = mem::take(&mut caller.pending);
    if entries.is_empty() {
        return;
    }
    let me = caller.me().clone();
    let chats: Vec<&Chat> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Chat(chat) => Some(chat),
            Entry::Reply(_) => None,
        })
        .collect();
    if !ctx.bus.is_cluster() {
        // Alone, this node knows who is offline: record it in the same transaction.
        for (message, chat) in messages.iter_mut().zip(&chats) {
            message.offline = chat::offline_here(ctx, &chat.recipients);
        }
    }
    let committed = ctx.log.append(messages).map_err(Failure::from);
    let mut answers = match committed {
        Ok((messages, appended)) => {
            chat::deliver_all(ctx, &me, messages, &appended, &chats);
            appended
                .iter()
                .zip(&chats)
                .map(|(a, chat)| match a {
                    Ok(c) => Ok(chat::ack(&me, c, chat)),
                    Err(refusal) => Err(chat::refused(*refusal)),
                })
                .collect::<Vec<_>>()
        }
        Err(failure) => chats.iter().map(|_| Err(failure.clone())).collect(),
    }
    .into_iter();
    drop(chats);
    for entry in entries {
        let frame = match entry {
            Entry::Reply(item) => {
                // Refused only once the connection is closing, when a reply no longer matters.
                let _ = caller.mailbox.push(item);
                continue;
            }
            Entry::Chat(chat) => match answers.next().expect("one answer per chat") {
                Ok(ack) => {
                    ctx.metrics.request(chat.msgid, 0);
                    ack
                }
                Err(failure) => {
                    ctx.metrics.request(chat.msgid, failure.code);
                    Some(failure.frame(Some(&Value::from(chat.msgid)), chat.seq.as_ref()))
                }
            },
        };
        if let Some(frame) = frame {
            // Refused only once the connection is closing, when a reply no longer matters.
            let _ = caller.mailbox.push(Outgoing::Reply(frame));
        }
    }
}
