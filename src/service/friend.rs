//! Friends: mutual, idempotent friendship.

use serde_json::{Value, json};

use super::{Caller, Context, Failure};
use crate::model::UserId;
use crate::protocol::{Errno, msgid};

/// ADD_FRIEND_MSG: makes the caller and `friend` friends of each other.
pub fn add(
    ctx: &Context,
    caller: &mut Caller,
    friend: UserId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me();
    if friend == me.id {
        return Err(Failure::new(
            Errno::NotAllowed,
            "you cannot befriend yourself",
        ));
    }
    ctx.store.add_friend(me.id, friend).map_err(|e| match e {
        crate::store::StoreError::NotFound => Failure::new(Errno::NotFound, "no such user"),
        other => other.into(),
    })?;
    caller.ack_v2(
        json!({"msgid": msgid::ADD_FRIEND_ACK, "errno": 0, "friendid": friend}),
        seq,
    );
    Ok(())
}
