//! People (PROTOCOL-2 section 5, as decided in notes/decisions-11.md): friend requests, answers and
//! removal, blocking, the FRIENDS lists and the v2 login ack's pending `requests`, FIND_USER, presence,
//! typing, PASSWORD, the login requirement of every new request, and what v1 connections see of them.

use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{
    Backend, Conn, Db, Nodes, Server, acked_as, assert_nothing_queued, device, expect_all_silent,
    group_event, group_info, login_eventually, make_group, recv_within, refused_with, register_all,
    token_login_eventually, user, v1_login,
};

const QUIET: Duration = Duration::from_millis(300);

fn chat(to: i64, text: &str) -> Value {
    json!({"msgid": 6, "toid": to, "msg": text})
}

fn answer(to: i64, accept: bool) -> Value {
    json!({"msgid": 27, "friendid": to, "accept": accept})
}

fn remove(to: i64) -> Value {
    json!({"msgid": 29, "friendid": to})
}

fn typing_to(conv: &str) -> Value {
    json!({"msgid": 51, "conv": conv})
}

/// The TYPING frame a receiver gets.
fn typing(conv: &str, from: i64) -> Value {
    json!({"msgid": 51, "conv": conv, "id": from})
}

fn presence(id: i64, state: &str) -> Value {
    json!({"msgid": 50, "id": id, "state": state})
}

fn request_event(from: i64, name: &str, text: &str) -> Value {
    json!({"msgid": 26, "event": "request", "id": from, "name": name, "text": text})
}

/// A FRIEND_EVENT other than "request": accepted, declined, removed.
fn friend_event(event: &str, from: i64, name: &str) -> Value {
    json!({"msgid": 26, "event": event, "id": from, "name": name})
}

/// Sends FRIEND_REQUEST (with `text`) and asserts the ack and its state.
fn requested(c: &mut Conn, to: i64, text: &str, state: &str) {
    let ack = acked_as(c, json!({"msgid": 24, "friendid": to, "text": text}), 25);
    assert_eq!(
        ack,
        json!({"msgid": 25, "errno": 0, "friendid": to, "state": state})
    );
}

/// Sends BLOCK and asserts its ack.
fn block(c: &mut Conn, id: i64, on: bool) {
    let ack = acked_as(c, json!({"msgid": 31, "id": id, "block": on}), 32);
    assert_eq!(ack, json!({"msgid": 32, "errno": 0, "id": id, "block": on}));
}

/// The FRIENDS ack.
fn lists(c: &mut Conn) -> Value {
    acked_as(c, json!({"msgid": 33}), 34)
}

/// A FRIENDS ack with these lists.
fn friends_ack(friends: Value, incoming: Value, outgoing: Value, blocked: Value) -> Value {
    json!({"msgid": 34, "errno": 0, "friends": friends, "incoming": incoming,
           "outgoing": outgoing, "blocked": blocked})
}

fn no_lists() -> Value {
    friends_ack(json!([]), json!([]), json!([]), json!([]))
}

fn friend(id: i64, name: &str, state: &str) -> Value {
    json!({"id": id, "name": name, "state": state})
}

fn pending(id: i64, name: &str, text: &str) -> Value {
    json!({"id": id, "name": name, "text": text})
}

fn blocked(id: i64, name: &str) -> Value {
    json!({"id": id, "name": name})
}

/// Joins `group` from `joiner` (a v2 connection of user `id`): the ack alone on the joining connection,
/// and the `joined` event on each of `members`.
fn join(joiner: &mut Conn, id: i64, group: i64, members: &mut [&mut Conn]) {
    let event = group_event(group, "joined", id, id);
    acked_as(joiner, json!({"msgid": 9, "groupid": group}), 14);
    for m in members.iter_mut() {
        assert_eq!(m.recv(), event);
    }
}

/// ann, ben, cat and dan, registered, and each logged in with v2 as the device "default".
fn four_on_default_devices(server: &Server) -> ([i64; 4], [Conn; 4]) {
    let ids: [i64; 4] = register_all(server, &["ann", "ben", "cat", "dan"])
        .try_into()
        .expect("four users");
    (ids, ids.map(|id| device(server, id, "default").0))
}

/// Every new request (msgid 24 and up, client to server) is 103 before login, before its fields are
/// checked: on a NUL-framed and a newline-framed connection, and after a logout; nothing is carried out.
fn new_requests_need_login(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben"]);
    let (a_id, b_id) = (ids[0], ids[1]);
    let requests = [
        json!({"msgid": 24, "friendid": b_id, "text": "hi"}),
        json!({"msgid": 27, "friendid": b_id, "accept": true}),
        json!({"msgid": 29, "friendid": b_id}),
        json!({"msgid": 31, "id": b_id, "block": true}),
        json!({"msgid": 33}),
        json!({"msgid": 35, "name": "ben"}),
        json!({"msgid": 37, "groupid": 1}),
        json!({"msgid": 39, "groupid": 1, "id": b_id}),
        json!({"msgid": 41, "groupid": 1, "id": b_id, "role": "admin"}),
        json!({"msgid": 43, "groupid": 1, "groupname": "x"}),
        json!({"msgid": 45, "groupid": 1}),
        json!({"msgid": 47, "groupid": 1}),
        json!({"msgid": 51, "conv": format!("u{b_id}")}),
        json!({"msgid": 52, "old": "pw", "new": "pw2"}),
        json!({"msgid": 54, "groupid": 1, "id": b_id}),
    ];
    let mut anon = server.connect(Separator::Newline);
    let mut old = server.connect(Separator::Nul);
    let mut out = server.connect(Separator::Newline);
    out.login(a_id, "pw", 2);
    acked_as(&mut out, json!({"msgid": 3}), 11);
    for (i, request) in requests.iter().enumerate() {
        let mut with_seq = request.clone();
        with_seq["seq"] = json!(i);
        for c in [&mut anon, &mut old, &mut out] {
            refused_with(c, with_seq.clone(), 103);
            // 103 comes before the field checks.
            refused_with(c, json!({"msgid": request["msgid"]}), 103);
        }
    }
    // Nothing was done: ben has no request, ann's password and lists are as they were.
    let (_b, ack) = device(&server, b_id, "default");
    assert_eq!(ack["requests"], json!([]), "{ack}");
    out.login(a_id, "pw", 2);
    assert_eq!(lists(&mut out), no_lists());
}

/// FRIEND_REQUEST, FRIEND_ANSWER, FRIEND_REMOVE and BLOCK refuse invalid fields (102), unknown users
/// (104) and oneself (105); FRIEND_ANSWER without a pending request from that user is 104; a refused
/// request changes nothing and pushes nothing; a text of 200 characters is fine.
fn friend_request_fields_and_refusals(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben", "cat"]);
    let (a_id, b_id, c_id) = (ids[0], ids[1], ids[2]);
    let (mut a, _) = device(&server, a_id, "default");
    let (mut b, _) = device(&server, b_id, "default");
    for bad in [
        json!({"msgid": 24}),
        json!({"msgid": 24, "text": "hi"}),
        json!({"msgid": 24, "friendid": b_id.to_string()}),
        json!({"msgid": 24, "friendid": 0}),
        json!({"msgid": 24, "friendid": -1}),
        json!({"msgid": 24, "friendid": 1.5}),
        json!({"msgid": 24, "friendid": 2147483648i64}),
        json!({"msgid": 24, "friendid": b_id, "text": 5}),
        json!({"msgid": 24, "friendid": b_id, "text": ["hi"]}),
        json!({"msgid": 24, "friendid": b_id, "text": "x".repeat(201), "seq": "long"}),
        json!({"msgid": 27, "friendid": b_id}),
        json!({"msgid": 27, "friendid": b_id, "accept": "true"}),
        json!({"msgid": 27, "friendid": b_id, "accept": 1}),
        json!({"msgid": 27, "friendid": b_id, "accept": null}),
        json!({"msgid": 27, "accept": true}),
        json!({"msgid": 27, "friendid": "x", "accept": true}),
        json!({"msgid": 29}),
        json!({"msgid": 29, "friendid": "x"}),
        json!({"msgid": 29, "friendid": 0}),
        json!({"msgid": 31, "block": true}),
        json!({"msgid": 31, "id": "x", "block": true}),
        json!({"msgid": 31, "id": b_id}),
        json!({"msgid": 31, "id": b_id, "block": "true"}),
        json!({"msgid": 31, "id": b_id, "block": 1}),
    ] {
        refused_with(&mut a, bad, 102);
    }
    for unknown in [
        json!({"msgid": 24, "friendid": 999_999, "text": "hello?"}),
        json!({"msgid": 27, "friendid": 999_999, "accept": true}),
        json!({"msgid": 29, "friendid": 999_999}),
        json!({"msgid": 31, "id": 999_999, "block": true, "seq": 4}),
    ] {
        refused_with(&mut a, unknown, 104);
    }
    for me in [
        json!({"msgid": 24, "friendid": a_id, "text": "me"}),
        json!({"msgid": 29, "friendid": a_id}),
        json!({"msgid": 31, "id": a_id, "block": true}),
        json!({"msgid": 31, "id": a_id, "block": false}),
    ] {
        refused_with(&mut a, me, 105);
    }
    // No pending request from that user to me (ben and cat never asked).
    refused_with(&mut a, answer(b_id, true), 104);
    refused_with(&mut a, answer(c_id, false), 104);
    b.expect_silence(QUIET);
    assert_eq!(lists(&mut a), no_lists());
    assert_eq!(lists(&mut b), no_lists());
    let text = "é".repeat(200);
    requested(&mut a, b_id, &text, "requested");
    assert_eq!(b.recv(), request_event(a_id, "ann", &text));
    // ann's own request is not one to her.
    refused_with(&mut a, answer(b_id, true), 104);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([]),
            json!([pending(b_id, "ben", &text)]),
            json!([])
        )
    );
    expect_all_silent(&mut [&mut a, &mut b], QUIET);
}

/// A request, answered yes, then removed: `na` holds the requester, ben's devices are on both nodes (a v1
/// one among them, which gets nothing).
fn accept_and_remove(na: &Server, nb: &Server) {
    let ids = register_all(na, &["ann", "ben"]);
    let (a_id, b_id) = (ids[0], ids[1]);
    let (mut a, _) = device(na, a_id, "default");
    let (mut phone, _) = device(nb, b_id, "phone");
    let (mut laptop, _) = device(na, b_id, "laptop");
    let mut old = v1_login(nb, b_id);
    let ack = acked_as(
        &mut a,
        json!({"msgid": 24, "friendid": b_id, "text": "let's be friends", "seq": "r1"}),
        25,
    );
    assert_eq!(
        ack,
        json!({"msgid": 25, "errno": 0, "friendid": b_id, "state": "requested", "seq": "r1"})
    );
    let event = request_event(a_id, "ann", "let's be friends");
    assert_eq!(phone.recv(), event);
    assert_eq!(laptop.recv(), event);
    assert_nothing_queued(&mut old);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([]),
            json!([pending(b_id, "ben", "let's be friends")]),
            json!([])
        )
    );
    assert_eq!(
        lists(&mut laptop),
        friends_ack(
            json!([]),
            json!([pending(a_id, "ann", "let's be friends")]),
            json!([]),
            json!([])
        )
    );
    // Yes, from ben's phone.
    let ack = acked_as(
        &mut phone,
        json!({"msgid": 27, "friendid": a_id, "accept": true, "seq": 2}),
        28,
    );
    assert_eq!(
        ack,
        json!({"msgid": 28, "errno": 0, "friendid": a_id, "state": "friends", "seq": 2})
    );
    assert_eq!(a.recv(), friend_event("accepted", b_id, "ben"));
    expect_all_silent(&mut [&mut a, &mut phone, &mut laptop], QUIET);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([friend(b_id, "ben", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    assert_eq!(
        lists(&mut phone),
        friends_ack(
            json!([friend(a_id, "ann", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    refused_with(&mut laptop, answer(a_id, true), 104);
    // ann removes ben: both of his v2 devices hear of it.
    assert_eq!(
        acked_as(&mut a, remove(b_id), 30),
        json!({"msgid": 30, "errno": 0, "friendid": b_id})
    );
    let event = friend_event("removed", a_id, "ann");
    assert_eq!(phone.recv(), event);
    assert_eq!(laptop.recv(), event);
    assert_eq!(lists(&mut a), no_lists());
    assert_eq!(lists(&mut phone), no_lists());
    // Idempotent, and nothing pushed when nothing was removed.
    assert_eq!(
        acked_as(&mut a, remove(b_id), 30),
        json!({"msgid": 30, "errno": 0, "friendid": b_id})
    );
    assert_eq!(
        acked_as(&mut phone, remove(a_id), 30),
        json!({"msgid": 30, "errno": 0, "friendid": a_id})
    );
    expect_all_silent(&mut [&mut a, &mut phone, &mut laptop], QUIET);
    assert_nothing_queued(&mut old);
}

/// A request answered no; a request withdrawn by FRIEND_REMOVE; an incoming request removed by the one
/// asked. ann is on `na`, ben and cat on `nb`.
fn decline_and_withdraw(na: &Server, nb: &Server) {
    let ids = register_all(na, &["ann", "ben", "cat"]);
    let (a_id, b_id, c_id) = (ids[0], ids[1], ids[2]);
    let (mut a, _) = device(na, a_id, "default");
    let (mut b, _) = device(nb, b_id, "default");
    let (mut c, _) = device(nb, c_id, "default");
    requested(&mut b, a_id, "hello", "requested");
    assert_eq!(a.recv(), request_event(b_id, "ben", "hello"));
    assert_eq!(
        acked_as(&mut a, answer(b_id, false), 28),
        json!({"msgid": 28, "errno": 0, "friendid": b_id, "state": "declined"})
    );
    assert_eq!(b.recv(), friend_event("declined", a_id, "ann"));
    assert_eq!(lists(&mut a), no_lists());
    assert_eq!(lists(&mut b), no_lists());
    refused_with(&mut a, answer(b_id, false), 104);
    refused_with(&mut a, answer(b_id, true), 104);
    // The request is gone: ben may ask again.
    requested(&mut b, a_id, "please", "requested");
    assert_eq!(a.recv(), request_event(b_id, "ben", "please"));
    // cat asks (no text) and withdraws.
    acked_as(&mut c, json!({"msgid": 24, "friendid": a_id}), 25);
    assert_eq!(a.recv(), request_event(c_id, "cat", ""));
    assert_eq!(
        acked_as(&mut c, remove(a_id), 30),
        json!({"msgid": 30, "errno": 0, "friendid": a_id})
    );
    assert_eq!(a.recv(), friend_event("removed", c_id, "cat"));
    refused_with(&mut a, answer(c_id, true), 104);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([pending(b_id, "ben", "please")]),
            json!([]),
            json!([])
        )
    );
    assert_eq!(lists(&mut c), no_lists());
    // ann removes ben's pending request instead of answering it.
    acked_as(&mut a, remove(b_id), 30);
    assert_eq!(b.recv(), friend_event("removed", a_id, "ann"));
    assert_eq!(lists(&mut a), no_lists());
    assert_eq!(lists(&mut b), no_lists());
    expect_all_silent(&mut [&mut a, &mut b, &mut c], QUIET);
}

fn request_accept_remove(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    accept_and_remove(&server, &server);
}

fn request_decline_withdraw(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    decline_and_withdraw(&server, &server);
}

/// FRIEND_REQUEST to someone who had asked already completes at once (both friends, both requests gone,
/// the other told "accepted"); asking twice changes nothing and pushes once; friends already: "friends".
fn request_completes_when_the_other_had_asked(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "ann");
    let (mut b, b_id) = user(&server, "ben");
    requested(&mut a, b_id, "hi", "requested");
    assert_eq!(b.recv(), request_event(a_id, "ann", "hi"));
    requested(&mut a, b_id, "hi again", "requested");
    b.expect_silence(QUIET);
    assert_eq!(
        lists(&mut b),
        friends_ack(
            json!([]),
            json!([pending(a_id, "ann", "hi")]),
            json!([]),
            json!([])
        ),
        "the second request changed nothing"
    );
    // ben asks ann back: that completes it.
    let ack = acked_as(&mut b, json!({"msgid": 24, "friendid": a_id, "seq": 7}), 25);
    assert_eq!(
        ack,
        json!({"msgid": 25, "errno": 0, "friendid": a_id, "state": "friends", "seq": 7})
    );
    assert_eq!(a.recv(), friend_event("accepted", b_id, "ben"));
    expect_all_silent(&mut [&mut a, &mut b], QUIET);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([friend(b_id, "ben", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    assert_eq!(
        lists(&mut b),
        friends_ack(
            json!([friend(a_id, "ann", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    // Friends already: "friends", no push, either way round.
    requested(&mut a, b_id, "again?", "friends");
    requested(&mut b, a_id, "", "friends");
    expect_all_silent(&mut [&mut a, &mut b], QUIET);
}

/// Requests made while a user was away are in their next v2 login ack as `requests` (the incoming list,
/// ordered by id, absent text as ""); a v1 login ack has no such key; an answered request leaves it.
fn pending_requests_in_the_login_ack(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben", "cat", "dan"]);
    let (a_id, b_id, d_id) = (ids[0], ids[1], ids[3]);
    let (mut b, ack) = device(&server, b_id, "default");
    assert_eq!(ack["requests"], json!([]), "{ack}");
    let (mut d, _) = device(&server, d_id, "default");
    // dan asks first, ben second; ann is away.
    requested(&mut d, a_id, "from dan", "requested");
    acked_as(&mut b, json!({"msgid": 24, "friendid": a_id}), 25);
    let mut old = server.connect(Separator::Nul);
    let ack = old.login(a_id, "pw", 1);
    assert_eq!(ack.get("requests"), None, "v1 frames do not change: {ack}");
    let (mut a, ack) = device(&server, a_id, "phone");
    assert_eq!(
        ack["requests"],
        json!([pending(b_id, "ben", ""), pending(d_id, "dan", "from dan")])
    );
    acked_as(&mut a, answer(b_id, true), 28);
    assert_eq!(b.recv(), friend_event("accepted", a_id, "ann"));
    let (_tablet, ack) = device(&server, a_id, "tablet");
    assert_eq!(ack["requests"], json!([pending(d_id, "dan", "from dan")]));
    assert_eq!(ack["friends"], json!([friend(b_id, "ben", "online")]));
    expect_all_silent(&mut [&mut a, &mut b, &mut d], QUIET);
    assert_nothing_queued(&mut old);
}

/// FRIENDS: friends with their state, incoming and outgoing requests with their texts, and the users one
/// blocks, each list ordered by id; the blocked user is not told; the v2 login ack carries the same
/// friends and the incoming list as `requests`; ADD_FRIEND (7) completes at once and clears the pending
/// requests between the two, either way round.
fn friends_lists(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let names = [
        "ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ida",
    ];
    let ids = register_all(&server, &names);
    let &[ann, ben, cat, dan, eve, fay, gus, hal, ida] = ids.as_slice() else {
        unreachable!()
    };
    let (mut a, _) = device(&server, ann, "default");
    let (mut b, _) = device(&server, ben, "default");
    let (mut c, _) = device(&server, cat, "default");
    let (mut g, _) = device(&server, gus, "default");
    // Friends: dan (away) by ADD_FRIEND first, then ben by request and answer.
    assert_eq!(
        acked_as(&mut a, json!({"msgid": 7, "friendid": dan}), 12),
        json!({"msgid": 12, "errno": 0, "friendid": dan})
    );
    requested(&mut a, ben, "", "requested");
    assert_eq!(b.recv(), request_event(ann, "ann", ""));
    acked_as(&mut b, answer(ann, true), 28);
    assert_eq!(a.recv(), friend_event("accepted", ben, "ben"));
    // Incoming: gus asks first, then cat.
    requested(&mut g, ann, "", "requested");
    assert_eq!(a.recv(), request_event(gus, "gus", ""));
    requested(&mut c, ann, "cat here", "requested");
    assert_eq!(a.recv(), request_event(cat, "cat", "cat here"));
    // Outgoing: hal first, then eve, both away.
    requested(&mut a, hal, "hal!", "requested");
    requested(&mut a, eve, "eve?", "requested");
    // Blocked: ida first, then fay.
    block(&mut a, ida, true);
    block(&mut a, fay, true);
    let expected = json!({"msgid": 34, "errno": 0, "seq": "f",
        "friends": [friend(ben, "ben", "online"), friend(dan, "dan", "offline")],
        "incoming": [pending(cat, "cat", "cat here"), pending(gus, "gus", "")],
        "outgoing": [pending(eve, "eve", "eve?"), pending(hal, "hal", "hal!")],
        "blocked": [blocked(fay, "fay"), blocked(ida, "ida")]});
    assert_eq!(
        acked_as(&mut a, json!({"msgid": 33, "seq": "f"}), 34),
        expected
    );
    assert_eq!(
        lists(&mut g),
        friends_ack(
            json!([]),
            json!([]),
            json!([pending(ann, "ann", "")]),
            json!([])
        )
    );
    assert_eq!(
        lists(&mut b),
        friends_ack(
            json!([friend(ann, "ann", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    let (mut f, _) = device(&server, fay, "default");
    assert_eq!(lists(&mut f), no_lists(), "nothing tells fay of the block");
    let (mut tablet, ack) = device(&server, ann, "tablet");
    assert_eq!(ack["friends"], expected["friends"]);
    assert_eq!(ack["requests"], expected["incoming"]);
    // ADD_FRIEND clears the pending requests: cat's to ann, and ann's to eve.
    acked_as(&mut c, json!({"msgid": 7, "friendid": ann}), 12);
    acked_as(&mut a, json!({"msgid": 7, "friendid": eve}), 12);
    assert_eq!(
        lists(&mut tablet),
        friends_ack(
            json!([
                friend(ben, "ben", "online"),
                friend(cat, "cat", "online"),
                friend(dan, "dan", "offline"),
                friend(eve, "eve", "offline")
            ]),
            json!([pending(gus, "gus", "")]),
            json!([pending(hal, "hal", "hal!")]),
            json!([blocked(fay, "fay"), blocked(ida, "ida")])
        )
    );
    assert_eq!(
        lists(&mut c),
        friends_ack(
            json!([friend(ann, "ann", "online")]),
            json!([]),
            json!([]),
            json!([])
        )
    );
    expect_all_silent(
        &mut [&mut a, &mut b, &mut c, &mut g, &mut f, &mut tablet],
        QUIET,
    );
}

/// FIND_USER: the exact, byte-exact name; none is 104; a name registration would refuse is 102.
fn find_user_is_exact(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["alice", "Alice", "Zoë 名字"]);
    let (mut c, _) = user(&server, "finder");
    for (name, id) in ["alice", "Alice", "Zoë 名字"].iter().zip(&ids) {
        assert_eq!(
            acked_as(&mut c, json!({"msgid": 35, "name": name, "seq": 3}), 36),
            json!({"msgid": 36, "errno": 0, "id": id, "name": name, "seq": 3})
        );
    }
    for none in ["alice ", "ALICE", "alic", "Zoe 名字", "nobody"] {
        refused_with(&mut c, json!({"msgid": 35, "name": none}), 104);
    }
    for bad in [
        json!({"msgid": 35}),
        json!({"msgid": 35, "name": ""}),
        json!({"msgid": 35, "name": 5}),
        json!({"msgid": 35, "name": null}),
        json!({"msgid": 35, "name": "a\u{1}b"}),
        json!({"msgid": 35, "name": "tab\there"}),
        json!({"msgid": 35, "name": "é".repeat(51)}),
    ] {
        refused_with(&mut c, bad, 102);
    }
}

/// While ann blocks ben: ben's chats to her are 105 and stored nowhere (not live, not offline, not in
/// history); nothing tells ben of the block; ann may still write to him. Unblocking restores the chat
/// (the refused messages' cid is still free), not any friendship. BLOCK is idempotent both ways.
fn blocking_cuts_one_to_one_chat(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben"]);
    let (ann, ben) = (ids[0], ids[1]);
    let (mut a, _) = device(&server, ann, "default");
    let (mut b, _) = device(&server, ben, "default");
    assert_eq!(
        acked_as(
            &mut a,
            json!({"msgid": 31, "id": ben, "block": true, "seq": 1}),
            32
        ),
        json!({"msgid": 32, "errno": 0, "id": ben, "block": true, "seq": 1})
    );
    b.expect_silence(QUIET);
    let no = refused_with(
        &mut b,
        json!({"msgid": 6, "toid": ann, "msg": "let me in", "cid": "b-1"}),
        105,
    );
    assert_eq!(no["errmsg"], "this user does not accept your messages");
    a.expect_silence(QUIET);
    block(&mut a, ben, true);
    // ann may still write to ben.
    assert_eq!(acked_as(&mut a, chat(ben, "you may read me"), 16)["pos"], 1);
    let got = b.recv();
    assert_eq!(
        (got["msg"].clone(), got["pos"].clone()),
        (json!("you may read me"), json!(1))
    );
    refused_with(&mut b, chat(ann, "reply"), 105);
    // Nothing for ann while she is away either.
    acked_as(&mut a, json!({"msgid": 3}), 11);
    refused_with(
        &mut b,
        json!({"msgid": 6, "toid": ann, "msg": "while you are away", "cid": "b-2"}),
        105,
    );
    let ack = a.login(ann, "pw", 2);
    assert_eq!(ack["offlinemsg"], json!([]), "{ack}");
    let history = acked_as(&mut a, json!({"msgid": 19, "conv": format!("u{ben}")}), 20);
    let texts: Vec<Value> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(texts, vec![json!("you may read me")]);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([]),
            json!([]),
            json!([blocked(ben, "ben")])
        )
    );
    assert_eq!(lists(&mut b), no_lists());
    // Unblocked: ben's message goes through, at position 2 (nothing was stored) with its cid still free.
    assert_eq!(
        acked_as(&mut a, json!({"msgid": 31, "id": ben, "block": false}), 32),
        json!({"msgid": 32, "errno": 0, "id": ben, "block": false})
    );
    b.expect_silence(QUIET);
    let ack = acked_as(
        &mut b,
        json!({"msgid": 6, "toid": ann, "msg": "after", "cid": "b-1"}),
        16,
    );
    assert_eq!(
        (ack["pos"].clone(), ack["cid"].clone()),
        (json!(2), json!("b-1"))
    );
    let got = a.recv();
    assert_eq!(
        (got["msg"].clone(), got["pos"].clone()),
        (json!("after"), json!(2))
    );
    block(&mut a, ben, false);
    assert_eq!(lists(&mut a), no_lists());
    expect_all_silent(&mut [&mut a, &mut b], QUIET);
}

/// Refusals fall on exactly the refused messages of a batch: chats pipelined in one write are committed
/// together (one transaction, one block and membership check for all), and among them only those to the
/// user who blocks the sender and to the group the sender is not in are 105; the others are stored at
/// gapless positions and delivered, and the blocker gets nothing.
fn refusals_in_one_batch_fall_on_the_right_messages(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ([ann, ben, cat, dan], [mut a, mut b, mut c, mut d]) = four_on_default_devices(&server);
    block(&mut a, ben, true);
    let with_ben = make_group(&mut c, "with ben");
    join(&mut b, ben, with_ben, &mut [&mut c]);
    let without_ben = make_group(&mut d, "without ben");
    let frames = [
        json!({"msgid": 6, "toid": ann, "msg": "a1", "seq": 1}),
        json!({"msgid": 6, "toid": cat, "msg": "c1", "seq": 2}),
        json!({"msgid": 10, "groupid": with_ben, "msg": "g1", "seq": 3}),
        json!({"msgid": 10, "groupid": without_ben, "msg": "h1", "seq": 4}),
        json!({"msgid": 6, "toid": ann, "msg": "a2", "seq": 5}),
        json!({"msgid": 6, "toid": cat, "msg": "c2", "seq": 6}),
        json!({"msgid": 6, "toid": dan, "msg": "d1", "seq": 7}),
    ];
    let burst: String = frames.iter().map(|f| format!("{f}\n")).collect();
    b.send_raw(burst.trim_end().as_bytes());
    let replies: Vec<(Value, Value)> = (0..frames.len())
        .map(|_| {
            let r = b.recv();
            (
                r["seq"].clone(),
                r.get("pos").cloned().unwrap_or(r["errno"].clone()),
            )
        })
        .collect();
    // A refusal is (seq, errno 105); a commit is (seq, its position).
    assert_eq!(
        replies,
        [(1, 105), (2, 1), (3, 1), (4, 105), (5, 105), (6, 2), (7, 1)]
            .map(|(seq, v)| (json!(seq), json!(v)))
    );
    let texts = |conn: &mut Conn, n: usize| -> Vec<Value> {
        (0..n).map(|_| conn.recv()["msg"].clone()).collect()
    };
    assert_eq!(texts(&mut c, 3), [json!("c1"), json!("g1"), json!("c2")]);
    assert_eq!(texts(&mut d, 1), [json!("d1")]);
    expect_all_silent(&mut [&mut a, &mut b, &mut c, &mut d], QUIET);
}

/// Blocking removes the friendship and the pending requests both ways, silently; while it lasts,
/// FRIEND_REQUEST is 105 both ways (each with its reason) and so is ADD_FRIEND either way round;
/// unblocking does not restore the friendship, but requests and ADD_FRIEND work again.
fn blocking_refuses_requests_and_add_friend(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ([ann, ben, cat, dan], [mut a, mut b, mut c, mut d]) = four_on_default_devices(&server);
    acked_as(&mut a, json!({"msgid": 7, "friendid": ben}), 12);
    requested(&mut c, ann, "c", "requested");
    assert_eq!(a.recv(), request_event(cat, "cat", "c"));
    requested(&mut a, dan, "d", "requested");
    assert_eq!(d.recv(), request_event(ann, "ann", "d"));
    block(&mut a, ben, true);
    block(&mut a, cat, true);
    block(&mut a, dan, true);
    expect_all_silent(&mut [&mut a, &mut b, &mut c, &mut d], QUIET);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([]),
            json!([]),
            json!([
                blocked(ben, "ben"),
                blocked(cat, "cat"),
                blocked(dan, "dan")
            ])
        )
    );
    for other in [&mut b, &mut c, &mut d] {
        assert_eq!(lists(other), no_lists());
    }
    let no = refused_with(
        &mut b,
        json!({"msgid": 24, "friendid": ann, "text": "?"}),
        105,
    );
    assert_eq!(no["errmsg"], "this user does not accept requests from you");
    let no = refused_with(&mut a, json!({"msgid": 24, "friendid": ben}), 105);
    assert_eq!(no["errmsg"], "you block this user; unblock them first");
    refused_with(&mut a, json!({"msgid": 7, "friendid": ben}), 105);
    refused_with(&mut b, json!({"msgid": 7, "friendid": ann}), 105);
    refused_with(&mut c, json!({"msgid": 7, "friendid": ann}), 105);
    expect_all_silent(&mut [&mut a, &mut b, &mut c, &mut d], QUIET);
    assert_eq!(lists(&mut b), no_lists(), "the refusals changed nothing");
    // Unblocked: not friends again, but a request works, and so does ADD_FRIEND.
    block(&mut a, ben, false);
    assert_eq!(
        lists(&mut a),
        friends_ack(
            json!([]),
            json!([]),
            json!([]),
            json!([blocked(cat, "cat"), blocked(dan, "dan")])
        )
    );
    requested(&mut b, ann, "again", "requested");
    assert_eq!(a.recv(), request_event(ben, "ben", "again"));
    acked_as(&mut a, json!({"msgid": 7, "friendid": ben}), 12);
    assert_eq!(
        lists(&mut a)["friends"],
        json!([friend(ben, "ben", "online")])
    );
    expect_all_silent(&mut [&mut a, &mut b, &mut c, &mut d], QUIET);
}

/// While ann blocks ben: he gets no PRESENCE of her (cat, her friend, does), typing between them is
/// dropped without an answer both ways (one-to-one and in a group, where cat still hears both), and ben
/// sees ann "offline" in GROUP_INFO and in his login ack's member lists. Unblocking restores typing and
/// the true state, not the friendship.
fn blocking_hides_presence_typing_and_state(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben", "cat"]);
    let (ann, ben, cat) = (ids[0], ids[1], ids[2]);
    let (mut a, _) = device(&server, ann, "default");
    let (mut b, _) = device(&server, ben, "default");
    let (mut c, _) = device(&server, cat, "default");
    acked_as(&mut a, json!({"msgid": 7, "friendid": ben}), 12);
    acked_as(&mut a, json!({"msgid": 7, "friendid": cat}), 12);
    let gid = make_group(&mut a, "club");
    let g = format!("g{gid}");
    join(&mut b, ben, gid, &mut [&mut a]);
    join(&mut c, cat, gid, &mut [&mut a, &mut b]);
    block(&mut a, ben, true);
    b.expect_silence(QUIET);
    // Presence: cat hears ann go and come back; ben does not.
    acked_as(&mut a, json!({"msgid": 3}), 11);
    assert_eq!(c.recv(), presence(ann, "offline"));
    a.login(ann, "pw", 2);
    assert_eq!(c.recv(), presence(ann, "online"));
    b.expect_silence(QUIET);
    // One-to-one typing: dropped both ways, without an answer.
    b.send(typing_to(&format!("u{ann}")));
    a.send(typing_to(&format!("u{ben}")));
    expect_all_silent(&mut [&mut a, &mut b, &mut c], QUIET);
    // In the group, cat hears both, neither hears the other.
    a.send(typing_to(&g));
    assert_eq!(c.recv(), typing(&g, ann));
    b.send(typing_to(&g));
    assert_eq!(c.recv(), typing(&g, ben));
    expect_all_silent(&mut [&mut a, &mut b, &mut c], QUIET);
    // States: ben sees ann offline; cat and ann see the truth.
    let users = |ann_state: &str| {
        json!([
            {"id": ann, "name": "ann", "state": ann_state, "role": "creator"},
            {"id": ben, "name": "ben", "state": "online", "role": "normal"},
            {"id": cat, "name": "cat", "state": "online", "role": "normal"},
        ])
    };
    assert_eq!(group_info(&mut b, gid)["users"], users("offline"));
    assert_eq!(group_info(&mut c, gid)["users"], users("online"));
    assert_eq!(group_info(&mut a, gid)["users"], users("online"));
    let (mut tablet, ack) = device(&server, ben, "tablet");
    assert_eq!(ack["groups"][0]["users"], users("offline"), "{ack}");
    assert_eq!(ack["friends"], json!([]));
    // Unblocked.
    block(&mut a, ben, false);
    b.expect_silence(QUIET);
    // Past the typing throttle's window of the attempts above (whether or not dropped ones count).
    std::thread::sleep(Duration::from_millis(2100));
    b.send(typing_to(&format!("u{ann}")));
    assert_eq!(a.recv(), typing(&format!("u{ben}"), ben));
    a.send(typing_to(&g));
    assert_eq!(b.recv(), typing(&g, ann));
    assert_eq!(tablet.recv(), typing(&g, ann));
    assert_eq!(c.recv(), typing(&g, ann));
    assert_eq!(group_info(&mut b, gid)["users"], users("online"));
    assert_eq!(
        lists(&mut a)["friends"],
        json!([friend(cat, "cat", "online")])
    );
    expect_all_silent(&mut [&mut a, &mut b, &mut c, &mut tablet], QUIET);
}

/// TYPING: no ack; relayed to the peer's v2 devices (named from their side) or to every other member's v2
/// devices, never to the sender's devices nor to v1 ones; to oneself relays nothing; at most one per
/// sender and conversation per 2 s (from any of the sender's devices), each conversation on its own;
/// its refusals are ERROR_MSG with ref 51.
fn typing_is_relayed_and_throttled(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["ann", "ben", "cat", "dan"]);
    let &[ann, ben, cat, dan] = ids.as_slice() else {
        unreachable!()
    };
    let (ua, ub, uc) = (format!("u{ann}"), format!("u{ben}"), format!("u{cat}"));
    let (mut a1, _) = device(&server, ann, "phone");
    let (mut a2, _) = device(&server, ann, "laptop");
    let mut a_old = v1_login(&server, ann);
    let (mut b1, _) = device(&server, ben, "phone");
    let (mut b2, _) = device(&server, ben, "laptop");
    let mut b_old = v1_login(&server, ben);
    let (mut c, _) = device(&server, cat, "default");
    let (mut d, _) = device(&server, dan, "default");
    let gid = make_group(&mut a1, "typists");
    let g = format!("g{gid}");
    join(&mut b1, ben, gid, &mut [&mut a1, &mut a2, &mut b2]);
    join(&mut c, cat, gid, &mut [&mut a1, &mut a2, &mut b1, &mut b2]);
    let elsewhere = make_group(&mut d, "elsewhere");
    // One-to-one.
    let first = Instant::now();
    a1.send(typing_to(&ub));
    assert_eq!(b1.recv(), typing(&ua, ann));
    assert_eq!(b2.recv(), typing(&ua, ann));
    expect_all_silent(
        &mut [&mut a1, &mut a2, &mut b1, &mut b2, &mut c, &mut d],
        QUIET,
    );
    assert_nothing_queued(&mut a_old);
    assert_nothing_queued(&mut b_old);
    // Within 2 s: dropped, whichever of ann's devices sends.
    a1.send(typing_to(&ub));
    a2.send(typing_to(&ub));
    let last_dropped = Instant::now();
    assert!(
        last_dropped - first < Duration::from_millis(1500),
        "too slow for the throttle check: {:?}",
        last_dropped - first
    );
    expect_all_silent(&mut [&mut a1, &mut a2, &mut b1, &mut b2], QUIET);
    // Another conversation has its own window; typing to oneself relays nothing and answers nothing.
    a1.send(typing_to(&uc));
    assert_eq!(c.recv(), typing(&ua, ann));
    a1.send(typing_to(&ua));
    expect_all_silent(
        &mut [&mut a1, &mut a2, &mut b1, &mut b2, &mut c, &mut d],
        QUIET,
    );
    // A group: every other member's v2 devices, none of the sender's.
    b1.send(typing_to(&g));
    for other in [&mut a1, &mut a2, &mut c] {
        assert_eq!(other.recv(), typing(&g, ben));
    }
    expect_all_silent(&mut [&mut b1, &mut b2, &mut d], QUIET);
    assert_nothing_queued(&mut a_old);
    // More than 2 s later (after the dropped ones too), ann's typing to ben is relayed again.
    std::thread::sleep(
        (last_dropped + Duration::from_millis(2100)).saturating_duration_since(Instant::now()),
    );
    a2.send(typing_to(&ub));
    assert_eq!(b1.recv(), typing(&ua, ann));
    assert_eq!(b2.recv(), typing(&ua, ann));
    // Refusals.
    for bad in [
        json!({"msgid": 51}),
        json!({"msgid": 51, "conv": "x1"}),
        json!({"msgid": 51, "conv": ""}),
        json!({"msgid": 51, "conv": "u0"}),
        json!({"msgid": 51, "conv": "g"}),
        json!({"msgid": 51, "conv": ben}),
    ] {
        refused_with(&mut a1, bad, 102);
    }
    refused_with(
        &mut a1,
        json!({"msgid": 51, "conv": "u999999", "seq": 1}),
        104,
    );
    refused_with(&mut a1, typing_to("g999999"), 104);
    refused_with(&mut a1, typing_to(&format!("g{elsewhere}")), 105);
    expect_all_silent(
        &mut [&mut a1, &mut a2, &mut b1, &mut b2, &mut c, &mut d],
        QUIET,
    );
    assert_nothing_queued(&mut a_old);
    assert_nothing_queued(&mut b_old);
}

/// PRESENCE to a friend's v2 devices (on either node, not v1 ones, not to non-friends): offline when
/// the user's last device logs out or drops, online when their first device logs in; a second device
/// coming or going sends nothing. ann logs in on `na`, and her second device on `nb`.
fn presence_flow(na: &Server, nb: &Server) {
    let ids = register_all(na, &["ann", "ben", "cat"]);
    let (ann, ben, cat) = (ids[0], ids[1], ids[2]);
    let (mut b1, _) = device(nb, ben, "phone");
    let (mut b2, _) = device(na, ben, "laptop");
    let mut b_old = v1_login(nb, ben);
    let (mut c, _) = device(na, cat, "default");
    let mut a = na.connect(Separator::Newline);
    a.login(ann, "pw", 2);
    // Not friends yet: nothing; becoming friends pushes nothing either.
    acked_as(&mut a, json!({"msgid": 7, "friendid": ben}), 12);
    expect_all_silent(&mut [&mut a, &mut b1, &mut b2, &mut c], QUIET);
    // Her only device logs out: offline.
    acked_as(&mut a, json!({"msgid": 3}), 11);
    assert_eq!(b1.recv(), presence(ann, "offline"));
    assert_eq!(b2.recv(), presence(ann, "offline"));
    // Her first device logs in: online.
    let (mut phone, _) = device(na, ann, "phone");
    assert_eq!(b1.recv(), presence(ann, "online"));
    assert_eq!(b2.recv(), presence(ann, "online"));
    // A second one (on the other node) comes and the first goes: nothing.
    let (laptop, ack) = device(nb, ann, "laptop");
    assert_eq!(ack["friends"], json!([friend(ben, "ben", "online")]));
    expect_all_silent(&mut [&mut b1, &mut b2, &mut c, &mut phone], QUIET);
    acked_as(&mut phone, json!({"msgid": 3}), 11);
    expect_all_silent(&mut [&mut b1, &mut b2, &mut c, &mut phone], QUIET);
    assert_nothing_queued(&mut b_old);
    // The last one's connection drops: offline.
    drop(laptop);
    assert_eq!(b1.recv(), presence(ann, "offline"));
    assert_eq!(b2.recv(), presence(ann, "offline"));
    // The other way round: ann hears of ben only when his last device (the v1 one) goes.
    a.login(ann, "pw", 2);
    assert_eq!(b1.recv(), presence(ann, "online"));
    assert_eq!(b2.recv(), presence(ann, "online"));
    acked_as(&mut b1, json!({"msgid": 3}), 11);
    acked_as(&mut b2, json!({"msgid": 3}), 11);
    a.expect_silence(QUIET);
    assert_nothing_queued(&mut b_old);
    b_old.send(json!({"msgid": 3}));
    assert_eq!(a.recv(), presence(ben, "offline"));
    assert_eq!(
        lists(&mut a)["friends"],
        json!([friend(ben, "ben", "offline")])
    );
    expect_all_silent(&mut [&mut a, &mut c], QUIET);
}

fn presence_on_first_and_last_device(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    presence_flow(&server, &server);
}

/// PASSWORD: wrong old 105, invalid new 102 (neither changes anything); then success; the devices logged
/// in stay so; the old password fails and the new one works at the next login; every resume token issued
/// before is revoked (a token login gets errno 1), one issued after works.
fn password_change(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ann = register_all(&server, &["ann"])[0];
    let (mut phone, ack) = device(&server, ann, "phone");
    let phone_token = ack["token"].as_str().expect("a token").to_owned();
    let (mut laptop, _) = device(&server, ann, "laptop");
    let (tablet, ack) = device(&server, ann, "tablet");
    let tablet_token = ack["token"].as_str().expect("a token").to_owned();
    drop(tablet); // no logout: its token stays valid until the password changes
    refused_with(
        &mut phone,
        json!({"msgid": 52, "old": "nope", "new": "pw2", "seq": 1}),
        105,
    );
    for bad in [
        json!({"msgid": 52, "old": "pw"}),
        json!({"msgid": 52, "new": "pw2"}),
        json!({"msgid": 52, "old": "pw", "new": ""}),
        json!({"msgid": 52, "old": "pw", "new": "p".repeat(129)}),
        json!({"msgid": 52, "old": "pw", "new": 5}),
        json!({"msgid": 52, "old": 5, "new": "pw2"}),
    ] {
        refused_with(&mut phone, bad, 102);
    }
    let (desk, _) = device(&server, ann, "desk");
    drop(desk);
    assert_eq!(
        acked_as(
            &mut phone,
            json!({"msgid": 52, "old": "pw", "new": "pw2", "seq": "p"}),
            53
        ),
        json!({"msgid": 53, "errno": 0, "seq": "p"})
    );
    // Both connections are still logged in.
    assert_eq!(lists(&mut phone), no_lists());
    assert_eq!(lists(&mut laptop), no_lists());
    // The old password is refused, the new one works.
    let mut x = server.connect(Separator::Newline);
    let ack = x.req(json!({"msgid": 1, "id": ann, "password": "pw", "v": 2, "device": "other"}));
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(2), json!(1)),
        "{ack}"
    );
    let ack = x.req(json!({"msgid": 1, "id": ann, "password": "pw2", "v": 2, "device": "other"}));
    assert_eq!(ack["errno"], 0, "{ack}");
    let new_token = ack["token"].as_str().expect("a token").to_owned();
    // The tokens of before are revoked, that of a connected device included; the new one works.
    let within = Duration::from_secs(5);
    let ack = token_login_eventually(server.addr, ann, &tablet_token, "tablet", within);
    assert_eq!(ack["errno"], 1, "{ack}");
    drop(phone);
    let ack = token_login_eventually(server.addr, ann, &phone_token, "phone", within);
    assert_eq!(ack["errno"], 1, "{ack}");
    drop(x);
    let ack = token_login_eventually(server.addr, ann, &new_token, "other", within);
    assert_eq!(ack["errno"], 0, "{ack}");
    assert_eq!(lists(&mut laptop), no_lists(), "still logged in");
    laptop.expect_silence(QUIET);
}

/// A wrong old password counts as a failed login: after five (the throttle's default per user and
/// address), PASSWORD is 107 and so is a login with the right password from the same address.
fn wrong_old_password_counts_toward_the_login_throttle(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, ann) = user(&server, "ann");
    for _ in 0..5 {
        refused_with(
            &mut a,
            json!({"msgid": 52, "old": "guess", "new": "pw2"}),
            105,
        );
    }
    refused_with(
        &mut a,
        json!({"msgid": 52, "old": "guess", "new": "pw2"}),
        107,
    );
    let mut x = server.connect(Separator::Newline);
    let ack = x.req(json!({"msgid": 1, "id": ann, "password": "pw", "v": 2, "device": "x"}));
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(2), json!(107)),
        "{ack}"
    );
}

/// A v1 connection's people requests: successes silent (but carried out), failures ERROR_MSG; it gets no
/// FRIEND_EVENT, PRESENCE or TYPING, while its own requests, typing and presence reach v2 users; its
/// login ack has no `requests`.
fn v1_people_requests_are_silent(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["vee", "ann", "ben", "cat"]);
    let &[vee, ann, ben, cat] = ids.as_slice() else {
        unreachable!()
    };
    let mut old = v1_login(&server, vee);
    let (mut a, _) = device(&server, ann, "default");
    let (mut b, _) = device(&server, ben, "default");
    let (mut c, _) = device(&server, cat, "default");
    // Its request reaches ann's v2 device; ben's request and its answer reach ben.
    old.send(json!({"msgid": 24, "friendid": ann, "text": "from v1"}));
    assert_eq!(a.recv(), request_event(vee, "vee", "from v1"));
    requested(&mut b, vee, "to v1", "requested");
    old.send(answer(ben, true));
    assert_eq!(b.recv(), friend_event("accepted", vee, "vee"));
    old.send(json!({"msgid": 33}));
    old.send(json!({"msgid": 35, "name": "ann"}));
    assert_nothing_queued(&mut old);
    assert_eq!(
        lists(&mut b)["friends"],
        json!([friend(vee, "vee", "online")])
    );
    // BLOCK takes effect silently.
    old.send(json!({"msgid": 31, "id": cat, "block": true}));
    assert_nothing_queued(&mut old);
    refused_with(&mut c, chat(vee, "hi"), 105);
    old.send(json!({"msgid": 31, "id": cat, "block": false}));
    assert_nothing_queued(&mut old);
    acked_as(&mut c, chat(vee, "hi"), 16);
    assert_eq!(old.recv()["msg"], "hi");
    // FRIEND_REMOVE withdraws its request to ann, silently; ann's v2 device hears of it.
    old.send(remove(ann));
    assert_eq!(a.recv(), friend_event("removed", vee, "vee"));
    assert_nothing_queued(&mut old);
    assert_eq!(lists(&mut a), no_lists());
    // Failures are ERROR_MSG.
    refused_with(&mut old, json!({"msgid": 24, "friendid": 999_999}), 104);
    refused_with(
        &mut old,
        json!({"msgid": 24, "friendid": vee, "seq": 2}),
        105,
    );
    refused_with(
        &mut old,
        json!({"msgid": 27, "friendid": ann, "accept": "yes"}),
        102,
    );
    refused_with(&mut old, answer(cat, true), 104);
    refused_with(&mut old, remove(999_999), 104);
    refused_with(
        &mut old,
        json!({"msgid": 31, "id": vee, "block": true}),
        105,
    );
    refused_with(&mut old, json!({"msgid": 35, "name": "nobody"}), 104);
    refused_with(&mut old, json!({"msgid": 35, "name": ""}), 102);
    refused_with(&mut old, json!({"msgid": 51, "conv": "x"}), 102);
    refused_with(&mut old, typing_to("u999999"), 104);
    refused_with(
        &mut old,
        json!({"msgid": 52, "old": "nope", "new": "pw2"}),
        105,
    );
    // A friend request, a friend's typing and presence: nothing for the v1 connection.
    requested(&mut c, vee, "", "requested");
    b.send(typing_to(&format!("u{vee}")));
    acked_as(&mut b, json!({"msgid": 3}), 11);
    b.login(ben, "pw", 2);
    assert_nothing_queued(&mut old);
    // Its typing reaches ben.
    old.send(typing_to(&format!("u{ben}")));
    assert_eq!(b.recv(), typing(&format!("u{vee}"), vee));
    // PASSWORD takes effect silently; vee's presence reaches ben, her friend.
    old.send(json!({"msgid": 52, "old": "pw", "new": "pw2"}));
    assert_nothing_queued(&mut old);
    old.send(json!({"msgid": 3}));
    assert_eq!(b.recv(), presence(vee, "offline"));
    let ack = old.login(vee, "pw2", 1);
    assert_eq!(b.recv(), presence(vee, "online"));
    assert_eq!(ack.get("requests"), None, "v1 frames do not change: {ack}");
    assert_nothing_queued(&mut old);
    expect_all_silent(&mut [&mut a, &mut b, &mut c], QUIET);
}

crate::on_both_backends!(
    new_requests_need_login,
    friend_request_fields_and_refusals,
    request_accept_remove,
    request_decline_withdraw,
    request_completes_when_the_other_had_asked,
    pending_requests_in_the_login_ack,
    friends_lists,
    find_user_is_exact,
    blocking_cuts_one_to_one_chat,
    refusals_in_one_batch_fall_on_the_right_messages,
    blocking_refuses_requests_and_add_friend,
    blocking_hides_presence_typing_and_state,
    typing_is_relayed_and_throttled,
    presence_on_first_and_last_device,
    password_change,
    wrong_old_password_counts_toward_the_login_throttle,
    v1_people_requests_are_silent,
);

/// Request, accept and remove with the two users on different nodes: every push crosses.
#[test]
fn request_accept_remove_across_nodes() {
    let c = Nodes::start(2, &[]);
    accept_and_remove(&c.nodes[0], &c.nodes[1]);
}

/// Decline, withdraw and remove with the two sides on different nodes.
#[test]
fn request_decline_withdraw_across_nodes() {
    let c = Nodes::start(2, &[]);
    decline_and_withdraw(&c.nodes[0], &c.nodes[1]);
}

/// PRESENCE across nodes: a friend's devices on both nodes hear the first device and the last.
#[test]
fn presence_across_nodes() {
    let c = Nodes::start(2, &[]);
    presence_flow(&c.nodes[0], &c.nodes[1]);
}

/// kill -9 of a user's node: their friend on the surviving node gets PRESENCE offline within ~15 s (the
/// heartbeat's staleness and sweep), and online again when they log in on the surviving node.
#[test]
fn presence_offline_when_the_friends_node_dies() {
    let mut c = Nodes::start(2, &[]);
    let ids = register_all(&c.nodes[0], &["ann", "ben"]);
    let (ann, ben) = (ids[0], ids[1]);
    let (mut b, _) = device(&c.nodes[0], ben, "default");
    let (mut a, _) = device(&c.nodes[1], ann, "default");
    acked_as(&mut a, json!({"msgid": 7, "friendid": ben}), 12);
    b.expect_silence(QUIET);
    c.nodes[1].kill9();
    let killed = Instant::now();
    assert_eq!(
        recv_within(&mut b, Duration::from_secs(15)),
        presence(ann, "offline")
    );
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    drop(a);
    let (_a, _) = login_eventually(c.nodes[0].addr, ann, Duration::from_secs(5));
    assert_eq!(b.recv(), presence(ann, "online"));
    b.expect_silence(QUIET);
}
