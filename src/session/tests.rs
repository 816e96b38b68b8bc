//! A panic inside a handler closes only its own connection: the session catches it at the connection
//! boundary, and the node goes on serving everyone else; the chats its connection had set aside to be
//! commit are committed and answered all the same.

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
use crate::model::{Contact, Conv, Group, LogMessage, Page, Pos, Summary, UserRecord};
use crate::model::{GroupId, UserId};
use crate::protocol::frame::Separator;
use crate::service::Context;
use crate::store::batch::LogWriter;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Accounts, Claim, Committed, Groups, Log, NewMessage, Pointer, Presence, Result, Social, Store,
    StoreError, Tokens,
};

/// A store whose user lookup panics (a stand-in for any bug in a handler) and which is otherwise down.
struct PanickingStore;

fn down<T>() -> Result<T> {
    Err(StoreError::Unavailable("test store".into()))
}

impl Accounts for PanickingStore {
    fn create_user(&self, _: &str, _: &str) -> Result<UserId> {
        down()
    }
    fn find_user(&self, _: UserId) -> Result<Option<UserRecord>> {
        panic!("a bug in a handler")
    }
}

impl Presence for PanickingStore {
    fn claim_device(&self, _: UserId, _: &str, _: &str, _: usize) -> Result<Claim> {
        down()
    }
    fn release_device(&self, _: UserId, _: &str, _: &str) -> Result<bool> {
        down()
    }
    fn heartbeat(&self, _: &str) -> Result<()> {
        down()
    }
    fn release_node(&self, _: &str) -> Result<()> {
        down()
    }
}

impl Social for PanickingStore {
    fn add_friend(&self, _: UserId, _: UserId) -> Result<()> {
        down()
    }
    fn friends(&self, _: UserId) -> Result<Vec<Contact>> {
        down()
    }
}

impl Groups for PanickingStore {
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
}

impl Log for PanickingStore {
    fn append(&self, _: &[&NewMessage]) -> Result<Vec<Committed>> {
        down()
    }
    fn store_offline(&self, _: &[Pointer]) -> Result<()> {
        down()
    }
    fn take_offline(&self, _: UserId, _: usize) -> Result<Vec<LogMessage>> {
        down()
    }
    fn conversations(&self, _: UserId) -> Result<Vec<Summary>> {
        down()
    }
    fn history(&self, _: Conv, _: Page, _: usize) -> Result<(Vec<LogMessage>, bool)> {
        down()
    }
    fn mark_read(&self, _: UserId, _: Conv, _: Pos) -> Result<(Pos, bool)> {
        down()
    }
}

impl Tokens for PanickingStore {
    fn save_token(&self, _: UserId, _: &str, _: &[u8]) -> Result<()> {
        down()
    }
    fn token_hash(&self, _: UserId, _: &str) -> Result<Option<Vec<u8>>> {
        down()
    }
    fn revoke_token(&self, _: UserId, _: &str) -> Result<()> {
        down()
    }
}

/// The embedded store, except that reading a group's members panics: a bug met after a chat of the same
/// read was set aside to be committed.
struct PanicOnGroups(SqliteStore);

impl Groups for PanicOnGroups {
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId> {
        self.0.create_group(creator, name, desc)
    }
    fn join_group(&self, group: GroupId, user: UserId) -> Result<()> {
        self.0.join_group(group, user)
    }
    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        self.0.groups_of(user)
    }
    fn group_members(&self, _: GroupId) -> Result<Option<Vec<UserId>>> {
        panic!("a bug in a handler")
    }
}

/// The other areas of [`PanicOnGroups`] are the embedded store's own.
macro_rules! delegate {
    ($($area:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* })*) => {
        $(impl $area for PanicOnGroups {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.0.$name($($arg),*)
            })*
        })*
    };
}

delegate! {
    Accounts {
        fn create_user(&self, name: &str, hash: &str) -> Result<UserId>;
        fn find_user(&self, id: UserId) -> Result<Option<UserRecord>>;
    }
    Presence {
        fn claim_device(&self, user: UserId, device: &str, node: &str, max: usize) -> Result<Claim>;
        fn release_device(&self, user: UserId, device: &str, node: &str) -> Result<bool>;
        fn heartbeat(&self, node: &str) -> Result<()>;
        fn release_node(&self, node: &str) -> Result<()>;
    }
    Social {
        fn add_friend(&self, a: UserId, b: UserId) -> Result<()>;
        fn friends(&self, user: UserId) -> Result<Vec<Contact>>;
    }
    Log {
        fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Committed>>;
        fn store_offline(&self, pointers: &[Pointer]) -> Result<()>;
        fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>>;
        fn conversations(&self, user: UserId) -> Result<Vec<Summary>>;
        fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)>;
        fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)>;
    }
    Tokens {
        fn save_token(&self, user: UserId, device: &str, hash: &[u8]) -> Result<()>;
        fn token_hash(&self, user: UserId, device: &str) -> Result<Option<Vec<u8>>>;
        fn revoke_token(&self, user: UserId, device: &str) -> Result<()>;
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        max_frame_bytes: 1024,
        mailbox_capacity: 16,
        login_timeout: Duration::from_secs(60),
        writer_stack_bytes: 128 * 1024,
        writers: Arc::new(super::WriterCount::new(4)),
        rate: Default::default(),
    }
}

/// Serves the next `connections` connections of `listener`, one after the other, on a thread.
fn serve_on(
    ctx: Context,
    listener: TcpListener,
    connections: usize,
) -> std::thread::JoinHandle<()> {
    let ctx = Arc::new(ctx);
    std::thread::spawn(move || {
        let stopping = AtomicBool::new(false);
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            serve(&ctx, &Arc::new(stream), &config(), &stopping);
        }
    })
}

fn context(store: Arc<dyn Store>) -> Context {
    let cost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    Context {
        log: LogWriter::start(store.clone()).unwrap(),
        store,
        online: Default::default(),
        bus: Box::new(LocalBus),
        hasher: Hasher::new(&cost, 1).unwrap(),
        limits: Default::default(),
        node: "test".into(),
        offline_batch: 10,
        max_devices: 8,
        unreleased: Default::default(),
        login_throttle: LoginThrottle::new(&Default::default()),
        members: Default::default(),
        users: Default::default(),
    }
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_on(context(Arc::new(PanickingStore)), listener, 2);
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

/// A read brings a chat to an offline user, then a request whose handler panics: the connection closes,
/// and the chat set aside before the panic is stored and acknowledged all the same.
#[test]
fn a_chat_set_aside_before_a_panic_is_stored_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), 2).unwrap();
    let store: Arc<dyn Store> = Arc::new(PanicOnGroups(sqlite));
    store.heartbeat("test").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_on(context(store.clone()), listener, 1);
    let timeout = Some(Duration::from_secs(5));
    let mut c = Client::connect(addr, Separator::Nul).unwrap();
    let mut req = |frame: serde_json::Value| {
        c.send(&frame).unwrap();
        c.recv(timeout).unwrap().expect("a reply")
    };
    for name in ["a", "b"] {
        req(json!({"msgid": 4, "name": name, "password": "pw"}));
    }
    let ack = req(json!({"msgid": 1, "id": 1, "password": "pw", "v": 2}));
    assert_eq!(ack["errno"], 0, "{ack}");
    c.send_raw(
        br#"{"msgid":6,"toid":2,"msg":"before the bug","seq":1}"#
            .iter()
            .chain(b"\0")
            .chain(br#"{"msgid":10,"groupid":1,"msg":"x","seq":2}"#)
            .copied()
            .collect::<Vec<u8>>()
            .as_slice(),
    )
    .unwrap();
    let reply = c.recv(timeout).unwrap().expect("the chat's ack");
    assert_eq!((&reply["seq"], &reply["errno"]), (&json!(1), &json!(0)));
    assert!(
        c.recv(timeout).unwrap().is_none(),
        "then the connection closes"
    );
    let stored = store.take_offline(2, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "before the bug");
    server
        .join()
        .expect("the serving thread survived the panic");
}
