//! A panic inside a handler closes only its own connection: the session catches it at the connection
//! boundary, and the node goes on serving everyone else.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::json;

use super::{SessionConfig, serve};
use crate::bus::local::LocalBus;
use crate::client::Client;
use crate::hasher::{HashCost, Hasher};
use crate::limit::LoginThrottle;
use crate::model::{Contact, Group, UserRecord};
use crate::protocol::frame::Separator;
use crate::protocol::{GroupId, UserId};
use crate::service::Context;
use crate::store::batch::OfflineWriter;
use crate::store::{Offline, Result, Store, StoreError};

/// A store whose user lookup panics (a stand-in for any bug in a handler) and which is otherwise down.
struct PanickingStore;

fn down<T>() -> Result<T> {
    Err(StoreError::Unavailable("test store".into()))
}

impl Store for PanickingStore {
    fn create_user(&self, _: &str, _: &str) -> Result<UserId> {
        down()
    }
    fn find_user(&self, _: UserId) -> Result<Option<UserRecord>> {
        panic!("a bug in a handler")
    }
    fn claim_presence(&self, _: UserId, _: &str) -> Result<bool> {
        down()
    }
    fn release_presence(&self, _: UserId, _: &str) -> Result<()> {
        down()
    }
    fn heartbeat(&self, _: &str) -> Result<()> {
        down()
    }
    fn release_node(&self, _: &str) -> Result<()> {
        down()
    }
    fn add_friend(&self, _: UserId, _: UserId) -> Result<()> {
        down()
    }
    fn friends(&self, _: UserId) -> Result<Vec<Contact>> {
        down()
    }
    fn create_group(&self, _: UserId, _: &str, _: &str) -> Result<GroupId> {
        down()
    }
    fn join_group(&self, _: GroupId, _: UserId) -> Result<()> {
        down()
    }
    fn groups_of(&self, _: UserId) -> Result<Vec<Group>> {
        down()
    }
    fn group_members(&self, _: GroupId) -> Result<Option<Vec<UserId>>> {
        down()
    }
    fn store_offline(&self, _: &[Offline]) -> Result<usize> {
        down()
    }
    fn take_offline(&self, _: UserId, _: usize) -> Result<Vec<String>> {
        down()
    }
    fn save_token(&self, _: UserId, _: &[u8]) -> Result<()> {
        down()
    }
    fn token_hash(&self, _: UserId) -> Result<Option<Vec<u8>>> {
        down()
    }
    fn revoke_token(&self, _: UserId) -> Result<()> {
        down()
    }
}

fn context() -> Context {
    let store: Arc<dyn Store> = Arc::new(PanickingStore);
    let cost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    Context {
        offline: OfflineWriter::start(store.clone()).unwrap(),
        store,
        online: Default::default(),
        bus: Box::new(LocalBus),
        hasher: Hasher::new(&cost, 1).unwrap(),
        limits: Default::default(),
        node: "test".into(),
        offline_batch: 10,
        unreleased: Default::default(),
        login_throttle: LoginThrottle::new(&Default::default()),
        members: Default::default(),
    }
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let ctx = Arc::new(context());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SessionConfig {
        max_frame_bytes: 1024,
        mailbox_capacity: 16,
        login_timeout: Duration::from_secs(60),
        writer_stack_bytes: 128 * 1024,
        max_writers: 4,
        rate: Default::default(),
    };
    let server = std::thread::spawn(move || {
        let stopping = AtomicBool::new(false);
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            serve(&ctx, &Arc::new(stream), &cfg, &stopping);
        }
    });
    let timeout = Some(Duration::from_secs(5));
    let mut victim = Client::connect(addr, Separator::Nul).unwrap();
    victim
        .send(&json!({"msgid": 1, "id": 1, "password": "pw"}))
        .unwrap();
    assert!(
        victim.recv(timeout).unwrap().is_none(),
        "the connection is closed"
    );
    // The same serving loop takes the next connection and answers it.
    let mut next = Client::connect(addr, Separator::Nul).unwrap();
    next.send(&json!({"msgid": 99})).unwrap();
    assert_eq!(next.recv(timeout).unwrap().unwrap()["errno"], 101);
    drop(next);
    server
        .join()
        .expect("the serving thread survived the panic");
}
