//! Groups: creating one (the creator joins as `creator`) and joining one (as `normal`).

use serde_json::{Value, json};

use super::{Caller, Context, Failure};
use crate::model::GroupId;
use crate::protocol::{Errno, msgid};
use crate::store::StoreError;

/// CREATE_GROUP_MSG: creates a group with a unique name.
pub fn create(
    ctx: &Context,
    caller: &mut Caller,
    name: &str,
    desc: &str,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let id = ctx
        .store
        .create_group(caller.me().id, name, desc)
        .map_err(|e| match e {
            StoreError::Conflict => {
                Failure::new(Errno::NotAllowed, "this group name is already taken")
            }
            other => other.into(),
        })?;
    caller.ack_v2(
        json!({"msgid": msgid::CREATE_GROUP_ACK, "errno": 0, "groupid": id, "groupname": name}),
        seq,
    );
    Ok(())
}

/// ADD_GROUP_MSG: joins an existing group; joining twice changes nothing.
pub fn join(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    ctx.store
        .join_group(group, caller.me().id)
        .map_err(|e| match e {
            StoreError::NotFound => Failure::new(Errno::NotFound, "no such group"),
            other => other.into(),
        })?;
    ctx.members.invalidate(Some(group));
    ctx.bus.group_changed(group);
    caller.ack_v2(
        json!({"msgid": msgid::ADD_GROUP_ACK, "errno": 0, "groupid": group}),
        seq,
    );
    Ok(())
}
