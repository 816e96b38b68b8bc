//! A connection's mailbox: the bounded queue of frames waiting for its writer.
//!
//! Everything that reaches a client goes through its mailbox, so the writer is the only code that writes to
//! the socket. The queue is bounded: a client that stops reading fills it, and then the connection is closed
//! (`on_overflow`) rather than let memory grow.
//!
//! Closing keeps order: once a connection starts closing (overflow or end of session), new items go to a
//! spill list instead of the queue; the writer then stores what it could not write, queue first, spill
//! second, and marks the mailbox closed while holding the spill lock. Pushes after that are refused, and
//! their senders store the frames themselves, after everything older is already stored.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Open,
    /// Items go to the spill list; the writer is winding down.
    Closing,
    /// Everything is stored; pushes are refused.
    Closed,
}

#[derive(Default)]
struct Spill {
    state: State,
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

    /// Queues `item` without blocking; gives it back once the mailbox is closed. A full queue means the
    /// client stopped reading: the connection starts closing and the item is kept for storage.
    pub fn push(&self, item: Outgoing) -> Result<(), Outgoing> {
        let mut spill = self.spill.lock();
        match spill.state {
            State::Closed => return Err(item),
            State::Closing => {
                spill.items.push(item);
                return Ok(());
            }
            State::Open => {}
        }
        if let Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) =
            self.tx.try_send(item)
        {
            spill.state = State::Closing;
            spill.items.push(item);
            drop(spill);
            (self.on_overflow)();
        }
        Ok(())
    }

    /// From now on items are kept aside for [`Mailbox::finish_close`] instead of queued.
    pub fn begin_close(&self) {
        let mut spill = self.spill.lock();
        if spill.state == State::Open {
            spill.state = State::Closing;
        }
    }

    /// Hands the kept items, oldest first, to `store`, and closes the mailbox once `store` returns, all
    /// under the lock, so nothing pushed meanwhile can overtake them.
    pub fn finish_close(&self, store: impl FnOnce(Vec<Outgoing>)) {
        let mut spill = self.spill.lock();
        store(std::mem::take(&mut spill.items));
        spill.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn chat(i: usize) -> Outgoing {
        Outgoing::Chat {
            to: 1,
            frame: Arc::from(i.to_string()),
        }
    }

    fn texts(items: impl IntoIterator<Item = Outgoing>) -> Vec<String> {
        items
            .into_iter()
            .flat_map(Outgoing::undelivered)
            .map(|(_, f)| f.to_string())
            .collect()
    }

    #[test]
    fn overflow_closes_once_and_keeps_order() {
        let closed = Arc::new(AtomicUsize::new(0));
        let counter = closed.clone();
        let (mailbox, rx) = Mailbox::new(2, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        for i in 0..5 {
            mailbox.push(chat(i)).unwrap();
        }
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        let mut order = texts(rx.try_iter());
        mailbox.finish_close(|spilled| order.extend(texts(spilled)));
        assert_eq!(order, ["0", "1", "2", "3", "4"]);
        assert!(mailbox.push(chat(5)).is_err(), "a closed mailbox refuses");
    }

    #[test]
    fn closing_keeps_new_items_aside() {
        let (mailbox, rx) = Mailbox::new(8, || {});
        mailbox.push(chat(0)).unwrap();
        mailbox.begin_close();
        mailbox.push(chat(1)).unwrap();
        assert_eq!(texts(rx.try_iter()), ["0"]);
        let mut kept = Vec::new();
        mailbox.finish_close(|spilled| kept = texts(spilled));
        assert_eq!(kept, ["1"]);
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
