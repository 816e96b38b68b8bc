//! The reader thread: prints each frame the moment it arrives, passes the answers to the input thread's
//! requests on, marks what it showed as read, and after a lost connection logs back in by itself.
//!
//! Marking as read: every message shown (live, kept offline, or on a history page) raises the highest
//! position shown of its conversation. One READ per conversation then goes out with the highest position
//! shown, if the server does not have it already: before an answer to the input thread's request is
//! handed on (so it precedes the user's next request), or for live messages once no frame has come for
//! [`READ_DELAY`] (or that long after the first unmarked one, under a steady stream). Nothing waits for
//! READ's ack.
//!
//! Reconnecting: when the connection of a logged-in session ends, the thread says `reconnecting…`,
//! tries again after 0.5 s, 1 s, 2 s, 4 s, then every 5 s, logging in with the device's resume token, and
//! on success resends every message not yet acknowledged (the server does not deliver a `cid` twice). It
//! ends the process, with a failure status, when the connection ends while not logged in, when the
//! server refuses the token, or after [`GIVE_UP`] without getting back in.

use std::collections::BTreeMap;
use std::io;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clusterchat::client::{Client, FrameReader};
use clusterchat::protocol::frame::Separator;
use clusterchat::protocol::msgid;
use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::command::read_request;
use crate::link::{Event, Link, Pending, Resume};
use crate::render::{PageInfo, Reply, View, login_error, render, resume_summary};
use crate::terminal::{Output, TerminalState};

/// How long shown messages wait for more before READ marks them.
const READ_DELAY: Duration = Duration::from_millis(20);
/// The first wait before reconnecting, doubled after each failed attempt up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// How long the server may stay out of reach before the client gives up.
pub const GIVE_UP: Duration = Duration::from_secs(30);
/// One attempt's limits: to connect, and to get the login's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Reader {
    pub link: Arc<Link>,
    pub out: Output,
    pub events: Sender<Event>,
    pub terminal: TerminalState,
    pub server: String,
    pub tracker: Tracker,
}

impl Reader {
    /// Reads until the process ends.
    pub fn run(mut self, mut reader: FrameReader) -> ! {
        loop {
            let why = self.read_until_lost(&mut reader);
            let (epoch, resume) = self.link.lost();
            // The input thread is gone only when the process is ending.
            let _ = self.events.send(Event::Lost(epoch));
            let Some(resume) = resume else {
                self.exit(&why, &[]);
            };
            match self.reconnect(&resume, &why) {
                Ok(next) => reader = next,
                Err(why) => {
                    let unsent = self.link.unacknowledged();
                    self.exit(&why, &unsent)
                }
            }
        }
    }

    /// Prints frames until the connection ends; returns why it ended.
    fn read_until_lost(&mut self, reader: &mut FrameReader) -> String {
        let mut due_since: Option<Instant> = None;
        loop {
            let mut wait = None;
            if let Some(since) = due_since {
                let left = (since + READ_DELAY).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.send_reads();
                    due_since = None;
                } else {
                    wait = Some(left);
                }
            }
            match reader.recv(wait) {
                Ok(Some(frame)) => {
                    let answer = self.handle(&frame);
                    if let Some(answer) = answer {
                        // Before the input thread sends its next request: what a command showed is
                        // marked read before anything the user does next (a script's `conversations`
                        // right after `history:` counts the page as read).
                        self.send_reads();
                        due_since = None;
                        let _ = self.events.send(answer);
                    } else if due_since.is_none() && self.tracker.has_due() {
                        due_since = Some(Instant::now());
                    }
                }
                Ok(None) => return "the server closed the connection".into(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.send_reads();
                    due_since = None;
                }
                // The decoder has already moved past the bad frame; the next one can be read.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.out
                        .line(&format!("unreadable message from the server: {e}"));
                }
                Err(e) => return format!("lost the connection to the server: {e}"),
            }
        }
    }

    /// Prints a frame and learns from it; returns the event for the input thread if it is an answer.
    fn handle(&mut self, frame: &Value) -> Option<Event> {
        self.tracker.observe(frame);
        let lines = render(frame, &self.tracker.view);
        if !lines.is_empty() {
            self.out.lines(&lines);
        }
        let errno = frame.get("errno").and_then(Value::as_i64).unwrap_or(0);
        let seq = frame.get("seq").and_then(Value::as_u64);
        match frame.get("msgid").and_then(Value::as_i64) {
            Some(msgid::LOGIN_ACK) if errno == 0 => {
                self.link.logged_in(Resume {
                    id: frame.get("id").and_then(Value::as_i64).unwrap_or(0),
                    token: frame.get("token").and_then(Value::as_str).map(String::from),
                    device: text(frame, "device").to_string(),
                });
            }
            Some(msgid::CHAT_ACK) => {
                if let Some(cid) = frame.get("cid").and_then(Value::as_str) {
                    self.link.acked(cid);
                }
            }
            Some(msgid::ERROR) => {
                let chat = matches!(
                    frame.get("ref").and_then(Value::as_i64),
                    Some(msgid::ONE_CHAT | msgid::GROUP_CHAT)
                );
                if let (true, Some(seq)) = (chat, seq) {
                    self.link.refused(seq);
                }
            }
            _ => {}
        }
        Reply::of(frame).map(|reply| Event::Answer(reply, PageInfo::of(frame)))
    }

    /// Sends the READs that are due (kept for later while there is no connection).
    fn send_reads(&mut self) {
        if self.link.is_up() {
            for request in self.tracker.reads_due() {
                // A failed write means the connection is going; after the reconnect the server's read
                // positions come in the login ack and what was shown beyond them is marked again.
                let _ = self.link.send(&request);
            }
        }
    }

    /// Logs back in on a new connection; returns its reading half, or why there is no getting back in.
    fn reconnect(&mut self, resume: &Resume, why: &str) -> Result<FrameReader, String> {
        let Some(token) = resume.token.as_deref() else {
            return Err(format!(
                "{why}; the server gave no resume token at login, so the client cannot log back in"
            ));
        };
        self.out.line(&format!("{why}; reconnecting…"));
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        loop {
            let left = GIVE_UP.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "could not get back to the server within {} s, giving up",
                    GIVE_UP.as_secs()
                ));
            }
            thread::sleep(delay.min(left));
            delay = (delay * 2).min(LAST_RETRY);
            match self.attempt(resume, token) {
                Ok((client, ack)) => {
                    let Client { writer, reader } = client;
                    let epoch = self.link.reconnected(writer);
                    self.tracker.observe(&ack);
                    self.tracker.recheck();
                    self.out.lines(&resume_summary(&ack, &self.tracker.view));
                    self.send_reads();
                    let _ = self.events.send(Event::Back(epoch));
                    return Ok(reader);
                }
                Err(Attempt::Again) => {}
                Err(Attempt::Refused(why)) => return Err(why),
            }
        }
    }

    /// One try: connect and log in with the token.
    fn attempt(&self, resume: &Resume, token: &str) -> Result<(Client, Value), Attempt> {
        let addrs = self.server.to_socket_addrs().map_err(|_| Attempt::Again)?;
        let mut client = addrs
            .into_iter()
            .find_map(|addr| {
                Client::connect_timeout(&addr, Separator::Newline, CONNECT_TIMEOUT).ok()
            })
            .ok_or(Attempt::Again)?;
        let login = json!({"msgid": msgid::LOGIN, "id": resume.id, "token": token, "v": 2,
                           "device": resume.device});
        client.send(&login).map_err(|_| Attempt::Again)?;
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Attempt::Again);
            }
            let frame = match client.recv(Some(left)) {
                Ok(Some(frame)) => frame,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(None) | Err(_) => return Err(Attempt::Again),
            };
            let errno = frame.get("errno").and_then(Value::as_i64).unwrap_or(0);
            match frame.get("msgid").and_then(Value::as_i64) {
                Some(msgid::LOGIN_ACK) if errno == 0 => return Ok((client, frame)),
                // The token is no longer this device's (logged out elsewhere, expired, another database).
                Some(msgid::LOGIN_ACK) if errno == 1 => {
                    return Err(Attempt::Refused(format!(
                        "the server no longer accepts this login ({}); log in again",
                        login_error(errno, text(&frame, "errmsg"))
                    )));
                }
                // 2: the server has not yet noticed that the old connection is gone; 107, 109: later.
                Some(msgid::LOGIN_ACK) => return Err(Attempt::Again),
                // The server is full (108) or otherwise unwilling right now.
                Some(msgid::ERROR) => return Err(Attempt::Again),
                _ => {}
            }
        }
    }

    /// Ends the process: says why, names the messages the server never confirmed, and gives the terminal
    /// back its settings if `readline` had it in raw mode.
    fn exit(&mut self, why: &str, unsent: &[Pending]) -> ! {
        self.terminal.restore();
        // On a terminal the cursor may sit after a half-typed line.
        let lead = if self.terminal.is_terminal() {
            "\n"
        } else {
            ""
        };
        let mut lines = vec![format!("{lead}{why}")];
        lines.extend(
            unsent
                .iter()
                .map(|p| format!("not confirmed: {}", as_command(&p.frame))),
        );
        Output::Stdout.lines(&lines);
        std::process::exit(1)
    }
}

enum Attempt {
    /// Try again after the next wait.
    Again,
    /// Trying again cannot help.
    Refused(String),
}

/// A chat request as the command that sent it, so the user can send it again.
pub fn as_command(frame: &Value) -> String {
    let msg = text(frame, "msg");
    match (frame.get("toid"), frame.get("groupid")) {
        (Some(to), _) => format!("chat:{to}:{msg}"),
        (None, Some(group)) => format!("groupchat:{group}:{msg}"),
        (None, None) => frame.to_string(),
    }
}

/// Read positions: what the server has (or has been asked to take), and the highest position this
/// client has shown of each conversation; a READ is due wherever the second is ahead.
#[derive(Debug, Default)]
pub struct Tracker {
    pub view: View,
    read: BTreeMap<String, i64>,
    shown: BTreeMap<String, i64>,
    due: bool,
}

impl Tracker {
    /// Learns from a frame before it is shown: who the user is, names, positions read and shown.
    pub fn observe(&mut self, frame: &Value) {
        let errno = frame.get("errno").and_then(Value::as_i64).unwrap_or(0);
        if errno != 0 {
            return;
        }
        match frame.get("msgid").and_then(Value::as_i64) {
            Some(msgid::LOGIN_ACK) => {
                let me = frame.get("id").and_then(Value::as_i64);
                if me != self.view.me {
                    *self = Tracker::default();
                    self.view.me = me;
                }
                for group in list(frame, "groups") {
                    if let (Some(id), Some(name)) = (
                        group.get("id").and_then(Value::as_i64),
                        group.get("groupname").and_then(Value::as_str),
                    ) {
                        self.view.names.insert(format!("g{id}"), name.to_string());
                    }
                }
                self.conversations(frame, true);
                for message in list(frame, "offlinemsg") {
                    self.saw(&message);
                }
            }
            Some(msgid::CONVERSATIONS_ACK) => self.conversations(frame, false),
            Some(msgid::ONE_CHAT | msgid::GROUP_CHAT) => self.saw(frame),
            Some(msgid::HISTORY_ACK) => {
                for message in list(frame, "messages") {
                    self.saw(&message);
                }
            }
            // Sending moves the sender's own read position to the message.
            Some(msgid::CHAT_ACK) => self.has_read(frame, "pos"),
            Some(msgid::READ_ACK) => self.has_read(frame, "read"),
            Some(msgid::RECEIPT) if frame.get("id").and_then(Value::as_i64) == self.view.me => {
                self.has_read(frame, "read");
            }
            _ => {}
        }
    }

    /// Takes names and read positions from a conversation list. A login ack's are the server's word, a
    /// resumed login's included: a READ lost with the old connection is then due again.
    fn conversations(&mut self, frame: &Value, login: bool) {
        for c in list(frame, "conversations") {
            let Some(conv) = c.get("conv").and_then(Value::as_str) else {
                continue;
            };
            if let Some(name) = c.get("name").and_then(Value::as_str) {
                self.view.names.insert(conv.to_string(), name.to_string());
            }
            let read = c.get("read").and_then(Value::as_i64).unwrap_or(0);
            let known = self.read.entry(conv.to_string()).or_default();
            *known = if login { read } else { (*known).max(read) };
        }
    }

    /// A chat message is being shown.
    fn saw(&mut self, message: &Value) {
        let (Some(conv), Some(pos)) = (
            message.get("conv").and_then(Value::as_str),
            message.get("pos").and_then(Value::as_i64),
        ) else {
            return;
        };
        let mine = self.view.is_mine(message);
        if !mine
            && message.get("msgid").and_then(Value::as_i64) == Some(msgid::ONE_CHAT)
            && let (Some(id), Some(name)) = (
                message.get("id").and_then(Value::as_i64),
                message.get("name").and_then(Value::as_str),
            )
        {
            self.view.names.insert(format!("u{id}"), name.to_string());
        }
        if mine {
            // One's own message: the server moved the read position when it was sent.
            raise(&mut self.read, conv, pos);
            return;
        }
        raise(&mut self.shown, conv, pos);
        if pos > self.read.get(conv).copied().unwrap_or(0) {
            self.due = true;
        }
    }

    fn has_read(&mut self, frame: &Value, key: &str) {
        if let (Some(conv), Some(pos)) = (
            frame.get("conv").and_then(Value::as_str),
            frame.get(key).and_then(Value::as_i64),
        ) {
            raise(&mut self.read, conv, pos);
        }
    }

    /// Whether some READ is due.
    pub fn has_due(&self) -> bool {
        self.due
    }

    /// After the read positions were replaced by the server's: looks for READs due again.
    pub fn recheck(&mut self) {
        self.due = self
            .shown
            .iter()
            .any(|(conv, pos)| *pos > self.read.get(conv).copied().unwrap_or(0));
    }

    /// The READ requests due now, one per conversation, counted as read from now on.
    pub fn reads_due(&mut self) -> Vec<Value> {
        self.due = false;
        let mut requests = Vec::new();
        for (conv, &pos) in &self.shown {
            let read = self.read.entry(conv.clone()).or_default();
            if pos > *read {
                *read = pos;
                requests.push(read_request(conv, pos));
            }
        }
        requests
    }
}

fn raise(positions: &mut BTreeMap<String, i64>, conv: &str, pos: i64) {
    let known = positions.entry(conv.to_string()).or_default();
    *known = (*known).max(pos);
}

fn text<'a>(frame: &'a Value, key: &str) -> &'a str {
    frame.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list(frame: &Value, key: &str) -> Vec<Value> {
    frame
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(conv: &str, pos: i64, from: i64) -> Value {
        json!({"msgid": 6, "conv": conv, "pos": pos, "id": from, "name": "bob", "toid": 1, "msg": "x"})
    }

    fn logged_in() -> Tracker {
        let mut tracker = Tracker::default();
        tracker.observe(&json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "conversations": [{"conv": "u2", "name": "bob", "last": 5, "read": 3, "unread": 2},
                              {"conv": "g3", "name": "devs", "last": 0, "read": 0, "unread": 0}],
            "offlinemsg": [chat("u2", 4, 2), chat("u2", 5, 2)]}));
        tracker
    }

    #[test]
    fn one_read_per_conversation_for_the_highest_shown() {
        let mut tracker = logged_in();
        assert_eq!(tracker.view.me, Some(1));
        assert_eq!(tracker.view.names["u2"], "bob");
        assert!(tracker.has_due());
        tracker.observe(&json!({"msgid": 10, "conv": "g3", "pos": 1, "id": 2, "groupid": 3}));
        assert_eq!(
            tracker.reads_due(),
            [
                json!({"msgid": 21, "conv": "g3", "pos": 1}),
                json!({"msgid": 21, "conv": "u2", "pos": 5})
            ]
        );
        assert!(!tracker.has_due());
        assert!(tracker.reads_due().is_empty());
    }

    #[test]
    fn old_pages_and_own_messages_need_no_read() {
        let mut tracker = logged_in();
        tracker.reads_due();
        // An older history page: all of it is below the read position.
        tracker.observe(
            &json!({"msgid": 20, "errno": 0, "conv": "u2", "more": false,
                                "messages": [chat("u2", 1, 2), chat("u2", 2, 1)]}),
        );
        assert!(!tracker.has_due());
        // A carbon of one's own message, and the ack of one sent here, move the read position.
        tracker.observe(&chat("u2", 6, 1));
        tracker.observe(&json!({"msgid": 16, "errno": 0, "conv": "u2", "pos": 7, "cid": "c"}));
        tracker.observe(&chat("u2", 7, 2));
        assert!(!tracker.has_due());
        tracker.observe(&chat("u2", 8, 2));
        assert_eq!(
            tracker.reads_due(),
            [json!({"msgid": 21, "conv": "u2", "pos": 8})]
        );
    }

    #[test]
    fn a_read_lost_with_the_connection_is_sent_again() {
        let mut tracker = logged_in();
        assert_eq!(tracker.reads_due().len(), 1);
        // The READ for u2 #5 never reached the server: the resumed login still says 3.
        tracker.observe(&json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "conversations": [{"conv": "u2", "name": "bob", "last": 5, "read": 3, "unread": 2}]}));
        tracker.recheck();
        assert!(tracker.has_due());
        assert_eq!(
            tracker.reads_due(),
            [json!({"msgid": 21, "conv": "u2", "pos": 5})]
        );
    }

    #[test]
    fn another_device_reading_counts() {
        let mut tracker = logged_in();
        tracker.observe(&json!({"msgid": 23, "conv": "u2", "id": 1, "read": 5}));
        assert!(tracker.reads_due().is_empty());
        // The peer's receipt says nothing about our own position.
        tracker.observe(&chat("u2", 6, 2));
        tracker.observe(&json!({"msgid": 23, "conv": "u2", "id": 2, "read": 6}));
        assert_eq!(tracker.reads_due().len(), 1);
    }

    #[test]
    fn a_new_user_starts_afresh() {
        let mut tracker = logged_in();
        tracker
            .observe(&json!({"msgid": 2, "errno": 0, "id": 2, "name": "bob", "conversations": []}));
        assert_eq!(tracker.view.me, Some(2));
        assert!(tracker.view.names.is_empty());
        assert!(tracker.reads_due().is_empty());
    }

    #[test]
    fn unconfirmed_messages_are_named_as_commands() {
        assert_eq!(
            as_command(&json!({"msgid": 6, "toid": 5, "msg": "a:b", "cid": "c"})),
            "chat:5:a:b"
        );
        assert_eq!(
            as_command(&json!({"msgid": 10, "groupid": 3, "msg": "hi"})),
            "groupchat:3:hi"
        );
    }
}
