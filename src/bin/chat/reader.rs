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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet, VecDeque};
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
        let frame = &*self.tracker.unseen(frame)?;
        self.tracker.observe(frame);
        let lines = if self.tracker.is_echo(frame) {
            Vec::new()
        } else {
            render(frame, &self.tracker.view)
        };
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
                    let known = self.tracker.view.requests.clone();
                    let ack = self
                        .tracker
                        .unseen(&ack)
                        .map_or(ack.clone(), Cow::into_owned);
                    self.tracker.observe(&ack);
                    self.tracker.recheck();
                    self.out
                        .lines(&resume_summary(&ack, &self.tracker.view, &known));
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

/// How long the first announcement of a group action of this connection waits for its echo.
const ECHO_WINDOW: Duration = Duration::from_secs(10);

/// How many chat messages that arrived the tracker remembers, to show none of them twice.
const ARRIVALS: usize = 65_536;

/// Read positions: what the server has (or has been asked to take), and the highest position this
/// client has shown of each conversation; a READ is due wherever the second is ahead. Also what the
/// renderer knows ([`View`]), and the group actions of this connection announced once so far.
#[derive(Debug, Default)]
pub struct Tracker {
    pub view: View,
    read: BTreeMap<String, i64>,
    shown: BTreeMap<String, i64>,
    due: bool,
    announced: Vec<Announced>,
    arrived: Arrivals,
}

/// The chat messages that arrived unasked (live, or in the offline list), by conversation and position,
/// the last [`ARRIVALS`] of them. The server may hand one on twice: live through a Redis that stalled
/// past the sending node's wait, and from the offline list where that node recorded it meanwhile.
#[derive(Debug, Default)]
struct Arrivals {
    known: HashSet<(String, i64)>,
    order: VecDeque<(String, i64)>,
}

impl Arrivals {
    /// Whether `message` (a chat frame) is new here; remembers it. One without a position is.
    fn first(&mut self, message: &Value) -> bool {
        let (Some(conv), Some(pos)) = (
            message.get("conv").and_then(Value::as_str),
            message.get("pos").and_then(Value::as_i64),
        ) else {
            return true;
        };
        let key = (conv.to_owned(), pos);
        if !self.known.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > ARRIVALS
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        true
    }
}

/// A group action shown by its ack or by its GROUP_EVENT, whichever came first; the other one is an
/// echo.
#[derive(Debug)]
struct Announced {
    action: Action,
    by_ack: bool,
    at: Instant,
}

/// A group action as a GROUP_EVENT names it: the group, the event and the user it is about.
type Action = (i64, String, i64);

impl Tracker {
    /// `frame` as it is to be shown: `None` for a chat message that has arrived before, a login ack
    /// without the offline messages that have (they are read positions' business no more either).
    pub fn unseen<'a>(&mut self, frame: &'a Value) -> Option<Cow<'a, Value>> {
        match frame.get("msgid").and_then(Value::as_i64) {
            Some(msgid::ONE_CHAT | msgid::GROUP_CHAT) => {
                self.arrived.first(frame).then_some(Cow::Borrowed(frame))
            }
            Some(msgid::LOGIN_ACK) => {
                let id = frame.get("id").and_then(Value::as_i64);
                if id.is_some() && id != self.view.me {
                    // Another user: their conversations' names mean other conversations.
                    self.arrived = Arrivals::default();
                }
                let offline = list(frame, "offlinemsg");
                let fresh: Vec<Value> = offline
                    .iter()
                    .filter(|m| self.arrived.first(m))
                    .cloned()
                    .collect();
                if fresh.len() == offline.len() {
                    return Some(Cow::Borrowed(frame));
                }
                let mut frame = frame.clone();
                frame["offlinemsg"] = Value::Array(fresh);
                Some(Cow::Owned(frame))
            }
            _ => Some(Cow::Borrowed(frame)),
        }
    }

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
                    let arrived = std::mem::take(&mut self.arrived);
                    *self = Tracker::default();
                    self.view.me = me;
                    // What came in this ack (`unseen` has seen it) stays known.
                    self.arrived = arrived;
                }
                for group in list(frame, "groups") {
                    self.learn_group(&group, "id");
                }
                self.learn_users(&list(frame, "friends"));
                if frame.get("requests").is_some() {
                    self.requests_are(&list(frame, "requests"));
                }
                self.conversations(frame, true);
                for message in list(frame, "offlinemsg") {
                    self.saw(&message);
                }
            }
            Some(msgid::CONVERSATIONS_ACK) => self.conversations(frame, false),
            Some(msgid::FRIENDS_ACK) => {
                for key in ["friends", "outgoing", "blocked"] {
                    self.learn_users(&list(frame, key));
                }
                self.requests_are(&list(frame, "incoming"));
            }
            Some(msgid::FRIEND_EVENT) => {
                self.learn_users(std::slice::from_ref(frame));
                if let Some(id) = frame.get("id").and_then(Value::as_i64) {
                    match text(frame, "event") {
                        "request" => {
                            self.view.requests.insert(id);
                        }
                        // A withdrawn request.
                        "removed" => {
                            self.view.requests.remove(&id);
                        }
                        _ => {}
                    }
                }
            }
            // Answered, completed, removed or blocked: no open request from them any more.
            Some(
                msgid::ADD_FRIEND_ACK
                | msgid::FRIEND_REQUEST_ACK
                | msgid::FRIEND_ANSWER_ACK
                | msgid::FRIEND_REMOVE_ACK,
            ) => {
                if let Some(id) = frame.get("friendid").and_then(Value::as_i64)
                    && text(frame, "state") != "requested"
                {
                    self.view.requests.remove(&id);
                }
            }
            Some(msgid::BLOCK_ACK) if frame.get("block") == Some(&Value::Bool(true)) => {
                if let Some(id) = frame.get("id").and_then(Value::as_i64) {
                    self.view.requests.remove(&id);
                }
            }
            Some(msgid::FIND_USER_ACK) => self.learn_users(std::slice::from_ref(frame)),
            Some(msgid::CREATE_GROUP_ACK) => self.learn_group(frame, "groupid"),
            Some(msgid::GROUP_INFO_ACK) => {
                if let Some(group) = frame.get("group") {
                    self.learn_group(group, "id");
                }
            }
            Some(msgid::GROUP_LEAVE_ACK | msgid::GROUP_DISSOLVE_ACK) => {
                self.forget_group(frame);
            }
            Some(msgid::GROUP_EVENT) => {
                let me = frame.get("id").and_then(Value::as_i64) == self.view.me;
                match text(frame, "event") {
                    "updated" => self.learn_group(frame, "groupid"),
                    "dissolved" => self.forget_group(frame),
                    "left" | "kicked" if me => self.forget_group(frame),
                    _ => {}
                }
            }
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

    /// Learns the names of users from objects with an `id` and a `name`.
    fn learn_users(&mut self, users: &[Value]) {
        for user in users {
            if let (Some(id), Some(name)) = (
                user.get("id").and_then(Value::as_i64),
                user.get("name").and_then(Value::as_str),
            ) {
                self.view.names.insert(format!("u{id}"), name.to_string());
            }
        }
    }

    /// Learns a group's name (its id in `id_key`) and its members' names.
    fn learn_group(&mut self, group: &Value, id_key: &str) {
        if let (Some(id), Some(name)) = (
            group.get(id_key).and_then(Value::as_i64),
            group.get("groupname").and_then(Value::as_str),
        ) {
            self.view.names.insert(format!("g{id}"), name.to_string());
        }
        self.learn_users(&list(group, "users"));
    }

    /// The open friend requests to the user are these (their senders' names learnt too).
    fn requests_are(&mut self, requests: &[Value]) {
        self.learn_users(requests);
        self.view.requests = requests
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect();
    }

    /// The user is no longer in the group of `groupid` (or it is gone): nothing of it is marked read
    /// any more, which the server would refuse. Its name is kept for the lines still to come.
    fn forget_group(&mut self, frame: &Value) {
        if let Some(id) = frame.get("groupid").and_then(Value::as_i64) {
            let conv = format!("g{id}");
            self.read.remove(&conv);
            self.shown.remove(&conv);
        }
    }

    /// Whether a frame only repeats what this connection has shown already. A group request's ack and
    /// the GROUP_EVENT it causes both reach the connection that sent it, in either order: the first is
    /// shown, the other is its echo. An ack counts as an echo once every event it stands for has come.
    pub fn is_echo(&mut self, frame: &Value) -> bool {
        let now = Instant::now();
        self.announced
            .retain(|a| now.saturating_duration_since(a.at) < ECHO_WINDOW);
        let Some((actions, by_ack)) = self.actions(frame) else {
            return false;
        };
        let mut echoed = 0;
        for action in actions.iter() {
            let first = self
                .announced
                .iter()
                .position(|a| a.by_ack != by_ack && a.action == *action);
            match first {
                Some(i) => {
                    self.announced.remove(i);
                    echoed += 1;
                }
                None => self.announced.push(Announced {
                    action: action.clone(),
                    by_ack,
                    at: now,
                }),
            }
        }
        echoed == actions.len()
    }

    /// The group actions of this user that a frame announces, and whether it is an ack.
    fn actions(&self, frame: &Value) -> Option<(Vec<Action>, bool)> {
        let me = self.view.me?;
        if frame.get("errno").and_then(Value::as_i64).unwrap_or(0) != 0 {
            return None;
        }
        let group = frame.get("groupid").and_then(Value::as_i64)?;
        let id = frame.get("id").and_then(Value::as_i64);
        let action = |event: &str, id: i64| (group, event.to_string(), id);
        let actions = match frame.get("msgid").and_then(Value::as_i64)? {
            msgid::GROUP_EVENT => {
                if frame.get("by").and_then(Value::as_i64) != Some(me) {
                    return None;
                }
                return Some((vec![action(text(frame, "event"), id?)], false));
            }
            msgid::ADD_GROUP_ACK => vec![action("joined", me)],
            msgid::GROUP_LEAVE_ACK => vec![action("left", me)],
            msgid::GROUP_KICK_ACK => vec![action("kicked", id?)],
            // Handing the group over changes two roles: the new creator's, then one's own.
            msgid::GROUP_ROLE_ACK if text(frame, "role") == "creator" => {
                vec![action("role", id?), action("role", me)]
            }
            msgid::GROUP_ROLE_ACK => vec![action("role", id?)],
            msgid::GROUP_UPDATE_ACK => vec![action("updated", me)],
            msgid::GROUP_DISSOLVE_ACK => vec![action("dissolved", me)],
            _ => return None,
        };
        Some((actions, true))
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
    use std::collections::BTreeSet;

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
    fn a_message_that_arrives_again_is_not_shown_again() {
        let mut tracker = Tracker::default();
        let first = json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "offlinemsg": [chat("u2", 4, 2), chat("u2", 5, 2)]});
        let first = tracker.unseen(&first).unwrap().into_owned();
        tracker.observe(&first);
        assert!(tracker.unseen(&chat("u2", 5, 2)).is_none(), "in the ack");
        assert!(tracker.unseen(&chat("u2", 6, 2)).is_some());
        assert!(tracker.unseen(&chat("u2", 6, 2)).is_none(), "live twice");
        // After a reconnect, the offline list holds #6 again and #7 anew.
        let ack = json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "offlinemsg": [chat("u2", 6, 2), chat("u2", 7, 2)]});
        let shown = tracker.unseen(&ack).unwrap();
        assert_eq!(shown["offlinemsg"], json!([chat("u2", 7, 2)]));
        // A history page shows what it was asked for, however it came before.
        let page = json!({"msgid": 20, "errno": 0, "conv": "u2", "messages": [chat("u2", 6, 2)]});
        assert_eq!(*tracker.unseen(&page).unwrap(), page);
        // Another user's "u2" is another conversation.
        let other = json!({"msgid": 2, "errno": 0, "id": 9, "name": "zed",
            "offlinemsg": [chat("u2", 6, 2)]});
        assert_eq!(*tracker.unseen(&other).unwrap(), other);
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

    #[test]
    fn names_come_from_friend_and_member_lists_and_events() {
        let mut tracker = logged_in();
        tracker.observe(&json!({"msgid": 34, "errno": 0,
            "friends": [{"id": 4, "name": "carol", "state": "online"}],
            "incoming": [{"id": 5, "name": "dave", "text": ""}],
            "outgoing": [{"id": 6, "name": "erin", "text": ""}],
            "blocked": [{"id": 7, "name": "mallory"}]}));
        tracker.observe(&json!({"msgid": 36, "errno": 0, "id": 8, "name": "frank"}));
        tracker.observe(&json!({"msgid": 26, "event": "accepted", "id": 9, "name": "grace"}));
        tracker.observe(&json!({"msgid": 48, "errno": 0, "group": {"id": 12,
            "groupname": "ops", "groupdesc": "", "users": [
                {"id": 10, "name": "heidi", "state": "online", "role": "creator"}]}}));
        tracker.observe(&json!({"msgid": 13, "errno": 0, "groupid": 13, "groupname": "new"}));
        tracker.observe(
            &json!({"msgid": 49, "groupid": 3, "event": "updated", "id": 2,
            "by": 2, "groupname": "rustaceans", "groupdesc": ""}),
        );
        let names = &tracker.view.names;
        for (key, name) in [
            ("u4", "carol"),
            ("u5", "dave"),
            ("u6", "erin"),
            ("u7", "mallory"),
            ("u8", "frank"),
            ("u9", "grace"),
            ("u10", "heidi"),
            ("g12", "ops"),
            ("g13", "new"),
            ("g3", "rustaceans"),
        ] {
            assert_eq!(names.get(key).map(String::as_str), Some(name), "{key}");
        }
        // A login ack's friends and group members too.
        let mut tracker = Tracker::default();
        tracker.observe(&json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "friends": [{"id": 2, "name": "bob", "state": "online"}],
            "groups": [{"id": 3, "groupname": "devs", "groupdesc": "", "users": [
                {"id": 4, "name": "carol", "state": "offline", "role": "normal"}]}]}));
        assert_eq!(tracker.view.names["u2"], "bob");
        assert_eq!(tracker.view.names["u4"], "carol");
        assert_eq!(tracker.view.names["g3"], "devs");
    }

    #[test]
    fn open_friend_requests_are_kept_up_to_date() {
        let mut tracker = Tracker::default();
        tracker.observe(&json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "requests": [{"id": 5, "name": "dave", "text": "hi"},
                         {"id": 6, "name": "erin", "text": ""}]}));
        assert_eq!(tracker.view.requests, BTreeSet::from([5, 6]));
        assert_eq!(tracker.view.names["u5"], "dave");
        tracker.observe(&json!({"msgid": 26, "event": "request", "id": 7, "name": "frank"}));
        tracker.observe(&json!({"msgid": 28, "errno": 0, "friendid": 5, "state": "friends"}));
        assert_eq!(tracker.view.requests, BTreeSet::from([6, 7]));
        // Withdrawn by its sender.
        tracker.observe(&json!({"msgid": 26, "event": "removed", "id": 7, "name": "frank"}));
        assert_eq!(tracker.view.requests, BTreeSet::from([6]));
        // Asking back completes it; asking someone else changes nothing here.
        tracker.observe(&json!({"msgid": 25, "errno": 0, "friendid": 8, "state": "requested"}));
        tracker.observe(&json!({"msgid": 26, "event": "request", "id": 8, "name": "grace"}));
        tracker.observe(&json!({"msgid": 25, "errno": 0, "friendid": 6, "state": "friends"}));
        assert_eq!(tracker.view.requests, BTreeSet::from([8]));
        tracker.observe(&json!({"msgid": 32, "errno": 0, "id": 8, "block": false}));
        assert_eq!(tracker.view.requests, BTreeSet::from([8]));
        tracker.observe(&json!({"msgid": 32, "errno": 0, "id": 8, "block": true}));
        assert!(tracker.view.requests.is_empty());
        // FRIENDS says what is open.
        tracker.observe(
            &json!({"msgid": 34, "errno": 0, "friends": [], "outgoing": [],
            "blocked": [], "incoming": [{"id": 9, "name": "heidi", "text": ""}]}),
        );
        assert_eq!(tracker.view.requests, BTreeSet::from([9]));
        tracker.observe(&json!({"msgid": 30, "errno": 0, "friendid": 9}));
        assert!(tracker.view.requests.is_empty());
    }

    #[test]
    fn a_group_one_is_no_longer_in_is_not_marked_read() {
        for gone in [
            json!({"msgid": 38, "errno": 0, "groupid": 3}),
            json!({"msgid": 46, "errno": 0, "groupid": 3}),
            json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 1, "by": 2}),
            json!({"msgid": 49, "groupid": 3, "event": "left", "id": 1, "by": 1}),
            json!({"msgid": 49, "groupid": 3, "event": "dissolved", "id": 2, "by": 2}),
        ] {
            let mut tracker = logged_in();
            tracker.observe(&chat("u2", 6, 2));
            tracker.observe(&json!({"msgid": 10, "conv": "g3", "pos": 1, "id": 2, "groupid": 3}));
            tracker.observe(&gone);
            assert_eq!(
                tracker.reads_due(),
                [json!({"msgid": 21, "conv": "u2", "pos": 6})],
                "{gone}"
            );
        }
        // Someone else leaving changes nothing.
        let mut tracker = logged_in();
        tracker.reads_due();
        tracker.observe(&json!({"msgid": 10, "conv": "g3", "pos": 1, "id": 2, "groupid": 3}));
        tracker.observe(&json!({"msgid": 49, "groupid": 3, "event": "left", "id": 2, "by": 2}));
        assert_eq!(
            tracker.reads_due(),
            [json!({"msgid": 21, "conv": "g3", "pos": 1})]
        );
    }

    #[test]
    fn a_group_action_is_shown_once_whatever_comes_first() {
        let mut tracker = logged_in();
        let leave_ack = json!({"msgid": 38, "errno": 0, "groupid": 3, "seq": 4});
        let left = json!({"msgid": 49, "groupid": 3, "event": "left", "id": 1, "by": 1});
        // The ack first: the event is its echo.
        assert!(!tracker.is_echo(&leave_ack));
        assert!(tracker.is_echo(&left));
        // The event first: the ack is its echo.
        assert!(!tracker.is_echo(&left));
        assert!(tracker.is_echo(&leave_ack));
        // Nothing is left waiting: the next time both are shown afresh.
        assert!(tracker.announced.is_empty());

        // A kick names the user kicked.
        let kick_ack = json!({"msgid": 40, "errno": 0, "groupid": 3, "id": 4});
        assert!(!tracker.is_echo(&kick_ack));
        let other = json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 5, "by": 1});
        assert!(!tracker.is_echo(&other));
        let kicked = json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 4, "by": 1});
        assert!(tracker.is_echo(&kicked));

        // A hand-over is one ack and two events.
        let mut tracker = logged_in();
        let hand_over = json!({"msgid": 42, "errno": 0, "groupid": 3, "id": 2, "role": "creator"});
        let new_creator = json!({"msgid": 49, "groupid": 3, "event": "role", "id": 2, "by": 1,
                                 "role": "creator"});
        let now_admin = json!({"msgid": 49, "groupid": 3, "event": "role", "id": 1, "by": 1,
                               "role": "admin"});
        assert!(!tracker.is_echo(&new_creator));
        assert!(!tracker.is_echo(&hand_over));
        assert!(tracker.is_echo(&now_admin));
        assert!(tracker.announced.is_empty());

        // Joining, updating, dissolving.
        for (ack, event) in [
            (
                json!({"msgid": 14, "errno": 0, "groupid": 3}),
                json!({"msgid": 49, "groupid": 3, "event": "joined", "id": 1, "by": 1}),
            ),
            (
                json!({"msgid": 44, "errno": 0, "groupid": 3}),
                json!({"msgid": 49, "groupid": 3, "event": "updated", "id": 1, "by": 1,
                       "groupname": "devs", "groupdesc": ""}),
            ),
            (
                json!({"msgid": 46, "errno": 0, "groupid": 3}),
                json!({"msgid": 49, "groupid": 3, "event": "dissolved", "id": 1, "by": 1}),
            ),
        ] {
            assert!(!tracker.is_echo(&ack), "{ack}");
            assert!(tracker.is_echo(&event), "{event}");
        }
    }

    #[test]
    fn what_others_do_is_never_an_echo() {
        let mut tracker = logged_in();
        let leave_ack = json!({"msgid": 38, "errno": 0, "groupid": 3});
        assert!(!tracker.is_echo(&leave_ack));
        // Someone else's event, another group's, another kind.
        for event in [
            json!({"msgid": 49, "groupid": 3, "event": "left", "id": 2, "by": 2}),
            json!({"msgid": 49, "groupid": 4, "event": "left", "id": 1, "by": 1}),
            json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 1, "by": 2}),
            json!({"msgid": 49, "groupid": 3, "event": "dissolved", "id": 1, "by": 1}),
        ] {
            assert!(!tracker.is_echo(&event), "{event}");
        }
        // Two acks do not echo each other, nor do failures or other frames count.
        let mut tracker = logged_in();
        assert!(!tracker.is_echo(&leave_ack));
        assert!(!tracker.is_echo(&leave_ack));
        assert!(!tracker.is_echo(&json!({"msgid": 38, "errno": 105, "groupid": 3})));
        assert!(!tracker.is_echo(&chat("u2", 6, 2)));
        // Before login nobody is "you".
        let mut tracker = Tracker::default();
        assert!(!tracker.is_echo(&leave_ack));
        assert!(
            !tracker
                .is_echo(&json!({"msgid": 49, "groupid": 3, "event": "left", "id": 1, "by": 1}))
        );
    }
}
