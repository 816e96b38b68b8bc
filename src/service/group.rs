//! Groups: creating one (the creator joins as `creator`), joining, leaving, kicking, roles, settings,
//! dissolving, and a group's member list. What is allowed is decided in [`rules`] on the member list as
//! the database has it now, so a change acknowledged on another node a moment ago counts. Every change
//! reaches the members' v2 devices (and the user it concerns) as a GROUP_EVENT, and every change of
//! members drops the cached lists on every node before the ack.

use std::sync::Arc;

use serde_json::{Value, json};

use super::rules::{self, Leaving};
use super::{Caller, Context, Failure, Identity, chat, presence};
use crate::model::{GroupId, Members, Role, UserId};
use crate::protocol::{Errno, msgid, reply};
use crate::store::{GroupUpdate, Joined, Removal, StoreError};

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
        .map_err(name_taken)?;
    caller.ack_v2(
        json!({"msgid": msgid::CREATE_GROUP_ACK, "errno": 0, "groupid": id, "groupname": name}),
        seq,
    );
    Ok(())
}

fn name_taken(e: StoreError) -> Failure {
    match e {
        StoreError::Conflict => Failure::new(Errno::NotAllowed, "this group name is already taken"),
        other => other.into(),
    }
}

/// ADD_GROUP_MSG: joins an existing group; joining twice changes nothing; a user kicked from it is
/// refused until the creator or an admin lets them back (GROUP_UNBAN).
pub fn join(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let joined = ctx.store.join_group(group, me).map_err(|e| match e {
        StoreError::NotFound => Failure::new(Errno::NotFound, "no such group"),
        other => other.into(),
    })?;
    if joined == Joined::Banned {
        return Err(Failure::new(
            Errno::NotAllowed,
            "you were removed from this group; its creator or an admin can let you back",
        ));
    }
    // The join is committed: whatever follows cannot undo it, so a failure to read the members only
    // costs the other members their event (they see the newcomer at their next GROUP_INFO or login).
    let members = (joined == Joined::Now).then(|| {
        members_changed(ctx, group);
        chat::group_now(ctx, group)
    });
    caller.ack_v2(
        json!({"msgid": msgid::ADD_GROUP_ACK, "errno": 0, "groupid": group}),
        seq,
    );
    match members {
        Some(Ok(members)) => tell(
            ctx,
            caller.me(),
            &members,
            reply::group_event(group, "joined", me, me, json!({})),
        ),
        Some(Err(failure)) => {
            tracing::warn!(group, error = %failure.msg, "joined, but could not tell the members")
        }
        None => {}
    }
    Ok(())
}

/// GROUP_LEAVE: the caller leaves; the creator only as the last member, which dissolves the group.
pub fn leave(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = chat::group_now(ctx, group)?;
    let event = match rules::may_leave(&members, me)? {
        Leaving::Leave => {
            if !ctx.store.remove_member(group, me, Removal::Left)? {
                // Kicked a moment ago, on another node.
                return Err(rules::not_a_member());
            }
            "left"
        }
        Leaving::Dissolve => {
            ctx.store.dissolve_group(group)?;
            "dissolved"
        }
    };
    members_changed(ctx, group);
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_LEAVE_ACK, "errno": 0, "groupid": group}),
        seq,
    );
    tell(
        ctx,
        caller.me(),
        &members,
        reply::group_event(group, event, me, me, json!({})),
    );
    Ok(())
}

/// GROUP_KICK: removes `member` (the creator anyone else, an admin normal members) and bans them from
/// joining again until let back (GROUP_UNBAN): groups are joined by number, so a kick without a ban
/// would last until the next ADD_GROUP.
pub fn kick(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    member: UserId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = chat::group_now(ctx, group)?;
    rules::may_kick(&members, me, member)?;
    if !ctx.store.remove_member(group, member, Removal::Kicked)? {
        // Gone a moment ago (left, or removed by someone else): nothing was done, and nobody banned.
        return Err(rules::no_such_member());
    }
    members_changed(ctx, group);
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_KICK_ACK, "errno": 0, "groupid": group, "id": member}),
        seq,
    );
    tell(
        ctx,
        caller.me(),
        &members,
        reply::group_event(group, "kicked", member, me, json!({})),
    );
    Ok(())
}

/// GROUP_UNBAN: the creator or an admin lets a kicked user join again (104 if they are not banned).
/// Nobody is told: the user learns it when their next ADD_GROUP succeeds.
pub fn unban(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    user: UserId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let members = chat::group_now(ctx, group)?;
    rules::may_unban(&members, caller.me().id)?;
    if !ctx.store.unban(group, user)? {
        return Err(Failure::new(
            Errno::NotFound,
            "this user is not banned from this group",
        ));
    }
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_UNBAN_ACK, "errno": 0, "groupid": group, "id": user}),
        seq,
    );
    Ok(())
}

/// GROUP_ROLE: the creator gives `member` a role; `creator` hands the group over.
pub fn role(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    member: UserId,
    role: Role,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let (members, changes) = decide_roles(ctx, group, me, member, role)?;
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_ROLE_ACK, "errno": 0, "groupid": group, "id": member, "role": role.as_str()}),
        seq,
    );
    for (who, role) in changes {
        let extra = json!({"role": role.as_str()});
        tell(
            ctx,
            caller.me(),
            &members,
            reply::group_event(group, "role", who, me, extra),
        );
    }
    Ok(())
}

/// The roles GROUP_ROLE changes, decided on the group as it is and written only if it is still so
/// (decided again, a few times, when a member came, went or changed role in between); the member list
/// they were decided on.
fn decide_roles(
    ctx: &Context,
    group: GroupId,
    me: UserId,
    member: UserId,
    role: Role,
) -> Result<(Arc<Members>, RoleChanges), Failure> {
    for _ in 0..ROLE_TRIES {
        let members = chat::group_now(ctx, group)?;
        let changes = rules::role_change(&members, me, member, role)?;
        if changes.is_empty() || ctx.store.set_roles(group, members.version, &changes)? {
            if !changes.is_empty() {
                members_changed(ctx, group);
            }
            return Ok((members, changes));
        }
    }
    Err(Failure::new(
        Errno::Unavailable,
        "the group keeps changing; try again",
    ))
}

/// The members whose role GROUP_ROLE changes, and to what.
type RoleChanges = Vec<(UserId, Role)>;

/// How many times GROUP_ROLE decides again when the group changed under it.
const ROLE_TRIES: usize = 5;

/// GROUP_UPDATE: the creator or an admin renames the group or changes its description.
pub fn update(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    update: GroupUpdate,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = chat::group_now(ctx, group)?;
    rules::may_update(&members, me)?;
    ctx.store.update_group(group, update).map_err(name_taken)?;
    // Committed: a failure to read the settings back only costs the members their event.
    let info = ctx.store.group_info(group).unwrap_or_else(|e| {
        tracing::warn!(group, error = %e, "updated, but could not tell the members");
        None
    });
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_UPDATE_ACK, "errno": 0, "groupid": group}),
        seq,
    );
    if let Some(info) = info {
        let extra = json!({"groupname": info.name, "groupdesc": info.desc});
        tell(
            ctx,
            caller.me(),
            &members,
            reply::group_event(group, "updated", me, me, extra),
        );
    }
    Ok(())
}

/// GROUP_DISSOLVE: the creator deletes the group, its members and its log.
pub fn dissolve(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = chat::group_now(ctx, group)?;
    rules::may_dissolve(&members, me)?;
    ctx.store.dissolve_group(group)?;
    members_changed(ctx, group);
    caller.ack_v2(
        json!({"msgid": msgid::GROUP_DISSOLVE_ACK, "errno": 0, "groupid": group}),
        seq,
    );
    tell(
        ctx,
        caller.me(),
        &members,
        reply::group_event(group, "dissolved", me, me, json!({})),
    );
    Ok(())
}

/// GROUP_INFO: the group with its members, their roles and presence (members only), and for the creator
/// and admins, who may let them back, the users banned from it.
pub fn info(
    ctx: &Context,
    caller: &mut Caller,
    group: GroupId,
    seq: Option<&Value>,
) -> Result<(), Failure> {
    let me = caller.me().id;
    let members = chat::member_now(ctx, group, me)?;
    let banned = match rules::may_unban(&members, me) {
        Ok(()) => Some(ctx.store.bans(group)?),
        Err(_) => None,
    };
    let mut info = ctx
        .store
        .group_info(group)?
        .ok_or_else(|| Failure::new(Errno::NotFound, "no such group"))?;
    presence::hide_blockers(ctx, me, std::slice::from_mut(&mut info))?;
    caller.reply_v2(|| reply::group_info_ack(&info, banned.as_deref(), seq));
    Ok(())
}

/// Drops the group's cached member list here and on every other node.
fn members_changed(ctx: &Context, group: GroupId) {
    ctx.members.invalidate(Some(group));
    ctx.bus.group_changed(group);
}

/// Sends a GROUP_EVENT to the v2 devices of `members` (as they were before the change, so that a user
/// who left or was removed hears of it too; after it for a join, so that the newcomer's other devices
/// do), but the acting connection, which has its ack, as the sender of a chat has its ack and no carbon.
fn tell(ctx: &Context, me: &Identity, members: &Members, frame: String) {
    for user in members.ids() {
        let except = (user == me.id).then_some(&*me.device);
        chat::push_v2(ctx, user, frame.clone(), except);
    }
}
