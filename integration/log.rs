//! The durable message log (PROTOCOL-2 sections 1, 2 and 4): positions, acknowledgements, history,
//! conversations, read positions and receipts, idempotent resends, and what v1 connections see of it.

use std::time::Duration;

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{
    Backend, Conn, Db, Server, device, joined, login_eventually, now_ms, recv_until, user,
};

const QUIET: Duration = Duration::from_millis(300);

fn chat(to: i64, text: &str) -> Value {
    json!({"msgid": 6, "toid": to, "msg": text})
}

fn chat_cid(to: i64, text: &str, cid: &str) -> Value {
    json!({"msgid": 6, "toid": to, "msg": text, "cid": cid})
}

fn group_chat(group: i64, text: &str) -> Value {
    json!({"msgid": 10, "groupid": group, "msg": text})
}

/// The conversation and position a frame names.
fn at(frame: &Value) -> (String, i64) {
    (
        frame["conv"]
            .as_str()
            .unwrap_or_else(|| panic!("conv in {frame}"))
            .to_owned(),
        frame["pos"]
            .as_i64()
            .unwrap_or_else(|| panic!("pos in {frame}")),
    )
}

/// Sends a chat on a v2 connection and returns its CHAT_MSG_ACK (asserting it is one).
fn acked(c: &mut Conn, frame: Value) -> Value {
    let ack = c.req(frame);
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(16), json!(0)),
        "{ack}"
    );
    ack
}

/// A HISTORY reply (asserting it is one): the positions, the texts, and `more`.
fn page(c: &mut Conn, query: Value) -> (Vec<i64>, Vec<String>, bool) {
    let reply = c.req(query.clone());
    assert_eq!(
        (reply["msgid"].clone(), reply["errno"].clone()),
        (json!(20), json!(0)),
        "{query} -> {reply}"
    );
    assert_eq!(reply["conv"], query["conv"], "{reply}");
    let messages = reply["messages"].as_array().expect("messages");
    (
        messages
            .iter()
            .map(|m| m["pos"].as_i64().unwrap())
            .collect(),
        messages
            .iter()
            .map(|m| m["msg"].as_str().unwrap().to_owned())
            .collect(),
        reply["more"].as_bool().expect("more is a boolean"),
    )
}

/// Asserts that `request` gets ERROR_MSG with `errno`, naming the request's msgid.
fn refused(c: &mut Conn, request: Value, errno: i64) -> Value {
    let reply = c.req(request.clone());
    assert_eq!(
        (
            reply["msgid"].clone(),
            reply["errno"].clone(),
            reply["ref"].clone()
        ),
        (json!(15), json!(errno), request["msgid"].clone()),
        "{request} -> {reply}"
    );
    reply
}

fn conversations(c: &mut Conn) -> Value {
    let reply = c.req(json!({"msgid": 17}));
    assert_eq!(
        (reply["msgid"].clone(), reply["errno"].clone()),
        (json!(18), json!(0)),
        "{reply}"
    );
    reply["conversations"].clone()
}

/// A group as CONVERSATIONS lists it.
fn summary(conv: String, name: &str, last: i64, read: i64) -> Value {
    json!({"conv": conv, "name": name, "last": last, "read": read, "unread": last - read})
}

/// A one-to-one conversation as CONVERSATIONS lists it: a group's fields and the peer's read position.
fn talk(conv: String, name: &str, last: i64, read: i64, peer_read: i64) -> Value {
    let mut entry = summary(conv, name, last, read);
    entry["peerread"] = json!(peer_read);
    entry
}

fn create_group(c: &mut Conn, name: &str) -> i64 {
    let created = c.req(json!({"msgid": 8, "groupname": name}));
    assert_eq!(created["msgid"], 13, "{created}");
    created["groupid"].as_i64().unwrap()
}

/// `c`, a connection of user `id`, joins `group`: its ack, then the `joined` event on each of `members`
/// (the v2 connections of the group's members and the joiner's other ones).
fn join_group(c: &mut Conn, id: i64, group: i64, members: &mut [&mut Conn]) {
    let ack = c.req(json!({"msgid": 9, "groupid": group}));
    assert_eq!(ack["msgid"], 14, "{ack}");
    for m in members.iter_mut() {
        joined(m, group, id);
    }
}

/// Registers `name` (password "pw") without logging in.
fn registered(server: &Server, name: &str) -> i64 {
    server.connect(Separator::Newline).register(name, "pw")
}

/// Positions 1, 2, 3… per conversation, whoever sends, each side naming it after the other; another
/// conversation, a chat with oneself and a group each count from 1.
fn positions_are_gapless_per_conversation(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "al");
    let (mut b, b_id) = user(&server, "bea");
    let (mut c, c_id) = user(&server, "cy");
    let (ua, ub, uc) = (format!("u{a_id}"), format!("u{b_id}"), format!("u{c_id}"));
    assert_eq!(at(&acked(&mut a, chat(b_id, "1"))), (ub.clone(), 1));
    assert_eq!(at(&b.recv()), (ua.clone(), 1));
    assert_eq!(at(&acked(&mut b, chat(a_id, "2"))), (ua.clone(), 2));
    assert_eq!(at(&a.recv()), (ub.clone(), 2));
    assert_eq!(at(&acked(&mut a, chat(b_id, "3"))), (ub.clone(), 3));
    assert_eq!(at(&b.recv()), (ua.clone(), 3));
    // Another pair has a conversation of its own.
    assert_eq!(at(&acked(&mut c, chat(a_id, "x"))), (ua.clone(), 1));
    assert_eq!(at(&a.recv()), (uc.clone(), 1));
    assert_eq!(at(&acked(&mut a, chat(c_id, "y"))), (uc.clone(), 2));
    assert_eq!(at(&c.recv()), (ua.clone(), 2));
    // A chat with oneself: "u<me>", from 1 (the frame, then the ack).
    a.send(chat(a_id, "self"));
    let (ack, frames) = recv_until(&mut a, 16);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        (at(&ack), at(&frames[0])),
        ((ua.clone(), 1), (ua.clone(), 1))
    );
    // A group: "g<G>" for everyone, from 1.
    let gid = create_group(&mut a, "trio");
    join_group(&mut b, b_id, gid, &mut [&mut a]);
    let g = format!("g{gid}");
    assert_eq!(at(&acked(&mut a, group_chat(gid, "g1"))), (g.clone(), 1));
    assert_eq!(at(&b.recv()), (g.clone(), 1));
    assert_eq!(at(&acked(&mut b, group_chat(gid, "g2"))), (g.clone(), 2));
    assert_eq!(at(&a.recv()), (g.clone(), 2));
    // The one-to-one conversation went on where it was.
    assert_eq!(at(&acked(&mut b, chat(a_id, "4"))), (ua, 4));
    assert_eq!(at(&a.recv()), (ub, 4));
    for conn in [&mut a, &mut b, &mut c] {
        conn.expect_silence(QUIET);
    }
}

/// CHAT_MSG_ACK carries conv, pos, ts (the commit time), and cid and seq when the request had them;
/// the recipient's frame has the same pos, ts and cid.
fn chat_ack_carries_the_log_fields(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "dan");
    let (mut b, b_id) = user(&server, "eve");
    let before = now_ms();
    let ack = a.req(
        json!({"msgid": 6, "toid": b_id, "msg": "hi", "time": "t0", "cid": "c-1", "seq": "s9"}),
    );
    let after = now_ms();
    let ts = ack["ts"].as_i64().expect("ts in the ack");
    assert!(
        (before..=after).contains(&ts),
        "ts {ts} not within [{before}, {after}]"
    );
    assert_eq!(
        ack,
        json!({"msgid": 16, "errno": 0, "conv": format!("u{b_id}"), "pos": 1, "ts": ts, "cid": "c-1", "seq": "s9"})
    );
    assert_eq!(
        b.recv(),
        json!({"msgid": 6, "id": a_id, "name": "dan", "toid": b_id, "msg": "hi", "time": "t0",
               "conv": format!("u{a_id}"), "pos": 1, "ts": ts, "cid": "c-1"})
    );
    // Without cid and seq, neither key; the frame has no cid either.
    let ack = acked(
        &mut a,
        json!({"msgid": 6, "toid": b_id, "msg": "plain", "time": "t1"}),
    );
    let ts = ack["ts"].as_i64().unwrap();
    assert_eq!(
        ack,
        json!({"msgid": 16, "errno": 0, "conv": format!("u{b_id}"), "pos": 2, "ts": ts})
    );
    assert_eq!(
        b.recv(),
        json!({"msgid": 6, "id": a_id, "name": "dan", "toid": b_id, "msg": "plain", "time": "t1",
               "conv": format!("u{a_id}"), "pos": 2, "ts": ts})
    );
    // A group chat's ack, with a numeric seq.
    let gid = create_group(&mut a, "acks");
    join_group(&mut b, b_id, gid, &mut [&mut a]);
    let ack = acked(
        &mut a,
        json!({"msgid": 10, "groupid": gid, "msg": "g", "time": "t2", "cid": "c-2", "seq": 7}),
    );
    let ts = ack["ts"].as_i64().unwrap();
    assert_eq!(
        ack,
        json!({"msgid": 16, "errno": 0, "conv": format!("g{gid}"), "pos": 1, "ts": ts, "cid": "c-2", "seq": 7})
    );
    assert_eq!(
        b.recv(),
        json!({"msgid": 10, "id": a_id, "name": "dan", "groupid": gid, "msg": "g", "time": "t2",
               "conv": format!("g{gid}"), "pos": 1, "ts": ts, "cid": "c-2"})
    );
    // Later commits never have an earlier ts.
    let later = acked(&mut b, chat(a_id, "back"))["ts"].as_i64().unwrap();
    assert!(later >= ts, "{later} < {ts}");
}

/// HISTORY of 7 messages with limit 3: the latest page, pages before and after, `more` both ways, in
/// ascending order, the same frames for both sides (each naming the conversation its way).
fn history_pages(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "fay");
    let b_id = registered(&server, "gus");
    for i in 1..=7 {
        acked(
            &mut a,
            json!({"msgid": 6, "toid": b_id, "msg": format!("m{i}"), "time": format!("t{i}"), "cid": format!("h{i}")}),
        );
    }
    let ub = format!("u{b_id}");
    let q = |extra: Value| {
        let mut query = json!({"msgid": 19, "conv": ub});
        for (k, v) in extra.as_object().unwrap() {
            query[k] = v.clone();
        }
        query
    };
    let texts = |range: std::ops::RangeInclusive<i64>| -> (Vec<i64>, Vec<String>) {
        (
            range.clone().collect(),
            range.map(|i| format!("m{i}")).collect(),
        )
    };
    let expect = |range: std::ops::RangeInclusive<i64>, more: bool| {
        let (p, t) = texts(range);
        (p, t, more)
    };
    let none = (Vec::<i64>::new(), Vec::<String>::new(), false);
    assert_eq!(
        page(&mut a, q(json!({"limit": 3}))),
        expect(5..=7, true),
        "latest"
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "before": 5}))),
        expect(2..=4, true)
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "before": 2}))),
        expect(1..=1, false)
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "before": 4}))),
        expect(1..=3, false)
    );
    assert_eq!(page(&mut a, q(json!({"limit": 3, "before": 1}))), none);
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "before": 1000}))),
        expect(5..=7, true)
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "after": 0}))),
        expect(1..=3, true)
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "after": 3}))),
        expect(4..=6, true)
    );
    assert_eq!(
        page(&mut a, q(json!({"limit": 3, "after": 4}))),
        expect(5..=7, false)
    );
    assert_eq!(page(&mut a, q(json!({"limit": 3, "after": 7}))), none);
    assert_eq!(page(&mut a, q(json!({"limit": 7}))), expect(1..=7, false));
    assert_eq!(page(&mut a, q(json!({"limit": 6}))), expect(2..=7, true));
    assert_eq!(
        page(&mut a, q(json!({}))),
        expect(1..=7, false),
        "default limit 50"
    );
    assert_eq!(
        page(
            &mut a,
            q(json!({"limit": 200, "before": 9223372036854775807i64}))
        ),
        expect(1..=7, false)
    );
    // The reply echoes seq, names the conversation as the asker does, and holds full v2 frames.
    let reply = a.req(json!({"msgid": 19, "conv": ub, "after": 1, "limit": 1, "seq": "h"}));
    let ts = reply["messages"][0]["ts"].clone();
    assert!(ts.is_i64(), "{reply}");
    assert_eq!(
        reply,
        json!({"msgid": 20, "errno": 0, "conv": ub, "more": true, "seq": "h", "messages": [
            {"msgid": 6, "id": a_id, "name": "fay", "toid": b_id, "msg": "m2", "time": "t2",
             "conv": ub, "pos": 2, "ts": ts, "cid": "h2"}
        ]})
    );
    // The other side: "u<fay>", the same frames as its offline messages.
    let mut b = server.connect(Separator::Newline);
    let login = b.login(b_id, "pw", 2);
    let ua = format!("u{a_id}");
    let reply = b.req(json!({"msgid": 19, "conv": ua}));
    assert_eq!(
        (reply["conv"].clone(), reply["more"].clone()),
        (json!(ua), json!(false)),
        "{reply}"
    );
    assert_eq!(
        reply["messages"], login["offlinemsg"],
        "history frames = offline frames"
    );
    assert_eq!(reply["messages"][1]["conv"], json!(ua));
    assert_eq!(reply["messages"].as_array().unwrap().len(), 7);
}

/// HISTORY's refusals: 102 for invalid fields (before and after together among them), 104 for an unknown
/// user or group, 105 for a group one is not in, 103 before login; an existing user without messages and
/// a group without messages give [].
fn history_errors_and_empty_conversations(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut anon = server.connect(Separator::Newline);
    refused(&mut anon, json!({"msgid": 19, "conv": "u1"}), 103);
    let (mut a, a_id) = user(&server, "hal");
    let (mut b, b_id) = user(&server, "ida");
    let ub = format!("u{b_id}");
    acked(&mut a, chat(b_id, "one"));
    assert_eq!(b.recv()["msg"], "one");
    let both = refused(
        &mut a,
        json!({"msgid": 19, "conv": ub, "before": 5, "after": 1, "seq": 4}),
        102,
    );
    assert_eq!(both["seq"], 4);
    assert!(
        both["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid field"),
        "{both}"
    );
    for bad in [
        json!({"msgid": 19, "conv": ub, "limit": 0}),
        json!({"msgid": 19, "conv": ub, "limit": 201}),
        json!({"msgid": 19, "conv": ub, "limit": "3"}),
        json!({"msgid": 19, "conv": ub, "limit": -1}),
        json!({"msgid": 19, "conv": ub, "before": 0}),
        json!({"msgid": 19, "conv": ub, "before": -1}),
        json!({"msgid": 19, "conv": ub, "before": "5"}),
        json!({"msgid": 19, "conv": ub, "before": 1.5}),
        json!({"msgid": 19, "conv": ub, "before": 9223372036854775808u64}),
        json!({"msgid": 19, "conv": ub, "after": -1}),
        json!({"msgid": 19, "conv": ub, "after": null}),
        json!({"msgid": 19, "conv": "x1"}),
        json!({"msgid": 19, "conv": "u"}),
        json!({"msgid": 19, "conv": "uabc"}),
        json!({"msgid": 19, "conv": "u0"}),
        json!({"msgid": 19, "conv": "u01"}),
        json!({"msgid": 19, "conv": "u2147483648"}),
        json!({"msgid": 19, "conv": "g-1"}),
        json!({"msgid": 19, "conv": " u1"}),
        json!({"msgid": 19, "conv": b_id}),
        json!({"msgid": 19}),
    ] {
        refused(&mut a, bad, 102);
    }
    assert_eq!(
        page(&mut a, json!({"msgid": 19, "conv": ub, "limit": 200})).0,
        vec![1]
    );
    refused(&mut a, json!({"msgid": 19, "conv": "u999999"}), 104);
    refused(&mut a, json!({"msgid": 19, "conv": "g999999"}), 104);
    let gid = create_group(&mut b, "closed");
    acked(&mut b, group_chat(gid, "members only"));
    let g = format!("g{gid}");
    refused(&mut a, json!({"msgid": 19, "conv": g}), 105);
    join_group(&mut a, a_id, gid, &mut [&mut b]);
    assert_eq!(
        page(&mut a, json!({"msgid": 19, "conv": g})).1,
        vec!["members only".to_owned()]
    );
    let none = (Vec::<i64>::new(), Vec::<String>::new(), false);
    let c_id = registered(&server, "jon");
    assert_eq!(
        page(&mut a, json!({"msgid": 19, "conv": format!("u{c_id}")})),
        none
    );
    assert_eq!(
        page(&mut a, json!({"msgid": 19, "conv": format!("u{a_id}")})),
        none,
        "no notes to self yet"
    );
    let quiet = create_group(&mut a, "quiet");
    assert_eq!(
        page(
            &mut a,
            json!({"msgid": 19, "conv": format!("g{quiet}"), "after": 0})
        ),
        none
    );
}

/// CONVERSATIONS: most recently active first, groups without messages last (ties by conv), with last,
/// read and unread per user; the same list in a later v2 login ack.
fn conversations_order_and_unread(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "kai");
    let (mut b, b_id) = user(&server, "lia");
    let (mut c, c_id) = user(&server, "moe");
    let (mut d, _) = user(&server, "ned");
    let step = || std::thread::sleep(Duration::from_millis(20));
    assert_eq!(conversations(&mut d), json!([]), "no messages, no groups");
    let quiet1 = create_group(&mut a, "quiet1");
    let quiet2 = create_group(&mut a, "quiet2");
    let busy = create_group(&mut b, "busy");
    join_group(&mut a, a_id, busy, &mut [&mut b]);
    acked(&mut a, chat(b_id, "1"));
    b.recv();
    step();
    for text in ["1", "2"] {
        acked(&mut c, chat(a_id, text));
        a.recv();
    }
    step();
    a.send(chat(a_id, "note"));
    assert_eq!(recv_until(&mut a, 16).1.len(), 1, "the note, then the ack");
    step();
    for text in ["g1", "g2"] {
        acked(&mut b, group_chat(busy, text));
        a.recv();
    }
    step();
    acked(&mut b, chat(a_id, "x"));
    a.recv();
    let (ua, ub, uc) = (format!("u{a_id}"), format!("u{b_id}"), format!("u{c_id}"));
    let (g1, g2) = (format!("g{quiet1}"), format!("g{quiet2}"));
    let mut empty = vec![summary(g1, "quiet1", 0, 0), summary(g2, "quiet2", 0, 0)];
    empty.sort_by_key(|s| s["conv"].as_str().unwrap().to_owned());
    let mut expected = vec![
        talk(ub.clone(), "lia", 2, 1, 2),
        summary(format!("g{busy}"), "busy", 2, 0),
        talk(ua.clone(), "kai", 1, 1, 1),
        talk(uc, "moe", 2, 0, 2),
    ];
    expected.extend(empty);
    let list = conversations(&mut a);
    assert_eq!(list, json!(expected));
    assert_eq!(list[0]["unread"], 1);
    // The other sides.
    assert_eq!(
        conversations(&mut b),
        json!([
            talk(ua.clone(), "kai", 2, 2, 1),
            summary(format!("g{busy}"), "busy", 2, 2)
        ])
    );
    assert_eq!(conversations(&mut c), json!([talk(ua, "kai", 2, 2, 0)]));
    // A v2 login ack carries the same list; seq is echoed by CONVERSATIONS.
    let (_tab, ack) = device(&server, a_id, "tab");
    assert_eq!(ack["conversations"], json!(expected));
    let reply = a.req(json!({"msgid": 17, "seq": "c"}));
    assert_eq!(reply["seq"], "c");
    assert_eq!(reply["conversations"], json!(expected));
    // A new message moves its conversation to the front.
    acked(&mut c, chat(a_id, "3"));
    a.recv();
    let list = conversations(&mut a);
    assert_eq!(list[0], talk(format!("u{c_id}"), "moe", 3, 0, 3));
    assert_eq!(list[1], expected[0]);
}

/// READ moves the read position forward only, never past the last message, and answers with the
/// position in force; its refusals are those of HISTORY.
fn read_moves_forward_and_clamps(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "oli");
    let (mut b, b_id) = user(&server, "pam");
    for i in 1..=5 {
        acked(&mut b, chat(a_id, &i.to_string()));
        a.recv();
    }
    let ub = format!("u{b_id}");
    let read = |c: &mut Conn, conv: &str, pos: i64| {
        let reply = c.req(json!({"msgid": 21, "conv": conv, "pos": pos}));
        assert_eq!(
            reply,
            json!({"msgid": 22, "errno": 0, "conv": conv, "read": reply["read"]}),
            "{reply}"
        );
        reply["read"].as_i64().unwrap()
    };
    let ua = format!("u{a_id}");
    let receipt = |read: i64| json!({"msgid": 23, "conv": ua, "id": a_id, "read": read});
    assert_eq!(read(&mut a, &ub, 3), 3);
    assert_eq!(b.recv(), receipt(3));
    assert_eq!(read(&mut a, &ub, 2), 3, "never backwards");
    assert_eq!(read(&mut a, &ub, 3), 3);
    assert_eq!(
        conversations(&mut a),
        json!([talk(ub.clone(), "pam", 5, 3, 5)])
    );
    assert_eq!(read(&mut a, &ub, 100), 5, "clamped to last");
    assert_eq!(b.recv(), receipt(5));
    assert_eq!(read(&mut a, &ub, 9223372036854775807), 5);
    assert_eq!(read(&mut a, &ub, 4), 5);
    b.expect_silence(QUIET);
    assert_eq!(
        conversations(&mut a),
        json!([talk(ub.clone(), "pam", 5, 5, 5)])
    );
    acked(&mut b, chat(a_id, "6"));
    a.recv();
    assert_eq!(
        conversations(&mut a),
        json!([talk(ub.clone(), "pam", 6, 5, 6)])
    );
    // seq is echoed.
    let reply = a.req(json!({"msgid": 21, "conv": ub, "pos": 6, "seq": 1}));
    assert_eq!(
        reply,
        json!({"msgid": 22, "errno": 0, "conv": ub, "read": 6, "seq": 1})
    );
    assert_eq!(b.recv(), receipt(6));
    // A conversation without messages stays at 0; groups clamp too.
    let c_id = registered(&server, "quo");
    assert_eq!(read(&mut a, &format!("u{c_id}"), 5), 0);
    let gid = create_group(&mut b, "reads");
    join_group(&mut a, a_id, gid, &mut [&mut b]);
    let g = format!("g{gid}");
    assert_eq!(read(&mut a, &g, 1), 0);
    acked(&mut b, group_chat(gid, "g"));
    a.recv();
    assert_eq!(read(&mut a, &g, 7), 1);
    for bad in [
        json!({"msgid": 21, "conv": ub, "pos": 0}),
        json!({"msgid": 21, "conv": ub, "pos": -2}),
        json!({"msgid": 21, "conv": ub, "pos": "3"}),
        json!({"msgid": 21, "conv": ub}),
        json!({"msgid": 21, "conv": "z9", "pos": 1}),
        json!({"msgid": 21, "pos": 1}),
    ] {
        refused(&mut a, bad, 102);
    }
    refused(
        &mut a,
        json!({"msgid": 21, "conv": "u999999", "pos": 1}),
        104,
    );
    refused(
        &mut a,
        json!({"msgid": 21, "conv": "g999999", "pos": 1}),
        104,
    );
    let other = create_group(&mut b, "not yours");
    refused(
        &mut a,
        json!({"msgid": 21, "conv": format!("g{other}"), "pos": 1}),
        105,
    );
    b.expect_silence(QUIET);
}

/// A READ that moved sends RECEIPT to the reader's other v2 devices and, one-to-one, to the peer's v2
/// devices (conv named from their side), never to a v1 connection; a READ that did not move sends none;
/// in a group only the reader's own devices hear of it.
fn receipts_reach_other_devices_and_the_peer(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut reg = server.connect(Separator::Newline);
    let a_id = reg.register("rae", "pw");
    let b_id = reg.register("sam", "pw");
    let (mut phone, _) = device(&server, a_id, "phone");
    let (mut laptop, _) = device(&server, a_id, "laptop");
    let mut a_v1 = server.connect(Separator::Nul);
    a_v1.login(a_id, "pw", 1);
    let (mut b, _) = device(&server, b_id, "default");
    let (mut b2, _) = device(&server, b_id, "desk");
    let mut b_v1 = server.connect(Separator::Nul);
    b_v1.login(b_id, "pw", 1);
    for i in 1..=3 {
        acked(&mut b, chat(a_id, &i.to_string()));
        for conn in [&mut phone, &mut laptop, &mut a_v1, &mut b2] {
            assert_eq!(conn.recv()["msg"], i.to_string());
        }
    }
    b_v1.expect_silence(QUIET);
    let (ua, ub) = (format!("u{a_id}"), format!("u{b_id}"));
    assert_eq!(
        phone.req(json!({"msgid": 21, "conv": ub, "pos": 2})),
        json!({"msgid": 22, "errno": 0, "conv": ub, "read": 2})
    );
    assert_eq!(
        laptop.recv(),
        json!({"msgid": 23, "conv": ub, "id": a_id, "read": 2})
    );
    for peer in [&mut b, &mut b2] {
        assert_eq!(
            peer.recv(),
            json!({"msgid": 23, "conv": ua, "id": a_id, "read": 2})
        );
    }
    // Not moved: no receipt anywhere.
    assert_eq!(
        laptop.req(json!({"msgid": 21, "conv": ub, "pos": 1}))["read"],
        2
    );
    // Clamped: the receipt says where it is now.
    assert_eq!(
        laptop.req(json!({"msgid": 21, "conv": ub, "pos": 50}))["read"],
        3
    );
    assert_eq!(
        phone.recv(),
        json!({"msgid": 23, "conv": ub, "id": a_id, "read": 3})
    );
    for peer in [&mut b, &mut b2] {
        assert_eq!(
            peer.recv(),
            json!({"msgid": 23, "conv": ua, "id": a_id, "read": 3})
        );
    }
    for conn in [
        &mut phone,
        &mut laptop,
        &mut a_v1,
        &mut b,
        &mut b2,
        &mut b_v1,
    ] {
        conn.expect_silence(QUIET);
    }
    // The peer reads: the reader's side hears of it.
    assert_eq!(acked(&mut phone, chat(b_id, "4"))["pos"], 4);
    assert_eq!(laptop.recv()["pos"], 4, "carbon");
    for conn in [&mut b, &mut b2] {
        assert_eq!(conn.recv()["pos"], 4);
    }
    assert_eq!(b_v1.recv()["msg"], "4");
    assert_eq!(b.req(json!({"msgid": 21, "conv": ua, "pos": 4}))["read"], 4);
    assert_eq!(
        b2.recv(),
        json!({"msgid": 23, "conv": ua, "id": b_id, "read": 4})
    );
    for conn in [&mut phone, &mut laptop] {
        assert_eq!(
            conn.recv(),
            json!({"msgid": 23, "conv": ub, "id": b_id, "read": 4})
        );
    }
    // A group read reaches the reader's other v2 devices only.
    let gid = create_group(&mut b, "rcpt");
    join_group(&mut phone, a_id, gid, &mut [&mut b, &mut b2, &mut laptop]);
    acked(&mut b, group_chat(gid, "g"));
    for conn in [&mut phone, &mut laptop, &mut b2] {
        assert_eq!(conn.recv()["msg"], "g");
    }
    a_v1.recv();
    let g = format!("g{gid}");
    assert_eq!(
        phone.req(json!({"msgid": 21, "conv": g, "pos": 1}))["read"],
        1
    );
    assert_eq!(
        laptop.recv(),
        json!({"msgid": 23, "conv": g, "id": a_id, "read": 1})
    );
    for conn in [
        &mut phone,
        &mut laptop,
        &mut a_v1,
        &mut b,
        &mut b2,
        &mut b_v1,
    ] {
        conn.expect_silence(QUIET);
    }
}

/// Sending moves the sender's own read position to the message they sent, never backwards.
fn sending_moves_own_read_position(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "tia");
    let (mut b, b_id) = user(&server, "ulf");
    for i in 1..=3 {
        acked(&mut b, chat(a_id, &i.to_string()));
        a.recv();
    }
    let ub = format!("u{b_id}");
    assert_eq!(
        conversations(&mut a),
        json!([talk(ub.clone(), "ulf", 3, 0, 3)])
    );
    assert_eq!(acked(&mut a, chat(b_id, "reply"))["pos"], 4);
    b.recv();
    assert_eq!(
        conversations(&mut a),
        json!([talk(ub.clone(), "ulf", 4, 4, 3)])
    );
    assert_eq!(a.req(json!({"msgid": 21, "conv": ub, "pos": 2}))["read"], 4);
    let gid = create_group(&mut b, "own");
    join_group(&mut a, a_id, gid, &mut [&mut b]);
    acked(&mut b, group_chat(gid, "g1"));
    a.recv();
    acked(&mut a, group_chat(gid, "g2"));
    b.recv();
    assert_eq!(
        conversations(&mut a)[0],
        summary(format!("g{gid}"), "own", 2, 2)
    );
    b.expect_silence(QUIET);
}

/// A resend with a cid the sender already got committed is answered with the first ack (same conv, pos,
/// ts, whatever conversation it names) and not delivered again: on the same connection after a "lost
/// ack", twice in one write, and on a new connection of the same user.
fn cid_resend_is_idempotent(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "val");
    let (mut b, b_id) = user(&server, "wyn");
    let (mut c, c_id) = user(&server, "xia");
    // A refused chat commits nothing: its cid is still free.
    refused(&mut a, chat_cid(999_999, "nobody", "k-1"), 104);
    let first = acked(&mut a, chat_cid(b_id, "once", "k-1"));
    assert_eq!(first["pos"], 1);
    assert_eq!(b.recv()["msg"], "once");
    // The client did not see that ack and sends again.
    let again = acked(&mut a, chat_cid(b_id, "once", "k-1"));
    assert_eq!(again, first);
    // Naming another conversation (and another text) changes nothing.
    let elsewhere = acked(&mut a, chat_cid(c_id, "twice?", "k-1"));
    assert_eq!(elsewhere, first);
    b.expect_silence(QUIET);
    c.expect_silence(Duration::from_millis(10));
    // The same cid from another sender is another message.
    let other = acked(&mut c, chat_cid(b_id, "mine", "k-1"));
    assert_eq!(at(&other), (format!("u{b_id}"), 1));
    assert_eq!(b.recv()["msg"], "mine");
    // Twice in one write: two identical acks, one message.
    let twice = format!(
        "{}\n{}\n",
        json!({"msgid": 6, "toid": b_id, "msg": "pair", "cid": "k-2", "seq": 1}),
        json!({"msgid": 6, "toid": b_id, "msg": "pair", "cid": "k-2", "seq": 2})
    );
    a.send_raw(twice.trim_end().as_bytes());
    let (mut x, mut y) = (a.recv(), a.recv());
    assert_eq!((x["seq"].take(), y["seq"].take()), (json!(1), json!(2)));
    assert_eq!(x, y);
    assert_eq!(x["pos"], 2);
    assert_eq!(b.recv()["msg"], "pair");
    b.expect_silence(QUIET);
    // A group message's cid too.
    let gid = create_group(&mut a, "dups");
    join_group(&mut b, b_id, gid, &mut [&mut a]);
    let g = acked(
        &mut a,
        json!({"msgid": 10, "groupid": gid, "msg": "g", "cid": "k-3"}),
    );
    assert_eq!(b.recv()["msg"], "g");
    assert_eq!(
        acked(
            &mut a,
            json!({"msgid": 10, "groupid": gid, "msg": "g", "cid": "k-3"})
        ),
        g
    );
    // The connection drops; a new one of the same user resends: the first ack again, no delivery.
    drop(a);
    let (mut a, _) = login_eventually(server.addr, a_id, Duration::from_secs(5));
    assert_eq!(acked(&mut a, chat_cid(b_id, "once", "k-1")), first);
    assert_eq!(
        acked(
            &mut a,
            json!({"msgid": 6, "toid": b_id, "msg": "pair", "cid": "k-2"})
        )["pos"],
        2
    );
    b.expect_silence(QUIET);
    // The log holds each message once.
    let (positions, texts, _) = page(&mut a, json!({"msgid": 19, "conv": format!("u{b_id}")}));
    assert_eq!(
        (positions, texts),
        (vec![1, 2], vec!["once".to_owned(), "pair".to_owned()])
    );
    // A v1 sender's cid is deduplicated too (no ack).
    let mut v1 = server.connect(Separator::Nul);
    let v1_id = v1.register("yul", "pw");
    v1.login(v1_id, "pw", 1);
    v1.send(chat_cid(b_id, "v1 once", "k-9"));
    v1.send(chat_cid(b_id, "v1 once", "k-9"));
    assert_eq!(v1.req(json!({"msgid": 99}))["errno"], 101, "no ack for v1");
    assert_eq!(b.recv()["msg"], "v1 once");
    b.expect_silence(QUIET);
}

/// An invalid cid (empty, 65 characters, not a string, a control character) is 102; 64 characters are
/// fine.
fn invalid_cid_is_102(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "zed");
    let (mut b, b_id) = user(&server, "amy");
    let gid = create_group(&mut a, "cids");
    for cid in [
        json!(""),
        json!("x".repeat(65)),
        json!(5),
        json!(["c"]),
        json!("bell\u{7}"),
    ] {
        let reply = refused(
            &mut a,
            json!({"msgid": 6, "toid": b_id, "msg": "m", "cid": cid, "seq": 3}),
            102,
        );
        assert!(
            reply["errmsg"]
                .as_str()
                .unwrap()
                .starts_with("invalid field 'cid'"),
            "{reply}"
        );
        assert_eq!(reply["seq"], 3);
        refused(
            &mut a,
            json!({"msgid": 10, "groupid": gid, "msg": "m", "cid": cid}),
            102,
        );
    }
    b.expect_silence(QUIET);
    let long = "é".repeat(64);
    assert_eq!(
        acked(&mut a, chat_cid(b_id, "ok", &long))["cid"],
        json!(long)
    );
    assert_eq!(b.recv()["cid"], json!(long));
}

/// A v1 connection gets no answer to CONVERSATIONS and HISTORY (the next request's answer comes first),
/// its READ takes effect silently, and its failures are still ERROR_MSG.
fn v1_connections_get_no_answer_to_queries(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut b, b_id) = user(&server, "bo");
    let mut a = server.connect(Separator::Nul);
    let a_id = a.register("cat", "pw");
    a.login(a_id, "pw", 1);
    let (mut a2, _) = device(&server, a_id, "phone");
    acked(&mut b, chat(a_id, "1"));
    acked(&mut b, chat(a_id, "2"));
    a.recv();
    a.recv();
    a2.recv();
    a2.recv();
    let ub = format!("u{b_id}");
    a.send(json!({"msgid": 17}));
    a.expect_silence(QUIET);
    a.send(json!({"msgid": 19, "conv": ub}));
    a.send(json!({"msgid": 19, "conv": ub, "after": 0, "limit": 1, "seq": 5}));
    a.send(json!({"msgid": 21, "conv": ub, "pos": 2}));
    a.expect_silence(QUIET);
    assert_eq!(
        a.req(json!({"msgid": 99}))["errno"],
        101,
        "the next request's answer comes first"
    );
    // The READ took effect: the v2 device hears of it, and the position is in force.
    assert_eq!(
        a2.recv(),
        json!({"msgid": 23, "conv": ub, "id": a_id, "read": 2})
    );
    assert_eq!(
        b.recv(),
        json!({"msgid": 23, "conv": format!("u{a_id}"), "id": a_id, "read": 2})
    );
    assert_eq!(
        conversations(&mut a2),
        json!([talk(ub.clone(), "bo", 2, 2, 2)])
    );
    // Failures are ERROR_MSG on v1 too.
    refused(&mut a, json!({"msgid": 19, "conv": "u999999"}), 104);
    refused(
        &mut a,
        json!({"msgid": 19, "conv": ub, "before": 1, "after": 1}),
        102,
    );
    refused(
        &mut a,
        json!({"msgid": 21, "conv": "g999999", "pos": 1}),
        104,
    );
    let closed = b.req(json!({"msgid": 8, "groupname": "not for v1"}))["groupid"].clone();
    refused(
        &mut a,
        json!({"msgid": 19, "conv": format!("g{closed}")}),
        105,
    );
    // A v1 chat has no ack and the recipient's v1 frame has no log fields.
    a.send(json!({"msgid": 6, "toid": b_id, "msg": "from v1", "time": "t", "cid": "v1-c"}));
    a.expect_silence(QUIET);
    let mut got = b.recv();
    assert_eq!(got["pos"], 3);
    let mut carbon = a2.recv();
    assert_eq!(carbon["conv"], ub);
    for f in [&mut got, &mut carbon] {
        f.as_object_mut().unwrap().remove("conv");
    }
    assert_eq!(got, carbon, "the v2 device gets the same frame as a carbon");
}

/// The v2 login ack carries "device" and "conversations"; a v1 login ack has neither.
fn login_ack_has_conversations_and_device(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "dot");
    let mut reg = server.connect(Separator::Newline);
    let b_id = reg.register("eli", "pw");
    acked(&mut a, chat(b_id, "hello"));
    let first = reg.login(b_id, "pw", 2);
    assert_eq!(first["device"], "default");
    assert_eq!(
        first["conversations"],
        json!([talk(format!("u{a_id}"), "dot", 1, 0, 1)])
    );
    let (_phone, ack) = device(&server, b_id, "phone");
    assert_eq!(ack["device"], "phone");
    assert_eq!(
        ack["conversations"],
        json!([talk(format!("u{a_id}"), "dot", 1, 0, 1)])
    );
    assert_eq!(ack["offlinemsg"], json!([]), "taken by the first device");
    let mut v1 = server.connect(Separator::Nul);
    let ack = v1.login(b_id, "pw", 1);
    assert_eq!(
        (ack.get("device"), ack.get("conversations")),
        (None, None),
        "{ack}"
    );
}

/// Offline messages: a v2 login gets them as v2 frames (conv, pos, ts, cid); a v1 recipient gets exactly
/// the original's frames, one-to-one and group.
fn offline_frames_by_version(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "fox");
    let mut reg = server.connect(Separator::Newline);
    let b_id = reg.register("gil", "pw");
    let c_id = reg.register("hop", "pw");
    let gid = create_group(&mut a, "offline");
    for id in [b_id, c_id] {
        let mut m = server.connect(Separator::Newline);
        m.login(id, "pw", 2);
        // fox hears of each join (gil's dropped connection may or may not still be told of hop's).
        join_group(&mut m, id, gid, &mut [&mut a]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let acks = [
        acked(
            &mut a,
            json!({"msgid": 6, "toid": b_id, "msg": "to b", "time": "t1", "cid": "o-1"}),
        ),
        acked(
            &mut a,
            json!({"msgid": 6, "toid": c_id, "msg": "to c", "time": "t2"}),
        ),
        acked(
            &mut a,
            json!({"msgid": 10, "groupid": gid, "msg": "to all", "time": "t3", "cid": "o-3"}),
        ),
    ];
    let ts: Vec<i64> = acks.iter().map(|a| a["ts"].as_i64().unwrap()).collect();
    let ua = format!("u{a_id}");
    let mut b = server.connect(Separator::Newline);
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(
        ack["offlinemsg"],
        json!([
            {"msgid": 6, "id": a_id, "name": "fox", "toid": b_id, "msg": "to b", "time": "t1",
             "conv": ua, "pos": 1, "ts": ts[0], "cid": "o-1"},
            {"msgid": 10, "id": a_id, "name": "fox", "groupid": gid, "msg": "to all", "time": "t3",
             "conv": format!("g{gid}"), "pos": 1, "ts": ts[2], "cid": "o-3"},
        ])
    );
    let mut c = server.connect(Separator::Nul);
    let ack = c.login(c_id, "pw", 1);
    let frames: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .expect("a v1 ack lists offlinemsg")
        .iter()
        .map(|s| serde_json::from_str(s.as_str().expect("v1 offline frames are strings")).unwrap())
        .collect();
    assert_eq!(
        frames,
        vec![
            json!({"msgid": 6, "id": a_id, "name": "fox", "toid": c_id, "msg": "to c", "time": "t2"}),
            json!({"msgid": 10, "id": a_id, "name": "fox", "groupid": gid, "msg": "to all", "time": "t3"}),
        ]
    );
}

/// A query pipelined behind chats (one write) is answered after their acks and sees them: HISTORY lists
/// them, READ may go up to them, CONVERSATIONS counts them.
fn queries_behind_pipelined_chats_see_them(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "pip");
    let b_id = registered(&server, "qin");
    let ub = format!("u{b_id}");
    let frames = [
        json!({"msgid": 6, "toid": b_id, "msg": "p1", "seq": 1}),
        json!({"msgid": 6, "toid": b_id, "msg": "p2", "seq": 2}),
        json!({"msgid": 19, "conv": ub, "seq": 3}),
        json!({"msgid": 6, "toid": b_id, "msg": "p3", "seq": 4}),
        json!({"msgid": 17, "seq": 5}),
        json!({"msgid": 6, "toid": a_id, "msg": "self", "seq": 6}),
        json!({"msgid": 19, "conv": format!("u{a_id}"), "seq": 7}),
    ];
    let burst: String = frames.iter().map(|f| format!("{f}\n")).collect();
    a.send_raw(burst.trim_end().as_bytes());
    let mut replies = Vec::new();
    while replies.len() < frames.len() {
        let frame = a.recv();
        if frame.get("seq").is_some() {
            replies.push(frame);
        }
    }
    let seqs: Vec<Value> = replies.iter().map(|r| r["seq"].clone()).collect();
    assert_eq!(
        seqs,
        (1..=7).map(|i| json!(i)).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(
        (replies[0]["pos"].clone(), replies[1]["pos"].clone()),
        (json!(1), json!(2))
    );
    let texts: Vec<Value> = replies[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(texts, vec![json!("p1"), json!("p2")]);
    assert_eq!(replies[3]["pos"], 3);
    assert_eq!(replies[4]["conversations"][0], talk(ub, "qin", 3, 3, 0));
    assert_eq!(replies[5]["pos"], 1);
    assert_eq!(replies[6]["messages"][0]["msg"], "self");
}

crate::on_both_backends!(
    queries_behind_pipelined_chats_see_them,
    positions_are_gapless_per_conversation,
    chat_ack_carries_the_log_fields,
    history_pages,
    history_errors_and_empty_conversations,
    conversations_order_and_unread,
    read_moves_forward_and_clamps,
    receipts_reach_other_devices_and_the_peer,
    sending_moves_own_read_position,
    cid_resend_is_idempotent,
    invalid_cid_is_102,
    v1_connections_get_no_answer_to_queries,
    login_ack_has_conversations_and_device,
    offline_frames_by_version,
);
