//! The commands a logged-in user types, parsed into requests. Parsing is separate from sending so the
//! command syntax is tested without a server. Also the names this client gives itself on the wire: the
//! device it logs in as and the `cid` of each message it sends.

use std::fmt;
use std::time::{Duration, Instant};

use clusterchat::model::{GroupId, UserId};
use clusterchat::protocol::msgid;
use serde_json::{Value, json};

/// How many messages one `history:` page asks for.
pub const HISTORY_PAGE: usize = 20;

/// Every command with its format and what it does, in the order `help` lists them.
pub const COMMANDS: [(&str, &str, &str); 26] = [
    ("help", "help", "show this list"),
    (
        "chat",
        "chat:ID:TEXT",
        "send TEXT to the user ID (resent after a reconnect until the server confirms it)",
    ),
    ("addfriend", "addfriend:ID", "add the user ID as a friend"),
    (
        "friends",
        "friends",
        "list your friends, the friend requests to and from you, and the users you block",
    ),
    (
        "request",
        "request:ID:TEXT",
        "ask the user ID to be your friend (TEXT may be left out)",
    ),
    (
        "accept",
        "accept:ID",
        "accept the friend request of the user ID",
    ),
    (
        "decline",
        "decline:ID",
        "decline the friend request of the user ID",
    ),
    (
        "remove",
        "remove:ID",
        "end the friendship with the user ID, or withdraw a friend request to or from them",
    ),
    (
        "block",
        "block:ID",
        "block the user ID: no messages, requests, presence or typing from them; ends a friendship",
    ),
    (
        "unblock",
        "unblock:ID",
        "stop blocking the user ID (a friendship the block ended stays ended)",
    ),
    (
        "find",
        "find:NAME",
        "show the id of the user named NAME (exactly as registered)",
    ),
    (
        "creategroup",
        "creategroup:NAME:DESC",
        "create a group (DESC may be left out)",
    ),
    ("addgroup", "addgroup:ID", "join the group ID"),
    (
        "groupchat",
        "groupchat:ID:TEXT",
        "send TEXT to the members of group ID (resent like chat)",
    ),
    (
        "members",
        "members:G",
        "show group G with its members, their roles and who is online",
    ),
    (
        "leave",
        "leave:G",
        "leave group G (its creator hands it over or dissolves it first)",
    ),
    (
        "kick",
        "kick:G:ID",
        "remove the user ID from group G (creator: anyone; admin: normal members); they cannot join again until let back",
    ),
    (
        "unban",
        "unban:G:ID",
        "let the user ID, kicked from group G, join it again (creator or admin)",
    ),
    (
        "role",
        "role:G:ID:ROLE",
        "make the user ID admin or normal in group G, or creator to hand it over (creator only)",
    ),
    (
        "rename",
        "rename:G:NAME",
        "rename group G (creator or admin)",
    ),
    (
        "desc",
        "desc:G:TEXT",
        "set the description of group G, desc:G: clears it (creator or admin)",
    ),
    (
        "dissolve",
        "dissolve:G",
        "delete group G, its members and its messages (creator only)",
    ),
    (
        "conversations",
        "conversations",
        "list your conversations with their unread counts",
    ),
    (
        "history",
        "history:CONV",
        "show the latest messages of CONV (u5: with user 5, g3: group 3); again: the ones before",
    ),
    (
        "password",
        "password",
        "change your password: asks for the old one and the new one",
    ),
    ("loginout", "loginout", "log out and go back to the menu"),
];

/// Longest text a friend request may carry, in characters.
pub const MAX_REQUEST_TEXT_CHARS: usize = 200;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Chat {
        to: UserId,
        text: String,
    },
    AddFriend(UserId),
    CreateGroup {
        name: String,
        desc: String,
    },
    AddGroup(GroupId),
    GroupChat {
        group: GroupId,
        text: String,
    },
    Conversations,
    History(Conv),
    Logout,
    /// `friends`: friends, requests both ways, and blocked users.
    Friends,
    /// `request:ID:TEXT`: a friend request, its text optional.
    FriendRequest {
        to: UserId,
        text: Option<String>,
    },
    /// `accept:ID` and `decline:ID`.
    FriendAnswer {
        from: UserId,
        accept: bool,
    },
    /// `remove:ID`: ends a friendship or withdraws a request.
    Unfriend(UserId),
    /// `block:ID` and `unblock:ID`.
    Block {
        id: UserId,
        block: bool,
    },
    /// `find:NAME`.
    FindUser(String),
    /// `members:G`.
    Members(GroupId),
    Leave(GroupId),
    Kick {
        group: GroupId,
        id: UserId,
    },
    Unban {
        group: GroupId,
        id: UserId,
    },
    SetRole {
        group: GroupId,
        id: UserId,
        role: Role,
    },
    Rename {
        group: GroupId,
        name: String,
    },
    Describe {
        group: GroupId,
        desc: String,
    },
    Dissolve(GroupId),
    /// `password`: the old and the new password are asked for on the lines after it.
    Password,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Creator,
    Admin,
    Normal,
}

impl Role {
    /// Parses `creator`, `admin` or `normal` (spaces around it are ignored).
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.trim() {
            "creator" => Ok(Role::Creator),
            "admin" => Ok(Role::Admin),
            "normal" => Ok(Role::Normal),
            other => Err(format!(
                "invalid role '{other}': expected creator, admin or normal"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Admin => "admin",
            Role::Normal => "normal",
        }
    }
}

/// A conversation as the server names it from the user's side: `u5` is the one with user 5 (`u<me>` the
/// one with oneself), `g3` is group 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv {
    User(UserId),
    Group(GroupId),
}

impl Conv {
    /// Parses `u<ID>` or `g<ID>` (spaces around it are ignored).
    pub fn parse(text: &str) -> Result<Conv, String> {
        let text = text.trim();
        let invalid = || {
            format!("invalid conversation '{text}': expected u<ID> for a user or g<ID> for a group")
        };
        let (kind, digits) = text.split_at_checked(1).ok_or_else(invalid)?;
        // As the server reads it: digits only, no sign and no leading zero.
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return Err(invalid());
        }
        let id = match digits.parse::<i32>() {
            Ok(id) if id > 0 => id,
            _ => return Err(invalid()),
        };
        match kind {
            "u" => Ok(Conv::User(id)),
            "g" => Ok(Conv::Group(id)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conv::User(id) => write!(f, "u{id}"),
            Conv::Group(id) => write!(f, "g{id}"),
        }
    }
}

impl Command {
    /// Parses `NAME[:ARGS]`. Only the separators a command needs are split on, so chat text and group
    /// descriptions may themselves contain ':'. The error is a sentence to show the user.
    pub fn parse(line: &str) -> Result<Command, String> {
        let (name, rest) = match line.split_once(':') {
            Some((name, rest)) => (name.trim(), Some(rest)),
            None => (line.trim(), None),
        };
        let usage = || format!("usage: {}", format_of(name));
        match name {
            "help" => Ok(Command::Help),
            "loginout" => Ok(Command::Logout),
            "conversations" => Ok(Command::Conversations),
            "history" => Ok(Command::History(Conv::parse(rest.ok_or_else(usage)?)?)),
            "chat" => {
                let (to, text) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                Ok(Command::Chat {
                    to: parse_id(to)?,
                    text: text.to_string(),
                })
            }
            "groupchat" => {
                let (group, text) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                Ok(Command::GroupChat {
                    group: parse_id(group)?,
                    text: text.to_string(),
                })
            }
            "addfriend" => Ok(Command::AddFriend(parse_id(rest.ok_or_else(usage)?)?)),
            "addgroup" => Ok(Command::AddGroup(parse_id(rest.ok_or_else(usage)?)?)),
            "creategroup" => {
                let rest = rest.ok_or_else(usage)?;
                let (name, desc) = rest.split_once(':').unwrap_or((rest, ""));
                Ok(Command::CreateGroup {
                    name: name.to_string(),
                    desc: desc.to_string(),
                })
            }
            "friends" => Ok(Command::Friends),
            "password" => Ok(Command::Password),
            "request" => {
                let rest = rest.ok_or_else(usage)?;
                let (to, text) = match rest.split_once(':') {
                    Some((to, text)) => (to, Some(text.to_string())),
                    None => (rest, None),
                };
                let to = parse_id(to)?;
                if let Some(chars) = text.as_ref().map(|t| t.chars().count())
                    && chars > MAX_REQUEST_TEXT_CHARS
                {
                    return Err(format!(
                        "a friend request's text has at most {MAX_REQUEST_TEXT_CHARS} characters, not {chars}"
                    ));
                }
                Ok(Command::FriendRequest { to, text })
            }
            "accept" | "decline" => Ok(Command::FriendAnswer {
                from: parse_id(rest.ok_or_else(usage)?)?,
                accept: name == "accept",
            }),
            "remove" => Ok(Command::Unfriend(parse_id(rest.ok_or_else(usage)?)?)),
            "block" | "unblock" => Ok(Command::Block {
                id: parse_id(rest.ok_or_else(usage)?)?,
                block: name == "block",
            }),
            "find" => match rest {
                Some(user) if !user.is_empty() => Ok(Command::FindUser(user.to_string())),
                _ => Err(usage()),
            },
            "members" => Ok(Command::Members(parse_id(rest.ok_or_else(usage)?)?)),
            "leave" => Ok(Command::Leave(parse_id(rest.ok_or_else(usage)?)?)),
            "dissolve" => Ok(Command::Dissolve(parse_id(rest.ok_or_else(usage)?)?)),
            "kick" | "unban" => {
                let (group, id) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                let (group, id) = (parse_id(group)?, parse_id(id)?);
                Ok(if name == "kick" {
                    Command::Kick { group, id }
                } else {
                    Command::Unban { group, id }
                })
            }
            "role" => {
                let (group, rest) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                let (id, role) = rest.split_once(':').ok_or_else(usage)?;
                Ok(Command::SetRole {
                    group: parse_id(group)?,
                    id: parse_id(id)?,
                    role: Role::parse(role)?,
                })
            }
            "rename" => {
                let (group, name) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                Ok(Command::Rename {
                    group: parse_id(group)?,
                    name: name.to_string(),
                })
            }
            "desc" => {
                let (group, desc) = rest.and_then(|r| r.split_once(':')).ok_or_else(usage)?;
                Ok(Command::Describe {
                    group: parse_id(group)?,
                    desc: desc.to_string(),
                })
            }
            _ => Err(format!(
                "unknown command '{name}', type help for the list of commands"
            )),
        }
    }

    /// The request frame this command sends, or `None` for a command answered locally (`help`) or one
    /// that asks for more first (`password`: see [`password_request`]). The sender's id and name are
    /// left out: the server takes them from the login, never from the frame.
    pub fn request(&self) -> Option<Value> {
        let frame = match self {
            Command::Help | Command::Password => return None,
            Command::Chat { to, text } => {
                json!({"msgid": msgid::ONE_CHAT, "toid": to, "msg": text})
            }
            Command::AddFriend(id) => json!({"msgid": msgid::ADD_FRIEND, "friendid": id}),
            Command::CreateGroup { name, desc } => {
                json!({"msgid": msgid::CREATE_GROUP, "groupname": name, "groupdesc": desc})
            }
            Command::AddGroup(id) => json!({"msgid": msgid::ADD_GROUP, "groupid": id}),
            Command::GroupChat { group, text } => {
                json!({"msgid": msgid::GROUP_CHAT, "groupid": group, "msg": text})
            }
            Command::Conversations => json!({"msgid": msgid::CONVERSATIONS}),
            Command::History(conv) => history_request(*conv, None),
            Command::Logout => json!({"msgid": msgid::LOGOUT}),
            Command::Friends => json!({"msgid": msgid::FRIENDS}),
            Command::FriendRequest { to, text } => {
                let mut frame = json!({"msgid": msgid::FRIEND_REQUEST, "friendid": to});
                if let Some(text) = text {
                    frame["text"] = json!(text);
                }
                frame
            }
            Command::FriendAnswer { from, accept } => {
                json!({"msgid": msgid::FRIEND_ANSWER, "friendid": from, "accept": accept})
            }
            Command::Unfriend(id) => json!({"msgid": msgid::FRIEND_REMOVE, "friendid": id}),
            Command::Block { id, block } => {
                json!({"msgid": msgid::BLOCK, "id": id, "block": block})
            }
            Command::FindUser(name) => json!({"msgid": msgid::FIND_USER, "name": name}),
            Command::Members(group) => json!({"msgid": msgid::GROUP_INFO, "groupid": group}),
            Command::Leave(group) => json!({"msgid": msgid::GROUP_LEAVE, "groupid": group}),
            Command::Kick { group, id } => {
                json!({"msgid": msgid::GROUP_KICK, "groupid": group, "id": id})
            }
            Command::Unban { group, id } => {
                json!({"msgid": msgid::GROUP_UNBAN, "groupid": group, "id": id})
            }
            Command::SetRole { group, id, role } => json!({"msgid": msgid::GROUP_ROLE,
                "groupid": group, "id": id, "role": role.as_str()}),
            Command::Rename { group, name } => {
                json!({"msgid": msgid::GROUP_UPDATE, "groupid": group, "groupname": name})
            }
            Command::Describe { group, desc } => {
                json!({"msgid": msgid::GROUP_UPDATE, "groupid": group, "groupdesc": desc})
            }
            Command::Dissolve(group) => json!({"msgid": msgid::GROUP_DISSOLVE, "groupid": group}),
        };
        Some(frame)
    }

    /// Whether this command only asks: its request may be sent again when the answer was lost with
    /// the connection.
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Command::Conversations | Command::Friends | Command::FindUser(_) | Command::Members(_)
        )
    }
}

/// PASSWORD: the old password and the new one.
pub fn password_request(old: &str, new: &str) -> Value {
    json!({"msgid": msgid::PASSWORD, "old": old, "new": new})
}

/// TYPING: the user is typing in `conv` (no answer comes).
pub fn typing_request(conv: Conv) -> Value {
    json!({"msgid": msgid::TYPING, "conv": conv.to_string()})
}

/// The conversation a person is typing a message in, from the command line being edited and the
/// cursor's byte position in it: `chat:ID:` or `groupchat:ID:` with the cursor in the text after it.
pub fn typing_conv(line: &str, cursor: usize) -> Option<Conv> {
    let (name, rest) = line.split_once(':')?;
    let (id, _) = rest.split_once(':')?;
    if cursor < name.len() + id.len() + 2 {
        return None;
    }
    let id = parse_id(id).ok()?;
    match name.trim() {
        "chat" => Some(Conv::User(id)),
        "groupchat" => Some(Conv::Group(id)),
        _ => None,
    }
}

/// How often a TYPING goes out while the person keeps typing in the same conversation.
pub const TYPING_EVERY: Duration = Duration::from_secs(5);

/// Keeps TYPING to one when the person starts typing a message, and one each [`TYPING_EVERY`] while
/// they go on in the same conversation (the server relays at most one per 2 s anyway).
#[derive(Debug, Default)]
pub struct TypingNotice {
    last: Option<(Conv, Instant)>,
}

impl TypingNotice {
    /// Whether a TYPING for `conv` is due at `now`; if so, it counts as sent.
    pub fn due(&mut self, conv: Conv, now: Instant) -> bool {
        if let Some((last, at)) = self.last
            && last == conv
            && now.saturating_duration_since(at) < TYPING_EVERY
        {
            return false;
        }
        self.last = Some((conv, now));
        true
    }
}

/// HISTORY: the latest page of `conv`, or the page just before position `before`.
pub fn history_request(conv: Conv, before: Option<i64>) -> Value {
    let mut frame =
        json!({"msgid": msgid::HISTORY, "conv": conv.to_string(), "limit": HISTORY_PAGE});
    if let Some(before) = before {
        frame["before"] = json!(before);
    }
    frame
}

/// READ: everything in `conv` up to `pos` has been shown.
pub fn read_request(conv: &str, pos: i64) -> Value {
    json!({"msgid": msgid::READ, "conv": conv, "pos": pos})
}

/// Longest device name and `cid` the server accepts, in characters.
const MAX_DEVICE_CHARS: usize = 64;
const MAX_CID_CHARS: usize = 64;

/// A device name as the server accepts it from a v2 login: 1–64 characters, no control characters, and
/// not `v1` (the name of every v1 login).
pub fn parse_device(text: &str) -> Result<String, String> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_DEVICE_CHARS {
        return Err(format!(
            "a device name has 1 to {MAX_DEVICE_CHARS} characters, not {chars}"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("a device name may not hold control characters".into());
    }
    if text == "v1" {
        return Err("the device name \"v1\" is reserved for v1 logins".into());
    }
    Ok(text.to_string())
}

/// The default device of this machine: `chat-<hostname>` (cut to 64 characters, control characters
/// left out), or `chat` when the host has no name.
pub fn default_device(hostname: Option<&str>) -> String {
    let host: String = hostname
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if host.is_empty() {
        return "chat".into();
    }
    format!("chat-{host}")
        .chars()
        .take(MAX_DEVICE_CHARS)
        .collect()
}

/// Makes the `cid` of each message this client sends: `<device>.<run>.<n>`, where `run` is random for
/// each run of the client and `n` counts up from 1. The server keeps every cid a user ever had committed
/// and answers a repeat with the first message's ack instead of delivering it, so a cid must never come
/// back in a later run: the random part sees to that, the device name keeps two devices of one user
/// apart even if it did not, and the counter keeps this run's messages apart.
pub struct Cids {
    prefix: String,
    next: u64,
}

impl Cids {
    pub fn new(device: &str, run: u64) -> Cids {
        let run = base36(run);
        // Room for the separators and the longest counter, so that no cid ever exceeds the limit.
        let room = MAX_CID_CHARS - run.len() - 2 - u64::MAX.to_string().len();
        let device: String = device.chars().take(room).collect();
        Cids {
            prefix: format!("{device}.{run}."),
            next: 1,
        }
    }

    pub fn next(&mut self) -> String {
        let cid = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        cid
    }
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).expect("a digit below 36"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The lines `help` prints.
pub fn help_lines() -> Vec<String> {
    let width = COMMANDS.iter().map(|(_, f, _)| f.len()).max().unwrap_or(0);
    std::iter::once("commands:".to_string())
        .chain(
            COMMANDS
                .iter()
                .map(|(_, format, what)| format!("  {format:<width$}  {what}")),
        )
        .collect()
}

fn format_of(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, format, _)| format)
}

/// A user or group id as the server accepts it: positive and within a signed 32-bit integer. Checked
/// here so a typo gets a precise message instead of the server's generic "invalid field".
pub fn parse_id(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "invalid id '{}': expected a positive number",
            text.trim()
        )),
    }
}

/// Whose login the `userid:` line asks for, as the LOGIN field and its value: a number is an id (and
/// must be a valid one); anything else is the name the account was registered with, as typed (names are
/// byte-exact).
pub fn parse_account(text: &str) -> Result<(&'static str, Value), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.parse::<i64>().is_ok() {
        return parse_id(text).map(|id| ("id", json!(id)));
    }
    Ok(("name", json!(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_names_an_id_or_a_name() {
        assert_eq!(parse_account(" 7 "), Ok(("id", json!(7))));
        assert_eq!(parse_account("alice"), Ok(("name", json!("alice"))));
        assert_eq!(parse_account("ali ce"), Ok(("name", json!("ali ce"))));
        assert!(
            parse_account("0").is_err(),
            "a number is an id, and 0 is none"
        );
        assert!(parse_account("-3").is_err());
        assert!(parse_account(" ").is_err());
    }

    #[test]
    fn chat_splits_only_on_the_first_two_colons() {
        assert_eq!(
            Command::parse("chat:2:a:b"),
            Ok(Command::Chat {
                to: 2,
                text: "a:b".into()
            })
        );
        assert_eq!(
            Command::parse("groupchat: 7 :time is 10:30"),
            Ok(Command::GroupChat {
                group: 7,
                text: "time is 10:30".into()
            })
        );
    }

    #[test]
    fn chat_keeps_text_as_typed() {
        assert_eq!(
            Command::parse("chat:2: hi "),
            Ok(Command::Chat {
                to: 2,
                text: " hi ".into()
            })
        );
        // Empty text is the server's to refuse, with its own message.
        assert_eq!(
            Command::parse("chat:2:"),
            Ok(Command::Chat {
                to: 2,
                text: String::new()
            })
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        for line in [
            "chat:x:hi",
            "chat:0:hi",
            "chat:-3:hi",
            "chat:2147483648:hi",
            "addfriend:",
            "addfriend:1.5",
            "addgroup:abc",
            "groupchat::hi",
        ] {
            let err = Command::parse(line).unwrap_err();
            assert!(err.starts_with("invalid id"), "{line}: {err}");
        }
        assert_eq!(
            Command::parse("addfriend:2147483647"),
            Ok(Command::AddFriend(i32::MAX))
        );
    }

    #[test]
    fn missing_parts_show_usage() {
        assert_eq!(Command::parse("chat:2"), Err("usage: chat:ID:TEXT".into()));
        assert_eq!(Command::parse("chat"), Err("usage: chat:ID:TEXT".into()));
        assert_eq!(
            Command::parse("groupchat:3"),
            Err("usage: groupchat:ID:TEXT".into())
        );
        assert_eq!(Command::parse("addgroup"), Err("usage: addgroup:ID".into()));
        assert_eq!(
            Command::parse("creategroup"),
            Err("usage: creategroup:NAME:DESC".into())
        );
    }

    #[test]
    fn creategroup_description_is_optional_and_may_hold_colons() {
        assert_eq!(
            Command::parse("creategroup:devs:rust: the language"),
            Ok(Command::CreateGroup {
                name: "devs".into(),
                desc: "rust: the language".into()
            })
        );
        assert_eq!(
            Command::parse("creategroup:devs"),
            Ok(Command::CreateGroup {
                name: "devs".into(),
                desc: String::new()
            })
        );
    }

    #[test]
    fn simple_commands_and_unknown_ones() {
        assert_eq!(Command::parse("help"), Ok(Command::Help));
        assert_eq!(Command::parse(" loginout "), Ok(Command::Logout));
        assert_eq!(Command::parse("addfriend: 12"), Ok(Command::AddFriend(12)));
        assert_eq!(Command::parse("addgroup:5"), Ok(Command::AddGroup(5)));
        assert_eq!(
            Command::parse("hello:2"),
            Err("unknown command 'hello', type help for the list of commands".into())
        );
    }

    #[test]
    fn requests_carry_only_what_the_server_reads() {
        let chat = Command::Chat {
            to: 2,
            text: "a:b".into(),
        };
        assert_eq!(
            chat.request(),
            Some(json!({"msgid": 6, "toid": 2, "msg": "a:b"}))
        );
        assert_eq!(
            Command::CreateGroup {
                name: "g".into(),
                desc: "d".into()
            }
            .request(),
            Some(json!({"msgid": 8, "groupname": "g", "groupdesc": "d"}))
        );
        assert_eq!(
            Command::GroupChat {
                group: 3,
                text: "x".into()
            }
            .request(),
            Some(json!({"msgid": 10, "groupid": 3, "msg": "x"}))
        );
        assert_eq!(
            Command::AddFriend(4).request(),
            Some(json!({"msgid": 7, "friendid": 4}))
        );
        assert_eq!(
            Command::AddGroup(4).request(),
            Some(json!({"msgid": 9, "groupid": 4}))
        );
        assert_eq!(Command::Logout.request(), Some(json!({"msgid": 3})));
        assert_eq!(Command::Help.request(), None);
    }

    #[test]
    fn help_lists_every_command() {
        let lines = help_lines();
        assert_eq!(lines.len(), COMMANDS.len() + 1);
        for (_, format, _) in COMMANDS {
            assert!(lines.iter().any(|l| l.contains(format)), "{format}");
        }
    }

    #[test]
    fn conversations_and_history_commands() {
        assert_eq!(Command::parse("conversations"), Ok(Command::Conversations));
        assert_eq!(
            Command::parse("history:u5"),
            Ok(Command::History(Conv::User(5)))
        );
        assert_eq!(
            Command::parse("history: g3 "),
            Ok(Command::History(Conv::Group(3)))
        );
        assert_eq!(Command::parse("history"), Err("usage: history:CONV".into()));
        for bad in [
            "x5",
            "u",
            "g0",
            "u-1",
            "u+1",
            "u05",
            "U5",
            "u 5",
            "u2147483648",
            "5",
            "",
        ] {
            let err = Command::parse(&format!("history:{bad}")).unwrap_err();
            assert!(err.starts_with("invalid conversation"), "{bad}: {err}");
        }
        assert_eq!(Conv::User(5).to_string(), "u5");
        assert_eq!(Conv::Group(2147483647).to_string(), "g2147483647");
    }

    #[test]
    fn history_and_read_requests() {
        assert_eq!(Command::Conversations.request(), Some(json!({"msgid": 17})));
        assert_eq!(
            Command::History(Conv::User(5)).request(),
            Some(json!({"msgid": 19, "conv": "u5", "limit": 20}))
        );
        assert_eq!(
            history_request(Conv::Group(3), Some(41)),
            json!({"msgid": 19, "conv": "g3", "limit": 20, "before": 41})
        );
        assert_eq!(
            read_request("u5", 12),
            json!({"msgid": 21, "conv": "u5", "pos": 12})
        );
    }

    #[test]
    fn device_names() {
        assert_eq!(parse_device("phone"), Ok("phone".into()));
        assert_eq!(parse_device(&"é".repeat(64)), Ok("é".repeat(64)));
        for bad in ["", "v1", "a\tb", "new\nline"] {
            assert!(parse_device(bad).is_err(), "{bad:?}");
        }
        assert!(parse_device(&"x".repeat(65)).is_err());
        assert_eq!(default_device(Some("box")), "chat-box");
        assert_eq!(default_device(Some("b\nox")), "chat-box");
        assert_eq!(default_device(None), "chat");
        assert_eq!(default_device(Some("")), "chat");
        let long = default_device(Some(&"h".repeat(300)));
        assert_eq!(long.chars().count(), 64);
        assert!(parse_device(&long).is_ok());
    }

    #[test]
    fn cids_are_unique_and_within_the_limit() {
        let mut cids = Cids::new("phone", 12345);
        let (a, b) = (cids.next(), cids.next());
        assert_eq!(a, "phone.9ix.1");
        assert_eq!(b, "phone.9ix.2");
        // Another run of the same device starts from another prefix.
        assert_ne!(Cids::new("phone", 12346).next(), a);
        // The longest device and run number still fit, with room for the largest counter.
        let mut cids = Cids::new(&"é".repeat(64), u64::MAX);
        cids.next = u64::MAX - 1;
        let longest = cids.next();
        assert!(longest.chars().count() <= 64, "{longest}");
        assert!(
            longest.ends_with(&format!(".{}", u64::MAX - 1)),
            "{longest}"
        );
    }

    #[test]
    fn friend_commands() {
        assert_eq!(Command::parse("friends"), Ok(Command::Friends));
        assert_eq!(
            Command::parse("request:2:hi, it's bob: from work"),
            Ok(Command::FriendRequest {
                to: 2,
                text: Some("hi, it's bob: from work".into())
            })
        );
        assert_eq!(
            Command::parse("request: 2 "),
            Ok(Command::FriendRequest { to: 2, text: None })
        );
        assert_eq!(
            Command::parse("request:2:"),
            Ok(Command::FriendRequest {
                to: 2,
                text: Some(String::new())
            })
        );
        assert_eq!(
            Command::parse("accept:5"),
            Ok(Command::FriendAnswer {
                from: 5,
                accept: true
            })
        );
        assert_eq!(
            Command::parse("decline: 5"),
            Ok(Command::FriendAnswer {
                from: 5,
                accept: false
            })
        );
        assert_eq!(Command::parse("remove:7"), Ok(Command::Unfriend(7)));
        assert_eq!(
            Command::parse("block:9"),
            Ok(Command::Block { id: 9, block: true })
        );
        assert_eq!(
            Command::parse("unblock:9"),
            Ok(Command::Block {
                id: 9,
                block: false
            })
        );
        // A name is looked up byte for byte, colons and spaces included.
        assert_eq!(
            Command::parse("find:bob"),
            Ok(Command::FindUser("bob".into()))
        );
        assert_eq!(
            Command::parse("find:a:b c"),
            Ok(Command::FindUser("a:b c".into()))
        );
    }

    #[test]
    fn friend_commands_refuse_bad_forms() {
        for (line, err) in [
            ("request", "usage: request:ID:TEXT"),
            ("accept", "usage: accept:ID"),
            ("decline", "usage: decline:ID"),
            ("remove", "usage: remove:ID"),
            ("block", "usage: block:ID"),
            ("unblock", "usage: unblock:ID"),
            ("find", "usage: find:NAME"),
            ("find:", "usage: find:NAME"),
        ] {
            assert_eq!(Command::parse(line), Err(err.into()), "{line}");
        }
        for line in [
            "request:bob:hi",
            "request:0",
            "accept:",
            "decline:x",
            "remove:-1",
            "block:1.5",
            "unblock:2147483648",
        ] {
            let err = Command::parse(line).unwrap_err();
            assert!(err.starts_with("invalid id"), "{line}: {err}");
        }
        let long = format!("request:2:{}", "é".repeat(201));
        assert_eq!(
            Command::parse(&long),
            Err("a friend request's text has at most 200 characters, not 201".into())
        );
        assert!(Command::parse(&format!("request:2:{}", "é".repeat(200))).is_ok());
    }

    #[test]
    fn group_commands() {
        assert_eq!(Command::parse("members:3"), Ok(Command::Members(3)));
        assert_eq!(Command::parse("leave: 3"), Ok(Command::Leave(3)));
        assert_eq!(Command::parse("dissolve:3"), Ok(Command::Dissolve(3)));
        assert_eq!(
            Command::parse("kick:3:2"),
            Ok(Command::Kick { group: 3, id: 2 })
        );
        assert_eq!(
            Command::parse("unban:3:2"),
            Ok(Command::Unban { group: 3, id: 2 })
        );
        for (role, parsed) in [
            ("creator", Role::Creator),
            ("admin", Role::Admin),
            (" normal ", Role::Normal),
        ] {
            assert_eq!(
                Command::parse(&format!("role:3:2:{role}")),
                Ok(Command::SetRole {
                    group: 3,
                    id: 2,
                    role: parsed
                })
            );
        }
        assert_eq!(
            Command::parse("rename:3:rust: the language"),
            Ok(Command::Rename {
                group: 3,
                name: "rust: the language".into()
            })
        );
        assert_eq!(
            Command::parse("desc:3:all things rust: news, help"),
            Ok(Command::Describe {
                group: 3,
                desc: "all things rust: news, help".into()
            })
        );
        // An empty description clears it.
        assert_eq!(
            Command::parse("desc:3:"),
            Ok(Command::Describe {
                group: 3,
                desc: String::new()
            })
        );
        assert_eq!(Command::parse("password"), Ok(Command::Password));
    }

    #[test]
    fn group_commands_refuse_bad_forms() {
        for (line, err) in [
            ("members", "usage: members:G"),
            ("leave", "usage: leave:G"),
            ("dissolve", "usage: dissolve:G"),
            ("kick:3", "usage: kick:G:ID"),
            ("unban:3", "usage: unban:G:ID"),
            ("kick", "usage: kick:G:ID"),
            ("role:3:2", "usage: role:G:ID:ROLE"),
            ("role:3", "usage: role:G:ID:ROLE"),
            ("rename:3", "usage: rename:G:NAME"),
            ("desc:3", "usage: desc:G:TEXT"),
        ] {
            assert_eq!(Command::parse(line), Err(err.into()), "{line}");
        }
        for line in [
            "members:devs",
            "leave:0",
            "dissolve:",
            "kick:x:2",
            "kick:3:bob",
            "role:3:x:admin",
            "rename::devs",
            "desc:g3:text",
        ] {
            let err = Command::parse(line).unwrap_err();
            assert!(err.starts_with("invalid id"), "{line}: {err}");
        }
        for role in ["owner", "Admin", "", "admin:x"] {
            assert_eq!(
                Command::parse(&format!("role:3:2:{role}")),
                Err(format!(
                    "invalid role '{}': expected creator, admin or normal",
                    role.trim()
                )),
                "{role}"
            );
        }
    }

    #[test]
    fn people_and_group_requests() {
        let cases = [
            (Command::Friends, json!({"msgid": 33})),
            (
                Command::FriendRequest {
                    to: 2,
                    text: Some("hi".into()),
                },
                json!({"msgid": 24, "friendid": 2, "text": "hi"}),
            ),
            (
                Command::FriendRequest { to: 2, text: None },
                json!({"msgid": 24, "friendid": 2}),
            ),
            (
                Command::FriendAnswer {
                    from: 5,
                    accept: true,
                },
                json!({"msgid": 27, "friendid": 5, "accept": true}),
            ),
            (
                Command::FriendAnswer {
                    from: 5,
                    accept: false,
                },
                json!({"msgid": 27, "friendid": 5, "accept": false}),
            ),
            (Command::Unfriend(7), json!({"msgid": 29, "friendid": 7})),
            (
                Command::Block { id: 9, block: true },
                json!({"msgid": 31, "id": 9, "block": true}),
            ),
            (
                Command::Block {
                    id: 9,
                    block: false,
                },
                json!({"msgid": 31, "id": 9, "block": false}),
            ),
            (
                Command::FindUser("bob".into()),
                json!({"msgid": 35, "name": "bob"}),
            ),
            (Command::Members(3), json!({"msgid": 47, "groupid": 3})),
            (Command::Leave(3), json!({"msgid": 37, "groupid": 3})),
            (
                Command::Kick { group: 3, id: 2 },
                json!({"msgid": 39, "groupid": 3, "id": 2}),
            ),
            (
                Command::SetRole {
                    group: 3,
                    id: 2,
                    role: Role::Admin,
                },
                json!({"msgid": 41, "groupid": 3, "id": 2, "role": "admin"}),
            ),
            (
                Command::Rename {
                    group: 3,
                    name: "devs".into(),
                },
                json!({"msgid": 43, "groupid": 3, "groupname": "devs"}),
            ),
            (
                Command::Describe {
                    group: 3,
                    desc: String::new(),
                },
                json!({"msgid": 43, "groupid": 3, "groupdesc": ""}),
            ),
            (Command::Dissolve(3), json!({"msgid": 45, "groupid": 3})),
        ];
        for (command, frame) in cases {
            assert_eq!(command.request(), Some(frame), "{command:?}");
        }
        // The passwords are asked for after the command line, never typed on it.
        assert_eq!(Command::Password.request(), None);
        assert_eq!(
            password_request("old pw", "new pw"),
            json!({"msgid": 52, "old": "old pw", "new": "new pw"})
        );
        assert!(Command::Friends.is_query() && Command::Members(3).is_query());
        assert!(!Command::Leave(3).is_query() && !Command::Unfriend(2).is_query());
    }

    #[test]
    fn typing_is_noticed_in_the_text_of_a_message() {
        assert_eq!(typing_conv("chat:5:", 7), Some(Conv::User(5)));
        assert_eq!(typing_conv("chat:5:hel", 10), Some(Conv::User(5)));
        assert_eq!(typing_conv("groupchat: 3 :hi", 14), Some(Conv::Group(3)));
        // Still typing the command, or the cursor back in it.
        assert_eq!(typing_conv("chat:5", 6), None);
        assert_eq!(typing_conv("chat:5:hello", 5), None);
        assert_eq!(typing_conv("chat:x:hello", 12), None);
        assert_eq!(typing_conv("request:5:hello", 15), None);
        assert_eq!(typing_conv("hello", 5), None);
        assert_eq!(
            typing_request(Conv::Group(3)),
            json!({"msgid": 51, "conv": "g3"})
        );
    }

    #[test]
    fn typing_goes_out_once_then_every_few_seconds() {
        let start = Instant::now();
        let mut notice = TypingNotice::default();
        assert!(notice.due(Conv::User(5), start));
        assert!(!notice.due(Conv::User(5), start + Duration::from_secs(1)));
        assert!(!notice.due(Conv::User(5), start + Duration::from_millis(4999)));
        assert!(notice.due(Conv::User(5), start + TYPING_EVERY));
        // Another conversation is news at once.
        assert!(notice.due(Conv::Group(3), start + TYPING_EVERY));
        assert!(notice.due(Conv::User(5), start + TYPING_EVERY));
    }
}
