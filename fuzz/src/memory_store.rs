//! An in-memory [`Store`]: the SQLite store's behaviour, table for table, in `HashMap`s and `BTreeMap`s
//! behind one mutex, so the dispatch fuzz target runs without a database file and can look at what was
//! stored.
//!
//! It follows `src/store/sqlite.rs` and `sql/sqlite.sql`: ids count up from 1 and are never reused (the
//! tables are `AUTOINCREMENT`); names are unique byte for byte; friendship is stored in both directions;
//! joining a group twice changes nothing and a creator stays creator; offline messages come back oldest
//! first and frames for users that do not exist are skipped; presence is a claim plus the claiming node's
//! heartbeat, fresh for [`LIVENESS`]; a resume token is one hash per user, void after [`TOKEN_TTL`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use clusterchat::model::{Contact, Group, Member, Role, UserRecord};
use clusterchat::model::{GroupId, UserId};
use clusterchat::store::{LIVENESS, Offline, Result, Store, StoreError, TOKEN_TTL};
use parking_lot::Mutex;

/// A user row.
#[derive(Debug, Clone)]
struct UserRow {
    name: String,
    password: String,
    /// The node holding the user's presence (`state = 'online'`), if any.
    node: Option<String>,
}

/// A group row.
#[derive(Debug, Clone)]
struct GroupRow {
    name: String,
    desc: String,
    /// Member id → role, ordered by member id.
    members: BTreeMap<UserId, Role>,
}

#[derive(Debug, Default)]
struct Tables {
    users: BTreeMap<UserId, UserRow>,
    last_user: UserId,
    /// (userid, friendid), both directions.
    friends: BTreeSet<(UserId, UserId)>,
    groups: BTreeMap<GroupId, GroupRow>,
    last_group: GroupId,
    /// (row id, user, frame), in row id order.
    offline: Vec<(u64, UserId, String)>,
    last_offline: u64,
    heartbeats: HashMap<String, Instant>,
    tokens: HashMap<UserId, (Vec<u8>, Instant)>,
}

impl Tables {
    fn fresh(&self, node: &str) -> bool {
        self.heartbeats
            .get(node)
            .is_some_and(|at| at.elapsed() <= LIVENESS)
    }

    fn online(&self, user: &UserRow) -> bool {
        user.node.as_deref().is_some_and(|node| self.fresh(node))
    }

    fn contact(&self, id: UserId) -> Option<Contact> {
        self.users.get(&id).map(|u| Contact {
            id,
            name: u.name.clone(),
            online: self.online(u),
        })
    }
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// Forgets everything, as a new database would.
    pub fn reset(&self) {
        *self.tables.lock() = Tables::default();
    }

    /// Every stored frame for `user`, oldest first, without removing them.
    pub fn stored_for(&self, user: UserId) -> Vec<String> {
        let t = self.tables.lock();
        t.offline
            .iter()
            .filter(|(_, to, _)| *to == user)
            .map(|(_, _, frame)| frame.clone())
            .collect()
    }

    /// How many frames are stored, for everyone.
    pub fn stored_count(&self) -> usize {
        self.tables.lock().offline.len()
    }

    /// The users whose presence is claimed by some node (`state = 'online'`, fresh heartbeat or not).
    pub fn claimed(&self) -> Vec<UserId> {
        let t = self.tables.lock();
        t.users
            .iter()
            .filter(|(_, u)| u.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Store for MemoryStore {
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let mut t = self.tables.lock();
        if t.users.values().any(|u| u.name == name) {
            return Err(StoreError::Conflict);
        }
        t.last_user += 1;
        let id = t.last_user;
        t.users.insert(
            id,
            UserRow {
                name: name.to_owned(),
                password: password_hash.to_owned(),
                node: None,
            },
        );
        Ok(id)
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>> {
        let t = self.tables.lock();
        Ok(t.users.get(&id).map(|u| UserRecord {
            id,
            name: u.name.clone(),
            password_hash: u.password.clone(),
        }))
    }

    fn claim_presence(&self, user: UserId, node: &str) -> Result<bool> {
        let mut t = self.tables.lock();
        let claimable = match t.users.get(&user) {
            None => false,
            // `state = 'offline' OR (node <> ?1 AND NOT EXISTS (a fresh heartbeat of user.node))`
            Some(row) => match &row.node {
                None => true,
                Some(holder) => holder != node && !t.fresh(holder),
            },
        };
        if claimable {
            t.users.get_mut(&user).expect("checked").node = Some(node.to_owned());
        }
        Ok(claimable)
    }

    fn release_presence(&self, user: UserId, node: &str) -> Result<()> {
        let mut t = self.tables.lock();
        if let Some(row) = t.users.get_mut(&user)
            && row.node.as_deref() == Some(node)
        {
            row.node = None;
        }
        Ok(())
    }

    fn heartbeat(&self, node: &str) -> Result<()> {
        self.tables
            .lock()
            .heartbeats
            .insert(node.to_owned(), Instant::now());
        Ok(())
    }

    fn release_node(&self, node: &str) -> Result<()> {
        let mut t = self.tables.lock();
        for row in t.users.values_mut() {
            if row.node.as_deref() == Some(node) {
                row.node = None;
            }
        }
        Ok(())
    }

    fn add_friend(&self, a: UserId, b: UserId) -> Result<()> {
        let mut t = self.tables.lock();
        if !t.users.contains_key(&b) {
            return Err(StoreError::NotFound);
        }
        t.friends.insert((a, b));
        t.friends.insert((b, a));
        Ok(())
    }

    fn friends(&self, user: UserId) -> Result<Vec<Contact>> {
        let t = self.tables.lock();
        // Ordered by friend id, as `ORDER BY u.id`; rows of users that do not exist drop out of the JOIN.
        Ok(t.friends
            .range((user, UserId::MIN)..=(user, UserId::MAX))
            .filter_map(|&(_, friend)| t.contact(friend))
            .collect())
    }

    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId> {
        let mut t = self.tables.lock();
        if t.groups.values().any(|g| g.name == name) {
            return Err(StoreError::Conflict);
        }
        t.last_group += 1;
        let id = t.last_group;
        t.groups.insert(
            id,
            GroupRow {
                name: name.to_owned(),
                desc: desc.to_owned(),
                members: BTreeMap::from([(creator, Role::Creator)]),
            },
        );
        Ok(id)
    }

    fn join_group(&self, group: GroupId, user: UserId) -> Result<()> {
        let mut t = self.tables.lock();
        let row = t.groups.get_mut(&group).ok_or(StoreError::NotFound)?;
        row.members.entry(user).or_insert(Role::Normal);
        Ok(())
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        let t = self.tables.lock();
        Ok(t.groups
            .iter()
            .filter(|(_, g)| g.members.contains_key(&user))
            .map(|(&id, g)| Group {
                id,
                name: g.name.clone(),
                desc: g.desc.clone(),
                members: g
                    .members
                    .iter()
                    .filter_map(|(&member, &role)| {
                        t.contact(member).map(|contact| Member { contact, role })
                    })
                    .collect(),
            })
            .collect())
    }

    fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>> {
        let t = self.tables.lock();
        Ok(t.groups
            .get(&group)
            .map(|g| g.members.keys().copied().collect()))
    }

    fn store_offline(&self, messages: &[Offline]) -> Result<usize> {
        let mut t = self.tables.lock();
        let mut stored = 0;
        for m in messages {
            // `INSERT … SELECT id, ?2 FROM user WHERE id = ?1`: nothing for a user that does not exist.
            if t.users.contains_key(&m.to) {
                t.last_offline += 1;
                let row = (t.last_offline, m.to, m.frame.to_string());
                t.offline.push(row);
                stored += 1;
            }
        }
        Ok(stored)
    }

    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<String>> {
        let mut t = self.tables.lock();
        let mut taken = Vec::new();
        t.offline.retain(|(_, to, frame)| {
            if *to == user && taken.len() < limit {
                taken.push(frame.clone());
                false
            } else {
                true
            }
        });
        Ok(taken)
    }

    fn save_token(&self, user: UserId, hash: &[u8]) -> Result<()> {
        self.tables
            .lock()
            .tokens
            .insert(user, (hash.to_vec(), Instant::now()));
        Ok(())
    }

    fn token_hash(&self, user: UserId) -> Result<Option<Vec<u8>>> {
        let t = self.tables.lock();
        Ok(t.tokens
            .get(&user)
            .filter(|(_, created)| created.elapsed() <= TOKEN_TTL)
            .map(|(hash, _)| hash.clone()))
    }

    fn revoke_token(&self, user: UserId) -> Result<()> {
        self.tables.lock().tokens.remove(&user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn behaves_like_the_sql_stores() {
        let s = MemoryStore::default();
        let a = s.create_user("a", "h").unwrap();
        let b = s.create_user("b", "h").unwrap();
        assert_eq!((a, b), (1, 2));
        assert!(matches!(s.create_user("a", "x"), Err(StoreError::Conflict)));
        assert!(s.create_user("a ", "x").is_ok(), "byte-exact names");
        s.heartbeat("n").unwrap();
        assert!(s.claim_presence(a, "n").unwrap());
        assert!(!s.claim_presence(a, "n").unwrap(), "held by this node");
        assert!(!s.claim_presence(a, "m").unwrap(), "held by a live node");
        assert!(!s.claim_presence(99, "n").unwrap());
        s.add_friend(a, b).unwrap();
        assert_eq!(s.friends(b).unwrap()[0].id, a);
        assert!(s.friends(b).unwrap()[0].online);
        assert!(matches!(s.add_friend(a, 99), Err(StoreError::NotFound)));
        let g = s.create_group(a, "g", "d").unwrap();
        s.join_group(g, a).unwrap();
        s.join_group(g, b).unwrap();
        let groups = s.groups_of(b).unwrap();
        assert_eq!(groups[0].members[0].role, Role::Creator, "creator stays");
        assert_eq!(s.group_members(g).unwrap(), Some(vec![a, b]));
        assert_eq!(s.group_members(99).unwrap(), None);
        let m = |to, f: &str| Offline {
            to,
            frame: Arc::from(f),
        };
        assert_eq!(
            s.store_offline(&[m(b, "1"), m(99, "x"), m(b, "2"), m(b, "3")])
                .unwrap(),
            3
        );
        assert_eq!(s.take_offline(b, 2).unwrap(), ["1", "2"]);
        assert_eq!(s.take_offline(b, 2).unwrap(), ["3"]);
        s.release_presence(a, "m").unwrap();
        assert_eq!(s.claimed(), [a], "another node cannot release");
        s.release_presence(a, "n").unwrap();
        assert!(s.claimed().is_empty());
    }
}
