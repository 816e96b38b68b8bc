//! A connection's mailbox: how frames reach its socket.
//!
//! Whoever has something for a connection pushes it here. When nothing is queued and no writer thread is
//! busy, the mailbox hands the item straight to the connection's [`Sink`], which writes it to the socket
//! without blocking (most frames, on the pushing thread: no thread hop, no context switch). What cannot go
//! out at once is queued, in order, for a writer thread, which the mailbox starts on demand and which
//! stops again when the queue stays empty, so an idle connection costs no writer thread.
//!
//! The queue is bounded: a client that stops reading fills it, and then the connection is closed
//! (`Sink::overflow`) rather than let memory grow. The bound is counted, not allocated: the channel grows
//! in small blocks as items wait, so an idle connection's mailbox costs a few hundred bytes, not the
//! ~70 KiB a preallocated 1,024-slot channel would (8,000 idle connections: 560 MiB).
//!
//! Closing keeps order: once a connection starts closing (overflow or end of session), new items go to a
//! spill list instead of the queue; the session then stores what could not be written, queue first, spill
//! second, and marks the mailbox closed while holding its lock. Pushes after that are refused, and their
//! senders store the frames themselves, after everything older is already stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::model::{Conv, Pos, UserId};
use crate::protocol::Version;
use crate::store::Pointer;

/// A chat frame on its way to one of `to`'s connections. A recipient's copy knows where its message is in
/// the log and shares a [`Copies`] with the other copies of that message for the user's devices on this
/// node; a carbon (the sender's copy) has neither: nothing to record offline if it is never written. A
/// `Live` is settled exactly once, written ([`Live::written`]) or not ([`Live::pointer`],
/// [`Live::abandon`]), so it cannot be cloned.
#[derive(Debug)]
pub struct Live {
    pub to: UserId,
    pub frame: Arc<str>,
    pub at: Option<(Conv, Pos)>,
    copies: Option<Arc<Copies>>,
}

/// The copies of one message handed to one user's devices on this node. The message reached a device if
/// any copy was written; the last copy to be settled unwritten records it offline only if none was.
#[derive(Debug)]
pub struct Copies {
    outstanding: AtomicUsize,
    written: AtomicBool,
}

impl Copies {
    /// Settlement for `n` copies.
    pub fn new(n: usize) -> Arc<Copies> {
        Arc::new(Copies {
            outstanding: AtomicUsize::new(n),
            written: AtomicBool::new(false),
        })
    }

    /// One copy settled; `true` if it was the last and no copy was written.
    fn settle(&self, written: bool) -> bool {
        if written {
            self.written.store(true, Ordering::SeqCst);
        }
        let last = self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1;
        last && !self.written.load(Ordering::SeqCst)
    }
}

impl Live {
    /// A recipient's only copy of a message (from the offline list, or forwarded by another node).
    pub fn single(to: UserId, frame: Arc<str>, at: (Conv, Pos)) -> Live {
        Live::copy(to, frame, at, Copies::new(1))
    }

    /// One of the copies of a message for `to`'s devices.
    pub fn copy(to: UserId, frame: Arc<str>, at: (Conv, Pos), copies: Arc<Copies>) -> Live {
        Live {
            to,
            frame,
            at: Some(at),
            copies: Some(copies),
        }
    }

    /// The sender's copy of their own message, for their other devices.
    pub fn carbon(to: UserId, frame: Arc<str>) -> Live {
        Live {
            to,
            frame,
            at: None,
            copies: None,
        }
    }

    /// The frame was written to its connection.
    pub fn written(self) {
        if let Some(copies) = self.copies {
            copies.settle(true);
        }
    }

    /// The frame will never be written: where to record its message offline, if this was the last copy
    /// and no device of the user here wrote another.
    pub fn pointer(self) -> Option<Pointer> {
        let (conv, pos) = self.at?;
        let unreached = self.copies.is_none_or(|c| c.settle(false));
        unreached.then_some(Pointer {
            user: self.to,
            conv,
            pos,
        })
    }

    /// The frame never got into a mailbox: whether it was the last copy of its message and no device of
    /// the user wrote another, in which case whoever handed it on must record the message.
    #[must_use]
    pub fn abandon(self) -> bool {
        self.copies.is_some_and(|copies| copies.settle(false))
    }
}

/// One thing for a connection's writer to do.
#[derive(Debug)]
pub enum Outgoing {
    /// An ack or error for this connection; worthless once the connection is gone.
    Reply(String),
    /// A v2 push for the user `to` (presence, typing, a receipt, an event): held until their login ack
    /// has gone out, like a chat frame, but never recorded offline (the state it tells of is read again
    /// at the next login).
    Push { to: UserId, frame: String },
    /// A chat frame; recorded offline if it cannot be written.
    Chat(Live),
    /// Bytes framed already for the connection's transport: the unwritten end of a frame that went out
    /// only in part, replies written together, a WebSocket pong. `chats` are the chat frames they carry
    /// whole, recorded offline if the bytes cannot be written.
    Bytes { bytes: Vec<u8>, chats: Vec<Live> },
    /// A successful login reply carrying `offline` messages taken from storage; `more` when storage may
    /// hold further messages for `user` (the ack was full).
    LoginAck {
        user: UserId,
        version: Version,
        frame: String,
        offline: Vec<Live>,
        more: bool,
    },
    /// Messages were recorded offline for `user` while they were online here: fetch and send them.
    Nudge(UserId),
    /// The connection logged out: no more nudges for the user who was on it.
    LoggedOut,
}

impl Outgoing {
    /// The chat frames this item would lose if it were never written.
    pub fn undelivered(self) -> Vec<Live> {
        match self {
            Outgoing::Chat(live) => vec![live],
            Outgoing::Bytes { chats, .. } => chats,
            Outgoing::LoginAck { offline, .. } => offline,
            Outgoing::Reply(_)
            | Outgoing::Push { .. }
            | Outgoing::Nudge(_)
            | Outgoing::LoggedOut => Vec::new(),
        }
    }
}

/// The connection behind a mailbox: its socket, its writer threads, and how to close it.
pub trait Sink: Send + Sync {
    /// Writes `item` now if that can be done without blocking; gives back what must wait for a writer, in
    /// order (the item, or the rest of a frame that went out only in part, or work it leads to). Called
    /// only while no writer thread runs, under the mailbox lock.
    fn try_direct(&self, item: Outgoing) -> Vec<Outgoing>;

    /// Starts a writer thread that drains the queue; `false` if none could be started.
    fn start_writer(&self) -> bool;

    /// Closes the connection: the client stopped reading (or no writer could be started).
    fn overflow(&self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Open,
    /// Items go to the spill list; the connection is winding down.
    Closing,
    /// Everything is stored; pushes are refused.
    Closed,
}

#[derive(Default)]
struct Inner {
    state: State,
    spill: Vec<Outgoing>,
    /// A writer thread is running: everything goes through the queue, in order.
    writer: bool,
}

/// The sending side of a connection's mailbox, shared by its session and the online-user map.
pub struct Mailbox {
    tx: Sender<Outgoing>,
    /// Most items the queue may hold.
    capacity: usize,
    rx: Receiver<Outgoing>,
    inner: Mutex<Inner>,
    sink: Box<dyn Sink>,
}

/// A sink that never writes directly: items wait in the queue for whoever holds the receiver (tests and
/// tools that drain it themselves).
struct QueueOnly<F>(F);

impl<F: Fn() + Send + Sync> Sink for QueueOnly<F> {
    fn try_direct(&self, item: Outgoing) -> Vec<Outgoing> {
        vec![item]
    }
    fn start_writer(&self) -> bool {
        true
    }
    fn overflow(&self) {
        (self.0)()
    }
}

impl Mailbox {
    /// A mailbox of `capacity` queued items whose items all wait in the queue, and the receiver that
    /// drains it. `on_overflow` runs once, when the queue is first found full.
    pub fn new(
        capacity: usize,
        on_overflow: impl Fn() + Send + Sync + 'static,
    ) -> (Arc<Mailbox>, Receiver<Outgoing>) {
        Mailbox::with_sink(capacity, QueueOnly(on_overflow))
    }

    /// A mailbox in front of a connection's `sink`.
    pub fn with_sink(
        capacity: usize,
        sink: impl Sink + 'static,
    ) -> (Arc<Mailbox>, Receiver<Outgoing>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mailbox = Mailbox {
            tx,
            capacity,
            rx: rx.clone(),
            inner: Mutex::new(Inner::default()),
            sink: Box::new(sink),
        };
        (Arc::new(mailbox), rx)
    }

    /// Delivers `item` without blocking: written at once, or queued for a writer; gives it back once the
    /// mailbox is closed. A full queue means the client stopped reading: the connection starts closing and
    /// the item is kept for storage.
    pub fn push(&self, item: Outgoing) -> Result<(), Outgoing> {
        let mut inner = self.inner.lock();
        match inner.state {
            State::Closed => return Err(item),
            State::Closing => {
                inner.spill.push(item);
                return Ok(());
            }
            State::Open => {}
        }
        let queued = if !inner.writer && self.rx.is_empty() {
            self.sink.try_direct(item)
        } else {
            vec![item]
        };
        if queued.is_empty() {
            return Ok(());
        }
        let mut queued = queued.into_iter();
        while let Some(item) = queued.next() {
            // Pushes are serialised by the lock, so the length cannot grow between check and send.
            let refused = if self.tx.len() >= self.capacity {
                Some(item)
            } else {
                self.tx.send(item).err().map(|e| e.into_inner())
            };
            if let Some(item) = refused {
                inner.state = State::Closing;
                inner.spill.push(item);
                inner.spill.extend(queued);
                drop(inner);
                self.sink.overflow();
                return Ok(());
            }
        }
        if !inner.writer {
            inner.writer = true;
            if !self.sink.start_writer() {
                inner.writer = false;
                tracing::warn!("no thread for a connection's writer; closing it");
                inner.state = State::Closing;
                drop(inner);
                self.sink.overflow();
            }
        }
        Ok(())
    }

    /// Called by a writer thread that found the queue empty: `true` if it may stop (later items are then
    /// written directly or start a new writer).
    pub fn writer_may_stop(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.state == State::Open && self.rx.is_empty() {
            inner.writer = false;
            return true;
        }
        false
    }

    /// From now on items are kept aside for [`Mailbox::finish_close`] instead of queued or written.
    pub fn begin_close(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.state = State::Closing;
        }
    }

    /// Hands the kept items, oldest first, to `store`, and closes the mailbox once `store` returns, all
    /// under the lock, so nothing pushed meanwhile can overtake them.
    pub fn finish_close(&self, store: impl FnOnce(Vec<Outgoing>)) {
        let mut inner = self.inner.lock();
        store(std::mem::take(&mut inner.spill));
        inner.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn chat(i: usize) -> Outgoing {
        Outgoing::Chat(Live::carbon(1, Arc::from(i.to_string())))
    }

    fn texts(items: impl IntoIterator<Item = Outgoing>) -> Vec<String> {
        items
            .into_iter()
            .flat_map(Outgoing::undelivered)
            .map(|live| live.frame.to_string())
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
    fn the_last_unwritten_copy_records_only_what_no_device_wrote() {
        let at = (Conv::direct(1, 2), 7);
        let copies = Copies::new(2);
        Live::copy(2, "a".into(), at, copies.clone()).written();
        assert_eq!(
            Live::copy(2, "a".into(), at, copies).pointer(),
            None,
            "one device wrote it"
        );
        let copies = Copies::new(2);
        assert_eq!(
            Live::copy(2, "b".into(), at, copies.clone()).pointer(),
            None,
            "another copy is out"
        );
        let last = Live::copy(2, "b".into(), at, copies).pointer();
        assert_eq!(
            last.map(|p| (p.user, p.pos)),
            Some((2, 7)),
            "no device wrote it"
        );
        assert_eq!(Live::carbon(1, "c".into()).pointer(), None);
    }

    #[test]
    fn only_chat_is_worth_storing() {
        assert!(Outgoing::Reply("x".into()).undelivered().is_empty());
        let live = |f: &str| Live::single(3, f.into(), (Conv::direct(1, 3), 1));
        let ack = Outgoing::LoginAck {
            user: 3,
            version: Version::V1,
            frame: "{}".into(),
            offline: vec![live("a"), live("b")],
            more: false,
        };
        assert_eq!(ack.undelivered().len(), 2);
    }
}
