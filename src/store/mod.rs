//! Persistent state: users, presence, friendships, groups, the message log and resume tokens.
//!
//! One trait per area ([`Accounts`], [`Presence`], [`Social`], [`Groups`], [`Log`], [`Tokens`]), together
//! [`Store`], with two implementations: MySQL/MariaDB through an r2d2 pool ([`mysql`]), shared by
//! every node of a cluster, and the embedded SQLite default ([`sqlite`]) for a node that runs alone. Every
//! statement is prepared with bound parameters. Every method that changes something has committed when it
//! returns `Ok`, so a success reply is only sent for what every node can already see.
//!
//! Presence lives here too, so that "already logged in anywhere in the cluster" needs no other service: a
//! `device` row names the node that holds each logged-in device, and each node refreshes a heartbeat row.
//! A device counts as online only while its node's heartbeat is fresh, so a node killed with -9 stops
//! holding its users once its heartbeat goes stale. The schema comes as versioned migrations
//! ([`migrate`]).

pub mod batch;
mod checkpoint;
pub mod migrate;
pub mod mysql;
pub mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{
    Contact, Conv, Group, LogMessage, Member, Members, Page, Pos, Relation, Requests, Role,
    Summary, UserRecord,
};
use crate::model::{GroupId, UserId};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken (user or group name).
    #[error("name already taken")]
    Conflict,
    /// The user or group referred to does not exist.
    #[error("no such user or group")]
    NotFound,
    /// The database could not be reached or failed; nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost a conflict with another one (a deadlock) and was rolled back; trying again
    /// is expected to work. Stores retry these themselves before giving up with this error.
    #[error("storage busy: {0}")]
    Busy(String),
}

/// Result of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A message to append to the log.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conv: Conv,
    pub sender: UserId,
    pub cid: Option<String>,
    pub time: String,
    pub text: String,
    /// Recipients known to have no device online: the message is recorded offline for them in the same
    /// transaction.
    pub offline: Vec<UserId>,
    /// What must hold when the message commits, checked in the commit's own transaction, so that a block
    /// or a kick acknowledged on any node a moment ago is in force.
    pub require: Require,
}

/// A condition on appending a message, which the service chooses and the store checks at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// Nothing (a message to oneself, or one converted from the old offline list).
    Nothing,
    /// The one-to-one peer does not block the sender.
    NotBlocked,
    /// The sender is a member of the group.
    Member,
}

/// Why a message was not appended: its [`Require`] did not hold at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer blocks the sender.
    Blocked,
    /// The group does not exist (any more).
    NoGroup,
    /// The sender is not a member of the group (any more).
    NotMember,
}

/// Where a message went: committed, or refused by its condition.
pub type Appended = std::result::Result<Committed, Refusal>;

/// Where the log put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub conv: Conv,
    pub pos: Pos,
    pub ts: i64,
    /// The sender had already committed a message with this `cid`: nothing was appended, and this is
    /// where the first one is.
    pub duplicate: bool,
    /// For a group message, the version of the member list its commit saw ([`Members::version`]).
    pub members_version: i64,
}

/// A message recorded as offline for `user`: it reached none of their devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub user: UserId,
    pub conv: Conv,
    pub pos: Pos,
}

/// How a device's claim on presence went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The device is logged in now; `first` when the user had no other device online.
    Claimed { first: bool },
    /// This device of the user is logged in already, on a live node.
    DeviceInUse,
    /// The user has as many devices online as allowed.
    TooMany,
}

/// Users: created once, never renamed or deleted.
pub trait Accounts: Send + Sync {
    /// Creates a user; [`StoreError::Conflict`] when the name is taken.
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId>;

    /// Looks a user up by id.
    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>>;

    /// The id of the user with exactly this name.
    fn find_user_by_name(&self, name: &str) -> Result<Option<UserId>>;

    /// Replaces the user's password hash and revokes every resume token of theirs, in one transaction.
    fn change_password(&self, user: UserId, password_hash: &str) -> Result<()>;
}

/// Who is online where: one row per logged-in device, held by a node whose heartbeat keeps it alive.
pub trait Presence: Send + Sync {
    /// Logs `device` of `user` in on `node`, unless that device is online on a live node already or the
    /// user has `max_devices` online.
    fn claim_device(
        &self,
        user: UserId,
        device: &str,
        node: &str,
        max_devices: usize,
    ) -> Result<Claim>;

    /// Logs `device` of `user` out, if `node` still holds it; returns whether the user has no device
    /// online any more.
    fn release_device(&self, user: UserId, device: &str, node: &str) -> Result<bool>;

    /// Records that `node` is alive now; called at start and then periodically.
    fn heartbeat(&self, node: &str) -> Result<()>;

    /// Logs out every device held by `node`: at start (devices left over from a previous life of the
    /// same node) and at shutdown.
    fn release_node(&self, node: &str) -> Result<()>;

    /// Logs out the devices of nodes whose heartbeat went stale (killed, or cut off), and returns the users
    /// who have no device online any more. Each such device is reaped by one node only.
    fn reap_stale(&self) -> Result<Vec<UserId>>;
}

/// Friendships, friend requests and blocks. The service decides what is allowed; these only store.
pub trait Social: Send + Sync {
    /// Makes `a` and `b` friends of each other and drops pending requests between them; idempotent.
    /// [`StoreError::NotFound`] if `b` does not exist.
    fn add_friend(&self, a: UserId, b: UserId) -> Result<()>;

    /// The user's friends with their presence, by id.
    fn friends(&self, user: UserId) -> Result<Vec<Contact>>;

    /// How `a` stands towards `b`; `None` if `b` does not exist.
    fn relation(&self, a: UserId, b: UserId) -> Result<Option<Relation>>;

    /// Records `from`'s request to `to` (an existing one is kept as it is).
    fn request_friend(&self, from: UserId, to: UserId, text: &str) -> Result<()>;

    /// Turns `from`'s pending request to `to` into a friendship; `false` when there was none.
    fn accept_request(&self, from: UserId, to: UserId) -> Result<bool>;

    /// Drops `from`'s pending request to `to`; `false` when there was none.
    fn decline_request(&self, from: UserId, to: UserId) -> Result<bool>;

    /// Ends the friendship of `a` and `b` and drops requests between them; whether anything was there.
    fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool>;

    /// Makes `a` block `b` (which ends their friendship and drops requests between them), or unblock.
    fn set_block(&self, a: UserId, b: UserId, block: bool) -> Result<()>;

    /// The requests waiting on `user`: those made to them and those they made, by id.
    fn requests(&self, user: UserId) -> Result<Requests>;

    /// The users `user` blocks, with their names, by id.
    fn blocked(&self, user: UserId) -> Result<Vec<(UserId, String)>>;

    /// The users who block `user`.
    fn blockers_of(&self, user: UserId) -> Result<Vec<UserId>>;
}

/// What a change of group settings sets; `None` keeps the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupUpdate<'a> {
    pub name: Option<&'a str>,
    pub desc: Option<&'a str>,
}

/// What [`Groups::join_group`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The user is a member now.
    Now,
    /// The user was a member already: nothing changed.
    Already,
    /// The user was kicked from the group and not let back: nothing changed.
    Banned,
}

/// How a member leaves a group ([`Groups::remove_member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// By themselves (GROUP_LEAVE): they may join again.
    Left,
    /// Removed by the creator or an admin (GROUP_KICK): banned until let back.
    Kicked,
}

/// Groups and their members.
pub trait Groups: Send + Sync {
    /// Creates a group with `creator` as its creator; [`StoreError::Conflict`] when the name is taken.
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId>;

    /// Adds `user` to `group` as a normal member, unless they are one already (a creator stays creator)
    /// or were kicked and not let back since ([`Groups::unban`]): checked in the join's transaction, so a
    /// kick committing at the same moment cannot be overtaken. [`StoreError::NotFound`] if the group does
    /// not exist.
    fn join_group(&self, group: GroupId, user: UserId) -> Result<Joined>;

    /// The groups `user` belongs to, each with all its members and their presence.
    fn groups_of(&self, user: UserId) -> Result<Vec<Group>>;

    /// One group with its members and their presence, or `None` if it does not exist.
    fn group_info(&self, group: GroupId) -> Result<Option<Group>>;

    /// The members of `group` with their roles, or `None` if it does not exist.
    fn group_members(&self, group: GroupId) -> Result<Option<Members>>;

    /// Gives members their roles, in one transaction (a hand-over changes two), if the group's member
    /// list is still at `version`, the one the caller decided on, and moves the version on; `false`,
    /// changing nothing, when the list has moved meanwhile (a member left, was removed or changed role:
    /// deciding again may come out otherwise, and two hand-overs at once must not make two creators).
    fn set_roles(&self, group: GroupId, version: i64, roles: &[(UserId, Role)]) -> Result<bool>;

    /// Removes `user` from `group`; `false`, changing nothing, when they were not a member. A kick also
    /// bans them from joining again, in the same transaction.
    fn remove_member(&self, group: GroupId, user: UserId, how: Removal) -> Result<bool>;

    /// Lets a kicked user join `group` again; `false` when they were not banned from it.
    fn unban(&self, group: GroupId, user: UserId) -> Result<bool>;

    /// The users banned from `group` (kicked and not let back), with their names, by id.
    fn bans(&self, group: GroupId) -> Result<Vec<(UserId, String)>>;

    /// Renames the group or changes its description; [`StoreError::Conflict`] when another group has
    /// the name.
    fn update_group(&self, group: GroupId, update: GroupUpdate) -> Result<()>;

    /// Deletes the group with its members, its log, its read positions and offline pointers.
    fn dissolve_group(&self, group: GroupId) -> Result<()>;
}

/// The message log: every chat message with its position, read positions, and the offline list that
/// points into it.
pub trait Log: Send + Sync {
    /// Appends messages in one transaction, in order, each at the next position of its conversation
    /// (consecutive and distinct even when several nodes append at once), records them offline for their
    /// `offline` recipients and moves each sender's read position to their message. A message whose
    /// sender already committed its `cid` is not appended again: its [`Committed`] is the first one's.
    /// A message whose [`Require`] does not hold is not appended: its [`Refusal`] says why.
    fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>>;

    /// Records messages as offline for users (they reached none of their devices), in one transaction.
    fn store_offline(&self, pointers: &[Pointer]) -> Result<()>;

    /// Removes and returns up to `limit` of the user's offline messages, oldest first; fewer only when
    /// the list has no more, or (rarely, on SQLite, which takes the list a page at a time) when storage
    /// failed after a page was taken: the rest then stays listed for the next fetch. Two takers of one
    /// user's list never get the same message.
    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>>;

    /// Every one-to-one conversation of `user` with a message, and every group they are in, unsorted.
    fn conversations(&self, user: UserId) -> Result<Vec<Summary>>;

    /// Up to `limit` messages of `conv` in ascending position, and whether more exist in the direction
    /// asked.
    fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)>;

    /// Moves `user`'s read position in `conv` forward to `pos`, never past the last message; returns the
    /// position now in force and whether it moved.
    fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)>;

    /// What the log's index holds in memory, where it is kept there (the embedded store), for the
    /// metrics page: it grows with the log and is read back whole at every start.
    fn indexed(&self) -> Option<Indexed> {
        None
    }
}

/// The size of an index in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed {
    pub messages: usize,
    pub conversations: usize,
}

/// Resume tokens (v2), one per device.
pub trait Tokens: Send + Sync {
    /// Saves the hash of the device's resume token, replacing any earlier one.
    fn save_token(&self, user: UserId, device: &str, hash: &[u8]) -> Result<()>;

    /// The hash of the device's resume token, unless none was issued or it is older than [`TOKEN_TTL`].
    fn token_hash(&self, user: UserId, device: &str) -> Result<Option<Vec<u8>>>;

    /// Revokes the device's resume token.
    fn revoke_token(&self, user: UserId, device: &str) -> Result<()>;
}

/// Everything the services need from persistent storage, by area. Implementations are blocking and
/// thread-safe.
pub trait Store: Accounts + Presence + Social + Groups + Log + Tokens {}

impl<T: Accounts + Presence + Social + Groups + Log + Tokens> Store for T {}

/// How long a resume token stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a node's heartbeat stays fresh; presence claimed by a node older than this is void.
pub const LIVENESS: Duration = Duration::from_secs(8);

/// How often a node refreshes its heartbeat; well inside [`LIVENESS`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Opens the store a `--database` URL names and creates missing tables.
pub fn open(url: &str, pool_size: u32) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::SqliteStore::open(path, pool_size)?))
    } else if url.starts_with("mysql://") {
        Ok(Arc::new(mysql::MysqlStore::open(url, pool_size)?))
    } else {
        anyhow::bail!(
            "unsupported database URL {url:?}: use sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB"
        )
    }
}

/// A group row: id, name, description.
type GroupRow = (GroupId, String, String);
/// A member row: group id, user id, user name, online, role column.
type MemberRow = (GroupId, UserId, String, bool, String);

/// Joins group rows with member rows (both ordered by group id) into groups with their members.
fn assemble_groups(groups: Vec<GroupRow>, members: Vec<MemberRow>) -> Vec<Group> {
    let mut members = members.into_iter().peekable();
    groups
        .into_iter()
        .map(|(id, name, desc)| {
            let mut group = Group {
                id,
                name,
                desc,
                members: Vec::new(),
            };
            // Rows of groups not listed (joined between the two queries) are skipped.
            while let Some((group_id, user, name, online, role)) =
                members.next_if(|(group_id, ..)| *group_id <= id)
            {
                if group_id == id {
                    group.members.push(Member {
                        contact: Contact {
                            id: user,
                            name,
                            online,
                        },
                        role: Role::from_column(&role),
                    });
                }
            }
            group
        })
        .collect()
}

/// Milliseconds since the Unix epoch, by this node's clock: the `ts` of messages it commits.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Shapes up to `limit + 1` rows read for `page` (newest first for [`Page::Latest`] and [`Page::Before`],
/// oldest first for [`Page::After`]) into at most `limit` messages in ascending position, and whether
/// more exist in the direction asked.
fn page_out(rows: &mut Vec<LogMessage>, page: Page, limit: usize) -> (Vec<LogMessage>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let mut messages = std::mem::take(rows);
    if !matches!(page, Page::After(_)) {
        messages.reverse();
    }
    (messages, more)
}
