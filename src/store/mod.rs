//! Persistent state: users, friendships, groups, offline messages and presence.
//!
//! One [`Store`] trait, two implementations: MySQL/MariaDB through an r2d2 pool ([`mysql`]), shared by
//! every node of a cluster, and the embedded SQLite default ([`sqlite`]) for a node that runs alone. Every
//! statement is prepared with bound parameters. Every method that changes something has committed when it
//! returns `Ok`, so a success reply is only sent for what every node can already see.
//!
//! Presence lives here too, so that "already logged in anywhere in the cluster" needs no other service: a
//! user row holds `state` and the `node` that claimed it, and each node refreshes a heartbeat row. A user
//! counts as online only while their node's heartbeat is fresh, so a node killed with -9 stops holding its
//! users once its heartbeat goes stale.

pub mod batch;
pub mod mysql;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Contact, Group, Member, Role, UserRecord};
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

/// A chat frame waiting for a user who was not online.
#[derive(Debug, Clone)]
pub struct Offline {
    pub to: UserId,
    pub frame: Arc<str>,
}

/// Everything the services need from persistent storage. Implementations are blocking and thread-safe.
pub trait Store: Send + Sync {
    /// Creates a user; [`StoreError::Conflict`] when the name is taken.
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId>;

    /// Looks a user up by id.
    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>>;

    /// Marks `user` online on `node`, unless they are online on a live node already (`Ok(false)`).
    fn claim_presence(&self, user: UserId, node: &str) -> Result<bool>;

    /// Marks `user` offline, if `node` still holds them.
    fn release_presence(&self, user: UserId, node: &str) -> Result<()>;

    /// Records that `node` is alive now; called at start and then periodically.
    fn heartbeat(&self, node: &str) -> Result<()>;

    /// Marks every user held by `node` offline: at start (users left over from a previous life of the
    /// same node) and at shutdown.
    fn release_node(&self, node: &str) -> Result<()>;

    /// Makes `a` and `b` friends of each other; idempotent. [`StoreError::NotFound`] if `b` does not exist.
    fn add_friend(&self, a: UserId, b: UserId) -> Result<()>;

    /// The user's friends with their presence.
    fn friends(&self, user: UserId) -> Result<Vec<Contact>>;

    /// Creates a group with `creator` as its creator; [`StoreError::Conflict`] when the name is taken.
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId>;

    /// Adds `user` to `group` as a normal member; idempotent (a creator stays creator).
    /// [`StoreError::NotFound`] if the group does not exist.
    fn join_group(&self, group: GroupId, user: UserId) -> Result<()>;

    /// The groups `user` belongs to, each with all its members and their presence.
    fn groups_of(&self, user: UserId) -> Result<Vec<Group>>;

    /// The member ids of `group`, or `None` if it does not exist.
    fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>>;

    /// Stores chat frames for later delivery, in order, in one transaction. Frames for users that do not
    /// exist are skipped; returns how many were stored.
    fn store_offline(&self, messages: &[Offline]) -> Result<usize>;

    /// Stores several independent batches, in order, in as few transactions as the store can (the SQL
    /// stores use one); returns how many of each batch were stored. See [`batch::OfflineWriter`].
    fn store_offline_many(&self, batches: &[&[Offline]]) -> Result<Vec<usize>> {
        batches.iter().map(|b| self.store_offline(b)).collect()
    }

    /// Removes and returns up to `limit` of the user's stored frames, oldest first, in one transaction.
    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<String>>;

    /// Saves the hash of the user's resume token, replacing any earlier one.
    fn save_token(&self, user: UserId, hash: &[u8]) -> Result<()>;

    /// The hash of the user's resume token, unless none was issued or it is older than [`TOKEN_TTL`].
    fn token_hash(&self, user: UserId) -> Result<Option<Vec<u8>>>;

    /// Revokes the user's resume token.
    fn revoke_token(&self, user: UserId) -> Result<()>;
}

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
