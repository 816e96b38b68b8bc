//! The `dispatch` target: three connections' byte streams through [`FrameDecoder`] into
//! [`clusterchat::service::dispatch`], against the in-memory store, with a model of the protocol beside it.
//!
//! # Input
//! Bytes go to the current connection's decoder, as if read from its socket: each run of them between
//! control bytes is one read, whose chats store their offline messages together at its end, as the
//! session does ([`service::flush`]). Five control bytes, never fed, drive the connections instead:
//! - `0x01`, `0x02`, `0x03`: the current connection is now connection 0, 1 or 2 (0 at the start). The
//!   peers are 127.0.0.1 for connections 0 and 1 and 127.0.0.2 for connection 2.
//! - `0x04`: the current connection takes its next step towards closing: the client goes away (the
//!   session's reader stops and the mailbox starts closing) → the writer finishes (what it could not
//!   write is stored offline, the mailbox is closed) → the user leaves (out of the online map, presence
//!   released) and a fresh connection takes its place. Other connections act between the steps, as other
//!   threads would.
//! - `0x05`: the current connection's client stops reading, or starts again. A stopped reader's mailbox
//!   (capacity [`CAPACITY`]) fills, and the connection is closed as the server closes slow readers.
//!
//! A frame over [`MAX_FRAME`] bytes closes its connection as the session does (everything queued is
//! still written). A frame holding `"TOKEN"` gets the last resume token a login ack carried there instead,
//! so resumed logins are reachable.
//!
//! # Checked
//! Never panics; and, against a model of users, passwords, friends, groups, presence, tokens and the
//! failed-login throttle kept by this harness from PROTOCOL.md:
//! - every frame a client reads is valid JSON; every reply is the one predicted for its request, in order:
//!   the same msgid and errno, `ref` and `seq` as documented, the ids of v2 acks, the login ack's lists in
//!   their v1 or v2 shape, its token; v1 gets no acks;
//! - every chat frame carries the identity of the connection that sent it, never one from the frame;
//! - exactly once: after everyone has left, each user's accepted messages are exactly what was written to
//!   their connections followed by what is still stored for them, in the order they were accepted (see
//!   [`Outcome`] for the one documented exception);
//! - the online map and presence are empty after everyone has left, and no user is ever logged in twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use clusterchat::bus::local::LocalBus;
use clusterchat::hasher::{HashCost, Hasher};
use clusterchat::limit::{LoginThrottle, LoginThrottleConfig};
use clusterchat::mailbox::{Mailbox, Outgoing};
use clusterchat::protocol::frame::{Decoded, FrameDecoder};
use clusterchat::protocol::request::{
    Credential, Envelope, EnvelopeError, Limits, Request, is_client_msgid,
};
use clusterchat::protocol::{Version, msgid};
use clusterchat::model::{GroupId, UserId};
use clusterchat::service::{self, Caller, Context, Identity, account, chat};
use clusterchat::store::Store;
use clusterchat::store::batch::OfflineWriter;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::memory_store::MemoryStore;

/// Items a connection's mailbox holds before its client counts as not reading.
pub const CAPACITY: usize = 4;
/// Largest frame, in bytes.
pub const MAX_FRAME: usize = 1024;
/// Stored frames per login ack (small, so the rest-after-the-ack path runs).
pub const OFFLINE_BATCH: usize = 2;
const NODE: &str = "fuzz-node";
const CONNS: usize = 3;

/// Small limits, so their edges are within reach of small inputs.
pub fn limits() -> Limits {
    Limits {
        max_name_chars: 16,
        max_password_bytes: 32,
        max_group_name_chars: 16,
        max_group_desc_chars: 32,
        max_text_chars: 256,
    }
}

fn throttle_config() -> LoginThrottleConfig {
    LoginThrottleConfig::default()
}

/// The context and store, built once per process (the hasher and the offline writer own threads) and
/// reset before every input.
struct Shared {
    ctx: Context,
    store: Arc<MemoryStore>,
}

static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(|| {
    let store = Arc::new(MemoryStore::default());
    let dyn_store: Arc<dyn Store> = store.clone();
    let cost = HashCost {
        memory_kib: 8,
        iterations: 1,
    };
    let ctx = Context {
        offline: OfflineWriter::start(dyn_store.clone()).expect("offline writer thread"),
        store: dyn_store,
        online: Default::default(),
        bus: Box::new(LocalBus),
        hasher: Hasher::new(&cost, 1).expect("cheapest argon2 cost"),
        limits: limits(),
        node: NODE.into(),
        offline_batch: OFFLINE_BATCH,
        unreleased: Default::default(),
        login_throttle: LoginThrottle::new(&throttle_config()),
        members: Default::default(),
    };
    Mutex::new(Shared { ctx, store })
});

/// The fuzz target's body.
pub fn run(data: &[u8]) -> Outcome {
    let mut shared = SHARED.lock();
    let Shared { ctx, store } = &mut *shared;
    store.reset();
    store.heartbeat(NODE).unwrap();
    ctx.online = Default::default();
    ctx.members = Default::default();
    ctx.login_throttle = LoginThrottle::new(&throttle_config());
    ctx.unreleased.lock().clear();
    let mut h = Harness {
        ctx,
        store,
        conns: (0..CONNS).map(|i| Conn::new(peer(i))).collect(),
        model: Model::default(),
        outcome: Outcome::default(),
    };
    let mut current = 0;
    for segment in data.split_inclusive(|b| (1..=5).contains(b)) {
        let (bytes, control) = match segment.split_last() {
            Some((&c, rest)) if (1..=5).contains(&c) => (rest, Some(c)),
            _ => (segment, None),
        };
        h.feed(current, bytes);
        match control {
            Some(c @ 1..=3) => current = usize::from(c - 1),
            Some(4) => h.step_close(current),
            Some(5) => {
                h.conns[current].stalled = !h.conns[current].stalled;
                h.drain_all();
            }
            _ => {}
        }
    }
    for i in 0..CONNS {
        while h.conns[i].phase != Phase::Open
            || h.conns[i].caller.user.is_some()
            || !h.conns[i].fresh
        {
            h.step_close(i);
        }
    }
    h.final_checks();
    h.outcome
}

fn peer(i: usize) -> IpAddr {
    IpAddr::V4(if i < 2 {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::new(127, 0, 0, 2)
    })
}

/// What a run saw, for the tests and for curiosity.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub frames: usize,
    pub logins: usize,
    pub accepted_chats: usize,
    pub written_chats: usize,
    pub closed: usize,
    /// Users whose delivered messages were all there, exactly once, but not in the order accepted. Only
    /// allowed for users some of whose frames were stored again after a connection could not write them
    /// (PROTOCOL.md, "Order after re-storing"); any other reordering fails the run.
    pub reordered_after_restore: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The reader stopped; the mailbox keeps new items aside. `client_gone`: chat frames still queued are
    /// stored, not written (else written, as after an oversize frame).
    Closing {
        client_gone: bool,
    },
    /// The writer finished and the mailbox is closed; the user has not left yet.
    Finished,
}

struct Conn {
    caller: Caller,
    rx: Receiver<Outgoing>,
    decoder: FrameDecoder,
    phase: Phase,
    stalled: bool,
    overflowed: Arc<AtomicBool>,
    /// No frame was fed yet (the end of a run closes only connections that did something).
    fresh: bool,
    writer: WriterModel,
    /// Replies predicted for this connection's requests, in order; checked as they are written.
    expected: VecDeque<Expected>,
}

impl Conn {
    fn new(peer: IpAddr) -> Conn {
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let (mailbox, rx) = Mailbox::new(CAPACITY, move || flag.store(true, Ordering::SeqCst));
        Conn {
            caller: Caller::new(mailbox, peer),
            rx,
            decoder: FrameDecoder::new(MAX_FRAME),
            phase: Phase::Open,
            stalled: false,
            overflowed,
            fresh: true,
            writer: WriterModel::default(),
            expected: VecDeque::new(),
        }
    }
}

/// The connection's writer, as `src/session/writer.rs` behaves: login ack first, held frames, nudges.
#[derive(Default)]
struct WriterModel {
    acked: Option<UserId>,
    nudge_pending: bool,
    held: Vec<(UserId, Arc<str>)>,
    undelivered: Vec<(UserId, Arc<str>)>,
}

/// A chat message as accepted: what its forwarded frame must say.
#[derive(Debug, Clone)]
struct Msg {
    sender: UserId,
    sender_name: String,
    /// `toid` for one-to-one chat, `groupid` for group chat.
    to: Option<UserId>,
    group: Option<GroupId>,
    text: String,
    /// `None`: the server's local time.
    time: Option<String>,
}

impl Msg {
    fn matches(&self, frame: &Value) -> bool {
        let kind = if self.group.is_some() {
            msgid::GROUP_CHAT
        } else {
            msgid::ONE_CHAT
        };
        let time_ok = match (&self.time, frame["time"].as_str()) {
            (Some(t), Some(got)) => t == got,
            (None, Some(got)) => is_server_time(got),
            (_, None) => false,
        };
        frame["msgid"] == kind
            && frame["id"] == self.sender
            && frame["name"] == self.sender_name.as_str()
            && frame.get("toid") == self.to.map(|t| json!(t)).as_ref()
            && frame.get("groupid") == self.group.map(|g| json!(g)).as_ref()
            && frame["msg"] == self.text.as_str()
            && time_ok
    }
}

/// `YYYY-MM-DD HH:MM:SS`, as the server writes its local time.
fn is_server_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// A group member as a login ack lists them: id, role, online.
type Listed = (UserId, &'static str, bool);

/// A reply the model predicts.
#[derive(Debug, Clone)]
enum Expected {
    Reply {
        msgid: i64,
        errno: i64,
        seq: Option<Value>,
        /// For ERROR_MSG: the `ref` it must carry.
        reference: Value,
        /// Further fields that must be there with these values.
        fields: Vec<(&'static str, Value)>,
    },
    LoginAck {
        id: UserId,
        name: String,
        version: Version,
        seq: Option<Value>,
        token: TokenExpectation,
        friends: Vec<(UserId, bool)>,
        groups: Vec<(GroupId, Vec<Listed>)>,
    },
}

#[derive(Debug, Clone)]
enum TokenExpectation {
    None,
    /// A fresh token, to be learned (the user's token generation when it was issued).
    Fresh(u64),
    Same(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenState {
    None,
    /// Issued in the login ack of this generation, not yet read by the client.
    Pending(u64),
    Known(String),
}

#[derive(Debug)]
struct ModelUser {
    name: String,
    password: String,
    token: TokenState,
}

#[derive(Debug)]
struct ModelGroup {
    name: String,
    members: BTreeMap<UserId, &'static str>,
}

/// The failed-login throttle as `src/limit.rs` documents it (every run is far shorter than its window).
#[derive(Default)]
struct ThrottleModel {
    pairs: HashMap<(IpAddr, UserId), u32>,
    users: HashMap<UserId, u32>,
    addresses: HashMap<IpAddr, u32>,
    trusted: BTreeSet<(IpAddr, UserId)>,
}

impl ThrottleModel {
    fn allows(&self, addr: IpAddr, user: UserId) -> bool {
        let cfg = throttle_config();
        let n = |v: Option<&u32>| v.copied().unwrap_or(0);
        n(self.pairs.get(&(addr, user))) < cfg.per_user_and_address
            && n(self.users.get(&user)) < cfg.per_user
            && (self.trusted.contains(&(addr, user))
                || n(self.addresses.get(&addr)) < cfg.per_address)
    }

    fn failed(&mut self, addr: IpAddr, user: UserId) {
        *self.pairs.entry((addr, user)).or_default() += 1;
        *self.users.entry(user).or_default() += 1;
        *self.addresses.entry(addr).or_default() += 1;
    }

    fn succeeded(&mut self, addr: IpAddr, user: UserId) {
        self.pairs.remove(&(addr, user));
        self.trusted.insert((addr, user));
    }
}

#[derive(Default)]
struct Model {
    users: BTreeMap<UserId, ModelUser>,
    groups: BTreeMap<GroupId, ModelGroup>,
    friends: BTreeSet<(UserId, UserId)>,
    throttle: ThrottleModel,
    /// Accepted messages per recipient, in the order accepted.
    accepted: HashMap<UserId, Vec<Msg>>,
    /// Chat frames written to each recipient's connection, in order.
    written: HashMap<UserId, Vec<Value>>,
    /// Recipients some of whose frames were stored again by a connection that could not write them.
    restored: BTreeSet<UserId>,
    last_token: Option<String>,
    token_generation: u64,
}

struct Harness<'a> {
    ctx: &'a Context,
    store: &'a MemoryStore,
    conns: Vec<Conn>,
    model: Model,
    outcome: Outcome,
}

impl Harness<'_> {
    /// Bytes read from connection `i`'s socket.
    fn feed(&mut self, i: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.conns[i].phase != Phase::Open {
            return; // The reader has stopped.
        }
        self.conns[i].fresh = false;
        self.conns[i].decoder.feed(bytes);
        while let Some(unit) = self.conns[i].decoder.next_frame() {
            match unit {
                Decoded::Frame(frame) => self.dispatch(i, &frame),
                Decoded::Malformed => {
                    let conn = &mut self.conns[i];
                    conn.expected.push_back(error(100, None, Value::Null));
                    conn.caller.reply(clusterchat::protocol::reply::error(
                        100,
                        "malformed frame: expected one JSON object",
                        None,
                        None,
                    ));
                    self.drain_all();
                }
                Decoded::TooLarge => {
                    let conn = &mut self.conns[i];
                    conn.expected.push_back(error(106, None, Value::Null));
                    conn.caller.reply(clusterchat::protocol::reply::error(
                        106,
                        "frame too large",
                        None,
                        None,
                    ));
                    self.flush(i);
                    self.begin_close(i, false);
                    break;
                }
            }
        }
        self.flush(i);
        // The reader notices a socket shut by an overflow at its next read.
        self.notice_overflows(None);
    }

    /// What the frames of one feed left waiting (their chats' offline messages, and the replies behind
    /// them) is stored and queued, as the session does once a read's frames are handled. The model needs
    /// no notion of waiting: no other connection acts within a feed, and the stored messages come out in
    /// the order they were accepted.
    fn flush(&mut self, i: usize) {
        service::flush(self.ctx, &self.conns[i].caller);
        self.drain_all();
    }

    fn dispatch(&mut self, i: usize, frame: &[u8]) {
        self.outcome.frames += 1;
        let frame = match &self.model.last_token {
            Some(token) if contains(frame, b"\"TOKEN\"") => {
                replace(frame, b"\"TOKEN\"", json!(token).to_string().as_bytes())
            }
            _ => frame.to_vec(),
        };
        let before = self.conns[i]
            .caller
            .user
            .as_ref()
            .map(|u| (u.id, u.version));
        let (expected, predicted) = self.predict(i, &frame);
        let conn = &mut self.conns[i];
        service::dispatch(self.ctx, &mut conn.caller, &frame);
        if let Some(e) = expected {
            conn.expected.push_back(e);
        }
        // The caller's identity changes only through login and logout, as predicted.
        let after = conn.caller.user.as_ref().map(|u| (u.id, u.version));
        assert_eq!(
            after,
            predicted,
            "identity after {:?} (before: {before:?})",
            String::from_utf8_lossy(&frame)
        );
        self.check_presence();
        self.notice_overflows(Some(i));
        self.drain_all();
    }

    /// No user is logged in on two connections, and the online map holds exactly the logged-in users of
    /// connections whose user has not left.
    fn check_presence(&self) {
        let mut seen = BTreeSet::new();
        for conn in &self.conns {
            if let Some(me) = &conn.caller.user {
                assert!(seen.insert(me.id), "user {} logged in twice", me.id);
            }
        }
        for id in self.model.users.keys() {
            assert_eq!(
                self.ctx.online.contains(*id),
                seen.contains(id),
                "online map and connections disagree about user {id}"
            );
        }
    }

    /// Predicts the reply to `frame` from connection `i` and the connection's identity after it, and
    /// updates the model as the server must.
    fn predict(&mut self, i: usize, frame: &[u8]) -> (Option<Expected>, Option<(UserId, Version)>) {
        let me = self.conns[i].caller.user.clone();
        let now = me.as_ref().map(|u| (u.id, u.version));
        let held: BTreeSet<UserId> = self
            .conns
            .iter()
            .filter_map(|c| c.caller.user.as_ref().map(|u| u.id))
            .collect();
        let (expected, after) = self.predict_reply(i, me, &held, frame);
        (expected, after.unwrap_or(now))
    }

    /// [`Harness::predict`]; the identity is `None` when unchanged, `Some(new)` when changed.
    #[allow(clippy::type_complexity)]
    fn predict_reply(
        &mut self,
        i: usize,
        me: Option<Identity>,
        held: &BTreeSet<UserId>,
        frame: &[u8],
    ) -> (Option<Expected>, Option<Option<(UserId, Version)>>) {
        let peer = self.conns[i].caller.peer;
        let same = |e: Option<Expected>| (e, None);
        let env = match Envelope::parse(frame) {
            Ok(env) => env,
            Err(EnvelopeError::Malformed) => return same(Some(error(100, None, Value::Null))),
            Err(EnvelopeError::NoMsgid { seq }) => return same(Some(error(102, seq, Value::Null))),
        };
        let seq = env.seq.clone();
        let reference = env.body.get("msgid").cloned().unwrap_or(Value::Null);
        let err = |errno: i64| (Some(error(errno, seq.clone(), reference.clone())), None);
        let ack = |msgid: i64, errno: i64| {
            let e = Expected::Reply {
                msgid,
                errno,
                seq: seq.clone(),
                reference: Value::Null,
                fields: vec![],
            };
            (Some(e), None)
        };
        if !is_client_msgid(env.msgid) {
            return err(101);
        }
        if env.msgid == msgid::LOGIN && me.is_some() {
            return ack(msgid::LOGIN_ACK, 3);
        }
        if me.is_none() && env.msgid != msgid::LOGIN && env.msgid != msgid::REG {
            return err(103);
        }
        let request = match Request::parse(&env, &limits()) {
            Ok(r) => r,
            Err(_) => {
                return match env.msgid {
                    msgid::LOGIN => ack(msgid::LOGIN_ACK, 1),
                    msgid::REG => ack(msgid::REG_ACK, 1),
                    _ => err(102),
                };
            }
        };
        let v2 = me.as_ref().is_some_and(|u| u.version == Version::V2);
        let v2_ack = |msgid: i64, fields: Vec<(&'static str, Value)>| {
            let e = v2.then(|| Expected::Reply {
                msgid,
                errno: 0,
                seq: seq.clone(),
                reference: Value::Null,
                fields,
            });
            (e, None)
        };
        let m = &mut self.model;
        match request {
            Request::Register { name, password } => {
                if m.users.values().any(|u| u.name == name) {
                    return ack(msgid::REG_ACK, 1);
                }
                let id = m.users.keys().next_back().copied().unwrap_or(0) + 1;
                m.users.insert(
                    id,
                    ModelUser {
                        name,
                        password,
                        token: TokenState::None,
                    },
                );
                same(Some(Expected::Reply {
                    msgid: msgid::REG_ACK,
                    errno: 0,
                    seq,
                    reference: Value::Null,
                    fields: vec![("id", json!(id))],
                }))
            }
            Request::Login {
                id,
                credential,
                version,
            } => {
                if !m.throttle.allows(peer, id) {
                    return ack(msgid::LOGIN_ACK, 107);
                }
                let authentic = m.users.get(&id).is_some_and(|u| match &credential {
                    Credential::Password(p) => *p == u.password,
                    Credential::Token(t) => u.token == TokenState::Known(t.clone()),
                });
                if !authentic {
                    m.throttle.failed(peer, id);
                    return ack(msgid::LOGIN_ACK, 1);
                }
                m.throttle.succeeded(peer, id);
                if held.contains(&id) {
                    return ack(msgid::LOGIN_ACK, 2);
                }
                let token = match (version, credential) {
                    (Version::V1, _) => TokenExpectation::None,
                    (Version::V2, Credential::Token(t)) => TokenExpectation::Same(t),
                    (Version::V2, Credential::Password(_)) => {
                        m.token_generation += 1;
                        let generation = m.token_generation;
                        m.users.get_mut(&id).expect("authentic").token =
                            TokenState::Pending(generation);
                        TokenExpectation::Fresh(generation)
                    }
                };
                // Presence as the ack is built: the user logging in is online already.
                let online = |u: UserId| u == id || held.contains(&u);
                let friends = m
                    .friends
                    .range((id, UserId::MIN)..=(id, UserId::MAX))
                    .map(|&(_, f)| (f, online(f)))
                    .collect();
                let groups = m
                    .groups
                    .iter()
                    .filter(|(_, g)| g.members.contains_key(&id))
                    .map(|(&gid, g)| {
                        let users = g.members.iter().map(|(&u, &r)| (u, r, online(u)));
                        (gid, users.collect())
                    })
                    .collect();
                self.outcome.logins += 1;
                let e = Expected::LoginAck {
                    id,
                    name: m.users[&id].name.clone(),
                    version,
                    seq,
                    token,
                    friends,
                    groups,
                };
                (Some(e), Some(Some((id, version))))
            }
            Request::Logout => {
                let me = me.expect("checked");
                m.users.get_mut(&me.id).expect("exists").token = TokenState::None;
                (v2_ack(msgid::LOGOUT_ACK, vec![]).0, Some(None))
            }
            Request::Chat { to, text, time } => {
                let me = me.expect("checked");
                if !m.users.contains_key(&to) {
                    return err(104);
                }
                m.accepted.entry(to).or_default().push(Msg {
                    sender: me.id,
                    sender_name: me.name.to_string(),
                    to: Some(to),
                    group: None,
                    text,
                    time,
                });
                self.outcome.accepted_chats += 1;
                v2_ack(msgid::CHAT_ACK, vec![])
            }
            Request::AddFriend { friend } => {
                let me = me.expect("checked");
                if friend == me.id {
                    return err(105);
                }
                if !m.users.contains_key(&friend) {
                    return err(104);
                }
                m.friends.insert((me.id, friend));
                m.friends.insert((friend, me.id));
                v2_ack(msgid::ADD_FRIEND_ACK, vec![("friendid", json!(friend))])
            }
            Request::CreateGroup { name, desc: _ } => {
                let me = me.expect("checked");
                if m.groups.values().any(|g| g.name == name) {
                    return err(105);
                }
                let gid = m.groups.keys().next_back().copied().unwrap_or(0) + 1;
                m.groups.insert(
                    gid,
                    ModelGroup {
                        name: name.clone(),
                        members: BTreeMap::from([(me.id, "creator")]),
                    },
                );
                v2_ack(
                    msgid::CREATE_GROUP_ACK,
                    vec![("groupid", json!(gid)), ("groupname", json!(name))],
                )
            }
            Request::JoinGroup { group } => {
                let me = me.expect("checked");
                let Some(g) = m.groups.get_mut(&group) else {
                    return err(104);
                };
                g.members.entry(me.id).or_insert("normal");
                v2_ack(msgid::ADD_GROUP_ACK, vec![("groupid", json!(group))])
            }
            Request::GroupChat { group, text, time } => {
                let me = me.expect("checked");
                let Some(g) = m.groups.get(&group) else {
                    return err(104);
                };
                if !g.members.contains_key(&me.id) {
                    return err(105);
                }
                let recipients: Vec<UserId> =
                    g.members.keys().copied().filter(|&u| u != me.id).collect();
                for to in recipients {
                    m.accepted.entry(to).or_default().push(Msg {
                        sender: me.id,
                        sender_name: me.name.to_string(),
                        to: None,
                        group: Some(group),
                        text: text.clone(),
                        time: time.clone(),
                    });
                    self.outcome.accepted_chats += 1;
                }
                v2_ack(msgid::CHAT_ACK, vec![])
            }
        }
    }

    /// Connections whose mailbox overflowed start closing (`except`: the one whose reader is busy; it
    /// notices at its next read).
    fn notice_overflows(&mut self, except: Option<usize>) {
        for i in 0..CONNS {
            if Some(i) != except
                && self.conns[i].phase == Phase::Open
                && self.conns[i].overflowed.load(Ordering::SeqCst)
            {
                self.begin_close(i, true);
            }
        }
    }

    /// The writers of connections whose clients read write everything queued.
    fn drain_all(&mut self) {
        for i in 0..CONNS {
            if self.conns[i].phase == Phase::Open && !self.conns[i].stalled {
                while let Ok(item) = self.conns[i].rx.try_recv() {
                    self.handle(i, item);
                }
            }
        }
    }

    fn begin_close(&mut self, i: usize, client_gone: bool) {
        let conn = &mut self.conns[i];
        if conn.phase == Phase::Open {
            conn.caller.mailbox.begin_close();
            conn.phase = Phase::Closing { client_gone };
            self.outcome.closed += 1;
        }
    }

    /// One step towards closing connection `i` (see the module doc).
    fn step_close(&mut self, i: usize) {
        match self.conns[i].phase {
            Phase::Open => self.begin_close(i, true),
            Phase::Closing { client_gone } => {
                // The writer's end (`writer::run` after its loop).
                let items: Vec<Outgoing> = self.conns[i].rx.try_iter().collect();
                for item in items {
                    match item {
                        Outgoing::Reply(_) => self.handle(i, item),
                        Outgoing::Nudge(_) => {}
                        Outgoing::LoginAck { .. } if client_gone => {
                            let conn = &mut self.conns[i];
                            match conn.expected.pop_front() {
                                Some(Expected::LoginAck { .. }) => {}
                                other => panic!("an unwritten login ack, expected {other:?}"),
                            }
                            conn.writer.undelivered.extend(item.undelivered());
                        }
                        _ if client_gone => {
                            self.conns[i].writer.undelivered.extend(item.undelivered())
                        }
                        _ => self.handle(i, item),
                    }
                }
                let conn = &mut self.conns[i];
                let mut undelivered = std::mem::take(&mut conn.writer.undelivered);
                undelivered.append(&mut conn.writer.held);
                let mut recipients = Vec::new();
                let ctx = self.ctx;
                let restored = &mut self.model.restored;
                conn.caller.mailbox.finish_close(|spilled| {
                    undelivered.extend(spilled.into_iter().flat_map(Outgoing::undelivered));
                    restored.extend(undelivered.iter().map(|(to, _)| *to));
                    recipients = chat::persist_undelivered(ctx, undelivered);
                });
                chat::nudge(ctx, recipients);
                // Replies that were kept aside are never written.
                conn.expected.clear();
                conn.phase = Phase::Finished;
                self.drain_all();
            }
            Phase::Finished => {
                let conn = &mut self.conns[i];
                if let Some(me) = conn.caller.user.take() {
                    account::leave(self.ctx, &me, &conn.caller);
                }
                self.conns[i] = Conn::new(peer(i));
                self.check_presence();
                self.drain_all();
            }
        }
    }

    /// The writer handles one item: writes it, or holds it, or fetches stored frames.
    fn handle(&mut self, i: usize, item: Outgoing) {
        match item {
            Outgoing::Reply(frame) => self.write_reply(i, &frame),
            Outgoing::Chat { to, frame } => {
                if self.conns[i].writer.acked == Some(to) {
                    self.write_chat(i, to, &frame);
                } else {
                    self.conns[i].writer.held.push((to, frame));
                }
            }
            Outgoing::LoginAck {
                user,
                frame,
                offline,
                more,
            } => {
                self.write_login_ack(i, user, &frame, &offline);
                // The stored frames it carries are written with it.
                self.conns[i].writer.acked = Some(user);
                for f in &offline {
                    self.write_chat(i, user, f);
                }
                for (to, f) in std::mem::take(&mut self.conns[i].writer.held) {
                    self.write_chat(i, to, &f);
                }
                if more || std::mem::take(&mut self.conns[i].writer.nudge_pending) {
                    self.fetch(i, user);
                }
            }
            Outgoing::Nudge(user) => {
                if self.conns[i].writer.acked == Some(user) {
                    self.fetch(i, user);
                } else {
                    self.conns[i].writer.nudge_pending = true;
                }
            }
            Outgoing::LoggedOut => {
                let w = &mut self.conns[i].writer;
                w.acked = None;
                w.nudge_pending = false;
                if !w.held.is_empty() {
                    let held = std::mem::take(&mut w.held);
                    self.model.restored.extend(held.iter().map(|(to, _)| *to));
                    chat::store_undelivered(self.ctx, held);
                }
            }
            // Partly written frames come only from mailboxes that write directly to a socket.
            #[allow(unreachable_patterns)]
            other => panic!("a queue-only mailbox never holds {other:?}"),
        }
    }

    fn fetch(&mut self, i: usize, user: UserId) {
        loop {
            let frames =
                chat::fetch_offline(self.ctx, user).expect("the memory store is always up");
            let full = frames.len() == OFFLINE_BATCH;
            for f in frames {
                self.write_chat(i, user, &f);
            }
            if !full {
                return;
            }
        }
    }

    fn write_chat(&mut self, i: usize, to: UserId, frame: &str) {
        let value: Value = serde_json::from_str(frame).expect("a chat frame is JSON");
        assert!(
            value["msgid"] == msgid::ONE_CHAT || value["msgid"] == msgid::GROUP_CHAT,
            "chat frame {frame}"
        );
        if value["msgid"] == msgid::ONE_CHAT {
            assert_eq!(
                value["toid"], to,
                "chat frame {frame} written for user {to}"
            );
        }
        assert_eq!(
            self.conns[i].writer.acked,
            Some(to),
            "chat frame for {to} written before its login ack"
        );
        self.outcome.written_chats += 1;
        self.model.written.entry(to).or_default().push(value);
    }

    fn next_expected(&mut self, i: usize, frame: &str) -> Expected {
        self.conns[i]
            .expected
            .pop_front()
            .unwrap_or_else(|| panic!("connection {i} got {frame}, no reply was expected"))
    }

    fn write_reply(&mut self, i: usize, frame: &str) {
        let got: Value = serde_json::from_str(frame).expect("a reply is JSON");
        assert!(
            got["msgid"].is_i64(),
            "reply without an integer msgid: {frame}"
        );
        match self.next_expected(i, frame) {
            Expected::Reply {
                msgid: id,
                errno,
                seq,
                reference,
                fields,
            } => {
                assert_eq!(
                    (got["msgid"].clone(), got["errno"].clone()),
                    (json!(id), json!(errno)),
                    "{frame}"
                );
                self.check_seq(got.get("seq"), seq.as_ref(), frame);
                if id == msgid::ERROR {
                    assert_eq!(got.get("ref"), Some(&reference), "ref of {frame}");
                    assert!(got["errmsg"].is_string(), "{frame}");
                } else if errno != 0 {
                    assert!(got["errmsg"].is_string(), "{frame}");
                }
                for (key, value) in fields {
                    assert_eq!(got.get(key), Some(&value), "{key} of {frame}");
                }
            }
            Expected::LoginAck { .. } => panic!("expected a login ack, got {frame}"),
        }
    }

    /// `seq` is echoed by value, exactly: floats included (serde_json's `float_roundtrip`, which the fuzz
    /// build shares with the server), so a client matching replies by a float `seq` finds them.
    fn check_seq(&self, got: Option<&Value>, want: Option<&Value>, frame: &str) {
        assert_eq!(got, want, "seq of {frame}");
    }

    fn write_login_ack(&mut self, i: usize, user: UserId, frame: &str, offline: &[String]) {
        let got: Value = serde_json::from_str(frame).expect("a login ack is JSON");
        let Expected::LoginAck {
            id,
            name,
            version,
            seq,
            token,
            friends,
            groups,
        } = self.next_expected(i, frame)
        else {
            panic!("a login ack where another reply was expected: {frame}");
        };
        assert_eq!(user, id);
        assert_eq!(
            (got["msgid"].clone(), got["errno"].clone()),
            (json!(2), json!(0)),
            "{frame}"
        );
        assert_eq!(
            (got["id"].clone(), got["name"].clone()),
            (json!(id), json!(name)),
            "{frame}"
        );
        self.check_seq(got.get("seq"), seq.as_ref(), frame);
        let v1 = version == Version::V1;
        // v1: each element a string holding the object, and a list only when not empty.
        let list = |key: &str| -> Vec<Value> {
            match got.get(key) {
                None => {
                    assert!(v1, "v2 login ack without {key}: {frame}");
                    vec![]
                }
                Some(Value::Array(items)) => {
                    assert!(
                        !(v1 && items.is_empty()),
                        "v1 login ack with an empty {key}: {frame}"
                    );
                    items
                        .iter()
                        .map(|item| unwrap_v1(item, v1, frame))
                        .collect()
                }
                Some(other) => panic!("{key} is {other}"),
            }
        };
        let got_friends: Vec<(UserId, bool)> = list("friends")
            .iter()
            .map(|f| (f["id"].as_i64().unwrap() as UserId, f["state"] == "online"))
            .collect();
        assert_eq!(got_friends, friends, "friends in {frame}");
        type Shown = Vec<(GroupId, Vec<(UserId, String, bool)>)>;
        let got_groups: Shown = list("groups")
            .iter()
            .map(|g| {
                let users = g["users"].as_array().expect("users always present");
                let users = users
                    .iter()
                    .map(|u| unwrap_v1(u, v1, frame))
                    .map(|u| {
                        let role = u["role"].as_str().expect("a role").to_owned();
                        (
                            u["id"].as_i64().unwrap() as UserId,
                            role,
                            u["state"] == "online",
                        )
                    })
                    .collect();
                (g["id"].as_i64().unwrap() as GroupId, users)
            })
            .collect();
        let want_groups: Shown = groups
            .into_iter()
            .map(|(g, users)| {
                let users = users.into_iter().map(|(u, r, on)| (u, r.to_owned(), on));
                (g, users.collect())
            })
            .collect();
        assert_eq!(got_groups, want_groups, "groups in {frame}");
        let got_offline = list("offlinemsg");
        let want_offline: Vec<Value> = offline
            .iter()
            .map(|f| serde_json::from_str(f).expect("stored frames are JSON"))
            .collect();
        assert_eq!(got_offline, want_offline, "offlinemsg in {frame}");
        match (token, got.get("token")) {
            (TokenExpectation::None, None) => {}
            (TokenExpectation::Same(t), Some(got)) => assert_eq!(got, &json!(t)),
            (TokenExpectation::Fresh(generation), Some(Value::String(t))) => {
                let u = self.model.users.get_mut(&id).expect("exists");
                if u.token == TokenState::Pending(generation) {
                    u.token = TokenState::Known(t.clone());
                }
                self.model.last_token = Some(t.clone());
            }
            (want, got) => panic!("token: expected {want:?}, got {got:?} in {frame}"),
        }
    }

    fn final_checks(&mut self) {
        for &user in self.model.users.keys() {
            assert!(
                !self.ctx.online.contains(user),
                "user {user} still in the online map after everyone left"
            );
        }
        assert_eq!(
            self.store.claimed(),
            Vec::<UserId>::new(),
            "presence left claimed"
        );
        assert!(self.ctx.unreleased.lock().is_empty());
        let users: Vec<UserId> = self.model.users.keys().copied().collect();
        for user in users {
            let accepted = self.model.accepted.remove(&user).unwrap_or_default();
            let mut delivered = self.model.written.remove(&user).unwrap_or_default();
            delivered.extend(
                self.store
                    .stored_for(user)
                    .iter()
                    .map(|f| serde_json::from_str::<Value>(f).expect("stored frames are JSON")),
            );
            let in_order = accepted.len() == delivered.len()
                && accepted.iter().zip(&delivered).all(|(m, d)| m.matches(d));
            if in_order {
                continue;
            }
            // Exactly once, whatever the order? Given times first, so a server time cannot take their place.
            let mut left: Vec<Option<&Msg>> = accepted.iter().map(Some).collect();
            for d in &delivered {
                let pick = left
                    .iter()
                    .position(|m| m.is_some_and(|m| m.time.is_some() && m.matches(d)))
                    .or_else(|| left.iter().position(|m| m.is_some_and(|m| m.matches(d))));
                match pick {
                    Some(at) => left[at] = None,
                    None => panic!(
                        "user {user}: delivered {d} was never accepted, or twice\naccepted: {accepted:#?}\ndelivered: {delivered:#?}"
                    ),
                }
            }
            assert!(
                left.iter().all(Option::is_none),
                "user {user}: accepted but never delivered: {:#?}",
                left.iter().flatten().collect::<Vec<_>>()
            );
            assert!(
                self.model.restored.contains(&user),
                "user {user}: delivered out of order with no frame stored again\naccepted: {accepted:#?}\ndelivered: {delivered:#?}"
            );
            self.outcome.reordered_after_restore += 1;
        }
    }
}

fn unwrap_v1(item: &Value, v1: bool, frame: &str) -> Value {
    if v1 {
        let s = item
            .as_str()
            .unwrap_or_else(|| panic!("v1 element {item} is not a string: {frame}"));
        serde_json::from_str(s).expect("a v1 element holds JSON")
    } else {
        assert!(
            item.is_object(),
            "v2 element {item} is not an object: {frame}"
        );
        item.clone()
    }
}

fn error(errno: i64, seq: Option<Value>, reference: Value) -> Expected {
    Expected::Reply {
        msgid: msgid::ERROR,
        errno,
        seq,
        reference,
        fields: vec![],
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut at = 0;
    while at < haystack.len() {
        if haystack[at..].starts_with(needle) {
            out.extend_from_slice(with);
            at += needle.len();
        } else {
            out.push(haystack[at]);
            at += 1;
        }
    }
    out
}
