//! Node-to-node delivery: how a message reaches a user who is online on another node.
//!
//! A single node has no other nodes ([`local::LocalBus`]); the cluster bus carries frames over Redis
//! publish/subscribe. Either way the contract is the same: `forward` says whether some node took the
//! frame, and when none did, the caller stores it offline, so nothing is dropped silently.

pub mod local;
pub mod redis;

use std::sync::Arc;

use crate::model::{GroupId, UserId};

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("bus unavailable: {0}")]
pub struct BusError(pub String);

/// Where a bus hands what other nodes sent to this one.
pub trait Inbox: Send + Sync {
    /// A chat frame for `user`, whom this node holds (or held a moment ago).
    fn deliver(&self, user: UserId, frame: Arc<str>);

    /// Frames were stored for `user`: fetch them if they are online here.
    fn nudge(&self, user: UserId);

    /// `group`'s members changed on some node (`None`: anything may have changed while the bus was away).
    fn group_changed(&self, group: Option<GroupId>);
}

/// Delivery between nodes.
pub trait Bus: Send + Sync {
    /// Starts receiving from other nodes into `inbox` (once, when the node's context exists).
    fn start(&self, inbox: Arc<dyn Inbox>);

    /// Hands `frame` to the node that holds `user`: `Ok(true)` if some node took it, `Ok(false)` if none
    /// holds the user (they are offline, or their node is gone).
    fn forward(&self, user: UserId, frame: &Arc<str>) -> Result<bool, BusError>;

    /// Tells the node holding `user`, if any, that frames were stored for them (see PROTOCOL.md, the race
    /// at login).
    fn nudge(&self, user: UserId);

    /// Starts taking frames for `user` on this node; returns once the subscription is confirmed.
    fn subscribe(&self, user: UserId) -> Result<(), BusError>;

    /// Tells every other node that `group`'s members changed (best effort; caches also expire).
    fn group_changed(&self, group: GroupId);

    /// Stops taking frames for `user` on this node; returns once that is confirmed (or Redis is away), so
    /// that a user who logs in elsewhere next is never subscribed on two nodes.
    fn unsubscribe(&self, user: UserId);
}
