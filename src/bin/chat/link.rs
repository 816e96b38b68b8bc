//! What the two threads share: the current connection's writing half (none while reconnecting), the
//! login to resume after a lost connection, and the messages the server has not acknowledged yet.
//!
//! The input thread sends through the link; the reader thread replaces the connection after a loss and
//! resends the unacknowledged messages on the new one, under the same lock, so a message is either sent
//! by the input thread on a live connection or resent by the reconnect, and none is left out.

use clusterchat::client::FrameWriter;
use parking_lot::Mutex;
use serde_json::Value;

use crate::render::{PageInfo, Reply};

/// What the reader thread tells the input thread.
#[derive(Debug)]
pub enum Event {
    /// The answer to one of the input thread's requests (already printed).
    Answer(Reply, Option<PageInfo>),
    /// The connection of this epoch was lost; the reader is reconnecting.
    Lost(u64),
    /// A new connection of this epoch is logged in again, unacknowledged messages resent.
    Back(u64),
}

/// How to log in again without the password.
#[derive(Debug, Clone)]
pub struct Resume {
    pub id: i64,
    /// The resume token of the login ack; a server that could not save one sends none.
    pub token: Option<String>,
    pub device: String,
}

/// A chat message sent but not acknowledged yet: resent, with its `cid` and `seq`, after a reconnect.
#[derive(Debug, Clone)]
pub struct Pending {
    pub cid: String,
    pub seq: u64,
    pub frame: Value,
}

/// The result of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written on the connection of this epoch.
    On(u64),
    /// There is no connection right now (the reader is reconnecting), or writing failed (the reader is
    /// about to notice), after the connection of this epoch.
    Down(u64),
}

#[derive(Default)]
struct State {
    writer: Option<FrameWriter>,
    /// Counts connections: 1 for the first, one more for each reconnect.
    epoch: u64,
    resume: Option<Resume>,
    outbox: Vec<Pending>,
}

pub struct Link {
    state: Mutex<State>,
}

impl Link {
    pub fn new(writer: FrameWriter) -> Link {
        Link {
            state: Mutex::new(State {
                writer: Some(writer),
                epoch: 1,
                ..State::default()
            }),
        }
    }

    /// Sends a frame on the current connection.
    pub fn send(&self, frame: &Value) -> Sent {
        let mut state = self.state.lock();
        let epoch = state.epoch;
        match state.writer.as_mut().map(|w| w.send(frame)) {
            Some(Ok(())) => Sent::On(epoch),
            _ => Sent::Down(epoch),
        }
    }

    /// Keeps a chat message until its ack and sends it if there is a connection.
    pub fn send_chat(&self, pending: Pending) -> Sent {
        let mut state = self.state.lock();
        let epoch = state.epoch;
        let sent = match state.writer.as_mut().map(|w| w.send(&pending.frame)) {
            Some(Ok(())) => Sent::On(epoch),
            _ => Sent::Down(epoch),
        };
        state.outbox.push(pending);
        sent
    }

    /// Whether there is a connection of an epoch after `after`.
    pub fn is_up_after(&self, after: u64) -> bool {
        let state = self.state.lock();
        state.writer.is_some() && state.epoch > after
    }

    pub fn is_up(&self) -> bool {
        self.state.lock().writer.is_some()
    }

    /// The message with this cid got its ack.
    pub fn acked(&self, cid: &str) {
        self.state.lock().outbox.retain(|p| p.cid != cid);
    }

    /// The request with this seq was refused: if it was a message, it is not resent.
    pub fn refused(&self, seq: u64) {
        self.state.lock().outbox.retain(|p| p.seq != seq);
    }

    /// How many messages wait for their ack.
    pub fn unacknowledged(&self) -> Vec<Pending> {
        self.state.lock().outbox.clone()
    }

    /// A login succeeded: from now on a lost connection is resumed with this.
    pub fn logged_in(&self, resume: Resume) {
        self.state.lock().resume = Some(resume);
    }

    /// Logging out: a lost connection is not resumed any more, and the messages still waiting are
    /// forgotten (they belong to this login; resending them under the next could send them as someone
    /// else). Returns those.
    pub fn logging_out(&self) -> Vec<Pending> {
        let mut state = self.state.lock();
        state.resume = None;
        std::mem::take(&mut state.outbox)
    }

    /// The connection of the current epoch is gone: the writer is dropped. Returns that epoch and the
    /// login to resume, if any.
    pub fn lost(&self) -> (u64, Option<Resume>) {
        let mut state = self.state.lock();
        state.writer = None;
        (state.epoch, state.resume.clone())
    }

    /// A new connection, logged in again: it becomes the current one and every unacknowledged message
    /// is resent on it, oldest first. Returns its epoch. A failed write is not reported: the reader finds
    /// the connection gone at its next read, and the messages are still waiting for the next one.
    pub fn reconnected(&self, mut writer: FrameWriter) -> u64 {
        let mut state = self.state.lock();
        for pending in &state.outbox {
            if writer.send(&pending.frame).is_err() {
                break;
            }
        }
        state.writer = Some(writer);
        state.epoch += 1;
        state.epoch
    }
}
