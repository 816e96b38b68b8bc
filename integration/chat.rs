//! One-to-one and group chat, friends, groups, and offline delivery.

use std::time::Duration;

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{
    Backend, ConfigFile, Db, Server, joined, offline_texts, presence, split_log_fields, user,
};

fn chat_to(to: i64, text: &str) -> Value {
    json!({"msgid": 6, "toid": to, "msg": text})
}

fn live_chat_both_ways_v1_and_v2(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut a = server.connect(Separator::Nul);
    let a_id = a.register("ivy", "pw");
    a.login(a_id, "pw", 1);
    let (mut b, b_id) = user(&server, "jack");
    // v1 sender: no ack; the recipient gets the frame with the server's time.
    a.send(chat_to(b_id, "hello\nthere\t!"));
    let got = b.recv();
    assert_eq!(got["msgid"], 6);
    assert_eq!(
        (got["id"].clone(), got["name"].clone()),
        (json!(a_id), json!("ivy"))
    );
    assert_eq!(got["toid"], b_id);
    assert_eq!(got["msg"], "hello\nthere\t!");
    let time = got["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-01-01 00:00:00".len(), "{time}");
    // v2 sender: ack 16 with seq; the v1 recipient gets it NUL-terminated.
    // The ack names the conversation as b does, with the message's place in the log (a's v1 message
    // was position 1).
    let mut ack =
        b.req(json!({"msgid": 6, "toid": a_id, "msg": "hi", "time": "custom", "seq": "s1"}));
    assert_eq!(
        split_log_fields(&mut ack),
        (json!(format!("u{a_id}")), json!(2))
    );
    assert_eq!(ack, json!({"msgid": 16, "errno": 0, "seq": "s1"}));
    assert_eq!(
        a.recv(),
        json!({"msgid": 6, "id": b_id, "name": "jack", "toid": a_id, "msg": "hi", "time": "custom"})
    );
    // Chat to oneself is delivered like any other.
    // (the message is queued before the ack, so it arrives first).
    let frames = [b.req(chat_to(b_id, "note to self")), b.recv()];
    assert_eq!(
        (frames[0]["msg"].clone(), frames[1]["msgid"].clone()),
        (json!("note to self"), json!(16))
    );
    a.expect_silence(Duration::from_millis(200));
}

fn chat_errors(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "kim");
    let unknown = a.req(json!({"msgid": 6, "toid": 424242, "msg": "x", "seq": 1}));
    assert_eq!(unknown["errno"], 104);
    assert_eq!(
        (unknown["ref"].clone(), unknown["seq"].clone()),
        (json!(6), json!(1))
    );
    for bad in [
        json!({"msgid": 6, "toid": 1, "msg": ""}),
        json!({"msgid": 6, "toid": 1, "msg": 5}),
        json!({"msgid": 6, "toid": 1, "msg": "x", "time": 5}),
        json!({"msgid": 6, "toid": 1.5, "msg": "x"}),
        json!({"msgid": 6, "toid": 2147483648i64, "msg": "x"}),
        json!({"msgid": 6, "msg": "x"}),
        json!({"msgid": 6, "toid": 1, "msg": "bell\u{7}"}),
        json!({"msgid": 6, "toid": 1, "msg": "x".repeat(16_385)}),
    ] {
        let reply = a.req(bad.clone());
        assert_eq!(
            (reply["msgid"].clone(), reply["errno"].clone()),
            (json!(15), json!(102)),
            "{bad}"
        );
        assert_eq!(reply["ref"], 6);
    }
}

fn offline_messages_in_order_exactly_once(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "lea");
    let mut b = server.connect(Separator::Newline);
    let b_id = b.register("max", "pw");
    for i in 0..20 {
        assert_eq!(a.req(chat_to(b_id, &format!("m{i}")))["msgid"], 16);
    }
    let long = "字".repeat(16_384);
    assert_eq!(
        a.req(chat_to(b_id, &long))["msgid"],
        16,
        "a maximal message is stored too"
    );
    let ack = b.login(b_id, "pw", 2);
    let expected: Vec<Value> = (0..20)
        .map(|i| json!(format!("m{i}")))
        .chain([json!(long)])
        .collect();
    assert_eq!(offline_texts(&ack), expected);
    assert_eq!(b.req(json!({"msgid": 3}))["msgid"], 11);
    let again = b.login(b_id, "pw", 2);
    assert_eq!(
        again["offlinemsg"],
        json!([]),
        "delivered once, then removed"
    );
}

/// A client that pipelines: chats to an offline user sent in one write are stored together, every frame
/// is answered in order (errors among them included), and the recipient gets them all, in order, once.
fn pipelined_chats_to_an_offline_user(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "pia");
    let mut b = server.connect(Separator::Newline);
    let b_id = b.register("quinn", "pw");
    let frames: Vec<Value> = (0..40)
        .map(|seq| match seq {
            13 => json!({"msgid": 99, "seq": seq}),
            27 => json!({"msgid": 6, "toid": 999_999, "msg": "nobody", "seq": seq}),
            _ => json!({"msgid": 6, "toid": b_id, "msg": format!("m{seq}"), "seq": seq}),
        })
        .collect();
    let burst: String = frames.iter().map(|f| format!("{f}\n")).collect();
    a.send_raw(burst.trim_end().as_bytes());
    for seq in 0..40 {
        let reply = a.recv();
        let errno = match seq {
            13 => 101,
            27 => 104,
            _ => 0,
        };
        assert_eq!(
            (reply["seq"].clone(), reply["errno"].clone()),
            (json!(seq), json!(errno)),
            "{reply}"
        );
    }
    let ack = b.login(b_id, "pw", 2);
    let expected: Vec<Value> = (0..40)
        .filter(|seq| ![13, 27].contains(seq))
        .map(|seq| json!(format!("m{seq}")))
        .collect();
    assert_eq!(offline_texts(&ack), expected);
}

fn offline_backlog_beyond_one_ack(backend: Backend) {
    let db = Db::fresh(backend);
    let conf = ConfigFile::new("offline_batch = 3\n");
    let server = Server::start(&db, &["--config", &conf.path]);
    let (mut a, _) = user(&server, "ned");
    let mut b = server.connect(Separator::Nul);
    let b_id = b.register("olga", "pw");
    for i in 0..8 {
        a.req(chat_to(b_id, &format!("m{i}")));
    }
    let ack = b.login(b_id, "pw", 1);
    let mut texts: Vec<String> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str::<Value>(s.as_str().unwrap()).unwrap()["msg"].to_string())
        .collect();
    assert_eq!(
        texts.len(),
        3,
        "the ack carries at most offline_batch messages"
    );
    for _ in 3..8 {
        let frame = b.recv();
        assert_eq!(frame["msgid"], 6);
        texts.push(frame["msg"].to_string());
    }
    let expected: Vec<String> = (0..8).map(|i| format!("\"m{i}\"")).collect();
    assert_eq!(texts, expected);
    b.expect_silence(Duration::from_millis(300));
}

fn friends_are_mutual_and_idempotent(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "pia");
    let (mut b, b_id) = user(&server, "quin");
    let ack = a.req(json!({"msgid": 7, "friendid": b_id, "seq": 3}));
    assert_eq!(
        ack,
        json!({"msgid": 12, "errno": 0, "friendid": b_id, "seq": 3})
    );
    assert_eq!(
        a.req(json!({"msgid": 7, "friendid": b_id}))["errno"],
        0,
        "idempotent"
    );
    assert_eq!(
        a.req(json!({"msgid": 7, "friendid": 777_777}))["errno"],
        104
    );
    assert_eq!(a.req(json!({"msgid": 7, "friendid": a_id}))["errno"], 105);
    assert_eq!(a.req(json!({"msgid": 7, "friendid": "x"}))["errno"], 102);
    // Mutual: quin sees pia without adding her, online; then offline once she disconnects. Each of
    // them hears (v2) of the other's only device going and coming.
    assert_eq!(b.req(json!({"msgid": 3}))["msgid"], 11);
    presence(&mut a, b_id, "offline");
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(
        ack["friends"],
        json!([{"id": a_id, "name": "pia", "state": "online"}])
    );
    presence(&mut a, b_id, "online");
    drop(a);
    // Her connection's end is noticed: pushed to quin once she is offline.
    presence(&mut b, a_id, "offline");
    assert_eq!(b.req(json!({"msgid": 3}))["msgid"], 11);
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(
        ack["friends"],
        json!([{"id": a_id, "name": "pia", "state": "offline"}])
    );
}

fn groups_create_join_and_chat(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "rex");
    let (mut b, b_id) = user(&server, "sue");
    let (mut c, _) = user(&server, "tom");
    let mut d = server.connect(Separator::Nul);
    let d_id = d.register("uma", "pw");
    d.login(d_id, "pw", 1);

    let created = a.req(json!({"msgid": 8, "groupname": "band", "groupdesc": "we play"}));
    assert_eq!(created["msgid"], 13);
    assert_eq!(created["groupname"], "band");
    let gid = created["groupid"].as_i64().unwrap();
    assert_eq!(
        a.req(json!({"msgid": 8, "groupname": "band"}))["errno"],
        105,
        "name taken"
    );
    let empty_desc = a.req(json!({"msgid": 8, "groupname": "quiet"}));
    assert_eq!(empty_desc["msgid"], 13, "groupdesc may be absent");
    assert_eq!(
        b.req(json!({"msgid": 9, "groupid": gid})),
        json!({"msgid": 14, "errno": 0, "groupid": gid})
    );
    assert_eq!(
        b.req(json!({"msgid": 9, "groupid": gid}))["errno"],
        0,
        "idempotent"
    );
    assert_eq!(b.req(json!({"msgid": 9, "groupid": 999_999}))["errno"], 104);
    d.send(json!({"msgid": 9, "groupid": gid})); // v1: no ack, so wait for a later reply instead
    assert_eq!(d.req(json!({"msgid": 99}))["errno"], 101);
    // The v2 members heard of each first join (not of sue's second one), in order; the joiner has its ack.
    joined(&mut a, gid, b_id);
    joined(&mut a, gid, d_id);
    joined(&mut b, gid, d_id);
    // The creator joining again stays creator.
    assert_eq!(a.req(json!({"msgid": 9, "groupid": gid}))["errno"], 0);

    // Every other member gets it (v2 and v1), the sender does not, non-members cannot send.
    assert_eq!(
        a.req(json!({"msgid": 10, "groupid": gid, "msg": "tune up", "time": "t"}))["msgid"],
        16
    );
    let expected = json!({"msgid": 10, "id": a_id, "name": "rex", "groupid": gid, "msg": "tune up", "time": "t"});
    let mut to_b = b.recv();
    assert_eq!(
        split_log_fields(&mut to_b),
        (json!(format!("g{gid}")), json!(1))
    );
    assert_eq!(to_b, expected);
    assert_eq!(d.recv(), expected, "v1 frames are the original's");
    a.expect_silence(Duration::from_millis(200));
    c.expect_silence(Duration::from_millis(10));
    let refused = c.req(json!({"msgid": 10, "groupid": gid, "msg": "let me in"}));
    assert_eq!(
        (refused["errno"].clone(), refused["ref"].clone()),
        (json!(105), json!(10))
    );
    assert_eq!(
        c.req(json!({"msgid": 10, "groupid": 999_999, "msg": "x"}))["errno"],
        104
    );

    // Roles in the login ack.
    b.req(json!({"msgid": 3}));
    let ack = b.login(b_id, "pw", 2);
    let band = ack["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == gid)
        .unwrap();
    let roles: Vec<(Value, Value)> = band["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].clone(), u["role"].clone()))
        .collect();
    assert_eq!(
        roles,
        vec![
            (json!(a_id), json!("creator")),
            (json!(b_id), json!("normal")),
            (json!(d_id), json!("normal"))
        ]
    );
}

fn group_chat_to_offline_members_is_stored(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "vic");
    let (mut b, b_id) = user(&server, "wes");
    let gid = a.req(json!({"msgid": 8, "groupname": "night"}))["groupid"]
        .as_i64()
        .unwrap();
    assert_eq!(b.req(json!({"msgid": 9, "groupid": gid}))["msgid"], 14);
    joined(&mut a, gid, b_id);
    assert_eq!(b.req(json!({"msgid": 3}))["msgid"], 11);
    for i in 0..3 {
        let ack = a.req(json!({"msgid": 10, "groupid": gid, "msg": format!("g{i}")}));
        assert_eq!(
            (ack["msgid"].clone(), ack["errno"].clone()),
            (json!(16), json!(0)),
            "{ack}"
        );
    }
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(
        offline_texts(&ack),
        vec![json!("g0"), json!("g1"), json!("g2")]
    );
    assert_eq!(ack["offlinemsg"][0]["groupid"], gid);
}

crate::on_both_backends!(
    live_chat_both_ways_v1_and_v2,
    chat_errors,
    offline_messages_in_order_exactly_once,
    pipelined_chats_to_an_offline_user,
    offline_backlog_beyond_one_ack,
    friends_are_mutual_and_idempotent,
    groups_create_join_and_chat,
    group_chat_to_offline_members_is_stored,
);
