//! The commands a logged-in user types, parsed into requests. Parsing is separate from sending so the
//! command syntax is tested without a server. Also the names this client gives itself on the wire: the
//! device it logs in as and the `cid` of each message it sends.

use std::fmt;

use clusterchat::model::{GroupId, UserId};
use clusterchat::protocol::msgid;
use serde_json::{Value, json};

/// How many messages one `history:` page asks for.
pub const HISTORY_PAGE: usize = 20;

/// Every command with its format and what it does, in the order `help` lists them.
pub const COMMANDS: [(&str, &str, &str); 9] = [
    ("help", "help", "show this list"),
    (
        "chat",
        "chat:ID:TEXT",
        "send TEXT to the user ID (resent after a reconnect until the server confirms it)",
    ),
    ("addfriend", "addfriend:ID", "add the user ID as a friend"),
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
        "conversations",
        "conversations",
        "list your conversations with their unread counts",
    ),
    (
        "history",
        "history:CONV",
        "show the latest messages of CONV (u5: with user 5, g3: group 3); again: the ones before",
    ),
    ("loginout", "loginout", "log out and go back to the menu"),
];

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Chat { to: UserId, text: String },
    AddFriend(UserId),
    CreateGroup { name: String, desc: String },
    AddGroup(GroupId),
    GroupChat { group: GroupId, text: String },
    Conversations,
    History(Conv),
    Logout,
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
            _ => Err(format!(
                "unknown command '{name}', type help for the list of commands"
            )),
        }
    }

    /// The request frame this command sends, or `None` for a command answered locally (`help`). The
    /// sender's id and name are left out: the server takes them from the login, never from the frame.
    pub fn request(&self) -> Option<Value> {
        let frame = match self {
            Command::Help => return None,
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
        };
        Some(frame)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
