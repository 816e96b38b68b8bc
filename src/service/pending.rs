//! What a connection's chats leave to do until everything it read at once has been handled: their
//! messages, committed to the log together in one transaction, then delivered, and the replies that wait
//! for them.
//!
//! A client that pipelines chats would otherwise wait for one commit per message, and a flood of chats
//! would make the disk sync for each one, slowing everyone. Replies keep the order of the frames they
//! answer: once something waits here, every later reply waits behind it; once a turn's chats are handed
//! on to the log ([`hand_on`]), the connection's next reply, request other than a chat, or next commit
//! waits until they have landed ([`Pending::settle`]).

use std::mem;
use std::sync::Arc;

use serde_json::Value;

use super::{Caller, Context, Failure, Identity, chat};
use crate::mailbox::{Mailbox, Outgoing};
use crate::model::UserId;
use crate::store::NewMessage;
use crate::store::batch::{Done, Landing};

/// Messages held at which they are committed at once, before the read's other frames, so that a flood
/// does not pile up in memory.
const COMMIT_AT: usize = 1024;

/// Chats and replies of one connection waiting for a commit, in frame order.
#[derive(Default)]
pub struct Pending {
    entries: Vec<Entry>,
    /// The messages of the [`Entry::Chat`]s, in order.
    messages: Vec<NewMessage>,
    /// The chats handed on last ([`hand_on`]), until they are known to have landed.
    landing: Option<Landing>,
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

    /// Waits until the chats handed on last are delivered and answered, so that what comes next comes
    /// after them.
    pub fn settle(&mut self) {
        if let Some(landing) = self.landing.take() {
            landing.wait();
        }
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
/// sends the waiting replies in order, all before it returns. Run before handling any request but a
/// chat (once it passed the checks of dispatch), whose work must come after the chats before it, and
/// when [`COMMIT_AT`] messages wait.
pub fn flush(ctx: &Context, caller: &mut Caller) {
    if let Some((messages, landed)) = take(ctx, caller) {
        let done = ctx.log.append(messages);
        landed.run(ctx, done);
    }
}

/// Like [`flush`], but hands the commit and what follows it to the log ([`LogWriter::append_then`]) and
/// returns at once: run when a turn ends, so the connection's thread goes back to reading. Whatever
/// the connection does next that could overtake it waits for it first ([`Pending::settle`]).
///
/// Only a node on its own hands on. In a cluster, delivering a message waits for Redis to say which
/// nodes took it; on the log's one completion thread those waits would follow one another, and a slow or
/// vanished Redis would hold up every delivery on the node, so there each connection flushes on its own
/// thread, as before.
///
/// [`LogWriter::append_then`]: crate::store::batch::LogWriter::append_then
pub fn hand_on(ctx: &Arc<Context>, caller: &mut Caller) {
    if ctx.bus.is_cluster() {
        return flush(ctx, caller);
    }
    if let Some((messages, landed)) = take(ctx, caller) {
        let then = ctx.clone();
        let landing = ctx
            .log
            .append_then(messages, move |done| landed.run(&then, done));
        caller.pending.landing = Some(landing);
    }
}

/// What waits in `caller`'s list (after the chats handed on before it have landed): the messages to
/// commit, and what to do once they are.
fn take(ctx: &Context, caller: &mut Caller) -> Option<(Vec<NewMessage>, Landed)> {
    caller.pending.settle();
    let Pending {
        entries,
        mut messages,
        landing: _,
    } = mem::take(&mut caller.pending);
    if entries.is_empty() {
        return None;
    }
    if !ctx.bus.is_cluster() {
        // Alone, this node knows who is offline: record it in the same transaction.
        let chats = entries.iter().filter_map(Entry::chat);
        for (message, chat) in messages.iter_mut().zip(chats) {
            message.offline = chat::offline_here(ctx, &chat.recipients);
        }
    }
    let landed = Landed {
        me: caller.me().clone(),
        entries,
        mailbox: caller.mailbox.clone(),
    };
    Some((messages, landed))
}

/// A connection's chats on their way to the log, and the replies behind them.
struct Landed {
    me: Identity,
    entries: Vec<Entry>,
    mailbox: Arc<Mailbox>,
}

impl Entry {
    fn chat(&self) -> Option<&Chat> {
        match self {
            Entry::Chat(chat) => Some(chat),
            Entry::Reply(_) => None,
        }
    }
}

impl Landed {
    /// Delivers what was committed and sends every answer, in frame order.
    fn run(self, ctx: &Context, committed: Done) {
        let Landed {
            me,
            entries,
            mailbox,
        } = self;
        let chats: Vec<&Chat> = entries.iter().filter_map(Entry::chat).collect();
        let mut answers = match committed.map_err(Failure::from) {
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
                    let _ = mailbox.push(item);
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
                let _ = mailbox.push(Outgoing::Reply(frame));
            }
        }
    }
}
