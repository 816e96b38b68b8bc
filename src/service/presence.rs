//! Presence as friends see it: a PRESENCE push to their v2 devices, on any node, when a user's first
//! device comes online, when their last one goes, and when a dead node's devices are reaped. Pushes go
//! only to friends who are online, so a login costs at most one frame per online friend device; blocking
//! ends a friendship, so no one blocked hears of the blocker. Where a blocked user sees the blocker in a
//! member list, the blocker shows as offline ([`hide_blockers`]).

use super::{Context, Failure, chat};
use crate::model::{Group, UserId};
use crate::protocol::reply;

/// Tells `user`'s online friends that `user` came online or went offline. A failure to read the friends
/// is logged: presence is shown again at their next login or query.
pub fn announce(ctx: &Context, user: UserId, online: bool) {
    let friends = match ctx.store.friends(user) {
        Ok(friends) => friends,
        Err(e) => {
            tracing::warn!(user, error = %e, "could not read friends to announce presence");
            return;
        }
    };
    let frame = reply::presence(user, online);
    for friend in friends.iter().filter(|f| f.online) {
        chat::push_v2(ctx, friend.id, frame.clone(), None);
    }
}

/// Frees the devices of nodes whose heartbeat went stale and tells the friends of everyone now offline.
pub fn reap(ctx: &Context) {
    match ctx.store.reap_stale() {
        Ok(gone) => {
            if !gone.is_empty() {
                tracing::info!(users = gone.len(), "freed the users of a node that stopped");
            }
            for user in gone {
                announce(ctx, user, false);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not reap stale devices; trying again later"),
    }
}

/// Shows the members who block `viewer` as offline.
pub fn hide_blockers(ctx: &Context, viewer: UserId, groups: &mut [Group]) -> Result<(), Failure> {
    if groups.is_empty() {
        return Ok(());
    }
    let blockers = ctx.store.blockers_of(viewer)?;
    if blockers.is_empty() {
        return Ok(());
    }
    for member in groups.iter_mut().flat_map(|g| g.members.iter_mut()) {
        if blockers.contains(&member.contact.id) {
            member.contact.online = false;
        }
    }
    Ok(())
}
