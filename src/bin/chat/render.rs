//! How the client shows what the server sends: pure functions from frames to lines, so every wording is
//! tested without a server. Each event starts a line of its own; a chat text with newlines continues on
//! indented lines, so a script can still tell where one event starts.

use std::collections::{BTreeSet, HashMap};

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

/// What the renderer knows about the session: who "you" are, the names of users and groups (`u5`,
/// `g3`), learnt from the login ack, CONVERSATIONS, friend and member lists, and the messages and events
/// themselves, and the friend requests to the user that are still open.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub me: Option<i64>,
    pub names: HashMap<String, String>,
    /// Who has asked to be the user's friend and has no answer yet.
    pub requests: BTreeSet<i64>,
}

impl View {
    /// The name of user `id`, as far as this session knows it.
    fn user(&self, id: i64) -> String {
        match self.names.get(&format!("u{id}")) {
            Some(name) => name.clone(),
            None => format!("user {id}"),
        }
    }

    /// `bob (2)`, or `user 2` while the name is unknown.
    fn person(&self, id: i64) -> String {
        match self.names.get(&format!("u{id}")) {
            Some(name) => format!("{name} ({id})"),
            None => format!("user {id}"),
        }
    }

    /// The user in `frame[key]`: `you` for oneself, else as [`View::person`].
    fn someone(&self, frame: &Value, key: &str) -> String {
        match int(frame, key) {
            Some(id) if Some(id) == self.me => "you".into(),
            Some(id) => self.person(id),
            None => format!("user {}", shown(frame, key)),
        }
    }

    /// `group devs (3)`, or `group 3` while the name is unknown, for the group in `frame[key]`.
    fn group(&self, frame: &Value, key: &str) -> String {
        let id = shown(frame, key);
        match self.names.get(&format!("g{id}")) {
            Some(name) => format!("group {name} ({id})"),
            None => format!("group {id}"),
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
        // TYPING is a courtesy sent while the person types: what became of it is not worth a line.
        Some(msgid::ERROR) if int(frame, "ref") == Some(msgid::TYPING) => return Vec::new(),
        Some(msgid::ERROR) => failure(int(frame, "ref"), errno, errmsg),
        Some(ack) if errno != 0 => failure(request_of_ack(ack), errno, errmsg),
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
        Some(msgid::FRIENDS_ACK) => return friend_lists(frame),
        Some(msgid::GROUP_INFO_ACK) => return group_info(frame),
        Some(msgid::FRIEND_EVENT) => match friend_event(frame) {
            Some(line) => line,
            None => unrecognized(frame),
        },
        Some(msgid::GROUP_EVENT) => match group_event(frame, view) {
            Some(line) => line,
            None => unrecognized(frame),
        },
        Some(msgid::PRESENCE) => {
            format!("{} is {}", view.someone(frame, "id"), text(frame, "state"))
        }
        Some(msgid::TYPING) => typing_line(frame, view),
        Some(ack) => match people_ack(ack, frame, view) {
            Some(line) => line,
            None => unrecognized(frame),
        },
        None => unrecognized(frame),
    };
    vec![line]
}

fn unrecognized(frame: &Value) -> String {
    format!("unrecognized message from the server: {frame}")
}

/// `remove failed: …`: the command and why, for an ERROR_MSG or a failed ack.
fn failure(request: Option<i64>, errno: i64, errmsg: &str) -> String {
    let why = match (request, errno) {
        // Where "no such user or group" would mislead: what 104 means for these requests.
        (Some(msgid::FRIEND_ANSWER), 104) => "no friend request from this user".to_string(),
        (Some(msgid::GROUP_KICK | msgid::GROUP_ROLE), 104) => {
            "no such group, or the user is not a member of it".to_string()
        }
        (Some(msgid::GROUP_UNBAN), 104) => {
            "no such group, or the user is not banned from it".to_string()
        }
        (Some(msgid::FIND_USER), 104) => "no user has this name".to_string(),
        _ => error_sentence(errno, errmsg),
    };
    format!("{} failed: {why}", request_name(request))
}

/// The line for a successful answer to a friend, group or password request (`None`: not one of them).
fn people_ack(ack: i64, frame: &Value, view: &View) -> Option<String> {
    let friend = || view.someone(frame, "friendid");
    let line = match ack {
        msgid::FRIEND_REQUEST_ACK | msgid::FRIEND_ANSWER_ACK => match text(frame, "state") {
            "friends" => format!("you and {} are friends now", friend()),
            "requested" => format!("friend request sent to {}", friend()),
            "declined" => format!("you declined the friend request of {}", friend()),
            other => format!("{}: {other}", friend()),
        },
        msgid::FRIEND_REMOVE_ACK => format!(
            "removed {}: no friendship or friend request between you any more",
            friend()
        ),
        msgid::BLOCK_ACK => match frame.get("block").and_then(Value::as_bool) {
            Some(false) => format!("unblocked {}", view.someone(frame, "id")),
            _ => format!("blocked {}", view.someone(frame, "id")),
        },
        msgid::FIND_USER_ACK => format!("{} is user {}", text(frame, "name"), shown(frame, "id")),
        msgid::GROUP_LEAVE_ACK => format!("you left {}", view.group(frame, "groupid")),
        msgid::GROUP_KICK_ACK => format!(
            "you kicked {} from {}",
            view.someone(frame, "id"),
            view.group(frame, "groupid")
        ),
        msgid::GROUP_UNBAN_ACK => format!(
            "{} may join {} again",
            view.someone(frame, "id"),
            view.group(frame, "groupid")
        ),
        msgid::GROUP_ROLE_ACK => {
            let (who, group) = (view.someone(frame, "id"), view.group(frame, "groupid"));
            match text(frame, "role") {
                "creator" => format!("{who} is now the creator of {group}; you are an admin"),
                role => format!("{who} is now {} of {group}", role_words(role)),
            }
        }
        msgid::GROUP_UPDATE_ACK => format!("{} updated", view.group(frame, "groupid")),
        msgid::GROUP_DISSOLVE_ACK => format!("{} dissolved", view.group(frame, "groupid")),
        msgid::PASSWORD_ACK => "password changed; your devices stay logged in, but after a lost \
                                connection each logs in again with the new password"
            .to_string(),
        _ => return None,
    };
    Some(line)
}

/// `an admin`, `a normal member`, `the creator`.
fn role_words(role: &str) -> String {
    match role {
        "creator" => "the creator".into(),
        "admin" => "an admin".into(),
        "normal" => "a normal member".into(),
        other => format!("'{other}'"),
    }
}

/// `bob (2)`: a user named in the frame itself.
fn named(frame: &Value) -> String {
    format!("{} ({})", text(frame, "name"), shown(frame, "id"))
}

/// FRIEND_EVENT: what someone did about being your friend.
pub fn friend_event(event: &Value) -> Option<String> {
    let who = named(event);
    let line = match text(event, "event") {
        "request" => format!("{who} {}", asks(event)),
        "accepted" => format!("{who} accepted your friend request: you are friends now"),
        "declined" => format!("{who} declined your friend request"),
        "removed" => {
            format!("{who} removed you: no friendship or friend request between you any more")
        }
        _ => return None,
    };
    Some(line)
}

/// `asks to be your friend: TEXT — accept:2 or decline:2`
fn asks(request: &Value) -> String {
    let id = shown(request, "id");
    match text(request, "text") {
        "" => format!("asks to be your friend — accept:{id} or decline:{id}"),
        said => format!(
            "asks to be your friend: {} — accept:{id} or decline:{id}",
            continued(said)
        ),
    }
}

/// GROUP_EVENT: who did what in a group, `you` for oneself.
pub fn group_event(event: &Value, view: &View) -> Option<String> {
    let (who, by) = (view.someone(event, "id"), view.someone(event, "by"));
    let group = view.group(event, "groupid");
    let line = match text(event, "event") {
        "joined" => format!("{who} joined {group}"),
        "left" => format!("{who} left {group}"),
        "kicked" => format!("{by} kicked {who} from {group}"),
        // A hand-over's second event: the old creator, now an admin.
        "role" if int(event, "id") == int(event, "by") => {
            let is = if who == "you" { "are" } else { "is" };
            format!(
                "{who} {is} now {} of {group}",
                role_words(text(event, "role"))
            )
        }
        "role" if text(event, "role") == "creator" => format!("{by} handed {group} over to {who}"),
        "role" => format!(
            "{by} made {who} {} of {group}",
            role_words(text(event, "role"))
        ),
        // The group's name may be the new one already: named by its id only.
        "updated" => {
            let desc = match text(event, "groupdesc") {
                "" => "no description".to_string(),
                desc => format!("description {}", continued(desc)),
            };
            format!(
                "{by} updated group {}: name {}, {desc}",
                shown(event, "groupid"),
                text(event, "groupname")
            )
        }
        "dissolved" => format!("{by} dissolved {group}"),
        _ => return None,
    };
    Some(line)
}

/// TYPING: `bob (2) is typing in u2…`, with a group's name when known.
fn typing_line(frame: &Value, view: &View) -> String {
    let conv = shown(frame, "conv");
    let place = match view.names.get(&conv) {
        Some(name) if conv.starts_with('g') => format!("{conv} ({name})"),
        _ => conv,
    };
    format!("{} is typing in {place}…", view.someone(frame, "id"))
}

/// FRIENDS: friends with their state, then the requests to and from the user, then the blocked.
pub fn friend_lists(ack: &Value) -> Vec<String> {
    let friends = list(ack, "friends");
    let mut lines = vec![format!("friends: {}", friends.len())];
    lines.extend(friends.iter().map(|f| format!("  {}", contact(f))));
    lines.extend(request_lines(
        "friend requests to you",
        &list(ack, "incoming"),
    ));
    let outgoing = list(ack, "outgoing");
    lines.push(format!("friend requests from you: {}", outgoing.len()));
    for request in &outgoing {
        let id = shown(request, "id");
        let said = match text(request, "text") {
            "" => String::new(),
            said => format!(": {}", continued(said)),
        };
        lines.push(format!(
            "  {id} {}{said} (remove:{id} withdraws it)",
            text(request, "name")
        ));
    }
    let blocked = list(ack, "blocked");
    lines.push(format!("blocked: {}", blocked.len()));
    for user in &blocked {
        let id = shown(user, "id");
        lines.push(format!("  {id} {} (unblock:{id})", text(user, "name")));
    }
    lines
}

/// `TITLE: 1`, then `  5 dave asks to be your friend: hi — accept:5 or decline:5` for each.
fn request_lines(title: &str, requests: &[Value]) -> Vec<String> {
    std::iter::once(format!("{title}: {}", requests.len()))
        .chain(
            requests
                .iter()
                .map(|r| format!("  {} {} {}", shown(r, "id"), text(r, "name"), asks(r))),
        )
        .collect()
}

/// GROUP_INFO: `group 3 devs, 2 members: rust people`, then each member with state and role, and for
/// its creator and admins who was removed and may be let back.
pub fn group_info(ack: &Value) -> Vec<String> {
    let group = ack.get("group").cloned().unwrap_or_default();
    let users = list(&group, "users");
    let desc = text(&group, "groupdesc");
    let count = match users.len() {
        1 => "1 member".to_string(),
        n => format!("{n} members"),
    };
    let mut lines = vec![format!(
        "group {} {}, {count}{}{}",
        shown(&group, "id"),
        text(&group, "groupname"),
        if desc.is_empty() { "" } else { ": " },
        continued(desc)
    )];
    for user in &users {
        lines.push(format!("  {} {}", contact(user), text(user, "role")));
    }
    for user in list(&group, "banned") {
        lines.push(format!(
            "  {} {} removed — unban:{}:{} lets them back",
            shown(&user, "id"),
            text(&user, "name"),
            shown(&group, "id"),
            shown(&user, "id")
        ));
    }
    lines
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

/// After an automatic reconnect: the messages kept offline meanwhile, the conversations that have
/// unread messages beyond those (another device of the user got them live; `history:` shows them), and
/// the friend requests that came meanwhile (those not among the `known` ones).
pub fn resume_summary(ack: &Value, view: &View, known: &BTreeSet<i64>) -> Vec<String> {
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
    for request in list(ack, "requests") {
        if int(&request, "id").is_some_and(|id| !known.contains(&id)) {
            lines.push(format!("  {} {}", named(&request), asks(&request)));
        }
    }
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
    if ack.get("requests").is_some() {
        lines.extend(request_lines("friend requests", &list(ack, "requests")));
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
        Some(msgid::FRIEND_REQUEST) => "friend request",
        Some(msgid::FRIEND_ANSWER) => "accept/decline",
        Some(msgid::FRIEND_REMOVE) => "remove",
        Some(msgid::BLOCK) => "block/unblock",
        Some(msgid::FRIENDS) => "friends",
        Some(msgid::FIND_USER) => "find",
        Some(msgid::GROUP_LEAVE) => "leave",
        Some(msgid::GROUP_KICK) => "kick",
        Some(msgid::GROUP_UNBAN) => "unban",
        Some(msgid::GROUP_ROLE) => "role",
        Some(msgid::GROUP_UPDATE) => "rename/desc",
        Some(msgid::GROUP_DISSOLVE) => "dissolve",
        Some(msgid::GROUP_INFO) => "members",
        Some(msgid::TYPING) => "typing",
        Some(msgid::PASSWORD) => "password",
        _ => "request",
    }
}

fn request_of_ack(ack: i64) -> Option<i64> {
    match ack {
        msgid::LOGOUT_ACK => Some(msgid::LOGOUT),
        msgid::ADD_FRIEND_ACK => Some(msgid::ADD_FRIEND),
        msgid::CREATE_GROUP_ACK => Some(msgid::CREATE_GROUP),
        msgid::ADD_GROUP_ACK => Some(msgid::ADD_GROUP),
        // From msgid 17 on, each ack comes right after its request.
        msgid::CONVERSATIONS_ACK
        | msgid::HISTORY_ACK
        | msgid::READ_ACK
        | msgid::FRIEND_REQUEST_ACK
        | msgid::FRIEND_ANSWER_ACK
        | msgid::FRIEND_REMOVE_ACK
        | msgid::BLOCK_ACK
        | msgid::FRIENDS_ACK
        | msgid::FIND_USER_ACK
        | msgid::GROUP_LEAVE_ACK
        | msgid::GROUP_KICK_ACK
        | msgid::GROUP_ROLE_ACK
        | msgid::GROUP_UPDATE_ACK
        | msgid::GROUP_DISSOLVE_ACK
        | msgid::GROUP_INFO_ACK
        | msgid::PASSWORD_ACK
        | msgid::GROUP_UNBAN_ACK => Some(ack - 1),
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
            render(&json!({"msgid": 99}), &View::default()),
            ["unrecognized message from the server: {\"msgid\":99}"]
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
            resume_summary(&ack, &alice(), &BTreeSet::new()),
            [
                "reconnected (device phone)",
                "  [u2 #6] bob(2) -> you: a",
                "  [u2 #7] bob(2) -> you: b",
                "  g3 devs  5 unread",
            ]
        );
    }

    #[test]
    fn friend_acks() {
        let cases = [
            (
                json!({"msgid": 25, "errno": 0, "friendid": 2, "state": "requested", "seq": 1}),
                "friend request sent to bob (2)",
            ),
            (
                json!({"msgid": 25, "errno": 0, "friendid": 2, "state": "friends"}),
                "you and bob (2) are friends now",
            ),
            (
                json!({"msgid": 28, "errno": 0, "friendid": 2, "state": "friends"}),
                "you and bob (2) are friends now",
            ),
            (
                json!({"msgid": 28, "errno": 0, "friendid": 9, "state": "declined"}),
                "you declined the friend request of user 9",
            ),
            (
                json!({"msgid": 30, "errno": 0, "friendid": 2}),
                "removed bob (2): no friendship or friend request between you any more",
            ),
            (
                json!({"msgid": 32, "errno": 0, "id": 5, "block": true}),
                "blocked user 5",
            ),
            (
                json!({"msgid": 32, "errno": 0, "id": 2, "block": false}),
                "unblocked bob (2)",
            ),
            (
                json!({"msgid": 36, "errno": 0, "id": 2, "name": "bob"}),
                "bob is user 2",
            ),
            (
                json!({"msgid": 53, "errno": 0}),
                "password changed; your devices stay logged in, but after a lost connection each \
                 logs in again with the new password",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &alice()), [line], "{frame}");
        }
    }

    #[test]
    fn group_acks() {
        let cases = [
            (
                json!({"msgid": 38, "errno": 0, "groupid": 3}),
                "you left group devs (3)",
            ),
            (
                json!({"msgid": 40, "errno": 0, "groupid": 3, "id": 2}),
                "you kicked bob (2) from group devs (3)",
            ),
            (
                json!({"msgid": 55, "errno": 0, "groupid": 3, "id": 2}),
                "bob (2) may join group devs (3) again",
            ),
            (
                json!({"msgid": 42, "errno": 0, "groupid": 3, "id": 2, "role": "admin"}),
                "bob (2) is now an admin of group devs (3)",
            ),
            (
                json!({"msgid": 42, "errno": 0, "groupid": 8, "id": 2, "role": "normal"}),
                "bob (2) is now a normal member of group 8",
            ),
            (
                json!({"msgid": 42, "errno": 0, "groupid": 3, "id": 2, "role": "creator"}),
                "bob (2) is now the creator of group devs (3); you are an admin",
            ),
            (
                json!({"msgid": 44, "errno": 0, "groupid": 3}),
                "group devs (3) updated",
            ),
            (
                json!({"msgid": 46, "errno": 0, "groupid": 3}),
                "group devs (3) dissolved",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &alice()), [line], "{frame}");
        }
    }

    #[test]
    fn people_errors_name_the_command() {
        let cases = [
            (
                json!({"msgid": 15, "errno": 105, "ref": 24, "seq": 3,
                       "errmsg": "this user does not accept requests from you"}),
                "friend request failed: not allowed (this user does not accept requests from you)",
            ),
            (
                json!({"msgid": 15, "errno": 104, "errmsg": "no pending request", "ref": 27}),
                "accept/decline failed: no friend request from this user",
            ),
            (
                json!({"msgid": 15, "errno": 104, "errmsg": "no such user", "ref": 35}),
                "find failed: no user has this name",
            ),
            (
                json!({"msgid": 15, "errno": 104, "errmsg": "not a member", "ref": 39}),
                "kick failed: no such group, or the user is not a member of it",
            ),
            (
                json!({"msgid": 15, "errno": 104, "ref": 41}),
                "role failed: no such group, or the user is not a member of it",
            ),
            (
                json!({"msgid": 15, "errno": 104, "errmsg": "no such user", "ref": 29}),
                "remove failed: no such user or group",
            ),
            (
                json!({"msgid": 15, "errno": 105, "ref": 37,
                       "errmsg": "hand the group over or dissolve it first"}),
                "leave failed: not allowed (hand the group over or dissolve it first)",
            ),
            (
                json!({"msgid": 15, "errno": 102, "errmsg": "role: unknown", "ref": 41}),
                "role failed: invalid field (role: unknown)",
            ),
            (
                json!({"msgid": 15, "errno": 105, "errmsg": "wrong password", "ref": 52}),
                "password failed: not allowed (wrong password)",
            ),
            (
                json!({"msgid": 15, "errno": 107, "ref": 52}),
                "password failed: too many requests, slow down",
            ),
            (
                json!({"msgid": 15, "errno": 105, "errmsg": "name taken", "ref": 43}),
                "rename/desc failed: not allowed (name taken)",
            ),
            (
                json!({"msgid": 15, "errno": 104, "ref": 47}),
                "members failed: no such user or group",
            ),
            (
                json!({"msgid": 15, "errno": 105, "errmsg": "creator only", "ref": 45}),
                "dissolve failed: not allowed (creator only)",
            ),
            (
                json!({"msgid": 15, "errno": 105, "errmsg": "that is you", "ref": 31}),
                "block/unblock failed: not allowed (that is you)",
            ),
            (
                json!({"msgid": 15, "errno": 109, "ref": 33}),
                "friends failed: the server is temporarily unavailable; it was not carried out",
            ),
            // A failed ack is named by its request too.
            (
                json!({"msgid": 38, "errno": 105, "errmsg": "not a member"}),
                "leave failed: not allowed (not a member)",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &alice()), [line], "{frame}");
        }
        // What became of a TYPING is not worth a line, while the person types.
        let typing = json!({"msgid": 15, "errno": 104, "errmsg": "no such user", "ref": 51});
        assert!(render(&typing, &alice()).is_empty());
    }

    #[test]
    fn friend_events() {
        let cases = [
            (
                json!({"msgid": 26, "event": "request", "id": 2, "name": "bob", "text": "hi, it's bob"}),
                "bob (2) asks to be your friend: hi, it's bob — accept:2 or decline:2",
            ),
            (
                json!({"msgid": 26, "event": "request", "id": 4, "name": "carol", "text": ""}),
                "carol (4) asks to be your friend — accept:4 or decline:4",
            ),
            (
                json!({"msgid": 26, "event": "request", "id": 4, "name": "carol"}),
                "carol (4) asks to be your friend — accept:4 or decline:4",
            ),
            (
                json!({"msgid": 26, "event": "request", "id": 4, "name": "carol", "text": "a\nb"}),
                "carol (4) asks to be your friend: a\n  b — accept:4 or decline:4",
            ),
            (
                json!({"msgid": 26, "event": "accepted", "id": 2, "name": "bob"}),
                "bob (2) accepted your friend request: you are friends now",
            ),
            (
                json!({"msgid": 26, "event": "declined", "id": 2, "name": "bob"}),
                "bob (2) declined your friend request",
            ),
            (
                json!({"msgid": 26, "event": "removed", "id": 2, "name": "bob"}),
                "bob (2) removed you: no friendship or friend request between you any more",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &View::default()), [line], "{frame}");
        }
        let odd = json!({"msgid": 26, "event": "poked", "id": 2, "name": "bob"});
        assert!(render(&odd, &alice())[0].starts_with("unrecognized message from the server"));
    }

    #[test]
    fn group_events_say_who_did_it() {
        let mut view = alice();
        view.names.insert("u4".into(), "carol".into());
        let cases = [
            (
                json!({"msgid": 49, "groupid": 3, "event": "joined", "id": 4, "by": 4}),
                "carol (4) joined group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "joined", "id": 1, "by": 1}),
                "you joined group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "left", "id": 9, "by": 9}),
                "user 9 left group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 4, "by": 2}),
                "bob (2) kicked carol (4) from group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "kicked", "id": 1, "by": 2}),
                "bob (2) kicked you from group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "role", "id": 4, "by": 2,
                       "role": "admin"}),
                "bob (2) made carol (4) an admin of group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "role", "id": 1, "by": 2,
                       "role": "normal"}),
                "bob (2) made you a normal member of group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "role", "id": 1, "by": 2,
                       "role": "creator"}),
                "bob (2) handed group devs (3) over to you",
            ),
            // A hand-over's second event: the old creator is an admin now.
            (
                json!({"msgid": 49, "groupid": 3, "event": "role", "id": 2, "by": 2,
                       "role": "admin"}),
                "bob (2) is now an admin of group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "role", "id": 1, "by": 1,
                       "role": "admin"}),
                "you are now an admin of group devs (3)",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "updated", "id": 2, "by": 2,
                       "groupname": "rustaceans", "groupdesc": "all things rust"}),
                "bob (2) updated group 3: name rustaceans, description all things rust",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "updated", "id": 1, "by": 1,
                       "groupname": "devs", "groupdesc": ""}),
                "you updated group 3: name devs, no description",
            ),
            (
                json!({"msgid": 49, "groupid": 3, "event": "dissolved", "id": 2, "by": 2}),
                "bob (2) dissolved group devs (3)",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &view), [line], "{frame}");
        }
        let odd = json!({"msgid": 49, "groupid": 3, "event": "renamed", "id": 2, "by": 2});
        assert!(render(&odd, &view)[0].starts_with("unrecognized message from the server"));
    }

    #[test]
    fn presence_and_typing() {
        let cases = [
            (
                json!({"msgid": 50, "id": 2, "state": "online"}),
                "bob (2) is online",
            ),
            (
                json!({"msgid": 50, "id": 7, "state": "offline"}),
                "user 7 is offline",
            ),
            (
                json!({"msgid": 51, "conv": "u2", "id": 2}),
                "bob (2) is typing in u2…",
            ),
            (
                json!({"msgid": 51, "conv": "g3", "id": 2}),
                "bob (2) is typing in g3 (devs)…",
            ),
            (
                json!({"msgid": 51, "conv": "g8", "id": 9}),
                "user 9 is typing in g8…",
            ),
        ];
        for (frame, line) in cases {
            assert_eq!(render(&frame, &alice()), [line], "{frame}");
        }
        // Pushes answer nothing of ours.
        assert_eq!(
            Reply::of(&json!({"msgid": 51, "conv": "u2", "id": 2})),
            None
        );
    }

    #[test]
    fn friend_lists_show_every_kind() {
        let ack = json!({"msgid": 34, "errno": 0, "seq": 4,
            "friends": [{"id": 2, "name": "bob", "state": "online"},
                        {"id": 4, "name": "carol", "state": "offline"}],
            "incoming": [{"id": 5, "name": "dave", "text": "hi there"},
                         {"id": 6, "name": "erin", "text": ""}],
            "outgoing": [{"id": 7, "name": "frank", "text": "remember me?"},
                         {"id": 8, "name": "grace", "text": ""}],
            "blocked": [{"id": 9, "name": "mallory"}]});
        assert_eq!(
            render(&ack, &alice()),
            [
                "friends: 2",
                "  2 bob online",
                "  4 carol offline",
                "friend requests to you: 2",
                "  5 dave asks to be your friend: hi there — accept:5 or decline:5",
                "  6 erin asks to be your friend — accept:6 or decline:6",
                "friend requests from you: 2",
                "  7 frank: remember me? (remove:7 withdraws it)",
                "  8 grace (remove:8 withdraws it)",
                "blocked: 1",
                "  9 mallory (unblock:9)",
            ]
        );
        let empty = json!({"msgid": 34, "errno": 0, "friends": [], "incoming": [],
                           "outgoing": [], "blocked": []});
        assert_eq!(
            render(&empty, &alice()),
            [
                "friends: 0",
                "friend requests to you: 0",
                "friend requests from you: 0",
                "blocked: 0"
            ]
        );
    }

    #[test]
    fn group_info_lists_members_with_roles() {
        let ack = json!({"msgid": 48, "errno": 0, "seq": 2, "group": {
            "id": 3, "groupname": "devs", "groupdesc": "rust people", "users": [
                {"id": 1, "name": "alice", "state": "online", "role": "creator"},
                {"id": 2, "name": "bob", "state": "offline", "role": "admin"},
                {"id": 4, "name": "carol", "state": "online", "role": "normal"}]}});
        assert_eq!(
            render(&ack, &alice()),
            [
                "group 3 devs, 3 members: rust people",
                "  1 alice online creator",
                "  2 bob offline admin",
                "  4 carol online normal",
            ]
        );
        let alone = json!({"msgid": 48, "errno": 0, "group": {
            "id": 5, "groupname": "me", "groupdesc": "", "banned": [{"id": 7, "name": "eve"}],
            "users": [{"id": 1, "name": "alice", "state": "online", "role": "creator"}]}});
        assert_eq!(
            render(&alone, &alice()),
            [
                "group 5 me, 1 member",
                "  1 alice online creator",
                "  7 eve removed — unban:5:7 lets them back"
            ]
        );
    }

    #[test]
    fn login_lists_the_open_friend_requests() {
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "alice", "device": "phone",
            "conversations": [], "friends": [], "groups": [], "offlinemsg": [],
            "requests": [{"id": 5, "name": "dave", "text": "hi"},
                         {"id": 6, "name": "erin", "text": ""}]
        });
        assert_eq!(
            render(&ack, &alice()),
            [
                "login success: alice (id 1), device phone",
                "friends: 0",
                "groups: 0",
                "conversations: 0",
                "offline messages: 0",
                "friend requests: 2",
                "  5 dave asks to be your friend: hi — accept:5 or decline:5",
                "  6 erin asks to be your friend — accept:6 or decline:6",
            ]
        );
        let none = json!({"msgid": 2, "errno": 0, "id": 1, "name": "alice", "requests": []});
        assert_eq!(
            render(&none, &alice()).last().unwrap(),
            "friend requests: 0"
        );
    }

    #[test]
    fn a_resumed_login_shows_only_new_friend_requests() {
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "alice", "device": "phone",
            "conversations": [], "offlinemsg": [],
            "requests": [{"id": 5, "name": "dave", "text": "hi"},
                         {"id": 6, "name": "erin", "text": "me too"}]
        });
        let known = BTreeSet::from([5]);
        assert_eq!(
            resume_summary(&ack, &alice(), &known),
            [
                "reconnected (device phone)",
                "  erin (6) asks to be your friend: me too — accept:6 or decline:6",
            ]
        );
    }
}
