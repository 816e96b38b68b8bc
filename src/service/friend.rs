//! People: friendships (at once for the original's ADD_FRIEND, by request and answer in v2), removing and
//! blocking, the caller's lists, and finding a user by name. What is allowed is decided in [`rules`];
//! the other side's v2 devices hear of each change through a FRIEND_EVENT, on whatever node they are.

use serde_json::{Value, json};

use super::{Caller, Context, Failure, Identity, chat, rules};
use crate::model::{Relation, UserId};
use crate::protocol::{Errno, msgid, reply};

/// How `me` stands towards `other`; 104 when `other` does not exist.
fn relation(ctx: &Context, me: UserId, other: UserId) -> Result<Relation, Failure> {
    ctx.store
        .relation(me, other)?
        .ok_or_else(|| Failure::new(Errno::NotFound, format!("no such user: {other}")))
}

/// Tells `to`'s v2 devices what the caller did about their friendship.
fn tell(ctx: &Context, to: UserId, me: &Identity, event: &str, text: Option<&str>) {
    chat::push_v2(
        ctx,
        to,
        reply::friend_event(event, me.id, &me.name, text),
        None,
    );
}

/// ADD_FRIEND_MSG: makes the caller and `friend` friends of each other at once (the original's meaning),
/// unless either blocks the other.
pub fn add(
    ctx: &Context,
    caller: &mut Caller,
    friend: UserId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    rules::may_befriend(me, friend, &relation(ctx, me, friend)?)?;
    ctx.store.add_friend(me, friend)?;
    caller.ack_v2(
        json!({"msgid": msgid::ADD_FRIEND_ACK, "errno": 0, "friendid": friend}),
        seq,
    );
    Ok(())
}

/// FRIEND_REQUEST: asks `friend` for friendship; completes it at once when they had asked already.
pub fn request(
    ctx: &Context,
    caller: &mut Caller,
    friend: UserId,
    text: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().clone();
    let relation = relation(ctx, me.id, friend)?;
    rules::may_befriend(me.id, friend, &relation)?;
    let state = if relation.friends {
        "friends"
    } else if relation.they_asked && ctx.store.accept_request(friend, me.id)? {
        tell(ctx, friend, &me, "accepted", None);
        "friends"
    } else {
        if !relation.i_asked {
            ctx.store.request_friend(me.id, friend, text)?;
            tell(ctx, friend, &me, "request", Some(text));
        }
        "requested"
    };
    caller.ack_v2(
        json!({"msgid": msgid::FRIEND_REQUEST_ACK, "errno": 0, "friendid": friend, "state": state}),
        seq,
    );
    Ok(())
}

/// FRIEND_ANSWER: accepts or declines `friend`'s pending request (104 when there is none).
pub fn answer(
    ctx: &Context,
    caller: &mut Caller,
    friend: UserId,
    accept: bool,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().clone();
    let done = if accept {
        ctx.store.accept_request(friend, me.id)?
    } else {
        ctx.store.decline_request(friend, me.id)?
    };
    if !done {
        return Err(Failure::new(
            Errno::NotFound,
            format!("no friend request from user {friend}"),
        ));
    }
    let (event, state) = if accept {
        ("accepted", "friends")
    } else {
        ("declined", "declined")
    };
    tell(ctx, friend, &me, event, None);
    caller.ack_v2(
        json!({"msgid": msgid::FRIEND_ANSWER_ACK, "errno": 0, "friendid": friend, "state": state}),
        seq,
    );
    Ok(())
}

/// FRIEND_REMOVE: ends a friendship and withdraws requests between the two; idempotent.
pub fn remove(
    ctx: &Context,
    caller: &mut Caller,
    friend: UserId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().clone();
    rules::not_self(me.id, friend, "you cannot unfriend yourself")?;
    relation(ctx, me.id, friend)?;
    if ctx.store.remove_friend(me.id, friend)? {
        tell(ctx, friend, &me, "removed", None);
    }
    caller.ack_v2(
        json!({"msgid": msgid::FRIEND_REMOVE_ACK, "errno": 0, "friendid": friend}),
        seq,
    );
    Ok(())
}

/// BLOCK: blocks `user` (ending any friendship and requests between the two) or unblocks them. The
/// blocked user is told nothing.
pub fn block(
    ctx: &Context,
    caller: &mut Caller,
    user: UserId,
    block: bool,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    rules::not_self(me, user, "you cannot block yourself")?;
    relation(ctx, me, user)?;
    ctx.store.set_block(me, user, block)?;
    caller.ack_v2(
        json!({"msgid": msgid::BLOCK_ACK, "errno": 0, "id": user, "block": block}),
        seq,
    );
    Ok(())
}

/// FRIENDS: friends with presence, requests both ways, and the users the caller blocks.
pub fn list(ctx: &Context, caller: &mut Caller, seq: Option<&Value>) -> Result<(), Failure> {
    let me = caller.me().id;
    let friends = ctx.store.friends(me)?;
    let requests = ctx.store.requests(me)?;
    let blocked = ctx.store.blocked(me)?;
    caller.reply_v2(|| reply::friends_ack(&friends, &requests, &blocked, seq));
    Ok(())
}

/// FIND_USER: the id of the user with exactly this name.
pub fn find(
    ctx: &Context,
    caller: &mut Caller,
    name: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let id = ctx
        .store
        .find_user_by_name(name)?
        .ok_or_else(|| Failure::new(Errno::NotFound, "no user has this name"))?;
    caller.ack_v2(
        json!({"msgid": msgid::FIND_USER_ACK, "errno": 0, "id": id, "name": name}),
        seq,
    );
    Ok(())
}
