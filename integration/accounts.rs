//! Register, login (v1 and v2 shapes), logout, identity, names and password storage.

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{
    Backend, Db, Server, assert_nothing_queued, joined, presence, split_log_fields, user,
};

fn decode(s: &Value) -> Value {
    serde_json::from_str(s.as_str().expect("a v1 list element is a string")).expect("JSON inside")
}

fn register_then_login_v1(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Nul);
    let id = c.register("alice", "secret");
    assert!(id > 0);
    let ack = c.login(id, "secret", 1);
    // v1: empty lists are left out, exactly as the C++ server does.
    assert_eq!(
        ack,
        json!({"msgid": 2, "errno": 0, "id": id, "name": "alice"})
    );
    assert_eq!(c.client.reader.separator(), Some(Separator::Nul));
}

fn login_ack_lists_v1_and_v2(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "ann");
    let (mut b, b_id) = user(&server, "ben");
    assert_eq!(a.req(json!({"msgid": 7, "friendid": b_id}))["msgid"], 12);
    let created = a.req(json!({"msgid": 8, "groupname": "club", "groupdesc": "our club"}));
    let gid = created["groupid"].as_i64().unwrap();
    assert_eq!(b.req(json!({"msgid": 9, "groupid": gid}))["msgid"], 14);
    // ann, a member on v2, hears of the join, and of her friend ben's only device logging out.
    joined(&mut a, gid, b_id);
    assert_eq!(b.req(json!({"msgid": 3}))["msgid"], 11);
    presence(&mut a, b_id, "offline");
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": b_id, "msg": "hi ben", "time": "t1"}))["msgid"],
        16
    );

    // v1: every element is a string holding JSON; group users too.
    let mut b1 = server.connect(Separator::Nul);
    let ack = b1.login(b_id, "pw", 1);
    // A v1 device coming online is presence too.
    presence(&mut a, b_id, "online");
    let friend = decode(&ack["friends"][0]);
    assert_eq!(
        friend,
        json!({"id": a_id, "name": "ann", "state": "online"})
    );
    let group = decode(&ack["groups"][0]);
    assert_eq!(group["id"], gid);
    assert_eq!(group["groupname"], "club");
    assert_eq!(group["groupdesc"], "our club");
    let users: Vec<Value> = group["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(decode)
        .collect();
    assert_eq!(
        users,
        vec![
            json!({"id": a_id, "name": "ann", "state": "online", "role": "creator"}),
            json!({"id": b_id, "name": "ben", "state": "online", "role": "normal"}),
        ]
    );
    let offline = decode(&ack["offlinemsg"][0]);
    assert_eq!(
        offline,
        json!({"msgid": 6, "id": a_id, "name": "ann", "toid": b_id, "msg": "hi ben", "time": "t1"})
    );

    // v2: plain objects, all keys present; ann logs in again to see it.
    assert_eq!(a.req(json!({"msgid": 3}))["msgid"], 11);
    let ack = a.login(a_id, "pw", 2);
    assert_eq!(
        ack["friends"],
        json!([{"id": b_id, "name": "ben", "state": "online"}])
    );
    assert_eq!(ack["groups"][0]["users"][1]["role"], "normal");
    assert_eq!(ack["offlinemsg"], json!([]));
    // ben's v1 connection heard nothing of ann going and coming back.
    assert_nothing_queued(&mut b1);
}

fn login_failures(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Nul);
    let id = c.register("carol", "pw");
    let invalid = json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"});
    for bad in [
        json!({"msgid": 1, "id": id, "password": "wrong"}),
        json!({"msgid": 1, "id": 999_999, "password": "pw"}),
        json!({"msgid": 1, "id": -1, "password": "pw"}),
        json!({"msgid": 1, "id": id, "password": ""}),
        json!({"msgid": 1, "id": "1", "password": "pw"}),
        json!({"msgid": 1, "password": "pw"}),
    ] {
        assert_eq!(c.req(bad.clone()), invalid, "{bad}");
    }
    c.login(id, "pw", 1);
    // This connection is logged in already (as anyone): errno 3 before any other check.
    let again = c.req(json!({"msgid": 1, "id": -5}));
    assert_eq!(again["errno"], 3, "{again}");
    // Another connection: the account is in use.
    let mut d = server.connect(Separator::Nul);
    let in_use = d.req(json!({"msgid": 1, "id": id, "password": "pw"}));
    assert_eq!(
        in_use,
        json!({"msgid": 2, "errno": 2, "errmsg": "this account is using, input another!"})
    );
}

/// A login may name the account instead of giving its id, in v1 and v2 alike: the ack says the id.
/// A wrong password, a name no one has (names are byte-exact) and a login giving both fail as a wrong
/// id does.
fn login_by_name(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Nul);
    let id = c.register("erin", "pw");
    let invalid = json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"});
    for bad in [
        json!({"msgid": 1, "name": "erin", "password": "wrong", "v": 2}),
        json!({"msgid": 1, "name": "nobody", "password": "pw", "v": 2}),
        json!({"msgid": 1, "name": "Erin", "password": "pw"}),
        json!({"msgid": 1, "name": "erin", "id": id, "password": "pw"}),
    ] {
        assert_eq!(c.req(bad.clone()), invalid, "{bad}");
    }
    let ack = c.req(json!({"msgid": 1, "name": "erin", "password": "pw", "v": 2, "device": "web"}));
    assert_eq!(
        (&ack["errno"], &ack["id"], &ack["name"], &ack["device"]),
        (&json!(0), &json!(id), &json!("erin"), &json!("web")),
        "{ack}"
    );
    let mut v1 = server.connect(Separator::Nul);
    let ack = v1.req(json!({"msgid": 1, "name": "erin", "password": "pw"}));
    assert_eq!(
        (&ack["errno"], &ack["id"]),
        (&json!(0), &json!(id)),
        "{ack}"
    );
}

fn logout_keeps_the_connection(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "dora");
    let (_, other) = user(&server, "eve");
    assert_eq!(
        a.req(json!({"msgid": 3, "seq": 9})),
        json!({"msgid": 11, "errno": 0, "seq": 9})
    );
    let refused = a.req(json!({"msgid": 6, "toid": other, "msg": "x"}));
    assert_eq!(refused["errno"], 103, "{refused}");
    // The account is free again, on another connection (v1: no logout ack) and then on this one.
    let mut b = server.connect(Separator::Nul);
    b.login(a_id, "pw", 1);
    b.send(json!({"msgid": 3}));
    // v1 has no logout ack: the next frame is the reply to the next request.
    assert_eq!(b.req(json!({"msgid": 99}))["errno"], 101);
    a.login(a_id, "pw", 2);
}

fn identity_comes_from_the_connection(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (mut a, a_id) = user(&server, "frank");
    let (mut b, b_id) = user(&server, "gina");
    // The C++ client sends its own id and name; a forged pair must be ignored.
    a.send(json!({"msgid": 6, "id": b_id, "name": "gina", "toid": b_id, "msg": "who am I", "time": "t"}));
    assert_eq!(a.recv()["msgid"], 16);
    let mut got = b.recv();
    assert_eq!(
        split_log_fields(&mut got),
        (json!(format!("u{a_id}")), json!(1))
    );
    assert_eq!(
        got,
        json!({"msgid": 6, "id": a_id, "name": "frank", "toid": b_id, "msg": "who am I", "time": "t"})
    );
}

fn names_are_byte_exact_unicode(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Newline);
    let names = [
        "alice",
        "Alice",
        "alice ",
        "Zoë \"quoted\" 'x' 名字",
        &"é".repeat(50),
    ];
    let ids: Vec<i64> = names.iter().map(|n| c.register(n, "pw")).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    let taken = c.req(json!({"msgid": 4, "name": "alice", "password": "x"}));
    assert_eq!(taken["msgid"], 5);
    assert_eq!(taken["errno"], 1, "{taken}");
    assert!(taken["errmsg"].as_str().unwrap().contains("taken"));
    for bad in [json!(""), json!("a\u{7}b"), json!("é".repeat(51)), json!(5)] {
        let ack = c.req(json!({"msgid": 4, "name": bad, "password": "pw"}));
        assert_eq!(
            (ack["msgid"].clone(), ack["errno"].clone()),
            (json!(5), json!(1)),
            "{bad}: {ack}"
        );
    }
    let ack = c.req(json!({"msgid": 4, "name": "ok", "password": "p".repeat(129)}));
    assert_eq!(ack["errno"], 1, "password over 128 bytes");
    for (name, id) in names.iter().zip(&ids) {
        let mut l = server.connect(Separator::Newline);
        assert_eq!(l.login(*id, "pw", 2)["name"], *name);
    }
}

fn passwords_are_stored_hashed(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Newline);
    let id = c.register("hank", "plain-secret");
    // The embedded store is one process's: the node goes before the test opens its database.
    drop(server);
    let record = db
        .store()
        .find_user(id as i32)
        .unwrap()
        .expect("user stored");
    assert!(
        record.password_hash.starts_with("$argon2id$"),
        "{}",
        record.password_hash
    );
    assert!(!record.password_hash.contains("plain-secret"));
}

fn resume_tokens(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Newline);
    let id = c.register("ida", "pw");
    let other = c.register("jon", "pw");
    assert_eq!(c.login(id, "pw", 1).get("token"), None, "v1 gets no token");
    c.send(json!({"msgid": 3}));
    let ack = c.login(id, "pw", 2);
    let token = ack["token"]
        .as_str()
        .expect("v2 login carries a token")
        .to_owned();
    assert_eq!(token.len(), 64);
    let token_login = |id: i64, token: &str| json!({"msgid": 1, "id": id, "token": token, "v": 2});
    // The connection drops without logout; the client resumes with its token instead of the password.
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut r = server.connect(Separator::Newline);
    let resumed = r.req(token_login(id, &token));
    assert_eq!(
        (resumed["errno"].clone(), resumed["token"].clone()),
        (json!(0), json!(token))
    );
    // Tokens are bound to their user; wrong ones are plain failures.
    let mut x = server.connect(Separator::Newline);
    assert_eq!(x.req(token_login(other, &token))["errno"], 1);
    assert_eq!(x.req(token_login(id, &"0".repeat(64)))["errno"], 1);
    assert_eq!(
        x.req(json!({"msgid": 1, "id": id, "token": token}))["errno"],
        1,
        "v1 has no tokens"
    );
    // Logout revokes it.
    assert_eq!(r.req(json!({"msgid": 3}))["msgid"], 11);
    assert_eq!(r.req(token_login(id, &token))["errno"], 1);
    assert_eq!(r.login(id, "pw", 2)["errno"], 0);
}

/// Every text field carries SQL metacharacters; all of it is stored and read back as plain text, and the
/// tables are still there (every statement binds its parameters).
fn sql_metacharacters_are_just_text(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let evil = "x'); DROP TABLE user; -- \" OR 1=1 #";
    let mut a = server.connect(Separator::Newline);
    let a_id = a.register(evil, evil);
    let b_id = a.register("bobby", "pw");
    a.login(a_id, evil, 2);
    let created = a.req(json!({"msgid": 8, "groupname": evil, "groupdesc": evil}));
    assert_eq!(created["groupname"], evil);
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": b_id, "msg": evil, "time": evil}))["msgid"],
        16
    );
    let mut b = server.connect(Separator::Newline);
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(ack["offlinemsg"][0]["msg"], evil);
    assert_eq!(ack["offlinemsg"][0]["name"], evil);
    assert_eq!(
        b.req(json!({"msgid": 9, "groupid": created["groupid"]}))["msgid"],
        14
    );
    joined(&mut a, created["groupid"].as_i64().unwrap(), b_id);
    b.req(json!({"msgid": 3}));
    let ack = b.login(b_id, "pw", 2);
    assert_eq!(ack["groups"][0]["groupdesc"], evil);
    drop(server);
    assert_eq!(
        db.store().find_user(a_id as i32).unwrap().unwrap().name,
        evil
    );
}

crate::on_both_backends!(
    sql_metacharacters_are_just_text,
    resume_tokens,
    register_then_login_v1,
    login_ack_lists_v1_and_v2,
    login_failures,
    login_by_name,
    logout_keeps_the_connection,
    identity_comes_from_the_connection,
    names_are_byte_exact_unicode,
    passwords_are_stored_hashed,
);
