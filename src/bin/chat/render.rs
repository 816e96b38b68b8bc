//! How the client shows what the server sends: pure functions from frames to lines, so every wording is
//! tested without a server. Each event starts a line of its own; a chat text with newlines continues on
//! indented lines, so a script can still tell where one event starts.

use std::collections::HashMap;

use clusterchat::protocol::msgid;
use serde_json::Value;
use unicode_width::UnicodeWidthStr as _;

/// What the input side needs to know about the server's answer to one of its requests (the reader thread
/// has already printed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The `seq` of the request, echoed by the server.
    pub seq: u64,
    pub msgid: i64,
    /// 0 on success.
    pub errno: i64,
}

impl Reply {
    /// The reply a frame carries, if it answers one of our requests (all of which carry a numeric `seq`).
    pub fn of(frame: &Value) -> Option<Reply> {
        Some(Reply {
            seq: frame.get("seq")?.as_u64()?,
            msgid: frame.get("msgid")?.as_i64()?,
            errno: frame.get("errno").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// Whether this is a successful login.
    pub fn logged_in(&self) -> bool {
        self.msgid == msgid::LOGIN_ACK && self.errno == 0
    }
}

/// What a HISTORY answer tells the input side about paging on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// The position of the oldest message of the page (`None`: the page is empty).
    pub oldest: Option<i64>,
    /// Whether older messages exist.
    pub more: bool,
}

impl PageInfo {
    /// The paging facts of a successful HISTORY answer.
    pub fn of(frame: &Value) -> Option<PageInfo> {
        if int(frame, "msgid") != Some(msgid::HISTORY_ACK) || int(frame, "errno").unwrap_or(0) != 0
        {
            return None;
        }
        Some(PageInfo {
            oldest: list(frame, "messages").first().and_then(|m| int(m, "pos")),
            more: frame.get("more").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// What the renderer knows about the session: who "you" are, and the names of the conversations (the
/// peer's or the group's), learnt from the login ack, CONVERSATIONS and the messages themselves.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub me: Option<i64>,
    pub names: HashMap<String, String>,
}

impl View {
    /// The name of user `id`, as far as this session knows it.
    fn user(&self, id: i64) -> String {
        match self.names.get(&format!("u{id}")) {
            Some(name) => name.clone(),
            None => format!("user {id}"),
        }
    }

    /// Whether a chat frame was sent by this user (on any of their devices).
    pub fn is_mine(&self, frame: &Value) -> bool {
        self.me.is_some() && int(frame, "id") == self.me
    }
}

/// Where a chat frame is shown from: it arrived live (or as kept offline), or it is part of a history
/// page. A message of one's own arrives live only as the carbon of one sent from another device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Live,
    History,
}

/// The lines to print for one frame from the server (none for a frame that needs no words, READ's ack).
pub fn render(frame: &Value, view: &View) -> Vec<String> {
    let errno = int(frame, "errno").unwrap_or(0);
    let errmsg = text(frame, "errmsg");
    let line = match int(frame, "msgid") {
        Some(msgid::ONE_CHAT) => chat_line(frame, view, Seen::Live),
        Some(msgid::GROUP_CHAT) => group_chat_line(frame, view, Seen::Live),
        Some(msgid::RECEIPT) => receipt_line(frame, view),
        Some(msgid::LOGIN_ACK) if errno == 0 => return login_summary(frame, view),
        Some(msgid::LOGIN_ACK) => format!("login failed: {}", login_error(errno, errmsg)),
        Some(msgid::REG_ACK) if errno == 0 => format!(
            "register success, userid is {}, do not forget it!",
            shown(frame, "id")
        ),
        Some(msgid::REG_ACK) => format!("register failed: {}", register_error(errno, errmsg)),
        Some(msgid::ERROR) => {
            let what = request_name(int(frame, "ref"));
            format!("{what} failed: {}", error_sentence(errno, errmsg))
        }
        Some(ack) if errno != 0 => format!(
            "{} failed: {}",
            request_name(request_of_ack(ack)),
            error_sentence(errno, errmsg)
        ),
        Some(msgid::CHAT_ACK) => match (frame.get("conv"), int(frame, "pos")) {
            (Some(conv), Some(pos)) => format!("sent ({} #{pos})", shown_value(conv)),
            _ => "sent".to_string(),
        },
        Some(msgid::CONVERSATIONS_ACK) => return conversation_list(frame),
        Some(msgid::HISTORY_ACK) => return history_page(frame, view),
        Some(msgid::READ_ACK) => return Vec::new(),
        Some(msgid::LOGOUT_ACK) => "logged out".to_string(),
        Some(msgid::ADD_FRIEND_ACK) => format!("friend {} added", shown(frame, "friendid")),
        Some(msgid::CREATE_GROUP_ACK) => format!(
            "group {} created, groupid is {}",
            text(frame, "groupname"),
            shown(frame, "groupid")
        ),
        Some(msgid::ADD_GROUP_ACK) => format!("joined group {}", shown(frame, "groupid")),
        _ => format!("unrecognized message from the server: {frame}"),
    };
    vec![line]
}

/// `[u1 #7] [time] alice(1) -> you: text`; the position only in v2 frames, which carry one. A message of
/// one's own (to someone else) is `you (other device): text` live and `you: text` in history.
pub fn chat_line(frame: &Value, view: &View, seen: Seen) -> String {
    let to_me = view.me.is_some() && int(frame, "toid") == view.me;
    let who = if view.is_mine(frame) && !to_me {
        yourself(seen).to_string()
    } else {
        format!("{}({}) -> you", text(frame, "name"), shown(frame, "id"))
    };
    format!(
        "{}{}{who}: {}",
        position_prefix(frame),
        time_prefix(frame),
        continued(text(frame, "msg"))
    )
}

/// `[g3 #4] [time] group 3 | alice(1): text`, and `you (other device)` / `you` for one's own.
pub fn group_chat_line(frame: &Value, view: &View, seen: Seen) -> String {
    let who = if view.is_mine(frame) {
        yourself(seen).to_string()
    } else {
        format!("{}({})", text(frame, "name"), shown(frame, "id"))
    };
    format!(
        "{}{}group {} | {who}: {}",
        position_prefix(frame),
        time_prefix(frame),
        shown(frame, "groupid"),
        continued(text(frame, "msg"))
    )
}

/// A chat frame of either kind.
pub fn message_line(frame: &Value, view: &View, seen: Seen) -> String {
    match int(frame, "msgid") {
        Some(msgid::GROUP_CHAT) => group_chat_line(frame, view, seen),
        _ => chat_line(frame, view, seen),
    }
}

fn yourself(seen: Seen) -> &'static str {
    match seen {
        Seen::Live => "you (other device)",
        Seen::History => "you",
    }
}

/// `bob read up to 12 in u5`, or for one's own other device `you read up to 12 in u5 (other device)`.
pub fn receipt_line(frame: &Value, view: &View) -> String {
    let conv = shown(frame, "conv");
    let read = shown(frame, "read");
    match int(frame, "id") {
        Some(id) if Some(id) == view.me => {
            format!("you read up to {read} in {conv} (other device)")
        }
        Some(id) => format!("{} read up to {read} in {conv}", view.user(id)),
        None => format!("{} read up to {read} in {conv}", shown(frame, "id")),
    }
}

/// CONVERSATIONS: `conversations: 2`, then `  u5 bob  3 unread` for each.
pub fn conversation_list(ack: &Value) -> Vec<String> {
    let conversations = list(ack, "conversations");
    let mut lines = vec![format!("conversations: {}", conversations.len())];
    lines.extend(conversation_lines(&conversations));
    lines
}

/// `  u5 bob         3 unread`, the columns as wide as the list needs.
fn conversation_lines(conversations: &[Value]) -> Vec<String> {
    let conv_width = conversations.iter().map(|c| shown(c, "conv").len()).max();
    let name_width = conversations.iter().map(|c| text(c, "name").width()).max();
    let (conv_width, name_width) = (conv_width.unwrap_or(0), name_width.unwrap_or(0));
    conversations
        .iter()
        .map(|c| {
            let name = text(c, "name");
            let pad = " ".repeat(name_width - name.width());
            format!(
                "  {:<conv_width$} {name}{pad}  {} unread",
                shown(c, "conv"),
                shown(c, "unread")
            )
        })
        .collect()
}

/// HISTORY: a line saying which part of the conversation this is and whether anything older exists,
/// then the messages, oldest first.
pub fn history_page(ack: &Value, view: &View) -> Vec<String> {
    let conv = shown(ack, "conv");
    let title = match view.names.get(&conv) {
        Some(name) => format!("history {conv} ({name})"),
        None => format!("history {conv}"),
    };
    let messages = list(ack, "messages");
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        return vec![format!("{title}: no messages")];
    };
    let count = match messages.len() {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    };
    let older = if ack.get("more").and_then(Value::as_bool) == Some(true) {
        format!("older ones: history:{conv} again")
    } else {
        "nothing older".to_string()
    };
    let mut lines = vec![format!(
        "{title}: {count}, #{} to #{}; {older}",
        shown(first, "pos"),
        shown(last, "pos")
    )];
    for message in &messages {
        lines.push(format!("  {}", message_line(message, view, Seen::History)));
    }
    lines
}

/// After an automatic reconnect: the messages kept offline meanwhile, and the conversations that have
/// unread messages beyond those (another device of the user got them live; `history:` shows them).
pub fn resume_summary(ack: &Value, view: &View) -> Vec<String> {
    let mut lines = vec![format!("reconnected (device {})", text(ack, "device"))];
    let offline = list(ack, "offlinemsg");
    let mut shown_up_to: HashMap<String, i64> = HashMap::new();
    for message in &offline {
        lines.push(format!("  {}", message_line(message, view, Seen::Live)));
        if let (Some(conv), Some(pos)) = (
            message.get("conv").and_then(Value::as_str),
            int(message, "pos"),
        ) {
            let up_to = shown_up_to.entry(conv.to_string()).or_default();
            *up_to = (*up_to).max(pos);
        }
    }
    let unread: Vec<Value> = list(ack, "conversations")
        .into_iter()
        .filter_map(|mut c| {
            let conv = text(&c, "conv").to_string();
            let read = int(&c, "read")
                .unwrap_or(0)
                .max(shown_up_to.get(&conv).copied().unwrap_or(0));
            let left = int(&c, "last").unwrap_or(0) - read;
            (left > 0).then(|| {
                c["unread"] = left.into();
                c
            })
        })
        .collect();
    lines.extend(conversation_lines(&unread));
    lines
}

/// Who logged in, on which device, their friends, groups, conversations and the messages kept for them
/// while they were away.
pub fn login_summary(ack: &Value, view: &View) -> Vec<String> {
    let mut first = format!(
        "login success: {} (id {})",
        text(ack, "name"),
        shown(ack, "id")
    );
    if let Some(device) = ack.get("device").and_then(Value::as_str) {
        first.push_str(&format!(", device {device}"));
    }
    let mut lines = vec![first];
    let friends = list(ack, "friends");
    lines.push(format!("friends: {}", friends.len()));
    for friend in &friends {
        lines.push(format!("  {}", contact(friend)));
    }
    let groups = list(ack, "groups");
    lines.push(format!("groups: {}", groups.len()));
    for group in &groups {
        lines.extend(group_lines(group));
    }
    if ack.get("conversations").is_some() {
        lines.extend(conversation_list(ack));
    }
    let offline = list(ack, "offlinemsg");
    lines.push(format!("offline messages: {}", offline.len()));
    for message in &offline {
        lines.push(format!("  {}", message_line(message, view, Seen::Live)));
    }
    lines
}

fn group_lines(group: &Value) -> Vec<String> {
    let desc = text(group, "groupdesc");
    let mut lines = vec![format!(
        "  {} {}{}{}",
        shown(group, "id"),
        text(group, "groupname"),
        if desc.is_empty() { "" } else { ": " },
        continued(desc)
    )];
    for user in list(group, "users") {
        lines.push(format!("    {} {}", contact(&user), text(&user, "role")));
    }
    lines
}

/// `2 bob online`
fn contact(user: &Value) -> String {
    format!(
        "{} {} {}",
        shown(user, "id"),
        text(user, "name"),
        text(user, "state")
    )
}

/// Why a login failed, in words.
pub fn login_error(errno: i64, errmsg: &str) -> String {
    match errno {
        1 => "wrong user id or password".into(),
        // v2 says which: this very device, or one device too many.
        2 if errmsg.starts_with("device ") || errmsg.starts_with("too many devices") => {
            format!("{errmsg} (another device name: --device NAME)")
        }
        2 => "this account is already logged in elsewhere".into(),
        3 => "already logged in on this connection".into(),
        107 => "too many attempts, wait a moment and try again".into(),
        109 => "the server's storage is unavailable, try again later".into(),
        _ => other_error(errno, errmsg),
    }
}

/// Why a registration failed: the server's own words say which rule the name or password broke.
pub fn register_error(errno: i64, errmsg: &str) -> String {
    match errno {
        107 => "too many attempts, wait a moment and try again".into(),
        109 => "the server's storage is unavailable, try again later".into(),
        _ if !errmsg.is_empty() => errmsg.into(),
        _ => other_error(errno, errmsg),
    }
}

/// What an ERROR_MSG errno means for the user.
pub fn error_sentence(errno: i64, errmsg: &str) -> String {
    match errno {
        100 => "the server could not read the request".into(),
        101 => "the server does not know this request".into(),
        102 => with_detail("invalid field", errmsg),
        103 => "not logged in".into(),
        104 => "no such user or group".into(),
        105 => with_detail("not allowed", errmsg),
        106 => "the request is too large".into(),
        107 => "too many requests, slow down".into(),
        108 => "the server is full, try again later".into(),
        109 => "the server is temporarily unavailable; it was not carried out".into(),
        _ => other_error(errno, errmsg),
    }
}

fn other_error(errno: i64, errmsg: &str) -> String {
    with_detail(&format!("error {errno}"), errmsg)
}

fn with_detail(what: &str, detail: &str) -> String {
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what} ({detail})")
    }
}

/// The command that sent a request, named as the user typed it.
fn request_name(request: Option<i64>) -> &'static str {
    match request {
        Some(msgid::LOGIN) => "login",
        Some(msgid::LOGOUT) => "loginout",
        Some(msgid::REG) => "register",
        Some(msgid::ONE_CHAT) => "chat",
        Some(msgid::ADD_FRIEND) => "addfriend",
        Some(msgid::CREATE_GROUP) => "creategroup",
        Some(msgid::ADD_GROUP) => "addgroup",
        Some(msgid::GROUP_CHAT) => "groupchat",
        Some(msgid::CONVERSATIONS) => "conversations",
        Some(msgid::HISTORY) => "history",
        Some(msgid::READ) => "read",
        _ => "request",
    }
}

fn request_of_ack(ack: i64) -> Option<i64> {
    match ack {
        msgid::LOGOUT_ACK => Some(msgid::LOGOUT),
        msgid::ADD_FRIEND_ACK => Some(msgid::ADD_FRIEND),
        msgid::CREATE_GROUP_ACK => Some(msgid::CREATE_GROUP),
        msgid::ADD_GROUP_ACK => Some(msgid::ADD_GROUP),
        _ => None,
    }
}

/// `[u1 #7] `: where a v2 chat frame sits in its conversation.
fn position_prefix(frame: &Value) -> String {
    match (frame.get("conv"), int(frame, "pos")) {
        (Some(conv), Some(pos)) => format!("[{} #{pos}] ", shown_value(conv)),
        _ => String::new(),
    }
}

fn time_prefix(frame: &Value) -> String {
    match text(frame, "time") {
        "" => String::new(),
        time => format!("[{time}] "),
    }
}

/// Indents the lines after the first, so a multi-line text stays visibly one message.
fn continued(text: &str) -> String {
    text.replace('\n', "\n  ")
}

fn int(frame: &Value, key: &str) -> Option<i64> {
    frame.get(key).and_then(Value::as_i64)
}

fn text<'a>(frame: &'a Value, key: &str) -> &'a str {
    frame.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field shown as it came, whatever its type (`?` when absent).
fn shown(frame: &Value, key: &str) -> String {
    frame.get(key).map_or_else(|| "?".into(), shown_value)
}

fn shown_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        value => value.to_string(),
    }
}

/// The elements of a list field as objects. v2 sends plain objects; a v1-style element (a string holding
/// the encoded object) is decoded too, which costs nothing and keeps the client tolerant.
fn list(frame: &Value, key: &str) -> Vec<Value> {
    let Some(items) = frame.get(key).and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| item.clone()),
            _ => item.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn incoming_messages() {
        let chat = json!({"msgid": 6, "id": 1, "name": "alice", "toid": 2, "msg": "hi: there",
                          "time": "2026-11-27 10:00:00"});
        assert_eq!(
            render(&chat, &View::default()),
            ["[2026-11-27 10:00:00] alice(1) -> you: hi: there"]
        );
        let group = json!({"msgid": 10, "id": 1, "name": "alice", "groupid": 3, "msg": "hi",
                           "time": "2026-11-27 10:00:00"});
        assert_eq!(
            render(&group, &View::default()),
            ["[2026-11-27 10:00:00] group 3 | alice(1): hi"]
        );
    }

    #[test]
    fn multi_line_text_is_indented_and_time_is_optional() {
        let chat = json!({"msgid": 6, "id": 1, "name": "al", "toid": 2, "msg": "a\nb"});
        assert_eq!(render(&chat, &View::default()), ["al(1) -> you: a\n  b"]);
    }

    #[test]
    fn acks() {
        let cases = [
            (json!({"msgid": 16, "errno": 0, "seq": 4}), "sent"),
            (json!({"msgid": 11, "errno": 0}), "logged out"),
            (
                json!({"msgid": 12, "errno": 0, "friendid": 2}),
                "friend 2 added",
            ),
            (
                json!({"msgid": 13, "errno": 0, "groupid": 3, "groupname": "devs"}),
                "group devs created, groupid is 3",
            ),
            (
                json!({"msgid": 14, "errno": 0, "groupid": 3}),
                "joined group 3",
            ),
            (
                json!({"msgid": 5, "errno": 0, "id": 7}),
                "register success, userid is 7, do not forget it!",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &View::default()), [line], "{frame}");
        }
    }

    #[test]
    fn errors_name_the_command_and_the_reason() {
        let cases = [
            (
                json!({"msgid": 15, "errno": 104, "errmsg": "no such user", "ref": 6, "seq": 1}),
                "chat failed: no such user or group",
            ),
            (
                json!({"msgid": 15, "errno": 105, "errmsg": "you are not a member", "ref": 10}),
                "groupchat failed: not allowed (you are not a member)",
            ),
            (
                json!({"msgid": 15, "errno": 102, "errmsg": "msg: empty", "ref": 6}),
                "chat failed: invalid field (msg: empty)",
            ),
            (
                json!({"msgid": 15, "errno": 109, "errmsg": "x", "ref": 9}),
                "addgroup failed: the server is temporarily unavailable; it was not carried out",
            ),
            (
                json!({"msgid": 15, "errno": 108, "errmsg": "server full", "ref": null}),
                "request failed: the server is full, try again later",
            ),
            (
                json!({"msgid": 15, "errno": 103, "ref": 7}),
                "addfriend failed: not logged in",
            ),
            (
                json!({"msgid": 15, "errno": 999, "errmsg": "odd", "ref": 8}),
                "creategroup failed: error 999 (odd)",
            ),
            (
                json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"}),
                "login failed: wrong user id or password",
            ),
            (
                json!({"msgid": 2, "errno": 2, "errmsg": "this account is using"}),
                "login failed: this account is already logged in elsewhere",
            ),
            (
                json!({"msgid": 2, "errno": 107, "errmsg": ""}),
                "login failed: too many attempts, wait a moment and try again",
            ),
            (
                json!({"msgid": 5, "errno": 1, "errmsg": "name is already taken"}),
                "register failed: name is already taken",
            ),
            (
                json!({"msgid": 5, "errno": 109, "errmsg": "db down"}),
                "register failed: the server's storage is unavailable, try again later",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &View::default()), [line], "{frame}");
        }
    }

    #[test]
    fn every_errno_has_words() {
        for errno in 100..=109 {
            assert!(!error_sentence(errno, "").starts_with("error"), "{errno}");
        }
        for errno in [1, 2, 3, 107, 109] {
            assert!(!login_error(errno, "").starts_with("error"), "{errno}");
        }
    }

    #[test]
    fn login_summary_lists_everything() {
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "alice",
            "friends": [{"id": 2, "name": "bob", "state": "online"}],
            "groups": [{"id": 3, "groupname": "devs", "groupdesc": "rust people", "users": [
                {"id": 1, "name": "alice", "state": "online", "role": "creator"},
                {"id": 2, "name": "bob", "state": "offline", "role": "normal"}]}],
            "offlinemsg": [
                {"msgid": 6, "id": 2, "name": "bob", "toid": 1, "msg": "hi", "time": "t1"},
                {"msgid": 10, "id": 2, "name": "bob", "groupid": 3, "msg": "all", "time": "t2"}]
        });
        assert_eq!(
            render(&ack, &View::default()),
            [
                "login success: alice (id 1)",
                "friends: 1",
                "  2 bob online",
                "groups: 1",
                "  3 devs: rust people",
                "    1 alice online creator",
                "    2 bob offline normal",
                "offline messages: 2",
                "  [t1] bob(2) -> you: hi",
                "  [t2] group 3 | bob(2): all",
            ]
        );
    }

    #[test]
    fn login_summary_tolerates_v1_strings_and_empty_lists() {
        let ack = json!({"msgid": 2, "errno": 0, "id": 1, "name": "al",
            "friends": ["{\"id\":2,\"name\":\"bo\",\"state\":\"offline\"}"]});
        assert_eq!(
            render(&ack, &View::default()),
            [
                "login success: al (id 1)",
                "friends: 1",
                "  2 bo offline",
                "groups: 0",
                "offline messages: 0"
            ]
        );
    }

    #[test]
    fn replies_are_recognised_by_seq() {
        let ack = json!({"msgid": 2, "errno": 0, "seq": 5});
        let reply = Reply::of(&ack).unwrap();
        assert_eq!(
            reply,
            Reply {
                seq: 5,
                msgid: 2,
                errno: 0
            }
        );
        assert!(reply.logged_in());
        assert!(
            !Reply::of(&json!({"msgid": 2, "errno": 1, "seq": 6}))
                .unwrap()
                .logged_in()
        );
        assert_eq!(Reply::of(&json!({"msgid": 6, "msg": "x"})), None);
    }

    #[test]
    fn unknown_frames_are_shown_raw() {
        assert_eq!(
            render(&json!({"msgid": 42}), &View::default()),
            ["unrecognized message from the server: {\"msgid\":42}"]
        );
    }

    /// Alice (id 1), who knows bob's name and the group's.
    fn alice() -> View {
        let mut view = View {
            me: Some(1),
            ..View::default()
        };
        view.names.insert("u2".into(), "bob".into());
        view.names.insert("g3".into(), "devs".into());
        view
    }

    #[test]
    fn v2_chat_frames_show_their_position() {
        let chat = json!({"conv": "u2", "id": 2, "msg": "hi", "msgid": 6, "name": "bob", "pos": 7,
                          "time": "t", "toid": 1, "ts": 1796119200000_i64, "cid": "c-1"});
        assert_eq!(render(&chat, &alice()), ["[u2 #7] [t] bob(2) -> you: hi"]);
        let group = json!({"conv": "g3", "groupid": 3, "id": 2, "msg": "all", "msgid": 10,
                           "name": "bob", "pos": 4, "time": "t", "ts": 1});
        assert_eq!(
            render(&group, &alice()),
            ["[g3 #4] [t] group 3 | bob(2): all"]
        );
    }

    #[test]
    fn carbons_and_notes_to_oneself() {
        let carbon = json!({"conv": "u2", "id": 1, "msg": "from my phone", "msgid": 6,
                            "name": "alice", "pos": 8, "time": "t", "toid": 2});
        assert_eq!(
            render(&carbon, &alice()),
            ["[u2 #8] [t] you (other device): from my phone"]
        );
        let group = json!({"conv": "g3", "groupid": 3, "id": 1, "msg": "x", "msgid": 10,
                           "name": "alice", "pos": 5});
        assert_eq!(
            render(&group, &alice()),
            ["[g3 #5] group 3 | you (other device): x"]
        );
        // A message to oneself reaches every device as its recipient: not a carbon.
        let note = json!({"conv": "u1", "id": 1, "msg": "note", "msgid": 6, "name": "alice",
                          "pos": 1, "toid": 1});
        assert_eq!(render(&note, &alice()), ["[u1 #1] alice(1) -> you: note"]);
        // Before login nobody is "you".
        assert_eq!(
            render(&carbon, &View::default()),
            ["[u2 #8] [t] alice(1) -> you: from my phone"]
        );
    }

    #[test]
    fn chat_acks_name_the_place() {
        let ack = json!({"msgid": 16, "errno": 0, "conv": "u5", "pos": 12, "ts": 1, "cid": "c",
                         "seq": 3});
        assert_eq!(render(&ack, &alice()), ["sent (u5 #12)"]);
        // READ's ack needs no words.
        let read = json!({"msgid": 22, "errno": 0, "conv": "u5", "read": 12});
        assert!(render(&read, &alice()).is_empty());
    }

    #[test]
    fn receipts() {
        let cases = [
            (
                json!({"msgid": 23, "conv": "u2", "id": 2, "read": 12}),
                "bob read up to 12 in u2",
            ),
            (
                json!({"msgid": 23, "conv": "u9", "id": 9, "read": 1}),
                "user 9 read up to 1 in u9",
            ),
            (
                json!({"msgid": 23, "conv": "g3", "id": 1, "read": 4}),
                "you read up to 4 in g3 (other device)",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &alice()), [line], "{frame}");
        }
    }

    #[test]
    fn conversations_with_unread_counts() {
        let ack = json!({"msgid": 18, "errno": 0, "seq": 2, "conversations": [
            {"conv": "u5", "name": "bob", "last": 12, "read": 9, "unread": 3},
            {"conv": "g13", "name": "rustaceans", "last": 0, "read": 0, "unread": 0}]});
        assert_eq!(
            render(&ack, &alice()),
            [
                "conversations: 2",
                "  u5  bob         3 unread",
                "  g13 rustaceans  0 unread",
            ]
        );
        let one = json!({"msgid": 18, "errno": 0, "conversations": [
            {"conv": "u5", "name": "bob", "last": 12, "read": 9, "unread": 3}]});
        assert_eq!(
            render(&one, &alice()),
            ["conversations: 1", "  u5 bob  3 unread"]
        );
        assert_eq!(
            render(
                &json!({"msgid": 18, "errno": 0, "conversations": []}),
                &alice()
            ),
            ["conversations: 0"]
        );
    }

    #[test]
    fn history_pages() {
        let page = json!({"msgid": 20, "errno": 0, "conv": "u2", "more": true, "messages": [
            {"conv": "u2", "id": 2, "msg": "a", "msgid": 6, "name": "bob", "pos": 21, "toid": 1},
            {"conv": "u2", "id": 1, "msg": "b", "msgid": 6, "name": "alice", "pos": 22, "toid": 2}]});
        assert_eq!(
            render(&page, &alice()),
            [
                "history u2 (bob): 2 messages, #21 to #22; older ones: history:u2 again",
                "  [u2 #21] bob(2) -> you: a",
                "  [u2 #22] you: b",
            ]
        );
        assert_eq!(
            PageInfo::of(&page),
            Some(PageInfo {
                oldest: Some(21),
                more: true
            })
        );
        let last = json!({"msgid": 20, "errno": 0, "conv": "g3", "more": false, "messages": [
            {"conv": "g3", "groupid": 3, "id": 1, "msg": "first", "msgid": 10, "name": "alice",
             "pos": 1}]});
        assert_eq!(
            render(&last, &alice()),
            [
                "history g3 (devs): 1 message, #1 to #1; nothing older",
                "  [g3 #1] group 3 | you: first",
            ]
        );
        let empty = json!({"msgid": 20, "errno": 0, "conv": "u7", "more": false, "messages": []});
        assert_eq!(render(&empty, &alice()), ["history u7: no messages"]);
        assert_eq!(
            PageInfo::of(&empty),
            Some(PageInfo {
                oldest: None,
                more: false
            })
        );
        assert_eq!(
            PageInfo::of(&json!({"msgid": 15, "errno": 104, "ref": 19})),
            None
        );
        assert_eq!(
            render(
                &json!({"msgid": 15, "errno": 105, "errmsg": "not a member", "ref": 19}),
                &alice()
            ),
            ["history failed: not allowed (not a member)"]
        );
        assert_eq!(
            render(&json!({"msgid": 15, "errno": 104, "ref": 21}), &alice()),
            ["read failed: no such user or group"]
        );
    }

    #[test]
    fn v2_login_summary_names_the_device_and_the_conversations() {
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "alice", "device": "phone", "token": "t",
            "conversations": [{"conv": "u2", "name": "bob", "last": 7, "read": 5, "unread": 2}],
            "friends": [], "groups": [],
            "offlinemsg": [{"conv": "u2", "id": 2, "msg": "hi", "msgid": 6, "name": "bob", "pos": 7,
                            "time": "t1", "toid": 1}]
        });
        assert_eq!(
            render(&ack, &alice()),
            [
                "login success: alice (id 1), device phone",
                "friends: 0",
                "groups: 0",
                "conversations: 1",
                "  u2 bob  2 unread",
                "offline messages: 1",
                "  [u2 #7] [t1] bob(2) -> you: hi",
            ]
        );
        let taken = json!({"msgid": 2, "errno": 2,
                           "errmsg": "device \"phone\" is already logged in"});
        assert_eq!(
            render(&taken, &View::default()),
            [
                "login failed: device \"phone\" is already logged in (another device name: --device NAME)"
            ]
        );
    }

    #[test]
    fn resumed_login_shows_what_came_meanwhile() {
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "alice", "device": "phone",
            "conversations": [
                {"conv": "u2", "name": "bob", "last": 7, "read": 5, "unread": 2},
                {"conv": "g3", "name": "devs", "last": 9, "read": 4, "unread": 5},
                {"conv": "u4", "name": "carol", "last": 2, "read": 2, "unread": 0}],
            "offlinemsg": [
                {"conv": "u2", "id": 2, "msg": "a", "msgid": 6, "name": "bob", "pos": 6, "toid": 1},
                {"conv": "u2", "id": 2, "msg": "b", "msgid": 6, "name": "bob", "pos": 7, "toid": 1}]
        });
        assert_eq!(
            resume_summary(&ack, &alice()),
            [
                "reconnected (device phone)",
                "  [u2 #6] bob(2) -> you: a",
                "  [u2 #7] bob(2) -> you: b",
                "  g3 devs  5 unread",
            ]
        );
    }
}
