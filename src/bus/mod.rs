//! Node-to-node delivery: how a message reaches a user who is online on another node.
//!
//! A single node has no other nodes ([`local::LocalBus`]); the cluster bus carries payloads over Redis
//! publish/subscribe. Either way the contract is the same: `forward` says how many nodes took the payload
//! (this one included when it holds the user), and when no other did, the caller records the message
//! offline, so nothing is dropped silently. What a payload says is the service's business, not the bus's.

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
    /// A payload for `user`, whom this node holds (or held a moment ago).
    fn deliver(&self, user: UserId, payload: &str);

    /// Frames were stored for `user`: fetch them if they are online here.
    fn nudge(&self, user: UserId);

    /// `group`'s members changed on some node (`None`: anything may have changed while the bus was away).
    fn group_changed(&self, group: Option<GroupId>);

    /// Some node cut `user` off for flooding just now.
    fn cut_off(&self, user: UserId);

    /// Whether `user` has a device on this node now. An unsubscribe sent when the user's last device
    /// here left is not carried out if another has logged in here since: its subscribe may have gone
    /// first, and the node would stay unsubscribed while it holds the user.
    fn holds(&self, user: UserId) -> bool;
}

/// Delivery between nodes.
pub trait Bus: Send + Sync {
    /// Starts receiving from other nodes into `inbox` (once, when the node's context exists).
    fn start(&self, inbox: Arc<dyn Inbox>);

    /// Whether other nodes exist to forward to at all (false for a single node).
    fn is_cluster(&self) -> bool;

    /// Whether the node takes what other nodes send it now (a single node always does; a cluster node
    /// while its subscription stands), for readiness probes.
    fn is_ready(&self) -> bool;

    /// Hands `payload` to every node that holds `user`: returns how many took it (this node counts when it
    /// holds the user; 0 when none does: they are offline, or their node is gone).
    fn forward(&self, user: UserId, payload: Arc<str>) -> Result<usize, BusError>;

    /// Tells the node holding `user`, if any, that frames were stored for them (see PROTOCOL.md, the race
    /// at login).
    fn nudge(&self, user: UserId);

    /// Starts taking payloads for `user` on this node; returns once the subscription is confirmed.
    fn subscribe(&self, user: UserId) -> Result<(), BusError>;

    /// Tells every other node that `group`'s members changed (sent again once Redis answers, if it was
    /// away; caches also expire).
    fn group_changed(&self, group: GroupId);

    /// Tells every other node that this one cut `user` off for flooding (best effort), so that a
    /// reconnect through the load balancer to another node buys no fresh burst either.
    fn cut_off(&self, user: UserId);

    /// Stops taking payloads for `user` on this node; returns once that is confirmed (or Redis is away), so
    /// that a user who logs in elsewhere next is never subscribed on two nodes.
    fn unsubscribe(&self, user: UserId);

    /// Publishes not yet taken by Redis: queued for the publisher, or (nudges, group changes) kept to be
    /// sent again once it answers. For the metrics page: more than a few means Redis is slow, stalled or
    /// away.
    fn waiting(&self) -> usize {
        0
    }
}
