//! Accounts: register, login, logout, and leaving when a connection ends.

use serde_json::{Value, json};

use super::{Caller, Context, Failure, Identity, token};
use crate::mailbox::Outgoing;
use crate::model::UserId;
use crate::model::{Contact, Group, UserRecord};
use crate::protocol::reply::{self, LoginView};
use crate::protocol::request::Credential;
use crate::protocol::{Errno, Version, msgid};
use crate::store::StoreError;

/// The original's words for a failed login, which its client shows as they are.
pub const INVALID_LOGIN: &str = "id or password is invalid!";
const IN_USE: &str = "this account is using, input another!";
const THROTTLED: &str = "too many failed logins; try again later";

/// REG_MSG: creates the user and answers with their new id.
pub fn register(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    password: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let hash = ctx.hasher.hash(password).map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        Failure::new(Errno::Unavailable, "could not hash the password")
    })?;
    let id = ctx.store.create_user(name, &hash).map_err(|e| match e {
        StoreError::Conflict => Failure::ack(1, "this name is already taken"),
        other => Failure::from(other),
    })?;
    caller.reply(reply::encode(
        json!({"msgid": msgid::REG_ACK, "errno": 0, "id": id}),
        seq,
    ));
    Ok(())
}

/// LOGIN_MSG: checks the password, claims cluster-wide presence, and answers with friends, groups and
/// stored messages.
pub fn login(
    ctx: &Context,
    caller: &mut Caller,
    id: UserId,
    credential: &Credential,
    version: Version,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    if !ctx.login_throttle.allows(caller.peer, id) {
        return Err(Failure::ack(107, THROTTLED));
    }
    let user = ctx.store.find_user(id)?;
    let authentic = match (&user, credential) {
        (None, Credential::Password(password)) => ctx.hasher.waste(password),
        (None, Credential::Token(_)) => false,
        (Some(u), Credential::Password(password)) => ctx.hasher.verify(password, &u.password_hash),
        (Some(_), Credential::Token(presented)) => token::matches(ctx, id, presented)?,
    };
    let Some(user) = user.filter(|_| authentic) else {
        ctx.login_throttle.failed(caller.peer, id);
        return Err(Failure::ack(1, INVALID_LOGIN));
    };
    ctx.login_throttle.succeeded(caller.peer, id);
    if !ctx.store.claim_presence(id, &ctx.node)? {
        return Err(Failure::ack(2, IN_USE));
    }
    ctx.unreleased.lock().remove(&id);
    // The claim already refuses a second login on this node; the map is the last word should storage's
    // presence have been changed behind this node's back.
    if !ctx.online.insert(id, &caller.mailbox) {
        return Err(Failure::ack(2, IN_USE));
    }
    if let Err(e) = ctx.bus.subscribe(id) {
        tracing::warn!(user = id, error = %e, "subscribe failed; remote messages go offline");
    }
    let identity = Identity {
        id,
        name: user.name.as_str().into(),
        version,
    };
    // Contacts are read once the user counts as online (their own state in their groups says so), and
    // before a new token is issued, so that a failure to read them leaves the old token working.
    let acked = Contacts::read(ctx, id).and_then(|contacts| {
        let token = match (version, credential) {
            (Version::V1, _) => None,
            (Version::V2, Credential::Token(presented)) => Some(presented.clone()),
            (Version::V2, Credential::Password(_)) => token::issue(ctx, id),
        };
        send_login_ack(
            ctx,
            caller,
            &user,
            &contacts,
            version,
            token.as_deref(),
            seq,
        )
    });
    match acked {
        Ok(()) => {
            tracing::info!(user = id, "logged in");
            caller.user = Some(identity);
            Ok(())
        }
        Err(failure) => {
            leave(ctx, &identity, caller);
            let _ = caller.mailbox.push(Outgoing::LoggedOut);
            Err(failure)
        }
    }
}

/// What a login ack lists besides stored messages.
struct Contacts {
    friends: Vec<Contact>,
    groups: Vec<Group>,
}

impl Contacts {
    fn read(ctx: &Context, user: UserId) -> Result<Contacts, Failure> {
        Ok(Contacts {
            friends: ctx.store.friends(user)?,
            groups: ctx.store.groups_of(user)?,
        })
    }
}

/// Builds and queues the login ack. Stored messages are taken last, so a failure before that loses none;
/// once taken, they travel inside the queued ack, which stores them again if it cannot be written. Taking
/// them is the only step that can fail after a v2 password login issued its new token (PROTOCOL.md).
fn send_login_ack(
    ctx: &Context,
    caller: &Caller,
    user: &UserRecord,
    contacts: &Contacts,
    version: Version,
    token: Option<&str>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let offline = ctx.store.take_offline(user.id, ctx.offline_batch)?;
    let view = LoginView {
        id: user.id,
        name: &user.name,
        friends: &contacts.friends,
        groups: &contacts.groups,
        offline: &offline,
        token,
    };
    let frame = reply::login_ack(&view, version, seq);
    let more = offline.len() == ctx.offline_batch;
    caller
        .mailbox
        .push(Outgoing::LoginAck {
            user: user.id,
            frame,
            offline,
            more,
        })
        .map_err(|item| {
            // The connection closed meanwhile: put the taken messages back.
            super::chat::store_undelivered(ctx, item.undelivered());
            Failure::new(Errno::Unavailable, "connection closing")
        })
}

/// LOGINOUT_MSG: the connection stays open, logged out, and the user's resume token is revoked (a
/// connection that merely drops keeps it, so the client can resume).
pub fn logout(ctx: &Context, caller: &mut Caller, seq: Option<&Value>) {
    let me = caller.user.take().expect("dispatch checks login first");
    token::revoke(ctx, me.id);
    leave(ctx, &me, caller);
    let _ = caller.mailbox.push(Outgoing::LoggedOut);
    if me.version == Version::V2 {
        caller.reply(reply::encode(
            json!({"msgid": msgid::LOGOUT_ACK, "errno": 0}),
            seq,
        ));
    }
}

/// Takes `me` offline on this node: out of the map first, so nothing more is queued for them here, then
/// off the bus and out of storage's presence. A release that fails is retried by the heartbeat, so a
/// storage outage cannot leave a user stuck online.
pub fn leave(ctx: &Context, me: &Identity, caller: &Caller) {
    ctx.online.remove(me.id, &caller.mailbox);
    ctx.bus.unsubscribe(me.id);
    if let Err(e) = ctx.store.release_presence(me.id, &ctx.node) {
        tracing::warn!(user = me.id, error = %e, "release of presence failed; will retry");
        ctx.unreleased.lock().insert(me.id);
    }
    tracing::info!(user = me.id, "logged out");
}

/// Retries the releases that failed, for users who have not logged in here again since.
pub fn retry_releases(ctx: &Context) {
    let pending: Vec<UserId> = ctx.unreleased.lock().iter().copied().collect();
    for user in pending {
        // A user back online here holds presence again; anyone else is released now.
        if ctx.online.contains(user) || ctx.store.release_presence(user, &ctx.node).is_ok() {
            ctx.unreleased.lock().remove(&user);
        }
    }
}
