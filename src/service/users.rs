//! User names by id. Users are never renamed or deleted, so a name once read stays true: the cache needs no
//! invalidation, only a bound on its size.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::model::UserId;
use crate::store::{Result, Store};

/// Names cached at most; past it the cache starts again empty.
const MAX_NAMES: usize = 200_000;

/// The names of users seen lately.
#[derive(Default)]
pub struct UserNames {
    names: RwLock<HashMap<UserId, Arc<str>>>,
}

impl UserNames {
    /// The name of user `id`, or `None` if there is no such user.
    pub fn name(&self, store: &dyn Store, id: UserId) -> Result<Option<Arc<str>>> {
        if let Some(name) = self.names.read().get(&id) {
            return Ok(Some(name.clone()));
        }
        let Some(user) = store.find_user(id)? else {
            return Ok(None);
        };
        let name: Arc<str> = user.name.into();
        let mut names = self.names.write();
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(id, name.clone());
        Ok(Some(name))
    }
}
