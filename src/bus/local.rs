//! The bus of a node that runs alone: there is no other node to hand anything to.

use std::sync::Arc;

use super::{Bus, BusError, Inbox};
use crate::model::{GroupId, UserId};

/// A single node's bus: every user is either online here or offline.
pub struct LocalBus;

impl Bus for LocalBus {
    fn start(&self, _inbox: Arc<dyn Inbox>) {}

    fn is_cluster(&self) -> bool {
        false
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn forward(&self, _user: UserId, _payload: Arc<str>) -> Result<usize, BusError> {
        Ok(0)
    }

    fn nudge(&self, _user: UserId) {}

    fn subscribe(&self, _user: UserId) -> Result<(), BusError> {
        Ok(())
    }

    fn group_changed(&self, _group: GroupId) {}

    fn cut_off(&self, _user: UserId) {}

    fn unsubscribe(&self, _user: UserId) {}
}
