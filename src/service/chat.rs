//! Chat: one-to-one and group messages, committed to the log, then delivered live or recorded offline.
//!
//! A chat request is checked at once (recipient, membership) and its message waits in the caller's
//! [`super::pending`] list, to be committed with the rest of the read. Once committed, each recipient's
//! devices get it: on this node through [`crate::online`], on others through the [`crate::bus`]; a
//! recipient whom no device took has it recorded offline, followed by a nudge. The nudge closes the race
//! at login (PROTOCOL.md): a device that logs in registers its mailbox before reading the offline list, and
//! whoever records a message offline checks for it afterwards, so either the login's read sees the record or
//! the nudge makes the connection fetch it. The sender's other devices get a carbon; the sender's
//! acknowledgement follows all of it.

use std::cell::OnceCell;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pending::Chat;
use super::{Caller, Context, Failure, Identity};
use crate::bus::Inbox;
use crate::mailbox::Live;
use crate::model::{Conv, GroupId, LogMessage, Members, Pos, UserId};
use crate::online::{Frames, Made};
use crate::protocol::reply;
use crate::protocol::{Errno, Version, msgid};
use crate::store::{Appended, Committed, NewMessage, Pointer, Refusal, Require};

/// ONE_CHAT_MSG: sends `text` to user `to` (unless `to` blocks the caller, which the commit checks).
pub fn one(
    ctx: &Context,
    caller: &mut Caller,
    to: UserId,
    text: String,
    time: Option<String>,
    cid: Option<String>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    if ctx.users.name(ctx.store.as_ref(), to)?.is_none() {
        return Err(Failure::new(Errno::NotFound, format!("no such user: {to}")));
    }
    let me = caller.me().id;
    let require = if to == me {
        Require::Nothing
    } else {
        Require::NotBlocked
    };
    let message = new_message(
        caller,
        Conv::direct(me, to),
        text,
        time,
        cid.clone(),
        require,
    );
    let chat = Chat {
        recipients: vec![to],
        members_version: 0,
        msgid: msgid::ONE_CHAT,
        seq: seq.cloned(),
        cid,
    };
    hold(ctx, caller, message, chat);
    Ok(())
}

/// GROUP_CHAT_MSG: sends `text` to every other member of `group` (while the caller is one, which the
/// commit checks).
pub fn group(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    text: String,
    time: Option<String>,
    cid: Option<String>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = member_list(ctx, group, me)?;
    let message = new_message(
        caller,
        Conv::Group(group),
        text,
        time,
        cid.clone(),
        Require::Member,
    );
    let chat = Chat {
        recipients: members.ids().filter(|&m| m != me).collect(),
        members_version: members.version,
        msgid: msgid::GROUP_CHAT,
        seq: seq.cloned(),
        cid,
    };
    hold(ctx, caller, message, chat);
    Ok(())
}

/// The members of `group`, which `me` must be one of: 104 for no such group, 105 for not a member. From
/// the cache: fit for sending (the commit checks again), not for deciding.
pub fn member_list(ctx: &Context, group: GroupId, me: UserId) -> Result<Arc<Members>, Failure> {
    let cached = |ctx: &Context| ctx.members.members(ctx.store.as_ref(), group);
    let members = cached(ctx)?.ok_or_else(no_group)?;
    if members.contains(me) {
        return Ok(members);
    }
    // Perhaps joined through another node a moment ago: ask the database before refusing.
    member_now(ctx, group, me)
}

/// The members of `group` as the database has them now, which `me` must be one of (104, 105): for what
/// must see a kick or a leave acknowledged on another node a moment ago.
pub fn member_now(ctx: &Context, group: GroupId, me: UserId) -> Result<Arc<Members>, Failure> {
    let members = group_now(ctx, group)?;
    super::rules::member(&members, me)?;
    Ok(members)
}

/// The members of `group` as the database has them now (104 if it does not exist).
pub fn group_now(ctx: &Context, group: GroupId) -> Result<Arc<Members>, Failure> {
    ctx.members
        .at_version(ctx.store.as_ref(), group, i64::MAX)?
        .ok_or_else(no_group)
}

fn no_group() -> Failure {
    Failure::new(Errno::NotFound, "no such group")
}

/// A chat's message, to be committed if `require` holds then.
fn new_message(
    caller: &Caller,
    conv: Conv,
    text: String,
    time: Option<String>,
    cid: Option<String>,
    require: Require,
) -> NewMessage {
    NewMessage {
        conv,
        sender: caller.me().id,
        cid,
        time: time.unwrap_or_else(now),
        text,
        offline: Vec::new(),
        require,
    }
}

/// Sets a checked chat aside until the read's commit.
fn hold(ctx: &Context, caller: &mut Caller, message: NewMessage, chat: Chat) {
    if caller.pending.hold(message, chat) {
        super::pending::flush(ctx, caller);
    }
}

/// What the client is told when a chat's condition failed at commit.
pub fn refused(refusal: Refusal) -> Failure {
    match refusal {
        Refusal::Blocked => {
            Failure::new(Errno::NotAllowed, "this user does not accept your messages")
        }
        Refusal::NoGroup => no_group(),
        Refusal::NotMember => Failure::new(Errno::NotAllowed, "you are not a member of this group"),
    }
}

/// The acknowledgement of a committed chat: CHAT_ACK with its place in the log for v2, nothing for v1.
pub fn ack(me: &Identity, committed: &Committed, chat: &Chat) -> Option<String> {
    (me.version == Version::V2).then(|| {
        reply::chat_ack(
            committed.conv,
            committed.pos,
            committed.ts,
            me.id,
            chat.cid.as_deref(),
            chat.seq.as_ref(),
        )
    })
}

/// Those of `recipients` with no device on this node.
pub fn offline_here(ctx: &Context, recipients: &[UserId]) -> Vec<UserId> {
    recipients
        .iter()
        .copied()
        .filter(|&r| !ctx.online.contains(r))
        .collect()
}

/// Delivers each committed message (repeats of a cid are not delivered again), records offline what no
/// device took, and nudges whoever has new offline messages.
pub fn deliver_all(
    ctx: &Context,
    me: &Identity,
    messages: Vec<NewMessage>,
    appended: &[Appended],
    chats: &[&Chat],
) {
    let mut late = Vec::new();
    let mut nudged = Vec::new();
    for ((message, c), chat) in messages.into_iter().zip(appended).zip(chats) {
        let Ok(c) = c else { continue };
        if c.duplicate {
            continue;
        }
        let recipients = recipients_at(ctx, chat, c, me.id);
        nudged.extend_from_slice(&message.offline);
        let offline = message.offline;
        let logged = LogMessage {
            conv: c.conv,
            pos: c.pos,
            ts: c.ts,
            sender: me.id,
            sender_name: me.name.to_string(),
            cid: message.cid,
            time: message.time,
            text: message.text,
        };
        // A group's frame reads the same for every member; a one-to-one frame has one recipient.
        let shared = matches!(c.conv, Conv::Group(_)).then(|| Shapes::of(&logged, me.id));
        for &to in recipients.iter().filter(|r| !offline.contains(r)) {
            let own;
            let frames = match &shared {
                Some(frames) => frames,
                None => {
                    own = Shapes::of(&logged, to);
                    &own
                }
            };
            if !deliver(ctx, to, frames, (c.conv, c.pos)) {
                late.push(Pointer {
                    user: to,
                    conv: c.conv,
                    pos: c.pos,
                });
            }
        }
        if chat.recipients != [me.id] {
            carbon(ctx, me, &logged);
        }
    }
    ctx.metrics.delivered("stored", nudged.len() + late.len());
    if !record_offline(ctx, late.clone()) {
        late.clear();
    }
    nudge(ctx, nudged.into_iter().chain(late.iter().map(|p| p.user)));
}

/// Who gets a committed message: the recipients the chat was checked with, unless the commit saw a newer
/// member list of the group (a join, leave or kick acknowledged meanwhile, on any node), whose members
/// then get it instead.
fn recipients_at<'a>(
    ctx: &Context,
    chat: &'a Chat,
    c: &Committed,
    me: UserId,
) -> std::borrow::Cow<'a, [UserId]> {
    let Conv::Group(group) = c.conv else {
        return (&chat.recipients[..]).into();
    };
    if c.members_version == chat.members_version {
        return (&chat.recipients[..]).into();
    }
    match ctx
        .members
        .at_version(ctx.store.as_ref(), group, c.members_version)
    {
        Ok(Some(members)) => members
            .ids()
            .filter(|&m| m != me)
            .collect::<Vec<_>>()
            .into(),
        Ok(None) => Vec::new().into(),
        Err(e) => {
            tracing::warn!(group, error = %e, "could not reload a group's members; delivering to those known");
            (&chat.recipients[..]).into()
        }
    }
}

/// A committed message as `viewer`'s devices read it, each shape made when first asked for; a carbon
/// (the sender's own copy, for their other devices) has no v1 shape.
struct Shapes<'a> {
    message: &'a LogMessage,
    viewer: UserId,
    carbon: bool,
    v1: OnceCell<Arc<str>>,
    v2: OnceCell<Arc<str>>,
}

impl<'a> Shapes<'a> {
    fn of(message: &'a LogMessage, viewer: UserId) -> Shapes<'a> {
        Shapes {
            message,
            viewer,
            carbon: false,
            v1: OnceCell::new(),
            v2: OnceCell::new(),
        }
    }

    fn carbon(message: &'a LogMessage, sender: UserId) -> Shapes<'a> {
        Shapes {
            carbon: true,
            ..Shapes::of(message, sender)
        }
    }

    fn made(&self, cell: &OnceCell<Arc<str>>, version: Version) -> Arc<str> {
        cell.get_or_init(|| reply::chat(self.message, version, self.viewer).into())
            .clone()
    }
}

impl Frames for Shapes<'_> {
    fn v1(&self) -> Option<Arc<str>> {
        (!self.carbon).then(|| self.made(&self.v1, Version::V1))
    }

    fn v2(&self) -> Arc<str> {
        self.made(&self.v2, Version::V2)
    }
}

/// Hands a committed message to `to`'s devices, here and on other nodes; `false` when none took it.
fn deliver(ctx: &Context, to: UserId, frames: &Shapes, at: (Conv, Pos)) -> bool {
    let here = ctx.online.deliver(to, frames, Some(at), None);
    if here {
        ctx.metrics.delivered("live", 1);
    }
    let elsewhere = ctx.bus.is_cluster() && {
        let parcel = Parcel {
            origin: ctx.node.clone(),
            v1: frames.v1().as_deref().map(str::to_owned),
            v2: frames.v2().to_string(),
            at: Some((at.0.key(), at.1)),
            except: None,
            push: false,
        };
        forward(ctx, to, &parcel) > usize::from(ctx.online.contains(to))
    };
    if elsewhere {
        ctx.metrics.delivered("forwarded", 1);
    }
    here || elsewhere
}

/// The sender's other v2 devices get the message they sent, as they name its conversation.
fn carbon(ctx: &Context, me: &Identity, m: &LogMessage) {
    let frames = Shapes::carbon(m, me.id);
    ctx.online.deliver(me.id, &frames, None, Some(&me.device));
    if ctx.bus.is_cluster() {
        let parcel = Parcel {
            origin: ctx.node.clone(),
            v1: None,
            v2: frames.v2().to_string(),
            at: None,
            except: Some(me.device.to_string()),
            push: false,
        };
        forward(ctx, me.id, &parcel);
    }
}

/// A v2-only frame (a receipt) for `user`'s v2 devices but `except`, here and on other nodes.
pub fn push_v2(ctx: &Context, user: UserId, frame: String, except: Option<&str>) {
    ctx.online.push_v2(user, &frame, except);
    if ctx.bus.is_cluster() {
        let parcel = Parcel {
            origin: ctx.node.clone(),
            v1: None,
            v2: frame,
            at: None,
            except: except.map(str::to_owned),
            push: true,
        };
        forward(ctx, user, &parcel);
    }
}

/// What travels between nodes for a user: a frame in the shapes their devices need.
#[derive(Serialize, Deserialize)]
struct Parcel {
    /// The node that sent it, which delivered to the user's devices it holds itself.
    origin: String,
    /// The original's frame, for v1 devices (none for carbons and pushes).
    v1: Option<String>,
    v2: String,
    /// The message's place in the log (conversation key, position): recorded offline for the user when
    /// no device of the receiving node takes it. `None` for a carbon or push.
    at: Option<(i64, Pos)>,
    /// The device that must not get it (the sender's own).
    except: Option<String>,
    /// A v2-only push (a receipt) rather than a chat frame.
    push: bool,
}

/// Publishes a parcel for `user`; how many nodes took it (this one included when it holds the user).
fn forward(ctx: &Context, user: UserId, parcel: &Parcel) -> usize {
    let payload = serde_json::to_string(parcel).expect("a parcel always serializes");
    ctx.bus.forward(user, payload.into()).unwrap_or_else(|e| {
        ctx.metrics.error("redis");
        tracing::debug!(user, error = %e, "forward failed; recording offline");
        0
    })
}

/// Tells each user's devices, here or on another node, that messages were recorded offline for them.
pub fn nudge(ctx: &Context, users: impl IntoIterator<Item = UserId>) {
    let mut users: Vec<UserId> = users.into_iter().collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        if !ctx.online.nudge(user) {
            ctx.bus.nudge(user);
        }
    }
}

/// Records offline the chat frames a connection could not write (it closed, or stopped reading) whose
/// messages reached no device of their user here, and returns what was recorded, to [`nudge`] its users
/// once the caller holds no mailbox lock. Carbons are not recorded: they were the sender's copy, and the
/// log has them. What storage refuses is kept for the heartbeat to record ([`record_offline`]) and is not
/// returned.
pub fn persist_undelivered(ctx: &Context, frames: Vec<Live>) -> Vec<Pointer> {
    let pointers: Vec<Pointer> = frames.into_iter().filter_map(Live::pointer).collect();
    if record_offline(ctx, pointers.clone()) {
        pointers
    } else {
        Vec::new()
    }
}

/// Records `pointers` offline; `false` when storage refused, and then they are kept for the heartbeat
/// to record ([`retry_offline`]).
fn record_offline(ctx: &Context, pointers: Vec<Pointer>) -> bool {
    if pointers.is_empty() {
        return true;
    }
    match ctx.log.store_offline(pointers.clone()) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(count = pointers.len(), error = %e, "could not record messages offline; will retry");
            ctx.unrecorded.keep(pointers);
            false
        }
    }
}

/// Records offline what storage refused before (on the heartbeat), and nudges its users.
pub fn retry_offline(ctx: &Context) {
    let pending = ctx.unrecorded.take();
    if pending.is_empty() {
        return;
    }
    match ctx.log.store_offline(pending.clone()) {
        Ok(()) => {
            tracing::info!(
                count = pending.len(),
                "recorded offline what storage had refused"
            );
            nudge(ctx, pending.iter().map(|p| p.user));
        }
        Err(_) => ctx.unrecorded.put_back(pending),
    }
}

/// Offline records that storage refused (it was down at that moment), to be written again: the
/// messages are in the log, but a v1 recipient learns of them only from its offline list. Bounded: past
/// [`MAX_UNRECORDED`] more are dropped with an error, and stay in the history only.
#[derive(Default)]
pub struct Unrecorded(parking_lot::Mutex<Vec<Pointer>>);

/// The most offline records a node keeps to write again (24 bytes each).
const MAX_UNRECORDED: usize = 1 << 20;

impl Unrecorded {
    fn keep(&self, pointers: Vec<Pointer>) {
        let mut kept = self.0.lock();
        let room = MAX_UNRECORDED.saturating_sub(kept.len());
        if pointers.len() > room {
            tracing::error!(
                count = pointers.len() - room,
                "too many offline records waiting; these stay in the history only"
            );
        }
        kept.extend(pointers.into_iter().take(room));
    }

    fn take(&self) -> Vec<Pointer> {
        std::mem::take(&mut *self.0.lock())
    }

    /// Puts `older` back before whatever was kept since it was taken.
    fn put_back(&self, older: Vec<Pointer>) {
        let mut kept = self.0.lock();
        let newer = std::mem::replace(&mut *kept, older);
        kept.extend(newer);
    }
}

/// [`persist_undelivered`], then [`nudge`].
pub fn store_undelivered(ctx: &Context, frames: Vec<Live>) {
    let recorded = persist_undelivered(ctx, frames);
    nudge(ctx, recorded.iter().map(|p| p.user));
}

/// What other nodes forward to this one, handed to the users' devices here.
pub struct NodeInbox(pub Weak<Context>);

impl Inbox for NodeInbox {
    fn deliver(&self, user: UserId, payload: &str) {
        let Some(ctx) = self.0.upgrade() else { return };
        let Ok(parcel) = serde_json::from_str::<Parcel>(payload) else {
            tracing::warn!(user, "ignoring a payload from the bus that is not a parcel");
            return;
        };
        if parcel.origin == ctx.node {
            return;
        }
        let except = parcel.except.as_deref();
        if parcel.push {
            ctx.online.push_v2(user, &parcel.v2, except);
            return;
        }
        let at = parcel
            .at
            .and_then(|(key, pos)| Some((Conv::from_key(key)?, pos)));
        let frames = Made {
            v1: parcel.v1.map(Arc::from),
            v2: parcel.v2.into(),
        };
        // The user left this node after the sender's node saw our subscription: the sender counted the
        // message as taken, so recording it offline is ours to do.
        if !ctx.online.deliver(user, &frames, at, except)
            && let Some(at) = at
        {
            store_undelivered(&ctx, vec![Live::single(user, frames.v2(), at)]);
        }
    }

    fn nudge(&self, user: UserId) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.online.nudge(user);
        }
    }

    fn group_changed(&self, group: Option<GroupId>) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.members.invalidate(group);
        }
    }

    fn cut_off(&self, user: UserId) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.penalties.record(user);
        }
    }

    fn holds(&self, user: UserId) -> bool {
        self.0
            .upgrade()
            .is_some_and(|ctx| ctx.online.contains(user))
    }
}

/// The server's local time, as the C++ client writes it.
fn now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}
