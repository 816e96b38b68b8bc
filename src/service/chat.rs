//! Chat: one-to-one and group messages, routed live or stored offline, and the offline backlog.
//!
//! Routing a frame to a user: online on this node → their mailbox; else the bus → the node that holds
//! them; else storage, followed by a nudge. The nudge closes the race at login (PROTOCOL.md): a user who
//! logs in registers their mailbox before reading storage, and whoever stores a frame checks for them
//! afterwards, so either the login's read sees the frame or the nudge makes their connection fetch it.
//!
//! A chat's offline messages are stored when the sender's connection has handled everything it read at
//! once ([`super::pending`]); the sender's acknowledgement follows the commit.

use std::sync::{Arc, Weak};

use serde_json::{Value, json};

use super::pending::{self, Answer};
use super::{Caller, Context, Failure};
use crate::bus::Inbox;
use crate::mailbox::Outgoing;
use crate::model::{GroupId, UserId};
use crate::protocol::reply::{self, Target};
use crate::protocol::{Errno, msgid};
use crate::store::{Offline, StoreError};

/// ONE_CHAT_MSG: sends `text` to user `to`.
pub fn one(
    ctx: &Context,
    caller: &Caller,
    to: UserId,
    text: &str,
    time: Option<String>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me();
    let time = time.unwrap_or_else(now);
    let frame: Arc<str> = reply::chat(me.id, &me.name, Target::User(to), text, &time).into();
    let offline = route(ctx, caller, &[to], &frame);
    answer_after(
        ctx,
        caller,
        offline,
        answer(caller, msgid::ONE_CHAT, seq, true),
    );
    Ok(())
}

/// GROUP_CHAT_MSG: sends `text` to every other member of `group`.
pub fn group(
    ctx: &Context,
    caller: &Caller,
    group: GroupId,
    text: &str,
    time: Option<String>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me();
    let no_group = || Failure::new(Errno::NotFound, "no such group");
    let cached = |ctx: &Context| ctx.members.members(ctx.store.as_ref(), group);
    let mut members = cached(ctx)?.ok_or_else(no_group)?;
    if !members.contains(&me.id) {
        // Perhaps joined through another node a moment ago: ask the database before refusing.
        ctx.members.invalidate(Some(group));
        members = cached(ctx)?.ok_or_else(no_group)?;
        if !members.contains(&me.id) {
            return Err(Failure::new(
                Errno::NotAllowed,
                "you are not a member of this group",
            ));
        }
    }
    let recipients: Vec<UserId> = members.iter().copied().filter(|&m| m != me.id).collect();
    let time = time.unwrap_or_else(now);
    let frame: Arc<str> = reply::chat(me.id, &me.name, Target::Group(group), text, &time).into();
    let offline = route(ctx, caller, &recipients, &frame);
    answer_after(
        ctx,
        caller,
        offline,
        answer(caller, msgid::GROUP_CHAT, seq, false),
    );
    Ok(())
}

/// How a chat request is answered: CHAT_ACK for a v2 client, nothing for v1, an error if storing fails.
fn answer(caller: &Caller, msgid: i64, seq: Option<&Value>, single: bool) -> Answer {
    let ack = caller.v2_frame(json!({"msgid": msgid::CHAT_ACK, "errno": 0}), seq);
    Answer {
        msgid,
        seq: seq.cloned(),
        ack,
        single,
    }
}

/// Queues the answer (behind any reply still waiting) when nothing has to be stored; else holds it with
/// `offline` among the caller's waiting chats, to be sent once they are stored.
fn answer_after(ctx: &Context, caller: &Caller, offline: Vec<Offline>, answer: Answer) {
    if offline.is_empty() {
        if let Some(ack) = answer.ack {
            caller.reply(ack);
        }
        return;
    }
    if caller.pending.borrow_mut().hold(offline, answer) {
        pending::flush(ctx, caller);
    }
}

/// Delivers `frame` to each recipient who is online, here or on another node, and returns the messages
/// left to store. A recipient with a message of this caller's still waiting to be stored gets this one
/// stored after it rather than live before it.
fn route(ctx: &Context, caller: &Caller, recipients: &[UserId], frame: &Arc<str>) -> Vec<Offline> {
    let mut offline = Vec::new();
    for &to in recipients {
        let item = Outgoing::Chat {
            to,
            frame: frame.clone(),
        };
        let waiting = caller.pending.borrow().holds(to);
        let live = !waiting && (ctx.online.deliver(to, item).is_ok() || forward(ctx, to, frame));
        if !live {
            offline.push(Offline {
                to,
                frame: frame.clone(),
            });
        }
    }
    offline
}

/// Hands a frame to another node; `false` when no node took it.
fn forward(ctx: &Context, to: UserId, frame: &Arc<str>) -> bool {
    ctx.bus.forward(to, frame).unwrap_or_else(|e| {
        tracing::debug!(user = to, error = %e, "forward failed; storing offline");
        false
    })
}

/// Tells each user's connection, here or on another node, that frames were stored for them.
pub fn nudge(ctx: &Context, users: impl IntoIterator<Item = UserId>) {
    let mut users: Vec<UserId> = users.into_iter().collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        if ctx.online.deliver(user, Outgoing::Nudge(user)).is_err() {
            ctx.bus.nudge(user);
        }
    }
}

/// Stores chat frames a connection could not write (it closed, or stopped reading) and returns their
/// recipients, to [`nudge`] once the caller holds no mailbox lock. A failure here is the one loss the
/// server cannot avoid; it is logged with the count.
pub fn persist_undelivered(ctx: &Context, frames: Vec<(UserId, Arc<str>)>) -> Vec<UserId> {
    if frames.is_empty() {
        return Vec::new();
    }
    let offline: Vec<Offline> = frames
        .into_iter()
        .map(|(to, frame)| Offline { to, frame })
        .collect();
    if let Err(e) = ctx.offline.store(offline.clone()) {
        tracing::error!(count = offline.len(), error = %e, "could not store undelivered messages");
    }
    offline.into_iter().map(|m| m.to).collect()
}

/// [`persist_undelivered`], then [`nudge`].
pub fn store_undelivered(ctx: &Context, frames: Vec<(UserId, Arc<str>)>) {
    let users = persist_undelivered(ctx, frames);
    nudge(ctx, users);
}

/// What other nodes forward to this one, handed to the users' mailboxes.
pub struct NodeInbox(pub Weak<Context>);

impl Inbox for NodeInbox {
    fn deliver(&self, user: UserId, frame: Arc<str>) {
        let Some(ctx) = self.0.upgrade() else { return };
        let item = Outgoing::Chat {
            to: user,
            frame: frame.clone(),
        };
        // The user left this node after the sender's node saw our subscription: the sender counted the
        // message as delivered, so it is ours to store.
        if ctx.online.deliver(user, item).is_err() {
            store_undelivered(&ctx, vec![(user, frame)]);
        }
    }

    fn nudge(&self, user: UserId) {
        if let Some(ctx) = self.0.upgrade() {
            let _ = ctx.online.deliver(user, Outgoing::Nudge(user));
        }
    }

    fn group_changed(&self, group: Option<GroupId>) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.members.invalidate(group);
        }
    }
}

/// Takes the next batch of `user`'s stored frames, oldest first.
pub fn fetch_offline(ctx: &Context, user: UserId) -> Result<Vec<String>, StoreError> {
    ctx.store.take_offline(user, ctx.offline_batch)
}

/// The server's local time, as the C++ client writes it.
fn now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}
