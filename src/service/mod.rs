//! The chat service: what each request does, independent of sockets.
//!
//! A connection hands the frames of one read to a [`Turn`] ([`Caller::turn`]); [`Turn::dispatch`] applies
//! the checks of PROTOCOL.md in their order (malformed, msgid, login state, fields) and calls the handler
//! of the request's area: [`account`], [`friend`], [`group`], [`chat`] or [`history`]. Handlers reply by
//! queueing into the caller's mailbox; they never touch a socket. A failure is a [`Failure`], turned into
//! the right frame here: the login or register ack for those two requests (the C++ client waits for that
//! ack), ERROR_MSG for everything else.
//!
//! Chats wait in the caller's [`pending`] list until the turn ends (or another kind of request comes), so
//! that a read's messages are committed to the log together; dropping the turn hands them to the log,
//! which commits and delivers them, so no caller can forget to. What the connection does next waits
//! for them to have landed where it could overtake them.

pub mod account;
pub mod chat;
pub mod friend;
pub mod group;
pub mod history;
pub mod members;
mod pending;
pub mod presence;
pub mod rules;
pub mod token;
pub mod typing;
pub mod users;

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::bus::Bus;
use crate::hasher::Hasher;
use crate::limit::LoginThrottle;
use crate::mailbox::{Mailbox, Outgoing};
use crate::model::UserId;
use crate::online::Online;
use crate::protocol::frame::Decoded;
use crate::protocol::request::{Envelope, EnvelopeError, Limits, Request, is_client_msgid};
use crate::protocol::{Errno, Version, msgid, reply};
use crate::store::batch::LogWriter;
use crate::store::{GroupUpdate, Store, StoreError};
use members::MemberCache;
use pending::Pending;
use users::UserNames;

/// Everything a handler may use, shared by all connections of a node.
pub struct Context {
    pub store: Arc<dyn Store>,
    /// Appends to the log in batches (group commit) on top of `store`.
    pub log: LogWriter,
    pub online: Online,
    pub bus: Box<dyn Bus>,
    pub hasher: Hasher,
    pub limits: Limits,
    /// This node's id: the owner recorded with the presence of its users.
    pub node: String,
    /// How many offline messages a login ack carries at most; more follow as chat frames.
    pub offline_batch: usize,
    /// Most devices a user may have logged in at once, across the cluster.
    pub max_devices: usize,
    /// Devices (user, name) whose release of presence failed (storage down); retried by the heartbeat.
    pub unreleased: Mutex<HashSet<(UserId, Arc<str>)>>,
    /// Offline records storage refused; retried by the heartbeat.
    pub unrecorded: chat::Unrecorded,
    /// Failed-login counts, so password guessing cannot burn everyone's CPU.
    pub login_throttle: LoginThrottle,
    /// Users cut off for flooding a moment ago: they log in again without a burst allowance.
    pub penalties: crate::limit::Penalties,
    /// The proxies whose word on a client's address (a PROXY header, `X-Forwarded-For`) counts, for the
    /// throttle's per-address counts.
    pub proxies: crate::protocol::proxy::TrustedProxies,
    /// Group member lists, so group chat needs no database query per message.
    pub members: MemberCache,
    /// User names, so a chat's recipient needs no database query per message.
    pub users: UserNames,
    /// When each sender's typing notices were last relayed.
    pub typing: typing::Throttle,
    /// What the node counts, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The logged-in user of a connection, and which of their devices it is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: UserId,
    pub name: Arc<str>,
    pub version: Version,
    pub device: Arc<str>,
}

/// One connection as the service sees it: who is logged in, where replies go, and where it comes from.
pub struct Caller {
    pub user: Option<Identity>,
    pub mailbox: Arc<Mailbox>,
    /// The client's address, for the failed-login throttle.
    pub peer: IpAddr,
    /// Chats handled but not yet committed, and the replies behind them.
    pending: Pending,
}

impl Caller {
    /// A connection from `peer` that has not logged in.
    pub fn new(mailbox: Arc<Mailbox>, peer: IpAddr) -> Caller {
        Caller {
            user: None,
            mailbox,
            peer,
            pending: Pending::default(),
        }
    }

    /// Starts handling the frames of one read; the chats among them are committed and delivered when the
    /// returned turn is dropped.
    pub fn turn<'a>(&'a mut self, ctx: &'a Arc<Context>) -> Turn<'a> {
        Turn { ctx, caller: self }
    }

    /// Queues a reply frame for this connection, behind any reply still waiting for a commit.
    pub fn reply(&mut self, frame: String) {
        self.answer(Outgoing::Reply(frame));
    }

    /// Queues bytes framed already for this connection's transport (replies written together, a
    /// WebSocket pong), like a reply.
    pub fn send_framed(&mut self, bytes: Vec<u8>) {
        self.answer(Outgoing::Bytes {
            bytes,
            chats: Vec::new(),
        });
    }

    fn answer(&mut self, item: Outgoing) {
        if !self.pending.is_empty() {
            self.pending.reply(item);
            return;
        }
        self.pending.settle();
        // Refused only once the connection is closing, when a reply no longer matters.
        let _ = self.mailbox.push(item);
    }

    /// Waits until the chats of the last turn are delivered and answered (they are handed on when it ends):
    /// the connection closes only after.
    pub fn settle(&mut self) {
        self.pending.settle();
    }

    /// The logged-in identity; dispatch guarantees one for every request but login and register.
    fn me(&self) -> &Identity {
        self.user.as_ref().expect("dispatch checks login first")
    }

    /// Queues a v2 acknowledgement; v1 clients get none (the C++ client knows no such frames).
    fn ack_v2(&mut self, body: Value, seq: Option<&Value>) {
        if let Some(ack) = self.v2_frame(body, seq) {
            self.reply(ack);
        }
    }

    /// Queues a v2 acknowledgement built by `frame`; v1 clients get none.
    fn reply_v2(&mut self, frame: impl FnOnce() -> String) {
        if self.me().version == Version::V2 {
            self.reply(frame());
        }
    }

    /// A v2 acknowledgement, or none for a v1 client.
    fn v2_frame(&self, body: Value, seq: Option<&Value>) -> Option<String> {
        (self.me().version == Version::V2).then(|| reply::encode(body, seq))
    }
}

/// The frames of one read being handled for a caller. Dropping it hands the chats it set aside to the
/// log, which commits them, delivers them and sends the answers that waited for them, whatever happened
/// meanwhile (a handler's panic included), so that nothing accepted is left unstored or unanswered.
pub struct Turn<'a> {
    ctx: &'a Arc<Context>,
    caller: &'a mut Caller,
}

impl Deref for Turn<'_> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        self.caller
    }
}

impl DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut Caller {
        self.caller
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let (ctx, caller) = (self.ctx, &mut *self.caller);
        if catch_unwind(AssertUnwindSafe(|| pending::hand_on(ctx, caller))).is_err() {
            tracing::error!("committing a connection's chats panicked");
        }
    }
}

impl Turn<'_> {
    /// Handles one frame from the connection: parse, check, run the handler, reply.
    pub fn dispatch(&mut self, frame: &[u8]) {
        dispatch(self.ctx, self.caller, frame);
    }
}

/// Why a request failed: the errno and words for the person behind the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i64,
    pub msg: Cow<'static, str>,
    /// The part that failed under the request (`store`), for the error metric; `None` when the request
    /// itself was refused.
    source: Option<&'static str>,
}

impl Failure {
    /// A failure with an ERROR_MSG errno.
    pub fn new(errno: Errno, msg: impl Into<Cow<'static, str>>) -> Self {
        Failure::ack(errno.code(), msg)
    }

    /// A failure with one of the login/register ack errnos (1, 2, 3).
    pub fn ack(code: i64, msg: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            code,
            msg: msg.into(),
            source: None,
        }
    }

    /// This failure as ERROR_MSG, answering a request with msgid `reference`.
    fn frame(&self, reference: Option<&Value>, seq: Option<&Value>) -> String {
        reply::error(self.code, &self.msg, reference, seq)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Failure::new(Errno::NotAllowed, "name already taken"),
            StoreError::NotFound => Failure::new(Errno::NotFound, "no such user or group"),
            StoreError::Unavailable(detail) | StoreError::Busy(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                Failure {
                    source: Some("store"),
                    ..Failure::new(
                        Errno::Unavailable,
                        "storage temporarily unavailable; the request was not carried out",
                    )
                }
            }
        }
    }
}

/// Handles one frame: parse, check, run the handler, reply (chats wait in the caller's pending list).
fn dispatch(ctx: &Context, caller: &mut Caller, frame: &[u8]) {
    let env = match Envelope::parse(frame) {
        Ok(env) => env,
        Err(e) => {
            let (msg, seq) = match &e {
                EnvelopeError::Malformed => ("malformed frame: expected one JSON object", None),
                EnvelopeError::NoMsgid { seq } => {
                    ("missing or invalid field 'msgid'", seq.as_ref())
                }
            };
            ctx.metrics.request(0, e.errno().code());
            caller.reply(reply::error(e.errno().code(), msg, None, seq));
            return;
        }
    };
    let seq = env.seq.as_ref();
    let handled = check_and_handle(ctx, caller, &env);
    match &handled {
        // A chat that passed its checks is counted once its commit says how it ended.
        Ok(()) if matches!(env.msgid, msgid::ONE_CHAT | msgid::GROUP_CHAT) => {}
        Ok(()) => ctx.metrics.request(env.msgid, 0),
        Err(failure) => {
            if let Some(source) = failure.source {
                ctx.metrics.error(source);
            }
            ctx.metrics.request(env.msgid, failure.code)
        }
    }
    if let Err(failure) = handled {
        let frame = match env.msgid {
            msgid::LOGIN => reply::failed_ack(msgid::LOGIN_ACK, failure.code, &failure.msg, seq),
            msgid::REG => reply::failed_ack(msgid::REG_ACK, failure.code, &failure.msg, seq),
            _ => failure.frame(env.body.get("msgid"), seq),
        };
        caller.reply(frame);
    }
}

/// The answer to a frame refused by the rate limit (check 0): login and register still get their own ack
/// (the C++ client waits for it), with errno 107; anything else ERROR_MSG 107, with `ref` and `seq` when
/// the frame has them.
pub fn rate_limited(unit: &Decoded) -> String {
    const MSG: &str = "rate limited: too many requests";
    let env = match unit {
        Decoded::Frame(bytes) => Envelope::parse(bytes).ok(),
        _ => None,
    };
    let (msgid, seq) = match &env {
        Some(env) => (Some(env.msgid), env.seq.as_ref()),
        None => (None, None),
    };
    let code = Errno::RateLimited.code();
    match msgid {
        Some(msgid::LOGIN) => reply::failed_ack(msgid::LOGIN_ACK, code, MSG, seq),
        Some(msgid::REG) => reply::failed_ack(msgid::REG_ACK, code, MSG, seq),
        _ => reply::error(
            code,
            MSG,
            env.as_ref().and_then(|e| e.body.get("msgid")),
            seq,
        ),
    }
}

/// The checks of PROTOCOL.md in order, then the handler.
fn check_and_handle(ctx: &Context, caller: &mut Caller, env: &Envelope) -> Result<(), Failure> {
    if !is_client_msgid(env.msgid) {
        return Err(Failure::new(Errno::UnknownMsgid, "unknown msgid"));
    }
    if env.msgid == msgid::LOGIN && caller.user.is_some() {
        return Err(Failure::ack(3, "already logged in on this connection"));
    }
    if caller.user.is_none() && env.msgid != msgid::LOGIN && env.msgid != msgid::REG {
        return Err(Failure::new(Errno::NotLoggedIn, "log in first"));
    }
    let request = Request::parse(env, &ctx.limits).map_err(|e| match env.msgid {
        msgid::LOGIN => Failure::ack(1, account::INVALID_LOGIN),
        msgid::REG => Failure::ack(1, e.0),
        _ => Failure::new(Errno::InvalidField, e.0),
    })?;
    if !matches!(request, Request::Chat { .. } | Request::GroupChat { .. }) {
        // Whatever this request does happens after the chats before it are committed.
        pending::flush(ctx, caller);
    }
    let seq = env.seq.as_ref();
    match request {
        Request::Login {
            account,
            credential,
            version,
            device,
        } => account::login(ctx, caller, &account, &credential, version, &device, seq),
        Request::Register { name, password } => {
            account::register(ctx, caller, &name, &password, seq)
        }
        Request::Logout => account::logout(ctx, caller, seq),
        Request::Chat {
            to,
            text,
            time,
            cid,
        } => chat::one(ctx, caller, to, text, time, cid, seq),
        Request::AddFriend { friend } => friend::add(ctx, caller, friend, seq),
        Request::CreateGroup { name, desc } => group::create(ctx, caller, &name, &desc, seq),
        Request::JoinGroup { group } => group::join(ctx, caller, group, seq),
        Request::GroupChat {
            group,
            text,
            time,
            cid,
        } => chat::group(ctx, caller, group, text, time, cid, seq),
        Request::Conversations => history::conversations(ctx, caller, seq),
        Request::History { conv, page, limit } => {
            history::history(ctx, caller, conv, page, limit, seq)
        }
        Request::Read { conv, pos } => history::read(ctx, caller, conv, pos, seq),
        Request::FriendRequest { friend, text } => friend::request(ctx, caller, friend, &text, seq),
        Request::FriendAnswer { friend, accept } => {
            friend::answer(ctx, caller, friend, accept, seq)
        }
        Request::FriendRemove { friend } => friend::remove(ctx, caller, friend, seq),
        Request::Block { user, block } => friend::block(ctx, caller, user, block, seq),
        Request::Friends => friend::list(ctx, caller, seq),
        Request::FindUser { name } => friend::find(ctx, caller, &name, seq),
        Request::GroupLeave { group } => group::leave(ctx, caller, group, seq),
        Request::GroupKick { group, member } => group::kick(ctx, caller, group, member, seq),
        Request::GroupUnban { group, user } => group::unban(ctx, caller, group, user, seq),
        Request::GroupRole {
            group,
            member,
            role,
        } => group::role(ctx, caller, group, member, role, seq),
        Request::GroupUpdate { group, name, desc } => {
            let update = GroupUpdate {
                name: name.as_deref(),
                desc: desc.as_deref(),
            };
            group::update(ctx, caller, group, update, seq)
        }
        Request::GroupDissolve { group } => group::dissolve(ctx, caller, group, seq),
        Request::GroupInfo { group } => group::info(ctx, caller, group, seq),
        Request::Typing { conv } => typing::typing(ctx, caller, conv),
        Request::Password { old, new } => account::change_password(ctx, caller, &old, &new, seq),
    }
}

#[cfg(test)]
mod tests;
