//! A connection's writer: the only code that writes to its socket.
//!
//! It drains the mailbox in order, appending the connection's separator to each frame and writing each
//! frame with one `write` call (the C++ client parses one frame per read). Chat frames it cannot write are
//! kept and stored offline when it finishes, so an accepted message is never dropped.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, select_biased};

use super::Shared;
use crate::mailbox::{Mailbox, Outgoing};
use crate::protocol::UserId;
use crate::service::{Context, chat};

/// Runs until the session signals the end (drops its side of `close`), then finishes the queue.
pub(super) fn run(
    ctx: &Context,
    stream: &TcpStream,
    mail: Receiver<Outgoing>,
    close: Receiver<()>,
    mailbox: &Mailbox,
    shared: &Shared,
) {
    let mut writer = Writer {
        ctx,
        stream,
        shared,
        acked: None,
        nudge_pending: false,
        broken: false,
        held: Vec::new(),
        undelivered: Vec::new(),
        buf: Vec::new(),
    };
    loop {
        select_biased! {
            recv(mail) -> item => match item {
                Ok(item) => writer.handle(item),
                Err(_) => break,
            },
            recv(close) -> _ => break,
        }
    }
    // The mailbox is closing: nothing more enters the queue, newer items wait in its spill list.
    let client_gone = shared.client_gone.load(Ordering::SeqCst);
    for item in mail.try_iter() {
        writer.finish(item, client_gone);
    }
    let mut undelivered = std::mem::take(&mut writer.undelivered);
    undelivered.append(&mut writer.held);
    let mut recipients = Vec::new();
    mailbox.finish_close(|spilled| {
        undelivered.extend(spilled.into_iter().flat_map(Outgoing::undelivered));
        recipients = chat::persist_undelivered(ctx, undelivered);
    });
    // Outside the mailbox lock: a nudge for a user still registered here pushes to this very mailbox.
    chat::nudge(ctx, recipients);
}

struct Writer<'a> {
    ctx: &'a Context,
    stream: &'a TcpStream,
    shared: &'a Shared,
    /// The user whose login ack has been written; nudges for them fetch stored frames at once.
    acked: Option<UserId>,
    /// A nudge came before the login ack was written: fetch right after writing it.
    nudge_pending: bool,
    /// A write failed; everything from now on is kept for storage.
    broken: bool,
    /// Chat frames that arrived between a user's registration in the online map and the writing of their
    /// login ack: the ack must come first (the C++ client reads the ack as the first frame after login).
    held: Vec<(UserId, Arc<str>)>,
    undelivered: Vec<(UserId, Arc<str>)>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn handle(&mut self, item: Outgoing) {
        if self.broken {
            self.undelivered.extend(item.undelivered());
            return;
        }
        match item {
            Outgoing::Reply(frame) => {
                self.write(&frame);
            }
            Outgoing::Chat { to, frame } if self.acked != Some(to) => self.held.push((to, frame)),
            Outgoing::Chat { to, frame } => self.write_chat(to, frame),
            Outgoing::LoginAck {
                user,
                frame,
                offline,
                more,
            } => {
                if !self.write(&frame) {
                    self.undelivered
                        .extend(offline.into_iter().map(|f| (user, Arc::from(f))));
                    return;
                }
                self.acked = Some(user);
                for (to, frame) in std::mem::take(&mut self.held) {
                    self.write_chat(to, frame);
                }
                if more || std::mem::take(&mut self.nudge_pending) {
                    self.fetch(user);
                }
            }
            Outgoing::Nudge(user) => {
                if self.acked == Some(user) {
                    self.fetch(user);
                } else {
                    self.nudge_pending = true;
                }
            }
            Outgoing::LoggedOut => {
                self.acked = None;
                self.nudge_pending = false;
                // Held for a login that failed: store them now rather than when the connection ends.
                if !self.held.is_empty() {
                    chat::store_undelivered(self.ctx, std::mem::take(&mut self.held));
                }
            }
        }
    }

    /// Handles an item left after the end: replies are still written, and chat frames too unless the
    /// client is gone (then they are stored rather than written into a dying socket).
    fn finish(&mut self, item: Outgoing, client_gone: bool) {
        match item {
            Outgoing::Reply(_) => self.handle(item),
            Outgoing::Nudge(_) => {}
            _ if client_gone => self.undelivered.extend(item.undelivered()),
            _ => self.handle(item),
        }
    }

    fn write_chat(&mut self, to: UserId, frame: Arc<str>) {
        if !self.write(&frame) {
            self.undelivered.push((to, frame));
        }
    }

    /// Sends `user`'s stored frames, batch after batch, until storage has none left.
    fn fetch(&mut self, user: UserId) {
        loop {
            let frames = match chat::fetch_offline(self.ctx, user) {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::warn!(user, error = %e, "could not fetch stored messages; they stay stored");
                    return;
                }
            };
            let full = frames.len() == self.ctx.offline_batch;
            for frame in frames {
                self.write_chat(user, Arc::from(frame));
            }
            if !full || self.broken {
                return;
            }
        }
    }

    /// Writes one frame and its separator in one call; `false` (and broken from now on) if that fails.
    fn write(&mut self, frame: &str) -> bool {
        if self.broken {
            return false;
        }
        self.buf.clear();
        self.buf.extend_from_slice(frame.as_bytes());
        self.buf.push(self.shared.separator.load(Ordering::Relaxed));
        if self.stream.write_all(&self.buf).is_err() {
            self.broken = true;
        }
        !self.broken
    }
}
