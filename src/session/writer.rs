//! A connection's write side: the only code that writes to its socket.
//!
//! Frames are written as the connection's transport frames them, each in one call (the C++ client parses
//! one frame per read). The
//! mailbox first offers each item to [`Writer::try_direct`], which writes it on the pushing thread without
//! blocking; what cannot go out at once waits in the queue for a writer thread ([`run`]), started on
//! demand and stopped when the queue stays empty. What is written when follows the rules of
//! [`super::outbox`]; their state, and the frames the socket refused, live in [`Writer`], which outlives the
//! writer threads. Chat frames that cannot be written are kept and recorded offline when the connection
//! ends, so an accepted message is never dropped.

use std::io::{ErrorKind, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, select_biased};
use socket2::SockRef;

use super::Conn;
use super::outbox::{Action, Outbox};
use crate::mailbox::{Live, Mailbox, Outgoing};
use crate::model::UserId;
use crate::protocol::Version;
use crate::service::{account, chat};

/// How long a writer thread started on an empty queue waits for an item before it stops.
const WRITER_IDLE: Duration = Duration::from_secs(2);

/// The write side of a connection between items and between writer threads: the rules' state, and what
/// the socket refused.
#[derive(Default)]
pub(crate) struct Writer {
    outbox: Outbox,
    /// A write failed; everything from now on is kept for storage.
    broken: bool,
    undelivered: Vec<Live>,
}

/// A writer thread: drains the queue and stops as soon as it is empty (or the session ends), so that
/// the next item is written directly again. Staying on would route every later item through the queue
/// and a wake-up of this thread: two context switches per delivery for as long as traffic kept coming.
pub(super) fn run(conn: &Conn, mailbox: &Mailbox, mail: &Receiver<Outgoing>) {
    loop {
        select_biased! {
            recv(mail) -> item => match item {
                Ok(item) => {
                    conn.writer.lock().handle(conn, item);
                    if mail.is_empty() && mailbox.writer_may_stop() {
                        return;
                    }
                }
                Err(_) => return,
            },
            recv(conn.close) -> _ => return,
            default(WRITER_IDLE) => if mailbox.writer_may_stop() {
                return;
            },
        }
    }
}

/// Winds the write side down once the mailbox is closing and no writer thread runs: writes or stores
/// what is queued, then stores what could not be written, before the mailbox closes.
pub(super) fn finish(conn: &Conn, mailbox: &Mailbox, mail: &Receiver<Outgoing>) {
    let client_gone = conn.client_gone.load(Ordering::SeqCst);
    let mut writer = conn.writer.lock();
    for item in mail.try_iter() {
        writer.finish_item(conn, item, client_gone);
    }
    let mut undelivered = std::mem::take(&mut writer.undelivered);
    undelivered.append(&mut writer.outbox.take_held());
    drop(writer);
    let mut recipients = Vec::new();
    mailbox.finish_close(|spilled| {
        undelivered.extend(spilled.into_iter().flat_map(Outgoing::undelivered));
        recipients = chat::persist_undelivered(&conn.ctx, undelivered)
            .iter()
            .map(|p| p.user)
            .collect();
    });
    // Outside the mailbox lock: a nudge for a user still registered here pushes to this very mailbox.
    chat::nudge(&conn.ctx, recipients);
}

impl Writer {
    /// Writes `item` now if that needs no blocking and no storage; otherwise gives back, in order, what a
    /// writer thread must do.
    pub(super) fn try_direct(&mut self, conn: &Conn, item: Outgoing) -> Vec<Outgoing> {
        if self.broken {
            self.undelivered.extend(item.undelivered());
            return Vec::new();
        }
        // Only items whose actions are writes and fetches are stepped here: the others may need the
        // store, which must not be called under the mailbox's lock.
        if !matches!(
            item,
            Outgoing::Reply(_)
                | Outgoing::Push { .. }
                | Outgoing::Chat(_)
                | Outgoing::Bytes { .. }
                | Outgoing::LoginAck { .. }
        ) {
            return vec![item];
        }
        let mut actions = self.outbox.step(item).into_iter();
        while let Some(action) = actions.next() {
            let rest = match action {
                Action::Write { frame, chats } => self.send_now(conn, &frame, chats),
                // A fetch reads the store: the nudge that leads to it goes to a writer thread.
                other => self.queue_item(conn, other),
            };
            if let Some(rest) = rest {
                let mut queued = vec![rest];
                for action in actions {
                    queued.extend(self.queue_item(conn, action));
                }
                return queued;
            }
        }
        Vec::new()
    }

    /// An action left for a writer thread, as the queue item that leads to it there; `None` for frames to
    /// record offline, which are kept with the undelivered ones (only a logout stores, and a logout is
    /// never stepped directly, so this does not happen).
    fn queue_item(&mut self, conn: &Conn, action: Action) -> Option<Outgoing> {
        match action {
            Action::Write { frame, chats } => Some(Outgoing::Bytes {
                bytes: conn.framing.encode(&frame),
                chats,
            }),
            Action::WriteBytes { bytes, chats } => Some(Outgoing::Bytes { bytes, chats }),
            Action::Fetch { user, .. } => Some(Outgoing::Nudge(user)),
            Action::Store(chats) => {
                self.undelivered.extend(chats);
                None
            }
        }
    }

    /// One non-blocking send of `frame` and its separator: `None` when all of it went out (or the
    /// connection is broken and `chats` kept for storage), else the rest for a writer thread.
    fn send_now(&mut self, conn: &Conn, frame: &str, chats: Vec<Live>) -> Option<Outgoing> {
        let mut bytes = conn.framing.encode(frame);
        match SockRef::from(&*conn.stream).send_with_flags(&bytes, libc::MSG_DONTWAIT) {
            Ok(n) if n == bytes.len() => {
                chats.into_iter().for_each(Live::written);
                None
            }
            Ok(n) => Some(Outgoing::Bytes {
                bytes: bytes.split_off(n),
                chats,
            }),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Some(Outgoing::Bytes { bytes, chats })
            }
            Err(_) => {
                self.broken = true;
                self.undelivered.extend(chats);
                None
            }
        }
    }

    /// Handles one queued item on a writer thread (blocking writes, storage calls).
    fn handle(&mut self, conn: &Conn, item: Outgoing) {
        if self.broken {
            self.undelivered.extend(item.undelivered());
            return;
        }
        for action in self.outbox.step(item) {
            match action {
                Action::Write { frame, chats } => {
                    self.write_bytes(conn, &conn.framing.encode(&frame), chats)
                }
                Action::WriteBytes { bytes, chats } => self.write_bytes(conn, &bytes, chats),
                Action::Fetch { user, version } => self.fetch(conn, user, version),
                Action::Store(held) => chat::store_undelivered(&conn.ctx, held),
            }
        }
    }

    /// Handles an item left at the end: replies are still written, and chat frames too unless the
    /// client is gone (then they are stored rather than written into a dying socket).
    fn finish_item(&mut self, conn: &Conn, item: Outgoing, client_gone: bool) {
        match item {
            Outgoing::Reply(_) | Outgoing::Push { .. } => self.handle(conn, item),
            Outgoing::Nudge(_) => {}
            _ if client_gone => self.undelivered.extend(item.undelivered()),
            _ => self.handle(conn, item),
        }
    }

    /// Sends `user`'s offline messages, batch after batch, until storage has none left.
    fn fetch(&mut self, conn: &Conn, user: UserId, version: Version) {
        loop {
            let frames = match account::fetch_offline(&conn.ctx, user, version) {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::warn!(user, error = ?e, "could not fetch offline messages; they stay recorded");
                    return;
                }
            };
            let full = frames.len() == conn.ctx.offline_batch;
            for live in frames {
                let Some(live) = self.outbox.first_time(live) else {
                    continue;
                };
                let bytes = conn.framing.encode(&live.frame);
                self.write_bytes(conn, &bytes, vec![live]);
            }
            if !full || self.broken {
                return;
            }
        }
    }

    /// Writes `bytes` whole (blocking); on failure the connection is broken from now on and `chats` are
    /// kept for storage.
    fn write_bytes(&mut self, conn: &Conn, bytes: &[u8], chats: Vec<Live>) {
        if !self.broken && (&*conn.stream).write_all(bytes).is_err() {
            self.broken = true;
        }
        if self.broken {
            self.undelivered.extend(chats);
        } else {
            chats.into_iter().for_each(Live::written);
        }
    }
}
