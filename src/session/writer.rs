//! A connection's write side: the only code that writes to its socket.
//!
//! Frames are written with their separator in one call (the C++ client parses one frame per read). The
//! mailbox first offers each item to [`Writer::try_direct`], which writes it on the pushing thread without
//! blocking; what cannot go out at once waits in the queue for a writer thread ([`run`]), started on
//! demand and stopped when the queue stays empty. The writer state (who is logged in and acknowledged,
//! frames held until the login ack, frames that could not be written) lives in [`Writer`], which outlives
//! the writer threads. Chat frames that cannot be written are kept and stored offline when the connection
//! ends, so an accepted message is never dropped.

use std::io::{ErrorKind, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, select_biased};
use socket2::SockRef;

use super::Conn;
use crate::mailbox::{Live, Mailbox, Outgoing};
use crate::model::UserId;
use crate::protocol::Version;
use crate::service::{account, chat};

/// How long a writer thread started on an empty queue waits for an item before it stops.
const WRITER_IDLE: Duration = Duration::from_secs(2);

/// What the write side remembers between items and between writer threads.
#[derive(Default)]
pub(crate) struct Writer {
    /// The user whose login ack has been written, and the version of their frames; nudges for them fetch
    /// offline messages at once.
    acked: Option<(UserId, Version)>,
    /// A nudge came before the login ack was written: fetch right after writing it.
    nudge_pending: bool,
    /// A write failed; everything from now on is kept for storage.
    broken: bool,
    /// Chat frames that arrived between a user's registration in the online map and the writing of their
    /// login ack: the ack must come first (the C++ client reads the ack as the first frame after login).
    held: Vec<Live>,
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
    undelivered.append(&mut writer.held);
    drop(writer);
    let mut recipients = Vec::new();
    mailbox.finish_close(|spilled| {
        undelivered.extend(spilled.into_iter().flat_map(Outgoing::undelivered));
        // What another device of the same user on this node took is not offline: that device has it.
        undelivered.retain(|live| conn.ctx.online.devices(live.to) <= 1);
        recipients = chat::persist_undelivered(&conn.ctx, undelivered);
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
        match item {
            Outgoing::Reply(frame) => self
                .send_now(conn, &frame, Vec::new())
                .into_iter()
                .collect(),
            Outgoing::Chat(live) if self.acked_user() != Some(live.to) => {
                self.held.push(live);
                Vec::new()
            }
            Outgoing::Chat(live) => {
                let text = live.frame.clone();
                self.send_now(conn, &text, vec![live]).into_iter().collect()
            }
            // Held frames must follow the ack in order: leave that to a writer thread.
            Outgoing::LoginAck {
                user,
                version,
                frame,
                offline,
                more,
            } if self.held.is_empty() => {
                let rest = self.send_now(conn, &frame, offline);
                if self.broken {
                    return Vec::new();
                }
                self.acked = Some((user, version));
                let fetch = (more || std::mem::take(&mut self.nudge_pending))
                    .then_some(Outgoing::Nudge(user));
                rest.into_iter().chain(fetch).collect()
            }
            other => vec![other],
        }
    }

    /// One non-blocking send of `frame` and its separator: `None` when all of it went out (or the
    /// connection is broken and `chats` kept for storage), else the rest for a writer thread.
    fn send_now(&mut self, conn: &Conn, frame: &str, chats: Vec<Live>) -> Option<Outgoing> {
        let mut bytes = Vec::with_capacity(frame.len() + 1);
        bytes.extend_from_slice(frame.as_bytes());
        bytes.push(conn.separator.load(Ordering::Relaxed));
        match SockRef::from(&*conn.stream).send_with_flags(&bytes, libc::MSG_DONTWAIT) {
            Ok(n) if n == bytes.len() => None,
            Ok(n) => Some(Outgoing::Rest {
                bytes: bytes.split_off(n),
                chats,
            }),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Some(Outgoing::Rest { bytes, chats })
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
        match item {
            Outgoing::Reply(frame) => {
                self.write_frame(conn, &frame);
            }
            Outgoing::Chat(live) if self.acked_user() != Some(live.to) => self.held.push(live),
            Outgoing::Chat(live) => self.write_chat(conn, live),
            Outgoing::Rest { bytes, chats } => {
                if !self.write_bytes(conn, &bytes) {
                    self.undelivered.extend(chats);
                }
            }
            Outgoing::LoginAck {
                user,
                version,
                frame,
                offline,
                more,
            } => {
                if !self.write_frame(conn, &frame) {
                    self.undelivered.extend(offline);
                    return;
                }
                self.acked = Some((user, version));
                // Offline messages first: they were sent before the live ones held meanwhile.
                if more || std::mem::take(&mut self.nudge_pending) {
                    self.fetch(conn);
                }
                for live in std::mem::take(&mut self.held) {
                    self.write_chat(conn, live);
                }
            }
            Outgoing::Nudge(user) => {
                if self.acked_user() == Some(user) {
                    self.fetch(conn);
                } else {
                    self.nudge_pending = true;
                }
            }
            Outgoing::LoggedOut => {
                self.acked = None;
                self.nudge_pending = false;
                // Held for a login that failed: store them now rather than when the connection ends.
                if !self.held.is_empty() {
                    chat::store_undelivered(&conn.ctx, std::mem::take(&mut self.held));
                }
            }
        }
    }

    /// Handles an item left at the end: replies are still written, and chat frames too unless the
    /// client is gone (then they are stored rather than written into a dying socket).
    fn finish_item(&mut self, conn: &Conn, item: Outgoing, client_gone: bool) {
        match item {
            Outgoing::Reply(_) => self.handle(conn, item),
            Outgoing::Nudge(_) => {}
            _ if client_gone => self.undelivered.extend(item.undelivered()),
            _ => self.handle(conn, item),
        }
    }

    fn acked_user(&self) -> Option<UserId> {
        self.acked.map(|(user, _)| user)
    }

    /// Sends the logged-in user's offline messages, batch after batch, until storage has none left.
    fn fetch(&mut self, conn: &Conn) {
        let Some((user, version)) = self.acked else {
            return;
        };
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
                self.write_chat(conn, live);
            }
            if !full || self.broken {
                return;
            }
        }
    }

    fn write_chat(&mut self, conn: &Conn, live: Live) {
        if !self.write_frame(conn, &live.frame) {
            self.undelivered.push(live);
        }
    }

    /// Writes one frame and its separator in one call; `false` (and broken from now on) if that fails.
    fn write_frame(&mut self, conn: &Conn, frame: &str) -> bool {
        let mut bytes = Vec::with_capacity(frame.len() + 1);
        bytes.extend_from_slice(frame.as_bytes());
        bytes.push(conn.separator.load(Ordering::Relaxed));
        self.write_bytes(conn, &bytes)
    }

    fn write_bytes(&mut self, conn: &Conn, bytes: &[u8]) -> bool {
        if self.broken {
            return false;
        }
        if (&*conn.stream).write_all(bytes).is_err() {
            self.broken = true;
        }
        !self.broken
    }
}
