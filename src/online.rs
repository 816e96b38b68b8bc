//! The users logged in on this node: user id → the mailbox of their connection.
//!
//! Delivery looks a user up and queues into their mailbox while holding the read lock, and removal takes the
//! write lock. So once [`Online::remove`] has returned, nothing more can reach that mailbox through the map,
//! and whatever it holds can be stored offline without a race.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::mailbox::{Mailbox, Outgoing};
use crate::model::UserId;

/// The online-user map of one node.
#[derive(Default)]
pub struct Online {
    users: RwLock<HashMap<UserId, Arc<Mailbox>>>,
}

impl Online {
    /// Registers `user` on `mailbox`; `false` if the user is already online here.
    pub fn insert(&self, user: UserId, mailbox: &Arc<Mailbox>) -> bool {
        let mut users = self.users.write();
        if users.contains_key(&user) {
            return false;
        }
        users.insert(user, mailbox.clone());
        true
    }

    /// Unregisters `user` if they are registered on `mailbox`.
    pub fn remove(&self, user: UserId, mailbox: &Arc<Mailbox>) {
        let mut users = self.users.write();
        if users.get(&user).is_some_and(|m| Arc::ptr_eq(m, mailbox)) {
            users.remove(&user);
        }
    }

    /// Queues `item` for `user` if they are online here; gives it back otherwise (also when their
    /// connection has just closed its mailbox).
    pub fn deliver(&self, user: UserId, item: Outgoing) -> Result<(), Outgoing> {
        match self.users.read().get(&user) {
            Some(mailbox) => mailbox.push(item),
            None => Err(item),
        }
    }

    /// Whether `user` is online here.
    pub fn contains(&self, user: UserId) -> bool {
        self.users.read().contains_key(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_only_to_registered_mailbox() {
        let online = Online::default();
        let (a, rx) = Mailbox::new(4, || {});
        let (b, _) = Mailbox::new(4, || {});
        assert!(online.deliver(1, Outgoing::Nudge(1)).is_err());
        assert!(online.insert(1, &a));
        assert!(!online.insert(1, &b), "second registration refused");
        assert!(online.deliver(1, Outgoing::Nudge(1)).is_ok());
        assert_eq!(rx.len(), 1);
        online.remove(1, &b);
        assert!(online.contains(1), "removal by another mailbox is ignored");
        online.remove(1, &a);
        assert!(!online.contains(1));
    }
}
