//! Accounts: register, login, logout, and leaving when a connection ends.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Caller, Context, Failure, Identity, presence, token};
use crate::mailbox::Outgoing;
use crate::model::UserId;
use std::sync::Arc;

use crate::mailbox::Live;
use crate::model::{Contact, Group, Request, Summary};
use crate::online::Device;
use crate::protocol::reply::{self, LoginView};
use crate::protocol::request::{Account, Credential};
use crate::protocol::{Errno, Version, msgid};
use crate::store::{Claim, StoreError};

/// The original's words for a failed login, which its client shows as they are.
pub const INVALID_LOGIN: &str = "id or password is invalid!";
const IN_USE: &str = "this account is using, input another!";
const THROTTLED: &str = "too many failed logins; try again later";

/// The stored form of a password (argon2id); 109 if hashing fails.
fn hash_password(ctx: &Context, password: &str) -> Result<String, Failure> {
    ctx.hasher.hash(password).map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        Failure::new(Errno::Unavailable, "could not hash the password")
    })
}

/// REG_MSG: creates the user and answers with their new id.
pub fn register(
    ctx: &Context,
    caller: &mut Caller,
    name: &str,
    password: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let hash = hash_password(ctx, password)?;
    let id = ctx.store.create_user(name, &hash).map_err(|e| match e {
        StoreError::Conflict => {
            tracing::info!(peer = %caller.peer, "registration refused: name taken");
            Failure::ack(1, "this name is already taken")
        }
        other => Failure::from(other),
    })?;
    tracing::info!(user = id, "registered");
    caller.reply(reply::encode(
        json!({"msgid": msgid::REG_ACK, "errno": 0, "id": id}),
        seq,
    ));
    Ok(())
}

/// The user id a login is for: its id, or the id registered under its name.
fn account_id(ctx: &Context, account: &Account) -> Result<UserId, Failure> {
    Ok(match account {
        Account::Id(id) => *id,
        Account::Name(name) => ctx
            .store
            .find_user_by_name(name)?
            .unwrap_or_else(|| nobody(name)),
    })
}

/// The id that stands for a name no one has: negative (real ids are positive) and the same for the
/// same name, so that a login to it fails as one to an unknown id does: the same answer, in the same
/// time (a decoy hash), counted under a key of its own in the failed-login throttle (one key for every
/// unknown name would answer 107 to them alone, which would tell names that exist from names that do
/// not).
pub fn nobody(name: &str) -> UserId {
    let digest = Sha256::digest(name.as_bytes());
    let n = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    -(n as UserId) - 1
}

/// LOGIN_MSG: checks the password (or the device's token), claims cluster-wide presence for the device,
/// and answers with friends, groups, offline messages and (v2) conversations.
pub fn login(
    ctx: &Context,
    caller: &mut Caller,
    account: &Account,
    credential: &Credential,
    version: Version,
    device: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let id = account_id(ctx, account)?;
    if !ctx.login_throttle.allows(caller.peer, id) {
        return Err(Failure::ack(107, THROTTLED));
    }
    let user = ctx.store.find_user(id)?;
    let authentic = match (&user, credential) {
        (None, Credential::Password(password)) => ctx.hasher.waste(password),
        (None, Credential::Token(_)) => false,
        (Some(u), Credential::Password(password)) => ctx.hasher.verify(password, &u.password_hash),
        (Some(_), Credential::Token(presented)) => token::matches(ctx, id, device, presented)?,
    };
    let Some(user) = user.filter(|_| authentic) else {
        ctx.login_throttle.failed(caller.peer, id);
        tracing::info!(user = id, peer = %caller.peer, "login refused: wrong id or password");
        return Err(Failure::ack(1, INVALID_LOGIN));
    };
    ctx.login_throttle.succeeded(caller.peer, id);
    let first = claim(ctx, id, device, version)?;
    let identity = Identity {
        id,
        name: user.name.as_str().into(),
        version,
        device: device.into(),
    };
    ctx.unreleased.lock().remove(&(id, identity.device.clone()));
    // The claim already refuses a second login of the device; the map is the last word should storage's
    // presence have been changed behind this node's back.
    let here = Device {
        name: identity.device.clone(),
        version,
        mailbox: caller.mailbox.clone(),
    };
    let Some(first_here) = ctx.online.insert(id, here) else {
        release(ctx, id, &identity.device);
        return Err(Failure::ack(2, in_use(version, device)));
    };
    if first_here && let Err(e) = ctx.bus.subscribe(id) {
        ctx.metrics.error("redis");
        tracing::warn!(user = id, error = %e, "subscribe failed; remote messages go offline");
    }
    if first {
        presence::announce(ctx, id, true);
    }
    // Contacts are read once the device counts as online (their own state in their groups says so), and
    // before a new token is issued, so that a failure to read them leaves the old token working.
    let acked = Contacts::read(ctx, id, version).and_then(|contacts| {
        let token = match (version, credential) {
            (Version::V1, _) => None,
            (Version::V2, Credential::Token(presented)) => Some(presented.clone()),
            (Version::V2, Credential::Password(_)) => token::issue(ctx, id, device),
        };
        send_login_ack(ctx, caller, &identity, &contacts, token.as_deref(), seq)
    });
    match acked {
        Ok(()) => {
            tracing::info!(user = id, device, "logged in");
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

/// Claims presence for the device: whether it is the user's first device online, or errno 2 when it is
/// logged in already or the user has as many devices as allowed.
fn claim(ctx: &Context, id: UserId, device: &str, version: Version) -> Result<bool, Failure> {
    match ctx
        .store
        .claim_device(id, device, &ctx.node, ctx.max_devices)?
    {
        Claim::Claimed { first } => Ok(first),
        Claim::DeviceInUse => {
            tracing::info!(user = id, device, "login refused: device logged in already");
            Err(Failure::ack(2, in_use(version, device)))
        }
        Claim::TooMany => {
            tracing::info!(user = id, device, "login refused: too many devices");
            Err(Failure::ack(
                2,
                format!("too many devices logged in (at most {})", ctx.max_devices),
            ))
        }
    }
}

/// The words for a device that is logged in already: the original's for v1 (its client shows them).
fn in_use(version: Version, device: &str) -> String {
    match version {
        Version::V1 => IN_USE.to_owned(),
        Version::V2 => format!("device {device:?} is already logged in"),
    }
}

/// What a login ack lists besides offline messages.
struct Contacts {
    friends: Vec<Contact>,
    groups: Vec<Group>,
    /// v2 only.
    conversations: Vec<Summary>,
    /// Friend requests waiting on the user (v2 only).
    requests: Vec<Request>,
}

impl Contacts {
    fn read(ctx: &Context, user: UserId, version: Version) -> Result<Contacts, Failure> {
        let mut groups = ctx.store.groups_of(user)?;
        presence::hide_blockers(ctx, user, &mut groups)?;
        let (conversations, requests) = match version {
            Version::V1 => (Vec::new(), Vec::new()),
            Version::V2 => (
                super::history::list(ctx, user)?,
                ctx.store.requests(user)?.incoming,
            ),
        };
        Ok(Contacts {
            friends: ctx.store.friends(user)?,
            groups,
            conversations,
            requests,
        })
    }
}

/// Builds and queues the login ack. Offline messages are taken last, so a failure before that loses none;
/// once taken, they travel inside the queued ack, which records them offline again if it cannot be
/// written. Taking them is the only step that can fail after a v2 password login issued its new token
/// (PROTOCOL.md).
fn send_login_ack(
    ctx: &Context,
    caller: &Caller,
    me: &Identity,
    contacts: &Contacts,
    token: Option<&str>,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let offline = fetch_offline(ctx, me.id, me.version)?;
    let frames: Vec<Arc<str>> = offline.iter().map(|l| l.frame.clone()).collect();
    let view = LoginView {
        id: me.id,
        name: &me.name,
        friends: &contacts.friends,
        groups: &contacts.groups,
        offline: &frames,
        token,
        device: &me.device,
        conversations: &contacts.conversations,
        requests: &contacts.requests,
    };
    let frame = reply::login_ack(&view, me.version, seq);
    let more = offline.len() == ctx.offline_batch;
    caller
        .mailbox
        .push(Outgoing::LoginAck {
            user: me.id,
            version: me.version,
            frame,
            offline,
            more,
        })
        .map_err(|item| {
            // The connection closed meanwhile: record the taken messages offline again.
            super::chat::store_undelivered(ctx, item.undelivered());
            Failure::new(Errno::Unavailable, "connection closing")
        })
}

/// Takes the next batch of `user`'s offline messages, oldest first, as frames of `version`.
pub fn fetch_offline(ctx: &Context, user: UserId, version: Version) -> Result<Vec<Live>, Failure> {
    let messages = ctx.store.take_offline(user, ctx.offline_batch)?;
    Ok(messages
        .iter()
        .map(|m| Live::single(user, reply::chat(m, version, user).into(), (m.conv, m.pos)))
        .collect())
}

/// LOGINOUT_MSG: the connection stays open, logged out, and the device's resume token is revoked (a
/// connection that merely drops keeps it, so the client can resume). A v2 device whose token cannot be
/// revoked stays logged in and gets 109: a logout acknowledged must leave no token that logs in. A v1
/// logout, which has no answer to carry that, logs out whatever the token's fate (v1 logins resume
/// with no token).
pub fn logout(ctx: &Context, caller: &mut Caller, seq: Option<&Value>) -> Result<(), Failure> {
    let me = caller.me().clone();
    match ctx.store.revoke_token(me.id, &me.device) {
        Err(e) if me.version == Version::V2 => return Err(e.into()),
        Err(e) => tracing::warn!(user = me.id, error = %e, "could not revoke a resume token"),
        Ok(()) => {}
    }
    caller.user = None;
    leave(ctx, &me, caller);
    let _ = caller.mailbox.push(Outgoing::LoggedOut);
    if me.version == Version::V2 {
        caller.reply(reply::encode(
            json!({"msgid": msgid::LOGOUT_ACK, "errno": 0}),
            seq,
        ));
    }
    Ok(())
}

/// Takes `me`'s device offline on this node: out of the map first, so nothing more is queued for it here,
/// then (with the user's last device here) off the bus, and out of storage's presence. A release that
/// fails is retried by the heartbeat, so a storage outage cannot leave a device stuck online.
pub fn leave(ctx: &Context, me: &Identity, caller: &Caller) {
    if ctx.online.remove(me.id, &caller.mailbox) {
        ctx.bus.unsubscribe(me.id);
    }
    release(ctx, me.id, &me.device);
    tracing::info!(user = me.id, device = %me.device, "logged out");
}

/// Releases the device's presence (telling friends when it was the user's last device), or remembers to
/// retry.
fn release(ctx: &Context, user: UserId, device: &Arc<str>) {
    match ctx.store.release_device(user, device, &ctx.node) {
        Ok(last) => {
            if last {
                presence::announce(ctx, user, false);
            }
        }
        Err(e) => {
            tracing::warn!(user, error = %e, "release of presence failed; will retry");
            ctx.unreleased.lock().insert((user, device.clone()));
        }
    }
}

/// Retries the releases that failed, for devices that have not logged in here again since.
pub fn retry_releases(ctx: &Context) {
    let pending: Vec<(UserId, Arc<str>)> = ctx.unreleased.lock().iter().cloned().collect();
    for (user, device) in pending {
        if let Ok(last) = ctx.store.release_device(user, &device, &ctx.node) {
            ctx.unreleased.lock().remove(&(user, device));
            if last {
                presence::announce(ctx, user, false);
            }
        }
    }
}

/// PASSWORD: changes the caller's password once the old one is proven, and revokes every resume token
/// of theirs. Wrong old passwords count as failed logins, so this is no way around the login throttle.
pub fn change_password(
    ctx: &Context,
    caller: &mut Caller,
    old: &str,
    new: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let id = caller.me().id;
    if !ctx.login_throttle.allows(caller.peer, id) {
        return Err(Failure::new(Errno::RateLimited, THROTTLED));
    }
    let user = ctx
        .store
        .find_user(id)?
        .ok_or_else(|| Failure::new(Errno::NotFound, "no such user"))?;
    if !ctx.hasher.verify(old, &user.password_hash) {
        ctx.login_throttle.failed(caller.peer, id);
        tracing::info!(user = id, peer = %caller.peer, "password change refused: wrong old password");
        return Err(Failure::new(Errno::NotAllowed, "the old password is wrong"));
    }
    let hash = hash_password(ctx, new)?;
    ctx.store.change_password(id, &hash)?;
    tracing::info!(user = id, "password changed; resume tokens revoked");
    caller.ack_v2(json!({"msgid": msgid::PASSWORD_ACK, "errno": 0}), seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nobody;

    /// A name no one has stands for an id no one can have, the same each time, and another name for
    /// another id (so that each counts on its own in the throttle).
    #[test]
    fn unknown_names_stand_for_ids_of_their_own() {
        for name in [
            "",
            "mallory",
            "名前",
            "a very long name that no one registered",
        ] {
            assert!(nobody(name) < 0, "{name}");
            assert_eq!(nobody(name), nobody(name));
        }
        assert_ne!(nobody("mallory"), nobody("mallory2"));
    }
}
