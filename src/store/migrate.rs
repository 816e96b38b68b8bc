//! Versioned schema migrations, applied at start by both stores.
//!
//! Each migration has a number and a script for each store that it changes (`sql/sqlite/`,
//! `sql/mysql/`). The table `schema_version` records what a database has; a store applies every later
//! migration in order at start. Migration 1 is the original schema, written so that a database made
//! before migrations existed takes it as a no-op. Migration 2 renames the old offline list of rendered frames to
//! `offline_legacy`; once every migration is applied, a store turns those frames into log messages
//! ([`legacy_messages`] reads them back) with the append of the current schema, then drops the table.

use std::collections::HashMap;

use serde_json::Value;

use super::{NewMessage, Require};
use crate::model::{Conv, UserId};

/// One migration: its number and its script for each store.
pub struct Migration {
    pub version: u32,
    /// `None` when the migration changes nothing on SQLite (it is still recorded as applied).
    pub sqlite: Option<&'static str>,
    /// `None` when the migration changes nothing on MySQL (it is still recorded as applied).
    pub mysql: Option<&'static str>,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: Some(include_str!("../../sql/sqlite/001_base.sql")),
        mysql: Some(include_str!("../../sql/mysql/001_base.sql")),
    },
    Migration {
        version: 2,
        sqlite: Some(include_str!("../../sql/sqlite/002_log.sql")),
        mysql: Some(include_str!("../../sql/mysql/002_log.sql")),
    },
    Migration {
        version: 3,
        sqlite: Some(include_str!("../../sql/sqlite/003_people.sql")),
        mysql: Some(include_str!("../../sql/mysql/003_people.sql")),
    },
    Migration {
        version: 4,
        sqlite: Some(include_str!("../../sql/sqlite/004_reads.sql")),
        mysql: Some(include_str!("../../sql/mysql/004_reads.sql")),
    },
    Migration {
        version: 5,
        sqlite: Some(include_str!("../../sql/sqlite/005_sequence.sql")),
        // SQLite's one writer gives out positions from memory and indexes them later; MySQL's nodes
        // append concurrently, each taking a conversation's next position from its row under the row's
        // lock, so `message` stays keyed by (conv, pos) there.
        mysql: None,
    },
    Migration {
        version: 6,
        sqlite: Some(include_str!("../../sql/sqlite/006_bans.sql")),
        mysql: Some(include_str!("../../sql/mysql/006_bans.sql")),
    },
    Migration {
        version: 7,
        // A commit on SQLite happened or returned an error, so a retried offline record never finds
        // its first attempt there (the script says why MySQL needs the key).
        sqlite: None,
        mysql: Some(include_str!("../../sql/mysql/007_offline_once.sql")),
    },
    Migration {
        version: 8,
        sqlite: Some(include_str!("../../sql/sqlite/008_chunks.sql")),
        // MySQL's nodes append concurrently and share the database: its log keeps a row per message,
        // found by its key, and its conversation rows.
        mysql: None,
    },
];

/// The statements of a script: comment lines dropped, then split at `;`.
pub fn statements(script: &str) -> Vec<String> {
    let code: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The log messages that old offline rows `(id, recipient, frame)` stood for, in the order of the rows,
/// each recorded offline for its recipients. One group message was stored once per offline member: a
/// group frame joins the earliest message with the same frame that does not have its recipient yet, so
/// that two identical messages (same text, same second) stay two. A frame that cannot be read is skipped
/// (and logged): it could not have been shown either.
pub fn legacy_messages(rows: &[(i64, UserId, String)]) -> Vec<NewMessage> {
    let mut messages: Vec<NewMessage> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (id, to, frame) in rows {
        let Some(message) = legacy_message(*to, frame) else {
            tracing::warn!(
                row = id,
                "skipping an old offline frame that is not a chat frame"
            );
            continue;
        };
        if let Conv::Group(_) = message.conv {
            let same = groups.entry(frame).or_default();
            if let Some(&at) = same.iter().find(|&&at| !messages[at].offline.contains(to)) {
                messages[at].offline.push(*to);
                continue;
            }
            same.push(messages.len());
        }
        messages.push(message);
    }
    messages
}

fn legacy_message(to: UserId, frame: &str) -> Option<NewMessage> {
    let v: Value = serde_json::from_str(frame).ok()?;
    let id = |key: &str| {
        v.get(key)
            .and_then(Value::as_i64)
            .and_then(|n| UserId::try_from(n).ok())
    };
    let sender = id("id")?;
    let conv = match (id("toid"), id("groupid")) {
        (Some(peer), None) => Conv::direct(sender, peer),
        (None, Some(group)) => Conv::Group(group),
        _ => return None,
    };
    Some(NewMessage {
        conv,
        sender,
        cid: None,
        time: v.get("time")?.as_str()?.to_owned(),
        text: v.get("msg")?.as_str()?.to_owned(),
        offline: vec![to],
        require: Require::Nothing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_scripts_split() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.sqlite.is_none_or(|sql| !statements(sql).is_empty()));
            assert!(m.mysql.is_none_or(|sql| !statements(sql).is_empty()));
        }
    }

    #[test]
    fn group_frames_stored_per_member_become_one_message() {
        let g = r#"{"groupid":3,"id":1,"msg":"hi","msgid":10,"name":"a","time":"t"}"#;
        let d = r#"{"id":1,"msg":"yo","msgid":6,"name":"a","time":"t","toid":2}"#;
        let rows = vec![
            (1, 2, g.to_owned()),
            (2, 2, d.to_owned()),
            (3, 4, g.to_owned()),
            (4, 4, "not json".to_owned()),
            (5, 2, g.to_owned()),
            (6, 4, g.to_owned()),
        ];
        let messages = legacy_messages(&rows);
        assert_eq!(
            messages.len(),
            3,
            "the same group frame twice is two messages"
        );
        assert_eq!(messages[0].conv, Conv::Group(3));
        assert_eq!(messages[0].offline, vec![2, 4]);
        assert_eq!(messages[1].conv, Conv::direct(1, 2));
        assert_eq!(messages[1].text, "yo");
        assert_eq!(messages[2].offline, vec![2, 4]);
    }
}
