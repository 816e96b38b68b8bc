//! The log as a user reads it: their conversations with unread counts, pages of history, and read
//! positions (with receipts to their other devices and to the peer).

use serde_json::{Value, json};

use super::{Caller, Context, Failure, chat};
use crate::model::{Conv, Page, Pos, Summary, UserId};
use crate::protocol::request::ConvName;
use crate::protocol::{Errno, Version, msgid, reply};

/// CONVERSATIONS: every conversation of the caller, most recently active first.
pub fn conversations(
    ctx: &Context,
    caller: &mut Caller,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let list: Vec<Value> = list(ctx, me)?
        .iter()
        .map(|s| reply::conversation(s, me))
        .collect();
    caller.ack_v2(
        json!({"msgid": msgid::CONVERSATIONS_ACK, "errno": 0, "conversations": list}),
        seq,
    );
    Ok(())
}

/// The user's conversations in the order CONVERSATIONS shows them: by the time of their last message,
/// newest first; groups without messages last; ties by name.
pub fn list(ctx: &Context, user: UserId) -> Result<Vec<Summary>, Failure> {
    let mut list = ctx.store.conversations(user)?;
    list.sort_by(|a, b| {
        b.last_ts
            .cmp(&a.last_ts)
            .then_with(|| a.conv.name_for(user).cmp(&b.conv.name_for(user)))
    });
    Ok(list)
}

/// The conversation `name` means for the caller, once they may read it: 104 for an unknown user or
/// group, 105 for a group they are not in.
fn readable(ctx: &Context, me: UserId, name: ConvName) -> Result<Conv, Failure> {
    match name {
        ConvName::User(peer) => {
            if ctx.users.name(ctx.store.as_ref(), peer)?.is_none() {
                return Err(Failure::new(
                    Errno::NotFound,
                    format!("no such user: {peer}"),
                ));
            }
        }
        ConvName::Group(group) => {
            // Not from the cache: a kick or leave acknowledged on another node counts at once.
            chat::member_now(ctx, group, me)?;
        }
    }
    Ok(name.conv(me))
}

/// HISTORY: a page of a conversation's messages, as v2 chat frames in ascending position.
pub fn history(
    ctx: &Context,
    caller: &mut Caller,
    name: ConvName,
    page: Page,
    limit: usize,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let conv = readable(ctx, me, name)?;
    if caller.me().version == Version::V1 {
        return Ok(());
    }
    let (messages, more) = ctx.store.history(conv, page, limit)?;
    let frames: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::from_str(&reply::chat(m, Version::V2, me)).expect("a chat frame is JSON")
        })
        .collect();
    caller.ack_v2(
        json!({"msgid": msgid::HISTORY_ACK, "errno": 0, "conv": conv.name_for(me), "messages": frames, "more": more}),
        seq,
    );
    Ok(())
}

/// READ: moves the caller's read position forward; when it moved, their other v2 devices and, in a
/// one-to-one conversation, the peer's v2 devices get a RECEIPT.
pub fn read(
    ctx: &Context,
    caller: &mut Caller,
    name: ConvName,
    pos: Pos,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().clone();
    let conv = readable(ctx, me.id, name)?;
    let (read, moved) = ctx.store.mark_read(me.id, conv, pos)?;
    if moved {
        chat::push_v2(
            ctx,
            me.id,
            reply::receipt(conv, me.id, me.id, read),
            Some(&me.device),
        );
        if let Some(peer) = conv.peer_of(me.id).filter(|&p| p != me.id) {
            chat::push_v2(ctx, peer, reply::receipt(conv, peer, me.id, read), None);
        }
    }
    caller.ack_v2(
        json!({"msgid": msgid::READ_ACK, "errno": 0, "conv": conv.name_for(me.id), "read": read}),
        seq,
    );
    Ok(())
}
