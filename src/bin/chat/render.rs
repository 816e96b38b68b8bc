//! How the client shows what the server sends: pure functions from frames to lines, so every wording is
//! tested without a server. Each event starts a line of its own; a chat text with newlines continues on
//! indented lines, so a script can still tell where one event starts.

use clusterchat::protocol::msgid;
use serde_json::Value;

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

/// The lines to print for one frame from the server.
pub fn render(frame: &Value) -> Vec<String> {
    let errno = int(frame, "errno").unwrap_or(0);
    let errmsg = text(frame, "errmsg");
    let line = match int(frame, "msgid") {
        Some(msgid::ONE_CHAT) => chat_line(frame),
        Some(msgid::GROUP_CHAT) => group_chat_line(frame),
        Some(msgid::LOGIN_ACK) if errno == 0 => return login_summary(frame),
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
        Some(msgid::CHAT_ACK) => "sent".to_string(),
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

/// `[time] alice(1) -> you: text`
pub fn chat_line(frame: &Value) -> String {
    format!(
        "{}{}({}) -> you: {}",
        time_prefix(frame),
        text(frame, "name"),
        shown(frame, "id"),
        continued(text(frame, "msg"))
    )
}

/// `[time] group 3 | alice(1): text`
pub fn group_chat_line(frame: &Value) -> String {
    format!(
        "{}group {} | {}({}): {}",
        time_prefix(frame),
        shown(frame, "groupid"),
        text(frame, "name"),
        shown(frame, "id"),
        continued(text(frame, "msg"))
    )
}

/// Who logged in, their friends, groups and the messages kept for them while they were away.
pub fn login_summary(ack: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "login success: {} (id {})",
        text(ack, "name"),
        shown(ack, "id")
    )];
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
    let offline = list(ack, "offlinemsg");
    lines.push(format!("offline messages: {}", offline.len()));
    for message in &offline {
        let line = match int(message, "msgid") {
            Some(msgid::GROUP_CHAT) => group_chat_line(message),
            _ => chat_line(message),
        };
        lines.push(format!("  {line}"));
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
    match frame.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => "?".into(),
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
            render(&chat),
            ["[2026-11-27 10:00:00] alice(1) -> you: hi: there"]
        );
        let group = json!({"msgid": 10, "id": 1, "name": "alice", "groupid": 3, "msg": "hi",
                           "time": "2026-11-27 10:00:00"});
        assert_eq!(
            render(&group),
            ["[2026-11-27 10:00:00] group 3 | alice(1): hi"]
        );
    }

    #[test]
    fn multi_line_text_is_indented_and_time_is_optional() {
        let chat = json!({"msgid": 6, "id": 1, "name": "al", "toid": 2, "msg": "a\nb"});
        assert_eq!(render(&chat), ["al(1) -> you: a\n  b"]);
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
            assert_eq!(render(&frame), [line], "{frame}");
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
            assert_eq!(render(&frame), [line], "{frame}");
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
            render(&ack),
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
            render(&ack),
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
            render(&json!({"msgid": 42})),
            ["unrecognized message from the server: {\"msgid\":42}"]
        );
    }
}
