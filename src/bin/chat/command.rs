//! The commands a logged-in user types, parsed into requests. Parsing is separate from sending so the
//! command syntax is tested without a server.

use clusterchat::model::{GroupId, UserId};
use clusterchat::protocol::msgid;
use serde_json::{Value, json};

/// Every command with its format and what it does, in the order `help` lists them.
pub const COMMANDS: [(&str, &str, &str); 7] = [
    ("help", "help", "show this list"),
    ("chat", "chat:ID:TEXT", "send TEXT to the user ID"),
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
        "send TEXT to the members of group ID",
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
    Logout,
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
            Command::Logout => json!({"msgid": msgid::LOGOUT}),
        };
        Some(frame)
    }
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
}
