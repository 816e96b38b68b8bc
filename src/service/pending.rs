//! What a connection's chats leave to do until everything it read at once has been handled: their offline
//! messages, stored together in one transaction, and the replies that wait for them.
//!
//! A client that pipelines chats to a user who is offline would otherwise wait for one commit per
//! message, and a flood of such chats would make the disk sync for each one, slowing everyone. Replies
//! keep the order of the frames they answer: once something waits here, every later reply waits behind
//! it. Order per sender and recipient holds too: a frame for a recipient who already has one waiting
//! here joins the wait instead of overtaking it live ([`Pending::holds`]).

use std::collections::HashSet;
use std::mem;

use serde_json::Value;

use super::{Caller, Context, Failure, chat};
use crate::mailbox::Outgoing;
use crate::model::UserId;
use crate::protocol::Errno;
use crate::store::Offline;

/// Messages held at which they are stored at once, before the read's other frames, so that a large
/// group's chats do not pile up in memory.
const STORE_AT: usize = 1024;

/// Offline messages and replies of one connection waiting to be stored and sent, in frame order.
#[derive(Default)]
pub struct Pending {
    entries: Vec<Entry>,
    /// The messages of each [`Entry::Chat`], in order.
    batches: Vec<Vec<Offline>>,
    /// Everyone with a message in `batches`.
    recipients: HashSet<UserId>,
    /// How many messages `batches` holds in all.
    messages: usize,
}

enum Entry {
    /// A reply to send as it is.
    Reply(String),
    /// A chat, answered once its `expected` messages (the next of `batches`) are stored.
    Chat { answer: Answer, expected: usize },
}

/// How a chat is answered once its offline messages are stored, or could not be.
pub struct Answer {
    /// The request's msgid, echoed as `ref` in an error.
    pub msgid: i64,
    /// The request's `seq`, echoed in the answer.
    pub seq: Option<Value>,
    /// The acknowledgement for a v2 client; a v1 client gets none.
    pub ack: Option<String>,
    /// A one-to-one chat: a recipient that does not exist is the sender's error, where a group chat
    /// skips them.
    pub single: bool,
}

impl Answer {
    /// The frame for the sender once `stored` of `expected` messages were stored (or the store failed).
    fn frame(self, stored: Result<usize, &Failure>, expected: usize) -> Option<String> {
        let failure = match stored {
            Ok(n) if self.single && n < expected => Failure::new(Errno::NotFound, "no such user"),
            Ok(_) => return self.ack,
            Err(failure) => failure.clone(),
        };
        Some(failure.frame(Some(&Value::from(self.msgid)), self.seq.as_ref()))
    }
}

impl Pending {
    /// Whether nothing waits, so a reply can go out at once.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a message for `user` is waiting here.
    pub fn holds(&self, user: UserId) -> bool {
        self.recipients.contains(&user)
    }

    /// Queues a reply behind what waits.
    pub fn reply(&mut self, frame: String) {
        self.entries.push(Entry::Reply(frame));
    }

    /// Holds a chat's offline messages and the answer it is owed; returns whether it is time to store.
    pub fn hold(&mut self, messages: Vec<Offline>, answer: Answer) -> bool {
        self.recipients.extend(messages.iter().map(|m| m.to));
        self.messages += messages.len();
        self.entries.push(Entry::Chat {
            answer,
            expected: messages.len(),
        });
        self.batches.push(messages);
        self.messages >= STORE_AT
    }
}

/// Stores everything the caller's chats left waiting, in one transaction, then sends the waiting replies
/// in order and nudges the recipients. Called when a read's frames are handled, before handling any
/// request but a chat (once it passed the checks of dispatch), when [`STORE_AT`] messages wait, and when
/// the connection ends.
pub fn flush(ctx: &Context, caller: &Caller) {
    let Pending {
        entries,
        batches,
        recipients,
        ..
    } = mem::take(&mut *caller.pending.borrow_mut());
    if entries.is_empty() {
        return;
    }
    let stored = ctx.offline.store_many(batches).map_err(Failure::from);
    let mut counts = stored.iter().flatten().copied();
    for entry in entries {
        let frame = match entry {
            Entry::Reply(frame) => Some(frame),
            Entry::Chat { answer, expected } => {
                let result = match &stored {
                    Ok(_) => Ok(counts
                        .next()
                        .expect("the writer checks one count per batch")),
                    Err(failure) => Err(failure),
                };
                answer.frame(result, expected)
            }
        };
        if let Some(frame) = frame {
            // Refused only once the connection is closing, when a reply no longer matters.
            let _ = caller.mailbox.push(Outgoing::Reply(frame));
        }
    }
    if stored.is_ok() {
        chat::nudge(ctx, recipients);
    }
}
