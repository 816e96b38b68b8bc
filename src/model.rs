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

/// A member's role in a group, in rank order: the creator owns it, admins help run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Normal,
    Admin,
    Creator,
}

impl Role {
    /// The spelling of the `grouprole` column and of the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Admin => "admin",
            Role::Normal => "normal",
        }
    }

    /// A role by its spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "creator" => Some(Role::Creator),
            "admin" => Some(Role::Admin),
            "normal" => Some(Role::Normal),
            _ => None,
        }
    }

    /// Parses the column value; anything unknown is an ordinary member.
    pub fn from_column(s: &str) -> Role {
        Role::parse(s).unwrap_or(Role::Normal)
    }
}

/// The members of a group with their roles, and the version of that list: every change of membership
/// bumps it in the same transaction, so a cached list can be checked against what a commit saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    pub version: i64,
    pub list: Vec<(UserId, Role)>,
}

impl Members {
    /// The role of `user`, or `None` when they are not a member.
    pub fn role_of(&self, user: UserId) -> Option<Role> {
        self.list.iter().find(|(u, _)| *u == user).map(|(_, r)| *r)
    }

    /// Whether `user` is a member.
    pub fn contains(&self, user: UserId) -> bool {
        self.role_of(user).is_some()
    }

    /// The member ids.
    pub fn ids(&self) -> impl Iterator<Item = UserId> + '_ {
        self.list.iter().map(|(u, _)| *u)
    }
}

/// How one user stands towards another, from the first one's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relation {
    pub friends: bool,
    /// A friend request from me to them is pending.
    pub i_asked: bool,
    /// A friend request from them to me is pending.
    pub they_asked: bool,
    pub i_block: bool,
    pub they_block: bool,
}

/// A pending friend request, as the other side's lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The other user (the requester in `incoming`, the one asked in `outgoing`).
    pub id: UserId,
    pub name: String,
    pub text: String,
}

/// The friend requests waiting on a user, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requests {
    pub incoming: Vec<Request>,
    pub outgoing: Vec<Request>,
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

/// A position in a conversation's log: 1, 2, 3, … without gaps, assigned at commit.
pub type Pos = i64;

/// A conversation: two users (in either order; a user with themselves too), or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// One-to-one, `lo <= hi`, so both participants name the same conversation.
    Direct {
        lo: UserId,
        hi: UserId,
    },
    Group(GroupId),
}

/// 2^31: every id is below it, so a pair of ids packs into one key.
const ID_SPAN: i64 = 1 << 31;

impl Conv {
    /// The one-to-one conversation of `a` and `b`.
    pub fn direct(a: UserId, b: UserId) -> Conv {
        Conv::Direct {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    /// The conversation's key in storage: positive for a pair of users, negative for a group, so that
    /// one integer column and one index serve both.
    pub fn key(self) -> i64 {
        match self {
            Conv::Direct { lo, hi } => i64::from(lo) * ID_SPAN + i64::from(hi),
            Conv::Group(g) => -i64::from(g),
        }
    }

    /// The conversation a storage key names.
    pub fn from_key(key: i64) -> Option<Conv> {
        let id = |v: i64| UserId::try_from(v).ok().filter(|&v| v > 0);
        if key < 0 {
            return Some(Conv::Group(id(-key)?));
        }
        let (lo, hi) = (id(key / ID_SPAN)?, id(key % ID_SPAN)?);
        (lo <= hi).then_some(Conv::Direct { lo, hi })
    }

    /// The two users of a one-to-one conversation, `(lo, hi)`; `None` for a group.
    pub fn users(self) -> Option<(UserId, UserId)> {
        match self {
            Conv::Direct { lo, hi } => Some((lo, hi)),
            Conv::Group(_) => None,
        }
    }

    /// Which of a one-to-one conversation's two read positions are `user`'s, as `[lo's, hi's]` (both for a
    /// chat with oneself, neither for someone else); neither for a group, whose read positions are kept
    /// per member instead.
    pub fn read_sides(self, user: UserId) -> [bool; 2] {
        match self {
            Conv::Direct { lo, hi } => [lo == user, hi == user],
            Conv::Group(_) => [false, false],
        }
    }

    /// The keys of the one-to-one conversations in which `user` is the lower id: a range, since the
    /// lower id is the key's upper part.
    pub fn keys_led_by(user: UserId) -> (i64, i64) {
        let first = i64::from(user) * ID_SPAN;
        (first, first + ID_SPAN - 1)
    }

    /// The other participant of a one-to-one conversation, as `viewer` sees it (themselves for a chat
    /// with themselves); `None` for a group or a conversation `viewer` is not in.
    pub fn peer_of(self, viewer: UserId) -> Option<UserId> {
        match self {
            Conv::Direct { lo, hi } if lo == viewer => Some(hi),
            Conv::Direct { lo, hi } if hi == viewer => Some(lo),
            _ => None,
        }
    }

    /// The conversation's name as `viewer` names it on the wire: `"u<peer>"` or `"g<group>"`.
    pub fn name_for(self, viewer: UserId) -> String {
        match self {
            Conv::Group(g) => format!("g{g}"),
            direct => format!("u{}", direct.peer_of(viewer).unwrap_or(viewer)),
        }
    }
}

/// One message of the log, as history, offline lists and live delivery show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    pub conv: Conv,
    pub pos: Pos,
    /// Commit time, milliseconds since the Unix epoch.
    pub ts: i64,
    pub sender: UserId,
    pub sender_name: String,
    /// The sender's own id for the message, when they gave one.
    pub cid: Option<String>,
    /// The sender's `time` field (or the server's local time when they sent none).
    pub time: String,
    pub text: String,
}

/// A conversation as CONVERSATIONS lists it for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub conv: Conv,
    /// The peer's name or the group's name.
    pub name: String,
    pub last: Pos,
    pub read: Pos,
    /// The peer's read position in a one-to-one conversation (one's own in the chat with oneself);
    /// `None` for a group, where read positions are private.
    pub peer_read: Option<Pos>,
    /// The commit time of the last message; 0 without messages.
    pub last_ts: i64,
}

/// Which end of a conversation's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages before this position (exclusive).
    Before(Pos),
    /// Messages after this position (exclusive).
    After(Pos),
}
