//! A panic inside a handler closes only its own connection: the session catches it at the connection
//! boundary, and the node goes on serving everyone else; the chats its connection had set aside to be
//! commit are committed and answered all the same.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::json;

use super::{SessionConfig, Transport, serve};
use crate::bus::local::LocalBus;
use crate::client::Client;
use crate::hasher::{HashCost, Hasher};
use crate::limit::LoginThrottle;
use crate::mailbox::Live;
use crate::model::{
    Contact, Conv, Group, LogMessage, Members, Page, Pos, Relation, Requests, Role, Summary,
    UserRecord,
};
use crate::model::{GroupId, UserId};
use crate::protocol::frame::Separator;
use crate::service::{Context, chat};
use crate::store::batch::LogWriter;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Accounts, Appended, Claim, GroupUpdate, Groups, Joined, Log, NewMessage, Pointer, Presence,
    Removal, Result, Social, Store, StoreError, Tokens,
};

/// Calls `$make!(Type, Area { signatures })` for each named area of the store's API, so that the test
/// stores below spell each signature once.
macro_rules! with_api {
    ($make:ident, $ty:ty, [$($area:ident),*]) => { $(with_api!(@$area $make, $ty);)* };
    (@Accounts $make:ident, $ty:ty) => { $make!($ty, Accounts {
        fn create_user(&self, name: &str, hash: &str) -> Result<UserId>;
        fn find_user(&self, id: UserId) -> Result<Option<UserRecord>>;
        fn find_user_by_name(&self, name: &str) -> Result<Option<UserId>>;
        fn change_password(&self, user: UserId, hash: &str) -> Result<()>;
    }); };
    (@Presence $make:ident, $ty:ty) => { $make!($ty, Presence {
        fn claim_device(&self, user: UserId, device: &str, node: &str, max: usize) -> Result<Claim>;
        fn release_device(&self, user: UserId, device: &str, node: &str) -> Result<bool>;
        fn heartbeat(&self, node: &str) -> Result<()>;
        fn release_node(&self, node: &str) -> Result<()>;
        fn reap_stale(&self) -> Result<Vec<UserId>>;
    }); };
    (@Social $make:ident, $ty:ty) => { $make!($ty, Social {
        fn add_friend(&self, a: UserId, b: UserId) -> Result<()>;
        fn friends(&self, user: UserId) -> Result<Vec<Contact>>;
        fn relation(&self, a: UserId, b: UserId) -> Result<Option<Relation>>;
        fn request_friend(&self, a: UserId, b: UserId, text: &str) -> Result<()>;
        fn accept_request(&self, a: UserId, b: UserId) -> Result<bool>;
        fn decline_request(&self, a: UserId, b: UserId) -> Result<bool>;
        fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool>;
        fn set_block(&self, a: UserId, b: UserId, block: bool) -> Result<()>;
        fn requests(&self, user: UserId) -> Result<Requests>;
        fn blocked(&self, user: UserId) -> Result<Vec<(UserId, String)>>;
        fn blockers_of(&self, user: UserId) -> Result<Vec<UserId>>;
    }); };
    (@Groups $make:ident, $ty:ty) => { $make!($ty, Groups {
        fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId>;
        fn join_group(&self, group: GroupId, user: UserId) -> Result<Joined>;
        fn groups_of(&self, user: UserId) -> Result<Vec<Group>>;
        fn group_info(&self, group: GroupId) -> Result<Option<Group>>;
        fn group_members(&self, group: GroupId) -> Result<Option<Members>>;
        fn set_roles(&self, group: GroupId, version: i64, roles: &[(UserId, Role)]) -> Result<bool>;
        fn remove_member(&self, group: GroupId, user: UserId, how: Removal) -> Result<bool>;
        fn unban(&self, group: GroupId, user: UserId) -> Result<bool>;
        fn bans(&self, group: GroupId) -> Result<Vec<(UserId, String)>>;
        fn update_group(&self, group: GroupId, update: GroupUpdate) -> Result<()>;
        fn dissolve_group(&self, group: GroupId) -> Result<()>;
    }); };
    (@Log $make:ident, $ty:ty) => { $make!($ty, Log {
        fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>>;
        fn store_offline(&self, pointers: &[Pointer]) -> Result<()>;
        fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>>;
        fn conversations(&self, user: UserId) -> Result<Vec<Summary>>;
        fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)>;
        fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)>;
    }); };
    (@Tokens $make:ident, $ty:ty) => { $make!($ty, Tokens {
        fn save_token(&self, user: UserId, device: &str, hash: &[u8]) -> Result<()>;
        fn token_hash(&self, user: UserId, device: &str) -> Result<Option<Vec<u8>>>;
        fn revoke_token(&self, user: UserId, device: &str) -> Result<()>;
    }); };
}

/// An area whose every call fails as storage that is down.
macro_rules! down {
    ($ty:ty, $area:ident { $(fn $name:ident(&self $(, $arg:ident: $t:ty)*) -> $ret:ty;)* }) => {
        impl $area for $ty {
            $(fn $name(&self $(, $arg: $t)*) -> $ret {
                let _ = ($($arg,)*);
                Err(StoreError::Unavailable("test store".into()))
            })*
        }
    };
}

/// An area served by the embedded store inside.
macro_rules! delegate {
    ($ty:ty, $area:ident { $(fn $name:ident(&self $(, $arg:ident: $t:ty)*) -> $ret:ty;)* }) => {
        impl $area for $ty {
            $(fn $name(&self $(, $arg: $t)*) -> $ret {
                self.0.$name($($arg),*)
            })*
        }
    };
}

/// A store whose user lookup panics (a stand-in for any bug in a handler) and which is otherwise down.
struct PanickingStore;

with_api!(
    down,
    PanickingStore,
    [Presence, Social, Groups, Log, Tokens]
);

impl Accounts for PanickingStore {
    fn create_user(&self, _: &str, _: &str) -> Result<UserId> {
        Err(StoreError::Unavailable("test store".into()))
    }
    fn find_user(&self, _: UserId) -> Result<Option<UserRecord>> {
        panic!("a bug in a handler")
    }
    fn find_user_by_name(&self, _: &str) -> Result<Option<UserId>> {
        panic!("a bug in a handler")
    }
    fn change_password(&self, _: UserId, _: &str) -> Result<()> {
        panic!("a bug in a handler")
    }
}

/// The embedded store, except that reading a group's members panics: a bug met after a chat of the same
/// read was set aside to be committed.
struct PanicOnGroups(SqliteStore);

with_api!(
    delegate,
    PanicOnGroups,
    [Accounts, Presence, Social, Log, Tokens]
);

impl Groups for PanicOnGroups {
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> Result<GroupId> {
        self.0.create_group(creator, name, desc)
    }
    fn join_group(&self, group: GroupId, user: UserId) -> Result<Joined> {
        self.0.join_group(group, user)
    }
    fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        self.0.groups_of(user)
    }
    fn group_info(&self, group: GroupId) -> Result<Option<Group>> {
        self.0.group_info(group)
    }
    fn group_members(&self, _: GroupId) -> Result<Option<Members>> {
        panic!("a bug in a handler")
    }
    fn set_roles(&self, group: GroupId, version: i64, roles: &[(UserId, Role)]) -> Result<bool> {
        self.0.set_roles(group, version, roles)
    }
    fn remove_member(&self, group: GroupId, user: UserId, how: Removal) -> Result<bool> {
        self.0.remove_member(group, user, how)
    }
    fn unban(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.0.unban(group, user)
    }
    fn bans(&self, group: GroupId) -> Result<Vec<(UserId, String)>> {
        self.0.bans(group)
    }
    fn update_group(&self, group: GroupId, update: GroupUpdate) -> Result<()> {
        self.0.update_group(group, update)
    }
    fn dissolve_group(&self, group: GroupId) -> Result<()> {
        self.0.dissolve_group(group)
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
            serve(
                &ctx,
                &Arc::new(stream),
                Transport::Tcp,
                &[],
                None,
                &config(),
                &stopping,
            );
        }
    })
}

/// The embedded store with its tokens down: no token can be saved or revoked.
struct TokensDown(SqliteStore);

with_api!(
    delegate,
    TokensDown,
    [Accounts, Presence, Social, Groups, Log]
);
with_api!(down, TokensDown, [Tokens]);

/// The embedded store, except that recording offline fails while its flag is set.
struct FlakyOffline(SqliteStore, AtomicBool);

with_api!(
    delegate,
    FlakyOffline,
    [Accounts, Presence, Social, Groups, Tokens]
);

impl Log for FlakyOffline {
    fn append(&self, messages: &[&NewMessage]) -> Result<Vec<Appended>> {
        self.0.append(messages)
    }
    fn store_offline(&self, pointers: &[Pointer]) -> Result<()> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("test store".into()));
        }
        self.0.store_offline(pointers)
    }
    fn take_offline(&self, user: UserId, limit: usize) -> Result<Vec<LogMessage>> {
        self.0.take_offline(user, limit)
    }
    fn conversations(&self, user: UserId) -> Result<Vec<Summary>> {
        self.0.conversations(user)
    }
    fn history(&self, conv: Conv, page: Page, limit: usize) -> Result<(Vec<LogMessage>, bool)> {
        self.0.history(conv, page, limit)
    }
    fn mark_read(&self, user: UserId, conv: Conv, pos: Pos) -> Result<(Pos, bool)> {
        self.0.mark_read(user, conv, pos)
    }
}

/// The embedded store in a file of `dir`.
fn sqlite_in(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), 2).unwrap()
}

/// Serves `connections` connections with `ctx` on a loopback port: its address, and the serving thread.
fn serving(
    ctx: Context,
    connections: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(ctx, listener, connections))
}

fn context(store: Arc<dyn Store>) -> Context {
    let cost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    Context {
        log: LogWriter::start(store.clone(), Default::default()).unwrap(),
        store,
        online: Default::default(),
        bus: Box::new(LocalBus),
        hasher: Hasher::new(&cost, 1).unwrap(),
        limits: Default::default(),
        node: "test".into(),
        offline_batch: 10,
        max_devices: 8,
        unreleased: Default::default(),
        unrecorded: Default::default(),
        login_throttle: LoginThrottle::new(&Default::default()),
        penalties: Default::default(),
        proxies: Default::default(),
        members: Default::default(),
        users: Default::default(),
        typing: Default::default(),
        metrics: Default::default(),
    }
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let (addr, server) = serving(context(Arc::new(PanickingStore)), 2);
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
    let sqlite = sqlite_in(&dir);
    let store: Arc<dyn Store> = Arc::new(PanicOnGroups(sqlite));
    store.heartbeat("test").unwrap();
    let (addr, server) = serving(context(store.clone()), 1);
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

/// A v2 logout whose token cannot be revoked is refused (109) and the device stays logged in, so an
/// acknowledged logout never leaves a token that logs in; once storage answers, the logout goes through.
/// A v1 logout has no answer to carry a refusal: it logs out.
#[test]
fn a_logout_whose_token_stays_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_in(&dir);
    let store: Arc<dyn Store> = Arc::new(TokensDown(sqlite));
    store.heartbeat("test").unwrap();
    let (addr, server) = serving(context(store), 2);
    let timeout = Some(Duration::from_secs(5));
    let mut v2 = Client::connect(addr, Separator::Nul).unwrap();
    let mut req = |frame: serde_json::Value| {
        v2.send(&frame).unwrap();
        v2.recv(timeout).unwrap().expect("a reply")
    };
    req(json!({"msgid": 4, "name": "a", "password": "pw"}));
    let ack = req(json!({"msgid": 1, "id": 1, "password": "pw", "v": 2}));
    assert_eq!(
        ack["errno"], 0,
        "a login without a token still logs in: {ack}"
    );
    let refused = req(json!({"msgid": 3, "seq": 7}));
    assert_eq!(
        (&refused["msgid"], &refused["errno"], &refused["ref"]),
        (&json!(15), &json!(109), &json!(3)),
        "{refused}"
    );
    let still = req(json!({"msgid": 1, "id": 1, "password": "pw", "v": 2}));
    assert_eq!(still["errno"], 3, "still logged in: {still}");
    drop(v2);
    let mut v1 = Client::connect(addr, Separator::Nul).unwrap();
    v1.send(&json!({"msgid": 1, "id": 1, "password": "pw"}))
        .unwrap();
    assert_eq!(v1.recv(timeout).unwrap().expect("the ack")["errno"], 0);
    v1.send(&json!({"msgid": 3})).unwrap();
    v1.send(&json!({"msgid": 1, "id": 1, "password": "pw"}))
        .unwrap();
    let again = v1.recv(timeout).unwrap().expect("a login ack");
    assert_eq!(again["errno"], 0, "the v1 logout went through: {again}");
    drop(v1);
    server.join().unwrap();
}

/// An offline record that storage refuses (it is down at that moment) is not dropped: the heartbeat
/// writes it once storage answers again, and the recipient finds the message in its offline list.
#[test]
fn offline_records_storage_refused_are_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_in(&dir);
    let store = Arc::new(FlakyOffline(sqlite, AtomicBool::new(true)));
    let ctx = context(store.clone());
    let [a, b] = ["a", "b"].map(|n| store.create_user(n, "h").unwrap());
    let message = NewMessage {
        conv: Conv::direct(a, b),
        sender: a,
        cid: None,
        time: "t".into(),
        text: "kept".into(),
        offline: Vec::new(),
        require: crate::store::Require::Nothing,
    };
    let placed = store.append(&[&message]).unwrap().remove(0).unwrap();
    let unwritten = Live::single(b, "frame".into(), (placed.conv, placed.pos));
    assert!(chat::persist_undelivered(&ctx, vec![unwritten]).is_empty());
    assert!(store.take_offline(b, 10).unwrap().is_empty());
    chat::retry_offline(&ctx);
    assert!(store.take_offline(b, 10).unwrap().is_empty(), "still down");
    store.1.store(false, std::sync::atomic::Ordering::SeqCst);
    chat::retry_offline(&ctx);
    let texts: Vec<String> = store
        .take_offline(b, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["kept"]);
    chat::retry_offline(&ctx);
    assert!(
        store.take_offline(b, 10).unwrap().is_empty(),
        "recorded once"
    );
}
