//! The domain: ids, and the records that storage returns and replies show. Storage, the bus and the
//! protocol all speak in these terms; none of them needs another for them.

/// A user id: positive and within a signed 32-bit integer, like the original's `INT` columns.
pub type UserId = i32;
/// A group id, same range as [`UserId`].
pub type GroupId = i32;

/// A user as stored, with the argon2 PHC string of their password.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub name: String,
    pub password_hash: String,
}

/// A friend or group member with their cluster-wide presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: UserId,
    pub name: String,
    pub online: bool,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Creator,
    Normal,
}

impl Role {
    /// The spelling of the `grouprole` column and of the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Normal => "normal",
        }
    }

    /// Parses the column value; anything unknown is an ordinary member.
    pub fn from_column(s: &str) -> Role {
        if s == "creator" {
            Role::Creator
        } else {
            Role::Normal
        }
    }
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub contact: Contact,
    pub role: Role,
}

/// A group with all its members, as the login reply lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub desc: String,
    pub members: Vec<Member>,
}
