//! A connection's mailbox: the bounded queue of frames waiting for its writer.
//!
//! Everything that reaches a client goes through its mailbox, so the writer is the only code that writes to
//! the socket. The queue is bounded: a client that stops reading fills it, and then the connection is closed
//! (`on_overflow`) rather than let memory grow. From that moment, items go to a spill list instead, in order,
//! so that the writer, when it winds down, can store every chat message still undelivered, in the order it
//! arrived.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::protocol::UserId;

/// One thing for a connection's writer to do.
#[derive(Debug)]
pub enum Outgoing {
    /// An ack or error for this connection; worthless once the connection is gone.
    Reply(String),
    /// A chat frame for user `to`; stored offline if it cannot be written.
    Chat { to: UserId, frame: Arc<str> },
    /// A successful login reply carrying `offline` frames taken from storage; `more` when storage may hold
    /// further frames for `user` (the ack was full).
    LoginAck {
        user: UserId,
        frame: String,
        offline: Vec<String>,
        more: bool,
    },
    /// Frames were stored for `user` while they were online here: fetch and send them.
    Nudge(UserId),
    /// The connection logged out: no more nudges for the user who was on it.
    LoggedOut,
}

impl Outgoing {
    /// The chat frames this item would lose if it were never written.
    pub fn undelivered(self) -> Vec<(UserId, Arc<str>)> {
        match self {
            Outgoing::Chat { to, frame } => vec![(to, frame)],
            Outgoing::LoginAck { user, offline, .. } => offline
                .into_iter()
                .map(|frame| (user, Arc::from(frame)))
                .collect(),
            Outgoing::Reply(_) | Outgoing::Nudge(_) | Outgoing::LoggedOut => Vec::new(),
        }
    }
}

#[derive(Default)]
struct Spill {
    overflowed: bool,
    items: Vec<Outgoing>,
}

/// The sending side of a connection's mailbox, shared by its session and the online-user map.
pub struct Mailbox {
    tx: Sender<Outgoing>,
    spill: Mutex<Spill>,
    on_overflow: Box<dyn Fn() + Send + Sync>,
}

impl Mailbox {
    /// A mailbox of `capacity` items, and the receiver its writer drains. `on_overflow` runs once, when the
    /// queue is first found full; it should close the connection.
    pub fn new(
        capacity: usize,
        on_overflow: impl Fn() + Send + Sync + 'static,
    ) -> (Arc<Mailbox>, Receiver<Outgoing>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let mailbox = Mailbox {
            tx,
            spill: Mutex::new(Spill::default()),
            on_overflow: Box::new(on_overflow),
        };
        (Arc::new(mailbox), rx)
    }

    /// Queues `item` without blocking. Once the queue has overflowed, items are kept aside for
    /// [`Mailbox::take_spilled`] and the connection is being closed.
    pub fn push(&self, item: Outgoing) {
        let mut spill = self.spill.lock();
        if spill.overflowed {
            spill.items.push(item);
            return;
        }
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                spill.overflowed = true;
                spill.items.push(item);
                drop(spill);
                (self.on_overflow)();
            }
        }
    }

    /// Whether the queue overflowed (the client stopped reading).
    pub fn overflowed(&self) -> bool {
        self.spill.lock().overflowed
    }

    /// The items that did not fit, oldest first; call once nothing can push any more.
    pub fn take_spilled(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.spill.lock().items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn overflow_closes_once_and_keeps_order() {
        let closed = Arc::new(AtomicUsize::new(0));
        let counter = closed.clone();
        let (mailbox, rx) = Mailbox::new(2, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        for i in 0..5 {
            mailbox.push(Outgoing::Chat {
                to: 1,
                frame: Arc::from(i.to_string()),
            });
        }
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert!(mailbox.overflowed());
        let queued: Vec<_> = rx.try_iter().flat_map(Outgoing::undelivered).collect();
        let spilled: Vec<_> = mailbox
            .take_spilled()
            .into_iter()
            .flat_map(Outgoing::undelivered)
            .collect();
        let order: Vec<String> = queued
            .into_iter()
            .chain(spilled)
            .map(|(_, f)| f.to_string())
            .collect();
        assert_eq!(order, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn only_chat_is_worth_storing() {
        assert!(Outgoing::Reply("x".into()).undelivered().is_empty());
        let ack = Outgoing::LoginAck {
            user: 3,
            frame: "{}".into(),
            offline: vec!["a".into(), "b".into()],
            more: false,
        };
        assert_eq!(ack.undelivered().len(), 2);
    }
}
