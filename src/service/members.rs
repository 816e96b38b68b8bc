//! A cache of group member lists, so group chat does not query the database for every message.
//!
//! The cache only makes things fast; it never decides. A change of members invalidates the group's entry
//! on this node at once and, through the bus, on every other node; entries also expire after [`TTL`]. What
//! is in force is settled at commit: a group message commits only while its sender is a member, and the
//! commit reports the member-list version it saw, so a list older than that is reloaded
//! ([`MemberCache::at_version`]) before anyone gets the message. A sender missing from a cached list is
//! checked against the database before being refused, so a member who just joined through another node
//! is never told they are not a member.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::model::{GroupId, Members};
use crate::store::{Result, Store};

/// How long a cached member list is trusted without an invalidation.
pub const TTL: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Entries {
    lists: HashMap<GroupId, (Instant, Arc<Members>)>,
    /// Bumped by every invalidation, so a list loaded before it is not cached after it.
    generation: u64,
}

/// Member lists by group id.
#[derive(Default)]
pub struct MemberCache {
    entries: Mutex<Entries>,
}

impl MemberCache {
    /// The members of `group`, from the cache or the store; `None` if the group does not exist.
    pub fn members(&self, store: &dyn Store, group: GroupId) -> Result<Option<Arc<Members>>> {
        let generation = {
            let entries = self.entries.lock();
            if let Some((at, list)) = entries.lists.get(&group)
                && at.elapsed() < TTL
            {
                return Ok(Some(list.clone()));
            }
            entries.generation
        };
        let Some(list) = store.group_members(group)? else {
            return Ok(None);
        };
        let list = Arc::new(list);
        let mut entries = self.entries.lock();
        if entries.generation == generation {
            entries.lists.insert(group, (Instant::now(), list.clone()));
        }
        Ok(Some(list))
    }

    /// The members of `group` as of at least `version` (a commit's): the cached list when it is that
    /// recent, else the store's. `None` if the group is gone.
    pub fn at_version(
        &self,
        store: &dyn Store,
        group: GroupId,
        version: i64,
    ) -> Result<Option<Arc<Members>>> {
        match self.members(store, group)? {
            Some(list) if list.version >= version => Ok(Some(list)),
            _ => {
                self.invalidate(Some(group));
                self.members(store, group)
            }
        }
    }

    /// Forgets `group`'s list (`None`: every list).
    pub fn invalidate(&self, group: Option<GroupId>) {
        let mut entries = self.entries.lock();
        entries.generation += 1;
        match group {
            Some(group) => {
                entries.lists.remove(&group);
            }
            None => entries.lists.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Accounts, Groups, Joined};

    #[test]
    fn cached_until_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db").to_str().unwrap(), 1).unwrap();
        let a = store.create_user("a", "h").unwrap();
        let b = store.create_user("b", "h").unwrap();
        let g = store.create_group(a, "g", "").unwrap();
        let cache = MemberCache::default();
        let ids = |m: Arc<Members>| {
            let mut ids: Vec<_> = m.ids().collect();
            ids.sort();
            ids
        };
        let first = cache.members(&store, g).unwrap().unwrap();
        assert_eq!(ids(first.clone()), vec![a]);
        assert_eq!(store.join_group(g, b).unwrap(), Joined::Now);
        assert_eq!(
            ids(cache.members(&store, g).unwrap().unwrap()),
            vec![a],
            "served from the cache"
        );
        let newer = cache
            .at_version(&store, g, first.version + 1)
            .unwrap()
            .unwrap();
        assert_eq!(ids(newer), vec![a, b], "a commit's newer version reloads");
        cache.invalidate(Some(g));
        assert_eq!(ids(cache.members(&store, g).unwrap().unwrap()), vec![a, b]);
        assert!(cache.members(&store, 999).unwrap().is_none());
    }
}
