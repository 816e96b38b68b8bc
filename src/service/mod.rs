//! The chat service: what each request does, independent of sockets.
//!
//! [`dispatch`] takes one frame's bytes from a connection, applies the checks of PROTOCOL.md in their order
//! (malformed, msgid, login state, fields) and calls the handler of the request's area: [`account`],
//! [`friend`], [`group`] or [`chat`]. Handlers reply by queueing into the caller's mailbox; they never touch a
//! socket. A failure is a [`Failure`], turned into the right frame here: the login or register ack for those
//! two requests (the C++ client waits for that ack), ERROR_MSG for everything else.

pub mod account;
pub mod chat;
pub mod friend;
pub mod group;
pub mod members;
mod pending;
pub mod token;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
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
use crate::store::batch::OfflineWriter;
use crate::store::{Store, StoreError};
use members::MemberCache;
use pending::Pending;
pub use pending::flush;

/// Everything a handler may use, shared by all connections of a node.
pub struct Context {
    pub store: Arc<dyn Store>,
    /// Stores offline messages in batches (group commit) on top of `store`.
    pub offline: OfflineWriter,
    pub online: Online,
    pub bus: Box<dyn Bus>,
    pub hasher: Hasher,
    pub limits: Limits,
    /// This node's id: the owner recorded with the presence of its users.
    pub node: String,
    /// How many stored frames a login ack carries at most; more follow as chat frames.
    pub offline_batch: usize,
    /// Users whose release of presence failed (storage down); retried by the heartbeat.
    pub unreleased: Mutex<HashSet<UserId>>,
    /// Failed-login counts, so password guessing cannot burn everyone's CPU.
    pub login_throttle: LoginThrottle,
    /// Group member lists, so group chat needs no database query per message.
    pub members: MemberCache,
}

/// The logged-in user of a connection.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: UserId,
    pub name: Arc<str>,
    pub version: Version,
}

/// One connection as the service sees it: who is logged in, where replies go, and where it comes from.
pub struct Caller {
    pub user: Option<Identity>,
    pub mailbox: Arc<Mailbox>,
    /// The client's address, for the failed-login throttle.
    pub peer: IpAddr,
    /// Offline messages of chats handled but not yet stored, and the replies behind them.
    pending: RefCell<Pending>,
}

impl Caller {
    /// A connection from `peer` that has not logged in.
    pub fn new(mailbox: Arc<Mailbox>, peer: IpAddr) -> Caller {
        Caller {
            user: None,
            mailbox,
            peer,
            pending: RefCell::default(),
        }
    }

    /// Queues a reply frame for this connection, behind any reply still waiting for a store.
    pub fn reply(&self, frame: String) {
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            pending.reply(frame);
            return;
        }
        drop(pending);
        // Refused only once the connection is closing, when a reply no longer matters.
        let _ = self.mailbox.push(Outgoing::Reply(frame));
    }

    /// The logged-in identity; dispatch guarantees one for every request but login and register.
    fn me(&self) -> &Identity {
        self.user.as_ref().expect("dispatch checks login first")
    }

    /// Queues a v2 acknowledgement; v1 clients get none (the C++ client knows no such frames).
    fn ack_v2(&self, body: Value, seq: Option<&Value>) {
        if let Some(ack) = self.v2_frame(body, seq) {
            self.reply(ack);
        }
    }

    /// A v2 acknowledgement, or none for a v1 client.
    fn v2_frame(&self, body: Value, seq: Option<&Value>) -> Option<String> {
        (self.me().version == Version::V2).then(|| reply::encode(body, seq))
    }
}

/// Why a request failed: the errno and words for the person behind the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i64,
    pub msg: Cow<'static, str>,
}

impl Failure {
    /// A failure with an ERROR_MSG errno.
    pub fn new(errno: Errno, msg: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            code: errno.code(),
            msg: msg.into(),
        }
    }

    /// A failure with one of the login/register ack errnos (1, 2, 3).
    pub fn ack(code: i64, msg: &'static str) -> Self {
        Failure {
            code,
            msg: Cow::Borrowed(msg),
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
                Failure::new(
                    Errno::Unavailable,
                    "storage temporarily unavailable; the request was not carried out",
                )
            }
        }
    }
}

/// Handles one frame from a connection: parse, check, run the handler, reply. A chat's offline messages
/// and its answer may be left waiting: the caller must call [`flush`] once it has handled the frames at
/// hand (and before dropping the [`Caller`]), or they are never stored nor answered.
pub fn dispatch(ctx: &Context, caller: &mut Caller, frame: &[u8]) {
    let env = match Envelope::parse(frame) {
        Ok(env) => env,
        Err(e) => {
            let (msg, seq) = match &e {
                EnvelopeError::Malformed => ("malformed frame: expected one JSON object", None),
                EnvelopeError::NoMsgid { seq } => {
                    ("missing or invalid field 'msgid'", seq.as_ref())
                }
            };
            caller.reply(reply::error(e.errno().code(), msg, None, seq));
            return;
        }
    };
    let seq = env.seq.as_ref();
    if let Err(failure) = check_and_handle(ctx, caller, &env) {
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
        msgid::REG => Failure {
            code: 1,
            msg: e.0.into(),
        },
        _ => Failure::new(Errno::InvalidField, e.0),
    })?;
    if !matches!(request, Request::Chat { .. } | Request::GroupChat { .. }) {
        // Whatever this request does happens after the chats before it are stored.
        pending::flush(ctx, caller);
    }
    let seq = env.seq.as_ref();
    match request {
        Request::Login {
            id,
            credential,
            version,
        } => account::login(ctx, caller, id, &credential, version, seq),
        Request::Register { name, password } => {
            account::register(ctx, caller, &name, &password, seq)
        }
        Request::Logout => {
            account::logout(ctx, caller, seq);
            Ok(())
        }
        Request::Chat { to, text, time } => chat::one(ctx, caller, to, &text, time, seq),
        Request::AddFriend { friend } => friend::add(ctx, caller, friend, seq),
        Request::CreateGroup { name, desc } => group::create(ctx, caller, &name, &desc, seq),
        Request::JoinGroup { group } => group::join(ctx, caller, group, seq),
        Request::GroupChat { group, text, time } => {
            chat::group(ctx, caller, group, &text, time, seq)
        }
    }
}

#[cfg(test)]
mod tests;
