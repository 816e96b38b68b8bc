//! Handlers against a real (temporary SQLite) store, with the single-node bus; no sockets.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use super::{Caller, Context};
use crate::bus::local::LocalBus;
use crate::hasher::{HashCost, Hasher};
use crate::limit::LoginThrottle;
use crate::mailbox::{Mailbox, Outgoing};
use crate::protocol::request::Limits;
use crate::store::sqlite::SqliteStore;

struct Fixture {
    ctx: Arc<Context>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
    let cost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    let store: Arc<dyn crate::store::Store> = Arc::new(store);
    let ctx = Context {
        log: crate::store::batch::LogWriter::start(store.clone(), Default::default()).unwrap(),
        store,
        online: Default::default(),
        bus: Box::new(LocalBus),
        hasher: Hasher::new(&cost, 1).unwrap(),
        limits: Limits::default(),
        node: "test-node".into(),
        offline_batch: 2,
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
    };
    ctx.store.heartbeat("test-node").unwrap();
    Fixture {
        ctx: Arc::new(ctx),
        _dir: dir,
    }
}

struct Conn {
    caller: Caller,
    rx: Receiver<Outgoing>,
}

impl Conn {
    fn new() -> Conn {
        let (mailbox, rx) = Mailbox::new(64, || {});
        Conn {
            caller: Caller::new(mailbox, std::net::Ipv4Addr::LOCALHOST.into()),
            rx,
        }
    }

    /// Handles one frame, as a connection does when it is the only one of a read.
    fn send(&mut self, ctx: &Arc<Context>, frame: Value) {
        self.pipeline(ctx, &[frame]);
    }

    /// Handles frames that arrived in one read: each dispatched, then what they left waiting handed on
    /// and landed.
    fn pipeline(&mut self, ctx: &Arc<Context>, frames: &[Value]) {
        let mut turn = self.caller.turn(ctx);
        for frame in frames {
            turn.dispatch(frame.to_string().as_bytes());
        }
        drop(turn);
        self.caller.settle();
    }

    /// The next queued item as JSON (replies, chat frames and login acks alike).
    fn next(&self) -> Value {
        match self.rx.try_recv().expect("an item was queued") {
            Outgoing::Reply(frame)
            | Outgoing::Push { frame, .. }
            | Outgoing::LoginAck { frame, .. } => serde_json::from_str(&frame).unwrap(),
            Outgoing::Chat(live) => serde_json::from_str(&live.frame).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn req(&mut self, ctx: &Arc<Context>, frame: Value) -> Value {
        self.send(ctx, frame);
        self.next()
    }

    /// A connection that registered `name` (password "pw") and did not log in.
    fn registered(ctx: &Arc<Context>, name: &str) -> (Conn, i64) {
        let mut c = Conn::new();
        let id = c.req(ctx, json!({"msgid": 4, "name": name, "password": "pw"}))["id"]
            .as_i64()
            .unwrap();
        (c, id)
    }

    fn signed_up(ctx: &Arc<Context>, name: &str) -> (Conn, i64) {
        let (mut c, id) = Conn::registered(ctx, name);
        let ack = c.req(ctx, json!({"msgid": 1, "id": id, "password": "pw", "v": 2}));
        assert_eq!(ack["errno"], 0, "{ack}");
        (c, id)
    }
}

#[test]
fn register_and_login() {
    let f = fixture();
    let mut c = Conn::new();
    assert_eq!(
        c.req(&f.ctx, json!({"msgid": 4, "name": "a", "password": "pw"}))["id"],
        1
    );
    let taken = c.req(&f.ctx, json!({"msgid": 4, "name": "a", "password": "pw"}));
    assert_eq!(
        (taken["msgid"].clone(), taken["errno"].clone()),
        (json!(5), json!(1))
    );
    let wrong = c.req(&f.ctx, json!({"msgid": 1, "id": 1, "password": "nope"}));
    assert_eq!(wrong["errno"], 1);
    let ok = c.req(&f.ctx, json!({"msgid": 1, "id": 1, "password": "pw"}));
    assert_eq!(ok, json!({"msgid": 2, "errno": 0, "id": 1, "name": "a"}));
    assert!(f.ctx.online.contains(1));
    let mut other = Conn::new();
    assert_eq!(
        other.req(&f.ctx, json!({"msgid": 1, "id": 1, "password": "pw"}))["errno"],
        2
    );
}

#[test]
fn logout_leaves_the_online_map() {
    let f = fixture();
    let (mut c, id) = Conn::signed_up(&f.ctx, "a");
    c.send(&f.ctx, json!({"msgid": 3}));
    assert!(matches!(c.rx.try_recv(), Ok(Outgoing::LoggedOut)));
    assert_eq!(c.next(), json!({"msgid": 11, "errno": 0}));
    assert!(!f.ctx.online.contains(id as i32));
    assert!(c.caller.user.is_none());
}

#[test]
fn chat_goes_to_the_mailbox_or_storage() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (b, b_id) = Conn::signed_up(&f.ctx, "b");
    let (_, c_id) = Conn::registered(&f.ctx, "c");
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 6, "toid": b_id, "msg": "live"}))["msgid"],
        16
    );
    assert_eq!(b.next()["msg"], "live");
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 6, "toid": c_id, "msg": "later"}))["msgid"],
        16
    );
    let stored = f.ctx.store.take_offline(c_id as i32, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "later");
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 6, "toid": 99, "msg": "x"}))["errno"],
        104
    );
}

#[test]
fn login_ack_takes_one_batch_and_asks_for_more() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (mut b, b_id) = Conn::registered(&f.ctx, "b");
    for i in 0..3 {
        a.req(
            &f.ctx,
            json!({"msgid": 6, "toid": b_id, "msg": i.to_string()}),
        );
    }
    b.send(
        &f.ctx,
        json!({"msgid": 1, "id": b_id, "password": "pw", "v": 2}),
    );
    match b.rx.try_recv().unwrap() {
        Outgoing::LoginAck { offline, more, .. } => {
            assert_eq!(offline.len(), 2, "offline_batch is 2");
            assert!(more);
        }
        other => panic!("expected the login ack, got {other:?}"),
    }
}

#[test]
fn friends_and_groups_rules() {
    let f = fixture();
    let (mut a, a_id) = Conn::signed_up(&f.ctx, "a");
    let (mut b, b_id) = Conn::signed_up(&f.ctx, "b");
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 7, "friendid": a_id}))["errno"],
        105
    );
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 7, "friendid": 42}))["errno"],
        104
    );
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 7, "friendid": b_id}))["errno"],
        0
    );
    let friends = f.ctx.store.friends(b_id as i32).unwrap();
    assert_eq!(friends.len(), 1, "mutual");
    let gid = a.req(&f.ctx, json!({"msgid": 8, "groupname": "g"}))["groupid"].clone();
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 8, "groupname": "g"}))["errno"],
        105
    );
    assert_eq!(
        b.req(&f.ctx, json!({"msgid": 10, "groupid": gid, "msg": "x"}))["errno"],
        105
    );
    assert_eq!(
        b.req(&f.ctx, json!({"msgid": 9, "groupid": gid}))["errno"],
        0
    );
    // The joining connection has its ack; the other members get the event.
    let event = a.next();
    assert_eq!(
        (event["msgid"].clone(), event["event"].clone()),
        (json!(49), json!("joined"))
    );
    assert_eq!(
        b.req(&f.ctx, json!({"msgid": 10, "groupid": gid, "msg": "x"}))["msgid"],
        16
    );
    assert_eq!(a.next()["msg"], "x");
    assert_eq!(
        b.req(&f.ctx, json!({"msgid": 10, "groupid": 77, "msg": "x"}))["errno"],
        104
    );
}

#[test]
fn v1_gets_no_acks_but_errors() {
    let f = fixture();
    let mut a = Conn::new();
    let id = a.req(&f.ctx, json!({"msgid": 4, "name": "a", "password": "pw"}))["id"].clone();
    a.req(&f.ctx, json!({"msgid": 1, "id": id, "password": "pw"}));
    a.send(&f.ctx, json!({"msgid": 8, "groupname": "g"}));
    assert!(a.rx.try_recv().is_err(), "no ack in v1");
    assert_eq!(
        a.req(&f.ctx, json!({"msgid": 8, "groupname": "g"}))["errno"],
        105
    );
}

#[test]
fn rate_limited_login_and_register_get_their_own_ack() {
    use crate::protocol::frame::Decoded;
    let frame = |text: &str| Decoded::Frame(text.as_bytes().to_vec());
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap();
    let login = parse(super::rate_limited(&frame(
        r#"{"msgid":1,"id":1,"password":"p","seq":4}"#,
    )));
    assert_eq!(
        (
            login["msgid"].clone(),
            login["errno"].clone(),
            login["seq"].clone()
        ),
        (json!(2), json!(107), json!(4))
    );
    let reg = parse(super::rate_limited(&frame(
        r#"{"msgid":4,"name":"n","password":"p"}"#,
    )));
    assert_eq!(
        (reg["msgid"].clone(), reg["errno"].clone()),
        (json!(5), json!(107))
    );
    let chat = parse(super::rate_limited(&frame(r#"{"msgid":6,"seq":"s"}"#)));
    assert_eq!(
        (
            chat["msgid"].clone(),
            chat["ref"].clone(),
            chat["seq"].clone()
        ),
        (json!(15), json!(6), json!("s"))
    );
    let garbage = parse(super::rate_limited(&Decoded::Malformed));
    assert_eq!(
        (garbage["errno"].clone(), garbage["ref"].clone()),
        (json!(107), Value::Null)
    );
}

/// Found by the dispatch fuzz target: without serde_json's `float_roundtrip`, a float `seq` came back as a
/// neighbouring number (0.9856906946328695 → …696).
#[test]
fn a_float_seq_is_echoed_as_the_same_number() {
    let env =
        crate::protocol::request::Envelope::parse(br#"{"msgid":17,"seq":0.9856906946328695}"#)
            .unwrap();
    let reply = crate::protocol::reply::error(101, "unknown msgid", None, env.seq.as_ref());
    assert!(reply.contains(r#""seq":0.9856906946328695"#), "{reply}");
}

/// Frames of one read: chats wait to be committed together, and every reply keeps the order of the frame
/// it answers; nothing is delivered before its commit.
#[test]
fn pipelined_chats_are_committed_together_and_answered_in_order() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (b, b_id) = Conn::signed_up(&f.ctx, "b");
    let (_, c_id) = Conn::registered(&f.ctx, "c");
    let c_id = c_id as i32;
    let frames = [
        json!({"msgid": 6, "toid": c_id, "msg": "1", "seq": 1}),
        json!({"msgid": 99, "seq": 2}),
        json!({"msgid": 6, "toid": b_id, "msg": "live", "seq": 3}),
        json!({"msgid": 6, "toid": 4242, "msg": "nobody", "seq": 4}),
        json!({"msgid": 6, "toid": c_id, "msg": "2", "seq": 5}),
    ];
    {
        let mut turn = a.caller.turn(&f.ctx);
        for frame in &frames {
            turn.dispatch(frame.to_string().as_bytes());
        }
        assert!(
            b.rx.try_recv().is_err(),
            "nothing is delivered before its commit"
        );
        assert!(a.rx.try_recv().is_err(), "every reply waits for the commit");
    }
    a.caller.settle();
    assert_eq!(b.next()["msg"], "live");
    let answers: Vec<(Value, Value)> = (0..frames.len())
        .map(|_| a.next())
        .map(|r| (r["seq"].clone(), r["errno"].clone()))
        .collect();
    let expected = [(1, 0), (2, 101), (3, 0), (4, 104), (5, 0)];
    assert_eq!(
        answers,
        expected.map(|(seq, errno)| (json!(seq), json!(errno)))
    );
    let stored = f.ctx.store.take_offline(c_id, 10).unwrap();
    let texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["1", "2"]);
    assert_eq!(
        (stored[0].pos, stored[1].pos),
        (1, 2),
        "consecutive positions"
    );
}

/// A resend with the same cid is answered with the first ack and delivered to nobody again.
#[test]
fn a_resent_cid_gets_the_first_ack_and_is_not_delivered_twice() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (b, b_id) = Conn::signed_up(&f.ctx, "b");
    let chat = json!({"msgid": 6, "toid": b_id, "msg": "once", "cid": "k1"});
    let first = a.req(&f.ctx, chat.clone());
    assert_eq!(
        (&first["pos"], &first["cid"]),
        (&json!(1), &json!("k1")),
        "{first}"
    );
    assert_eq!(b.next()["pos"], 1);
    let again = a.req(&f.ctx, chat);
    assert_eq!(again, first);
    assert!(b.rx.try_recv().is_err(), "not delivered again");
}

/// A turn's chats are committed and answered after the turn ended, yet before anything the connection's
/// next turn answers.
#[test]
fn the_next_turns_answers_wait_for_the_chats_handed_on() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (b, b_id) = Conn::signed_up(&f.ctx, "b");
    let chat = json!({"msgid": 6, "toid": b_id, "msg": "x", "seq": 1});
    a.caller.turn(&f.ctx).dispatch(chat.to_string().as_bytes());
    let unknown = json!({"msgid": 99, "seq": 2});
    a.caller
        .turn(&f.ctx)
        .dispatch(unknown.to_string().as_bytes());
    let history = json!({"msgid": 19, "conv": format!("u{b_id}"), "seq": 3});
    a.send(&f.ctx, history);
    assert_eq!(a.next()["seq"], 1, "the chat's ack first");
    assert_eq!(a.next()["seq"], 2);
    let page = a.next();
    assert_eq!(page["seq"], 3);
    assert_eq!(page["messages"][0]["msg"], "x", "{page}");
    assert_eq!(b.next()["msg"], "x");
}

/// A recipient who comes online while a message for them waits to be committed gets it once: from the
/// offline list, fetched after the nudge.
#[test]
fn a_recipient_logging_in_during_the_commit_gets_it_once() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (mut c, c_id) = Conn::registered(&f.ctx, "c");
    let c_id = c_id as i32;
    let chat = |msg: &str| json!({"msgid": 6, "toid": c_id, "msg": msg}).to_string();
    let mut turn = a.caller.turn(&f.ctx);
    turn.dispatch(chat("first").as_bytes());
    c.send(
        &f.ctx,
        json!({"msgid": 1, "id": c_id, "password": "pw", "v": 2}),
    );
    assert!(
        matches!(c.rx.try_recv(), Ok(Outgoing::LoginAck { offline, .. }) if offline.is_empty())
    );
    turn.dispatch(chat("second").as_bytes());
    drop(turn);
    a.caller.settle();
    let mut live = Vec::new();
    while let Ok(item) = c.rx.try_recv() {
        match item {
            Outgoing::Chat(l) => {
                live.push(serde_json::from_str::<Value>(&l.frame).unwrap()["msg"].clone())
            }
            Outgoing::Nudge(id) => assert_eq!(id, c_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    let stored = f.ctx.store.take_offline(c_id, 10).unwrap();
    let mut got: Vec<Value> = stored.iter().map(|m| json!(m.text)).collect();
    got.extend(live);
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("first"), json!("second")], "each exactly once");
}

/// When the log cannot be written, each waiting chat is answered 109 and nobody gets anything.
#[test]
fn waiting_chats_are_answered_109_when_the_log_fails() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let (_, c_id) = Conn::registered(&f.ctx, "c");
    rusqlite::Connection::open(f._dir.path().join("t.db"))
        .unwrap()
        .execute_batch("DROP TABLE chunk")
        .unwrap();
    let frames: Vec<Value> = (1..=2)
        .map(|seq| json!({"msgid": 6, "toid": c_id, "msg": "x", "seq": seq}))
        .collect();
    a.pipeline(&f.ctx, &frames);
    for seq in 1..=2 {
        let reply = a.next();
        assert_eq!(
            (
                reply["errno"].clone(),
                reply["ref"].clone(),
                reply["seq"].clone()
            ),
            (json!(109), json!(6), json!(seq))
        );
    }
    assert!(a.rx.try_recv().is_err());
}

/// A read's chats do not pile up without bound: at 1,024 waiting messages they are committed at once.
#[test]
fn many_waiting_messages_are_committed_without_waiting_for_the_read_to_end() {
    let f = fixture();
    let (mut a, _) = Conn::signed_up(&f.ctx, "a");
    let gid = a.req(&f.ctx, json!({"msgid": 8, "groupname": "g"}))["groupid"].clone();
    let mut offline = Vec::new();
    for name in ["m1", "m2"] {
        let (mut m, id) = Conn::signed_up(&f.ctx, name);
        m.req(&f.ctx, json!({"msgid": 9, "groupid": gid}));
        m.send(&f.ctx, json!({"msgid": 3}));
        offline.push(id as i32);
    }
    let chat = json!({"msgid": 10, "groupid": gid, "msg": "x"}).to_string();
    let mut turn = a.caller.turn(&f.ctx);
    for _ in 0..1_024 {
        turn.dispatch(chat.as_bytes());
    }
    let stored: usize = offline
        .iter()
        .map(|&id| f.ctx.store.take_offline(id, 2_000).unwrap().len())
        .sum();
    assert_eq!(
        stored,
        2 * 1_024,
        "committed when the 1,024th message was held"
    );
    drop(turn);
}
