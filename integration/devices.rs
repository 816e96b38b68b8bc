//! Several devices per user (PROTOCOL-2 section 3): live delivery to every device, carbons, chats to
//! oneself, the device limits and names, per-device resume tokens, offline messages for the first device,
//! and devices on two nodes of a cluster.

use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{Backend, Conn, Db, Nodes, Server, device, joined, recv_until};

const QUIET: Duration = Duration::from_millis(300);

/// Registers users (password "pw") without logging them in.
fn register(server: &Server, names: &[&str]) -> Vec<i64> {
    let mut c = server.connect(Separator::Newline);
    names.iter().map(|n| c.register(n, "pw")).collect()
}

/// Sends a chat on a v2 connection and returns its CHAT_MSG_ACK.
fn acked(c: &mut Conn, frame: Value) -> Value {
    let ack = c.req(frame);
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(16), json!(0)),
        "{ack}"
    );
    ack
}

/// The v2 chat frame `viewer_conv` names, for a message described by its ack.
fn frame_of(v1: Value, conv: String, ack: &Value) -> Value {
    let mut frame = v1;
    frame["conv"] = json!(conv);
    frame["pos"] = ack["pos"].clone();
    frame["ts"] = ack["ts"].clone();
    if let Some(cid) = ack.get("cid") {
        frame["cid"] = cid.clone();
    }
    frame
}

fn login_frame(id: i64, device: &str) -> Value {
    json!({"msgid": 1, "id": id, "password": "pw", "v": 2, "device": device})
}

/// Every device of the user gets what is addressed to them, v1 and v2 alike, one-to-one and group.
fn every_device_gets_live_messages(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register(&server, &["ada", "ben"]);
    let (a_id, b_id) = (ids[0], ids[1]);
    let (mut phone, _) = device(&server, a_id, "phone");
    let (mut laptop, _) = device(&server, a_id, "laptop");
    let mut old = server.connect(Separator::Nul);
    old.login(a_id, "pw", 1);
    let (mut b, _) = device(&server, b_id, "default");
    // A login naming no device is the device "default".
    let mut again = server.connect(Separator::Newline);
    assert_eq!(
        again.req(json!({"msgid": 1, "id": b_id, "password": "pw", "v": 2})),
        json!({"msgid": 2, "errno": 2, "errmsg": "device \"default\" is already logged in"})
    );
    let ack = acked(
        &mut b,
        json!({"msgid": 6, "toid": a_id, "msg": "to all of you", "time": "t", "cid": "d-1"}),
    );
    let v1 = json!({"msgid": 6, "id": b_id, "name": "ben", "toid": a_id, "msg": "to all of you", "time": "t"});
    let v2 = frame_of(v1.clone(), format!("u{b_id}"), &ack);
    assert_eq!(phone.recv(), v2);
    assert_eq!(laptop.recv(), v2);
    assert_eq!(old.recv(), v1, "the v1 device gets the original's frame");
    let gid = b.req(json!({"msgid": 8, "groupname": "devs"}))["groupid"]
        .as_i64()
        .unwrap();
    assert_eq!(phone.req(json!({"msgid": 9, "groupid": gid}))["msgid"], 14);
    // The join is told to the member ben and to ada's other v2 device, not to the joining one.
    joined(&mut b, gid, a_id);
    joined(&mut laptop, gid, a_id);
    let ack = acked(
        &mut b,
        json!({"msgid": 10, "groupid": gid, "msg": "group", "time": "t"}),
    );
    let v1 = json!({"msgid": 10, "id": b_id, "name": "ben", "groupid": gid, "msg": "group", "time": "t"});
    let v2 = frame_of(v1.clone(), format!("g{gid}"), &ack);
    assert_eq!(phone.recv(), v2);
    assert_eq!(laptop.recv(), v2);
    assert_eq!(old.recv(), v1);
    for c in [&mut phone, &mut laptop, &mut old, &mut b] {
        c.expect_silence(QUIET);
    }
}

/// A message sent from one device reaches the user's other v2 devices as a carbon (the same frame, id =
/// the user, conv as they name it); the sending device gets only its ack, a v1 device no carbon.
fn carbons_reach_the_other_devices(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register(&server, &["cai", "dex"]);
    let (a_id, b_id) = (ids[0], ids[1]);
    let (mut phone, _) = device(&server, a_id, "phone");
    let (mut laptop, _) = device(&server, a_id, "laptop");
    let mut old = server.connect(Separator::Nul);
    old.login(a_id, "pw", 1);
    let (mut b, _) = device(&server, b_id, "default");
    let ack = acked(
        &mut phone,
        json!({"msgid": 6, "toid": b_id, "msg": "from phone", "time": "t", "cid": "p-1"}),
    );
    assert_eq!(ack["conv"], format!("u{b_id}"));
    let v1 = json!({"msgid": 6, "id": a_id, "name": "cai", "toid": b_id, "msg": "from phone", "time": "t"});
    assert_eq!(b.recv(), frame_of(v1.clone(), format!("u{a_id}"), &ack));
    assert_eq!(
        laptop.recv(),
        frame_of(v1, format!("u{b_id}"), &ack),
        "a carbon"
    );
    // From the laptop, without cid: the phone gets the carbon.
    let ack = acked(
        &mut laptop,
        json!({"msgid": 6, "toid": b_id, "msg": "from laptop", "time": "t"}),
    );
    let v1 = json!({"msgid": 6, "id": a_id, "name": "cai", "toid": b_id, "msg": "from laptop", "time": "t"});
    assert_eq!(phone.recv(), frame_of(v1.clone(), format!("u{b_id}"), &ack));
    assert_eq!(b.recv(), frame_of(v1, format!("u{a_id}"), &ack));
    // A group message: carbon named "g<G>".
    let gid = phone.req(json!({"msgid": 8, "groupname": "carbons"}))["groupid"]
        .as_i64()
        .unwrap();
    assert_eq!(b.req(json!({"msgid": 9, "groupid": gid}))["msgid"], 14);
    // The join reaches both v2 devices of the member cai.
    joined(&mut phone, gid, b_id);
    joined(&mut laptop, gid, b_id);
    let ack = acked(
        &mut phone,
        json!({"msgid": 10, "groupid": gid, "msg": "g", "time": "t", "cid": "p-2"}),
    );
    let v1 =
        json!({"msgid": 10, "id": a_id, "name": "cai", "groupid": gid, "msg": "g", "time": "t"});
    let v2 = frame_of(v1, format!("g{gid}"), &ack);
    assert_eq!(b.recv(), v2);
    assert_eq!(laptop.recv(), v2);
    for c in [&mut phone, &mut laptop, &mut old, &mut b] {
        c.expect_silence(QUIET);
    }
    // A v1 device's message: carbons to both v2 devices.
    old.send(json!({"msgid": 6, "toid": b_id, "msg": "from v1", "time": "t"}));
    let got = b.recv();
    assert_eq!(got["msg"], "from v1");
    let mut expected = got.clone();
    expected["conv"] = json!(format!("u{b_id}"));
    assert_eq!(phone.recv(), expected);
    assert_eq!(laptop.recv(), expected);
    old.expect_silence(QUIET);
}

/// A message to oneself reaches every device of the user as its recipient, the sending one included,
/// and no carbon besides.
fn message_to_oneself_reaches_every_device(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let a_id = register(&server, &["eli"])[0];
    let (mut phone, _) = device(&server, a_id, "phone");
    let (mut laptop, _) = device(&server, a_id, "laptop");
    let mut old = server.connect(Separator::Nul);
    old.login(a_id, "pw", 1);
    phone.send(json!({"msgid": 6, "toid": a_id, "msg": "memo", "time": "t", "cid": "m-1"}));
    let (ack, before) = recv_until(&mut phone, 16);
    assert_eq!(
        ack,
        json!({"msgid": 16, "errno": 0, "conv": format!("u{a_id}"), "pos": 1, "ts": ack["ts"], "cid": "m-1"})
    );
    let v1 =
        json!({"msgid": 6, "id": a_id, "name": "eli", "toid": a_id, "msg": "memo", "time": "t"});
    let v2 = frame_of(v1.clone(), format!("u{a_id}"), &ack);
    assert_eq!(before, vec![v2.clone()], "the sending device gets it too");
    assert_eq!(laptop.recv(), v2);
    assert_eq!(old.recv(), v1);
    for c in [&mut phone, &mut laptop, &mut old] {
        c.expect_silence(QUIET);
    }
}

/// Device names and limits: errno 2 for a device logged in already and past max_devices (2 here, v1
/// logins counted), errno 1 for a v2 login naming "v1" or an invalid name; a freed place can be taken.
fn device_names_and_limits(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &["--max-devices", "2"]);
    let a_id = register(&server, &["fen"])[0];
    let mut x = server.connect(Separator::Newline);
    // errno 1 (PROTOCOL-2 section 3); the text is not checked: PROTOCOL.md gives every invalid login
    // field "id or password is invalid!", the design log names the field.
    for bad in [
        json!("v1"),
        json!(""),
        json!("d".repeat(65)),
        json!(5),
        json!("tab\u{1}"),
    ] {
        let mut frame = login_frame(a_id, "x");
        frame["device"] = bad.clone();
        let ack = x.req(frame);
        assert_eq!(
            (ack["msgid"].clone(), ack["errno"].clone()),
            (json!(2), json!(1)),
            "{bad}: {ack}"
        );
        assert!(ack["errmsg"].is_string(), "{ack}");
        assert_eq!(x.req(json!({"msgid": 17}))["errno"], 103, "not logged in");
    }
    let long = "p".repeat(64);
    let (mut phone, ack) = device(&server, a_id, &long);
    assert_eq!(ack["device"], json!(long));
    let ack = x.req(login_frame(a_id, &long));
    assert_eq!(
        ack,
        json!({"msgid": 2, "errno": 2, "errmsg": format!("device {long:?} is already logged in")})
    );
    let (mut laptop, _) = device(&server, a_id, "laptop");
    let too_many =
        json!({"msgid": 2, "errno": 2, "errmsg": "too many devices logged in (at most 2)"});
    assert_eq!(x.req(login_frame(a_id, "tablet")), too_many);
    let mut old = server.connect(Separator::Nul);
    assert_eq!(
        old.req(json!({"msgid": 1, "id": a_id, "password": "pw"})),
        too_many,
        "a v1 login is a device too"
    );
    // Logging out frees a place; the refused connection may log in then.
    assert_eq!(
        laptop.req(json!({"msgid": 3})),
        json!({"msgid": 11, "errno": 0})
    );
    let ack = x.req(login_frame(a_id, "tablet"));
    assert_eq!(
        (ack["errno"].clone(), ack["device"].clone()),
        (json!(0), json!("tablet")),
        "{ack}"
    );
    assert_eq!(
        old.req(json!({"msgid": 1, "id": a_id, "password": "pw"})),
        too_many
    );
    // A dropped connection frees its place as well.
    drop(x);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ack = old.req(json!({"msgid": 1, "id": a_id, "password": "pw"}));
        if ack["errno"] == 0 {
            break;
        }
        assert_eq!(ack, too_many);
        assert!(Instant::now() < deadline, "the dropped device still counts");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two v1 logins: the original's words.
    let mut old2 = server.connect(Separator::Nul);
    phone.req(json!({"msgid": 3}));
    assert_eq!(
        old2.req(json!({"msgid": 1, "id": a_id, "password": "pw"})),
        json!({"msgid": 2, "errno": 2, "errmsg": "this account is using, input another!"})
    );
}

/// Resume tokens belong to devices: logging out on the phone revokes the phone's token only; a token
/// logs in only the device it was issued to.
fn tokens_are_per_device(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let a_id = register(&server, &["gia"])[0];
    let (mut phone, ack) = device(&server, a_id, "phone");
    let phone_token = ack["token"].as_str().expect("a token").to_owned();
    let (laptop, ack) = device(&server, a_id, "laptop");
    let laptop_token = ack["token"].as_str().expect("a token").to_owned();
    assert_ne!(phone_token, laptop_token);
    let token_login = |token: &str, device: Option<&str>| {
        let mut frame = json!({"msgid": 1, "id": a_id, "token": token, "v": 2});
        if let Some(d) = device {
            frame["device"] = json!(d);
        }
        frame
    };
    assert_eq!(
        phone.req(json!({"msgid": 3})),
        json!({"msgid": 11, "errno": 0})
    );
    drop(laptop); // no logout: its token stays valid
    let mut x = server.connect(Separator::Newline);
    assert_eq!(
        x.req(token_login(&phone_token, Some("phone")))["errno"],
        1,
        "revoked"
    );
    assert_eq!(
        x.req(token_login(&laptop_token, Some("phone")))["errno"],
        1,
        "not the phone's"
    );
    assert_eq!(
        x.req(token_login(&laptop_token, None))["errno"],
        1,
        "not the default device's"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let ack = loop {
        let ack = x.req(token_login(&laptop_token, Some("laptop")));
        if ack["errno"] != 2 {
            break ack;
        }
        assert!(Instant::now() < deadline, "laptop still logged in: {ack}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (
            ack["errno"].clone(),
            ack["device"].clone(),
            ack["token"].clone()
        ),
        (json!(0), json!("laptop"), json!(laptop_token)),
        "{ack}"
    );
    // The phone logs in with its password again: a new token, which works.
    let (phone, ack) = device(&server, a_id, "phone");
    let new_token = ack["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, phone_token);
    drop(phone);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut y = server.connect(Separator::Newline);
    loop {
        let ack = y.req(token_login(&new_token, Some("phone")));
        if ack["errno"] == 0 {
            break;
        }
        assert_eq!(ack["errno"], 2, "{ack}");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Offline messages go to the first device that logs in, once; what one device got live is not offline
/// for another; the others read it from history.
fn offline_messages_go_to_the_first_device(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register(&server, &["hal", "ivy"]);
    let (a_id, b_id) = (ids[0], ids[1]);
    let (mut b, _) = device(&server, b_id, "default");
    for i in 0..3 {
        acked(
            &mut b,
            json!({"msgid": 6, "toid": a_id, "msg": format!("m{i}")}),
        );
    }
    let (mut phone, ack) = device(&server, a_id, "phone");
    let texts: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(texts, vec![json!("m0"), json!("m1"), json!("m2")]);
    assert_eq!(ack["offlinemsg"][2]["pos"], 3);
    let (mut laptop, ack) = device(&server, a_id, "laptop");
    assert_eq!(ack["offlinemsg"], json!([]), "once");
    let mut old = server.connect(Separator::Nul);
    let ack = old.login(a_id, "pw", 1);
    assert_eq!(ack.get("offlinemsg"), None, "{ack}");
    // Got live by the phone while the tablet was away: not offline for the tablet.
    drop(laptop);
    drop(old);
    acked(&mut b, json!({"msgid": 6, "toid": a_id, "msg": "live"}));
    assert_eq!(phone.recv()["msg"], "live");
    std::thread::sleep(Duration::from_millis(100));
    let (mut tablet, ack) = device(&server, a_id, "tablet");
    assert_eq!(ack["offlinemsg"], json!([]));
    let history = tablet.req(json!({"msgid": 19, "conv": format!("u{b_id}")}));
    let texts: Vec<Value> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![json!("m0"), json!("m1"), json!("m2"), json!("live")]
    );
    laptop = device(&server, a_id, "laptop").0;
    laptop.expect_silence(QUIET);
}

crate::on_both_backends!(
    every_device_gets_live_messages,
    carbons_reach_the_other_devices,
    message_to_oneself_reaches_every_device,
    device_names_and_limits,
    tokens_are_per_device,
    offline_messages_go_to_the_first_device,
);

/// Two devices of one user on two nodes: both get messages from senders on either node, carbons and
/// receipts cross nodes, and a device name and max_devices hold cluster-wide.
#[test]
fn devices_on_two_nodes() {
    let c = Nodes::start(2, &["--max-devices", "2"]);
    let ids = register(&c.nodes[0], &["jay", "kay", "lee"]);
    let (a_id, b_id, l_id) = (ids[0], ids[1], ids[2]);
    let (mut phone, _) = device(&c.nodes[0], a_id, "phone");
    let (mut laptop, _) = device(&c.nodes[1], a_id, "laptop");
    let (mut b, _) = device(&c.nodes[0], b_id, "default");
    let (mut l, _) = device(&c.nodes[1], l_id, "default");
    let mut again = c.nodes[1].connect(Separator::Newline);
    let ack = again.req(login_frame(a_id, "phone"));
    assert_eq!(ack["errno"], 2, "{ack}");
    assert_eq!(ack["errmsg"], "device \"phone\" is already logged in");
    assert_eq!(
        again.req(login_frame(a_id, "tablet")),
        json!({"msgid": 2, "errno": 2, "errmsg": "too many devices logged in (at most 2)"})
    );
    for (sender, from, name) in [(&mut b, b_id, "kay"), (&mut l, l_id, "lee")] {
        let ack = acked(
            sender,
            json!({"msgid": 6, "toid": a_id, "msg": "hi", "time": "t"}),
        );
        let v2 = frame_of(
            json!({"msgid": 6, "id": from, "name": name, "toid": a_id, "msg": "hi", "time": "t"}),
            format!("u{from}"),
            &ack,
        );
        assert_eq!(phone.recv(), v2);
        assert_eq!(laptop.recv(), v2);
    }
    // Phone (node 0) to lee (node 1): the carbon crosses to the laptop on node 1.
    let ack = acked(
        &mut phone,
        json!({"msgid": 6, "toid": l_id, "msg": "p", "time": "t", "cid": "x-1"}),
    );
    let v1 = json!({"msgid": 6, "id": a_id, "name": "jay", "toid": l_id, "msg": "p", "time": "t"});
    assert_eq!(l.recv(), frame_of(v1.clone(), format!("u{a_id}"), &ack));
    assert_eq!(laptop.recv(), frame_of(v1, format!("u{l_id}"), &ack));
    // Laptop (node 1) to kay (node 0): the carbon crosses to the phone on node 0.
    let ack = acked(
        &mut laptop,
        json!({"msgid": 6, "toid": b_id, "msg": "l", "time": "t"}),
    );
    let v1 = json!({"msgid": 6, "id": a_id, "name": "jay", "toid": b_id, "msg": "l", "time": "t"});
    assert_eq!(b.recv(), frame_of(v1.clone(), format!("u{a_id}"), &ack));
    assert_eq!(phone.recv(), frame_of(v1, format!("u{b_id}"), &ack));
    // A note to self from the laptop reaches the phone on the other node.
    laptop.send(json!({"msgid": 6, "toid": a_id, "msg": "self", "time": "t"}));
    let (ack, own) = recv_until(&mut laptop, 16);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(phone.recv(), own[0]);
    assert_eq!(ack["pos"], 1);
    // A read on the phone: receipts to the laptop (node 1) and to kay (node 0).
    assert_eq!(
        acked(&mut b, json!({"msgid": 6, "toid": a_id, "msg": "more"}))["pos"],
        3
    );
    assert_eq!(phone.recv()["pos"], 3);
    assert_eq!(laptop.recv()["pos"], 3);
    let ub = format!("u{b_id}");
    assert_eq!(
        phone.req(json!({"msgid": 21, "conv": ub, "pos": 3}))["read"],
        3
    );
    assert_eq!(
        laptop.recv(),
        json!({"msgid": 23, "conv": ub, "id": a_id, "read": 3})
    );
    assert_eq!(
        b.recv(),
        json!({"msgid": 23, "conv": format!("u{a_id}"), "id": a_id, "read": 3})
    );
    // And to lee on the other node.
    assert_eq!(
        acked(&mut l, json!({"msgid": 6, "toid": a_id, "msg": "again"}))["pos"],
        3
    );
    assert_eq!(phone.recv()["pos"], 3);
    assert_eq!(laptop.recv()["pos"], 3);
    let ul = format!("u{l_id}");
    assert_eq!(
        phone.req(json!({"msgid": 21, "conv": ul, "pos": 3}))["read"],
        3
    );
    assert_eq!(
        laptop.recv(),
        json!({"msgid": 23, "conv": ul, "id": a_id, "read": 3})
    );
    assert_eq!(
        l.recv(),
        json!({"msgid": 23, "conv": format!("u{a_id}"), "id": a_id, "read": 3})
    );
    for conn in [&mut phone, &mut laptop, &mut b, &mut l] {
        conn.expect_silence(QUIET);
    }
}
