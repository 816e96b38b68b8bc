//! Upgrading in place: a database made by the server before the log existed (migration 1's schema, with
//! rendered v1 frames in its offline list and a resume token per user) is migrated at start, and nothing it
//! stored is lost.

use std::time::Duration;

use clusterchat::hasher::{HashCost, Hasher};
use clusterchat::model::Conv;
use clusterchat::protocol::frame::Separator;
use clusterchat::store::{Pointer, migrate};
use r2d2_mysql::mysql::prelude::Queryable;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Backend, Conn, Db, Server, now_ms, presence};

/// The resume token the old database holds for alice (only its SHA-256 is stored).
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The old server's frames, as it stored them for offline recipients (alice 1, bob 2, carol 3, group 1),
/// in the order stored: (recipient, frame).
fn old_frames() -> Vec<(i64, Value)> {
    let one = json!({"id": 1, "msg": "one", "msgid": 6, "name": "alice", "time": "2024-01-01 10:00:00", "toid": 2});
    let all = json!({"groupid": 1, "id": 1, "msg": "all", "msgid": 10, "name": "alice", "time": "2024-01-01 10:00:01"});
    let two = json!({"id": 3, "msg": "two", "msgid": 6, "name": "carol", "time": "2024-01-01 10:00:02", "toid": 2});
    let three = json!({"id": 1, "msg": "three", "msgid": 6, "name": "alice", "time": "2024-01-01 10:00:03", "toid": 2});
    vec![(2, one), (2, all.clone()), (3, all), (2, two), (2, three)]
}

/// The rows of the old schema's tables, as the old server would have left them.
struct OldRows {
    users: Vec<(i64, &'static str, String, &'static str)>,
    friends: Vec<(i64, i64)>,
    offline: Vec<(i64, String)>,
    token_hash: Vec<u8>,
    created: i64,
}

fn old_rows() -> OldRows {
    let hasher = Hasher::new(
        &HashCost {
            memory_kib: 64,
            iterations: 1,
        },
        1,
    )
    .unwrap();
    let hash = |pw: &str| hasher.hash(pw).unwrap();
    OldRows {
        // bob's row still says online on a node that is gone: the old presence columns are not read.
        users: vec![
            (1, "alice", hash("pw"), "offline"),
            (2, "bob", hash("pw"), "online"),
            (3, "carol", hash("pw"), "offline"),
        ],
        friends: vec![(1, 2), (2, 1)],
        offline: old_frames()
            .into_iter()
            .map(|(to, f)| (to, serde_json::to_string(&f).unwrap()))
            .collect(),
        token_hash: Sha256::digest(TOKEN.as_bytes()).to_vec(),
        created: now_ms() / 1000,
    }
}

/// Creates migration 1's schema by hand in an empty database and fills it.
fn create_old_database(db: &Db, backend: Backend) {
    let rows = old_rows();
    match backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch(include_str!("../sql/sqlite/001_base.sql"))
                .unwrap();
            for (id, name, hash, state) in &rows.users {
                conn.execute(
                    "INSERT INTO user (id, name, password, state, node) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![id, name, hash, state, (*state == "online").then_some("vm:1")],
                )
                .unwrap();
            }
            for (a, b) in &rows.friends {
                conn.execute(
                    "INSERT INTO friend (userid, friendid) VALUES (?1, ?2)",
                    rusqlite::params![a, b],
                )
                .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO allgroup (id, groupname, groupdesc) VALUES (1, 'old band', 'from before');
                 INSERT INTO groupuser (groupid, userid, grouprole) VALUES (1, 1, 'creator'), (1, 2, 'normal'), (1, 3, 'normal');",
            )
            .unwrap();
            for (to, frame) in &rows.offline {
                conn.execute(
                    "INSERT INTO offlinemessage (userid, message) VALUES (?1, ?2)",
                    rusqlite::params![to, frame],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO token (userid, hash, created) VALUES (1, ?1, ?2)",
                rusqlite::params![rows.token_hash, rows.created],
            )
            .unwrap();
        }
        Backend::Mysql => {
            let mut conn =
                r2d2_mysql::mysql::Conn::new(r2d2_mysql::mysql::Opts::from_url(&db.url).unwrap())
                    .unwrap();
            for statement in migrate::statements(include_str!("../sql/mysql/001_base.sql")) {
                conn.query_drop(statement).unwrap();
            }
            for (id, name, hash, state) in &rows.users {
                conn.exec_drop(
                    "INSERT INTO user (id, name, password, state, node) VALUES (?, ?, ?, ?, ?)",
                    (
                        id,
                        name,
                        hash,
                        state,
                        (*state == "online").then_some("vm:1"),
                    ),
                )
                .unwrap();
            }
            for (a, b) in &rows.friends {
                conn.exec_drop(
                    "INSERT INTO friend (userid, friendid) VALUES (?, ?)",
                    (a, b),
                )
                .unwrap();
            }
            conn.query_drop(
                "INSERT INTO allgroup (id, groupname, groupdesc) VALUES (1, 'old band', 'from before')",
            )
            .unwrap();
            conn.query_drop(
                "INSERT INTO groupuser (groupid, userid, grouprole) VALUES (1, 1, 'creator'), (1, 2, 'normal'), (1, 3, 'normal')",
            )
            .unwrap();
            for (to, frame) in &rows.offline {
                conn.exec_drop(
                    "INSERT INTO offlinemessage (userid, message) VALUES (?, ?)",
                    (to, frame),
                )
                .unwrap();
            }
            conn.exec_drop(
                "INSERT INTO token (userid, hash, created) VALUES (1, ?, ?)",
                (&rows.token_hash, rows.created),
            )
            .unwrap();
        }
    }
}

/// Every schema version there is: what an upgraded database records.
fn all_versions() -> Vec<i64> {
    migrate::MIGRATIONS
        .iter()
        .map(|m| i64::from(m.version))
        .collect()
}

/// The schema versions the database records, and whether the old offline table is still there.
fn schema_state(db: &Db, backend: Backend) -> (Vec<i64>, bool) {
    match backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            let versions = conn
                .prepare("SELECT version FROM schema_version ORDER BY version")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<Vec<i64>>>()
                .unwrap();
            let legacy: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'offline_legacy'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (versions, legacy > 0)
        }
        Backend::Mysql => {
            let mut conn =
                r2d2_mysql::mysql::Conn::new(r2d2_mysql::mysql::Opts::from_url(&db.url).unwrap())
                    .unwrap();
            let versions: Vec<i64> = conn
                .query("SELECT version FROM schema_version WHERE done = 1 ORDER BY version")
                .unwrap();
            let legacy: Vec<String> = conn.query("SHOW TABLES LIKE 'offline_legacy'").unwrap();
            (versions, !legacy.is_empty())
        }
    }
}

/// The v2 frame of an old message now in the log, as `conv` names it.
fn logged(old: &Value, conv: &str, pos: i64, ts: i64) -> Value {
    let mut frame = old.clone();
    frame["conv"] = json!(conv);
    frame["pos"] = json!(pos);
    frame["ts"] = json!(ts);
    frame
}

fn history(c: &mut Conn, conv: &str) -> Value {
    let reply = c.req(json!({"msgid": 19, "conv": conv}));
    assert_eq!(
        (
            reply["msgid"].clone(),
            reply["errno"].clone(),
            reply["more"].clone()
        ),
        (json!(20), json!(0), json!(false)),
        "{reply}"
    );
    reply["messages"].clone()
}

/// `(pos, text)` of each message of a conversation's whole history.
fn history_texts(c: &mut Conn, conv: &str) -> Vec<(i64, String)> {
    history(c, conv)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["pos"].as_i64().unwrap(),
                m["msg"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn old_database_is_upgraded_in_place(backend: Backend) {
    let db = Db::fresh(backend);
    create_old_database(&db, backend);
    let before = now_ms();
    let mut server = Server::start(&db, &[]);
    let after = now_ms();
    assert_eq!(schema_state(&db, backend), (all_versions(), false));
    let frames: Vec<Value> = old_frames().into_iter().map(|(_, f)| f).collect();
    let (one, all, two, three) = (&frames[0], &frames[1], &frames[3], &frames[4]);

    // bob, in the old client (v1): exactly the original frames, in the order stored, each once.
    let mut bob = server.connect(Separator::Nul);
    let ack = bob.login(2, "pw", 1);
    let got: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .expect("bob's offline messages")
        .iter()
        .map(|s| serde_json::from_str(s.as_str().expect("v1: frames as strings")).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![one.clone(), all.clone(), two.clone(), three.clone()]
    );
    let friends: Vec<Value> = ack["friends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str(s.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        friends,
        vec![json!({"id": 1, "name": "alice", "state": "offline"})]
    );
    bob.send(json!({"msgid": 3})); // v1: no answer
    assert_eq!(bob.req(json!({"msgid": 99}))["errno"], 101);
    let mut bob = server.connect(Separator::Newline);
    let ack = bob.login(2, "pw", 2);
    assert_eq!(ack["offlinemsg"], json!([]), "delivered once");

    // The messages are in the log: ts = the migration's time, time and text kept.
    let in_log = history(&mut bob, "u1");
    let ts = in_log[0]["ts"].as_i64().expect("ts");
    assert!(
        (before..=after).contains(&ts),
        "ts {ts} not in [{before}, {after}]"
    );
    assert_eq!(
        in_log,
        json!([logged(one, "u1", 1, ts), logged(three, "u1", 2, ts)])
    );
    assert_eq!(history(&mut bob, "u3"), json!([logged(two, "u3", 1, ts)]));
    assert_eq!(history(&mut bob, "g1"), json!([logged(all, "g1", 1, ts)]));
    assert_eq!(
        ack["conversations"],
        json!([
            {"conv": "g1", "name": "old band", "last": 1, "read": 0, "unread": 1},
            {"conv": "u1", "name": "alice", "last": 2, "read": 0, "unread": 2, "peerread": 2},
            {"conv": "u3", "name": "carol", "last": 1, "read": 0, "unread": 1, "peerread": 1},
        ]),
        "all at one ts: ties by conv"
    );

    // carol (v2): the group message once, at the same position as for bob.
    let mut carol = server.connect(Separator::Newline);
    let ack = carol.login(3, "pw", 2);
    assert_eq!(ack["offlinemsg"], json!([logged(all, "g1", 1, ts)]));
    assert_eq!(history(&mut carol, "g1"), json!([logged(all, "g1", 1, ts)]));
    assert_eq!(history(&mut carol, "u2"), json!([logged(two, "u2", 1, ts)]));

    // alice: the old token logs in her default device; her side of the conversations.
    let mut alice = server.connect(Separator::Newline);
    let ack = alice.req(json!({"msgid": 1, "id": 1, "token": TOKEN, "v": 2}));
    assert_eq!(
        (
            ack["errno"].clone(),
            ack["device"].clone(),
            ack["offlinemsg"].clone()
        ),
        (json!(0), json!("default"), json!([])),
        "{ack}"
    );
    // Her friendship came through the upgrade: bob (v2) hears of her first device.
    presence(&mut bob, 1, "online");
    assert_eq!(
        history(&mut alice, "u2"),
        json!([logged(one, "u2", 1, ts), logged(three, "u2", 2, ts)])
    );
    assert_eq!(
        ack["groups"][0]["users"],
        json!([
            {"id": 1, "name": "alice", "state": "online", "role": "creator"},
            {"id": 2, "name": "bob", "state": "online", "role": "normal"},
            {"id": 3, "name": "carol", "state": "online", "role": "normal"},
        ])
    );

    // The log goes on after the old messages.
    let ack = alice.req(json!({"msgid": 6, "toid": 2, "msg": "four"}));
    assert_eq!(
        (ack["msgid"].clone(), ack["pos"].clone()),
        (json!(16), json!(3)),
        "{ack}"
    );
    assert_eq!(bob.recv()["pos"], 3);

    // A restart migrates nothing again and keeps everything.
    drop((alice, bob, carol));
    server.restart();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        server
            .log_text()
            .matches("applied schema migration")
            .count(),
        migrate::MIGRATIONS.len(),
        "every version, at the first start only: {}",
        server.log_text()
    );
    assert_eq!(schema_state(&db, backend), (all_versions(), false));
    let mut bob = server.connect(Separator::Newline);
    let ack = bob.login(2, "pw", 2);
    assert_eq!(ack["offlinemsg"], json!([]));
    let texts: Vec<Value> = history(&mut bob, "u1")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(texts, vec![json!("one"), json!("three"), json!("four")]);
}

/// The old server stored a group message once per offline member, so two group messages with the same
/// text and time (alice says "ok" twice within a second) left two identical frames per member. They are
/// two messages: the upgrade must keep both, each at its own position, once per member.
fn identical_group_frames_stay_two_messages(backend: Backend) {
    let db = Db::fresh(backend);
    create_old_database(&db, backend);
    let ok = json!({"groupid": 1, "id": 1, "msg": "ok", "msgid": 10, "name": "alice", "time": "2024-01-01 11:00:00"});
    let text = serde_json::to_string(&ok).unwrap();
    // The old server's rows for two sends: message 1 for bob and carol, then message 2 for both.
    let sql_rows = [(2, &text), (3, &text), (2, &text), (3, &text)];
    match backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute("DELETE FROM offlinemessage", []).unwrap();
            for (to, frame) in sql_rows {
                conn.execute(
                    "INSERT INTO offlinemessage (userid, message) VALUES (?1, ?2)",
                    rusqlite::params![to, frame],
                )
                .unwrap();
            }
        }
        Backend::Mysql => {
            let mut conn =
                r2d2_mysql::mysql::Conn::new(r2d2_mysql::mysql::Opts::from_url(&db.url).unwrap())
                    .unwrap();
            conn.query_drop("DELETE FROM offlinemessage").unwrap();
            for (to, frame) in sql_rows {
                conn.exec_drop(
                    "INSERT INTO offlinemessage (userid, message) VALUES (?, ?)",
                    (to, frame),
                )
                .unwrap();
            }
        }
    }
    let server = Server::start(&db, &[]);
    let mut bob = server.connect(Separator::Newline);
    let ack = bob.login(2, "pw", 2);
    let positions: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["msg"], m["pos"]]))
        .collect();
    assert_eq!(positions, vec![json!(["ok", 1]), json!(["ok", 2])], "{ack}");
    let texts: Vec<Value> = history(&mut bob, "g1")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["msg"], m["pos"]]))
        .collect();
    assert_eq!(texts, vec![json!(["ok", 1]), json!(["ok", 2])]);
    let mut carol = server.connect(Separator::Nul);
    let ack = carol.login(3, "pw", 1);
    let frames: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str(s.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(frames, vec![ok.clone(), ok], "v1: the two original frames");
}

/// MySQL converts the old offline list in batches of 10,000 rows: a group frame stored for bob as the
/// 10,000th row and for carol as the 10,001st is still one message, at one position for both.
#[test]
fn mysql_group_frame_across_a_conversion_batch_is_one_message() {
    let db = Db::fresh(Backend::Mysql);
    create_old_database(&db, Backend::Mysql);
    let mut conn =
        r2d2_mysql::mysql::Conn::new(r2d2_mysql::mysql::Opts::from_url(&db.url).unwrap()).unwrap();
    conn.query_drop("DELETE FROM offlinemessage").unwrap();
    let filler = serde_json::to_string(
        &json!({"id": 1, "msg": "filler", "msgid": 6, "name": "alice", "time": "t", "toid": 2}),
    )
    .unwrap();
    let group = serde_json::to_string(
        &json!({"groupid": 1, "id": 1, "msg": "edge", "msgid": 10, "name": "alice", "time": "t"}),
    )
    .unwrap();
    let mut rows: Vec<(i64, &str)> = vec![(2, filler.as_str()); 9_999];
    rows.push((2, &group));
    rows.push((3, &group));
    for chunk in rows.chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(to, f)| format!("({to}, '{}')", f.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        conn.query_drop(format!(
            "INSERT INTO offlinemessage (userid, message) VALUES {}",
            values.join(",")
        ))
        .unwrap();
    }
    let server = Server::start(&db, &[]);
    // alice (who has nothing offline) sees the group's log; carol gets the message offline, at pos 1.
    let mut alice = server.connect(Separator::Newline);
    alice.login(1, "pw", 2);
    let got: Vec<Value> = history(&mut alice, "g1")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["msg"], m["pos"]]))
        .collect();
    assert_eq!(
        got,
        vec![json!(["edge", 1])],
        "one message in the group's log"
    );
    let mut carol = server.connect(Separator::Newline);
    let ack = carol.login(3, "pw", 2);
    let got: Vec<Value> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["msg"], m["pos"]]))
        .collect();
    assert_eq!(got, vec![json!(["edge", 1])]);
}

/// A database at migration 3 (read positions in `readpos`, one-to-one participants listed there too):
/// alice 1, bob 2, carol 3. alice and bob wrote 3 messages (alice read all, bob up to his own, 2), bob
/// wrote carol one (carol read none), alice one to herself (read), alice one to group 1 (alice and bob,
/// she read it).
fn create_v3_database(db: &Db, backend: Backend) {
    let rows = old_rows();
    let (ab, bc, aa) = (
        Conv::direct(1, 2).key(),
        Conv::direct(2, 3).key(),
        Conv::direct(1, 1).key(),
    );
    let mut data: Vec<String> = rows
        .users
        .iter()
        .map(|(id, name, hash, _)| {
            format!("INSERT INTO user (id, name, password) VALUES ({id}, '{name}', '{hash}')")
        })
        .collect();
    data.extend([
        "INSERT INTO allgroup (id, groupname, groupdesc) VALUES (1, 'band', '')".to_owned(),
        "INSERT INTO groupuser (groupid, userid, grouprole) VALUES (1, 1, 'creator'), (1, 2, 'normal')"
            .to_owned(),
        format!(
            "INSERT INTO conversation (id, last_pos, last_ts) VALUES ({ab}, 3, 30), ({bc}, 1, 40), \
             ({aa}, 1, 20), (-1, 1, 10)"
        ),
        format!(
            "INSERT INTO message (conv, pos, sender, ts, cid, time, text) VALUES \
             ({ab}, 1, 1, 28, NULL, 't', 'a1'), ({ab}, 2, 2, 29, NULL, 't', 'b2'), \
             ({ab}, 3, 1, 30, NULL, 't', 'a3'), ({bc}, 1, 2, 40, NULL, 't', 'b1'), \
             ({aa}, 1, 1, 20, NULL, 't', 'me'), (-1, 1, 1, 10, NULL, 't', 'all')"
        ),
        format!(
            "INSERT INTO readpos (userid, conv, peer, pos) VALUES (1, {ab}, 2, 3), (2, {ab}, 1, 2), \
             (2, {bc}, 3, 1), (3, {bc}, 2, 0), (1, {aa}, 1, 1), (1, -1, NULL, 1)"
        ),
    ]);
    match backend {
        Backend::Sqlite => {
            let conn = sqlite_at(db, 3);
            for statement in data {
                conn.execute_batch(&statement).unwrap();
            }
        }
        Backend::Mysql => {
            let mut conn = mysql_at(db, 3);
            for statement in data {
                conn.query_drop(statement).unwrap();
            }
        }
    }
}

/// Makes `db` an SQLite database at migration `version` (its old offline table converted long ago) and
/// returns a connection to it.
fn sqlite_at(db: &Db, version: usize) -> rusqlite::Connection {
    let path = db.url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    for m in &migrate::MIGRATIONS[..version] {
        conn.execute_batch(m.sqlite.unwrap_or_default()).unwrap();
    }
    conn.execute_batch(
        "DROP TABLE offline_legacy; \
         CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL);",
    )
    .unwrap();
    for v in 1..=version {
        conn.execute("INSERT INTO schema_version VALUES (?1, 0)", [v as i64])
            .unwrap();
    }
    conn
}

/// Makes `db` a MySQL database at migration `version` (its old offline table converted long ago) and
/// returns a connection to it.
fn mysql_at(db: &Db, version: usize) -> r2d2_mysql::mysql::Conn {
    let mut conn =
        r2d2_mysql::mysql::Conn::new(r2d2_mysql::mysql::Opts::from_url(&db.url).unwrap()).unwrap();
    for m in &migrate::MIGRATIONS[..version] {
        for statement in migrate::statements(m.mysql.unwrap_or_default()) {
            conn.query_drop(statement).unwrap();
        }
    }
    conn.query_drop("DROP TABLE offline_legacy").unwrap();
    conn.query_drop(
        "CREATE TABLE schema_version (version INT NOT NULL PRIMARY KEY, steps INT NOT NULL, \
         done TINYINT NOT NULL, applied BIGINT NOT NULL)",
    )
    .unwrap();
    for v in 1..=version {
        conn.exec_drop("INSERT INTO schema_version VALUES (?, 0, 1, 0)", (v,))
            .unwrap();
    }
    conn
}

/// MySQL: a message is in a user's offline list once. Duplicates an older server left (a record written
/// again after the answer to its first COMMIT was lost) are dropped by migration 7, the first of each
/// kept; a pointer recorded again is not listed again.
#[test]
fn mysql_offline_list_holds_a_message_once() {
    let db = Db::fresh(Backend::Mysql);
    let ab = Conv::direct(1, 2);
    let key = ab.key();
    mysql_at(&db, 6)
        .query_drop(format!(
            "INSERT INTO offlinemessage (id, userid, conv, pos) VALUES (1, 2, {key}, 1), \
             (2, 2, {key}, 1), (3, 2, {key}, 2), (4, 1, {key}, 1), (5, 2, {key}, 1)"
        ))
        .unwrap();
    let store = db.store();
    let ids = "SELECT COUNT(*) FROM offlinemessage";
    assert_eq!(db.count(ids), 3);
    assert_eq!(db.count(&format!("{ids} WHERE id IN (1, 3, 4)")), 3);
    let again = Pointer {
        user: 2,
        conv: ab,
        pos: 2,
    };
    store.store_offline(&[again, again]).unwrap();
    assert_eq!(db.count(ids), 3);
}

/// `(conv, last, read, peerread)` of each conversation a login ack lists, by conv.
fn listed(ack: &Value) -> Vec<(String, i64, i64, Option<i64>)> {
    let mut out: Vec<(String, i64, i64, Option<i64>)> = ack["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("conversations in {ack}"))
        .iter()
        .map(|c| {
            (
                c["conv"].as_str().unwrap().to_owned(),
                c["last"].as_i64().unwrap(),
                c["read"].as_i64().unwrap(),
                c["peerread"].as_i64(),
            )
        })
        .collect();
    out.sort();
    out
}

fn read_positions_survive_migration_4(backend: Backend) {
    let db = Db::fresh(backend);
    create_v3_database(&db, backend);
    let server = Server::start(&db, &[]);
    assert_eq!(schema_state(&db, backend), (all_versions(), false));
    let row =
        |conv: &str, last: i64, read: i64, peer: Option<i64>| (conv.to_owned(), last, read, peer);
    let mut alice = server.connect(Separator::Newline);
    let ack = alice.login(1, "pw", 2);
    assert_eq!(
        listed(&ack),
        vec![
            row("g1", 1, 1, None),
            row("u1", 1, 1, Some(1)),
            row("u2", 3, 3, Some(2))
        ]
    );
    let mut bob = server.connect(Separator::Newline);
    let ack = bob.login(2, "pw", 2);
    assert_eq!(
        listed(&ack),
        vec![
            row("g1", 1, 0, None),
            row("u1", 3, 2, Some(3)),
            row("u3", 1, 1, Some(0))
        ]
    );
    let mut carol = server.connect(Separator::Newline);
    assert_eq!(
        listed(&carol.login(3, "pw", 2)),
        vec![row("u2", 1, 0, Some(1))]
    );

    // After the move: a send reads the sender up to it and leaves the peer's position; READ moves one side.
    let ack = bob.req(json!({"msgid": 6, "toid": 1, "msg": "b4", "cid": "c1"}));
    assert_eq!(
        (ack["msgid"].clone(), ack["pos"].clone()),
        (json!(16), json!(4)),
        "{ack}"
    );
    assert_eq!(alice.recv()["pos"], 4);
    let ack = carol.req(json!({"msgid": 21, "conv": "u2", "pos": 1}));
    assert_eq!(
        (ack["msgid"].clone(), ack["read"].clone()),
        (json!(22), json!(1)),
        "{ack}"
    );
    let receipt = bob.recv();
    assert_eq!(
        (receipt["msgid"].clone(), receipt["conv"].clone()),
        (json!(23), json!("u3")),
        "{receipt}"
    );
    assert_eq!(
        listed(&alice.req(json!({"msgid": 17}))),
        vec![
            row("g1", 1, 1, None),
            row("u1", 1, 1, Some(1)),
            row("u2", 4, 3, Some(4))
        ]
    );
    assert_eq!(
        listed(&bob.req(json!({"msgid": 17}))),
        vec![
            row("g1", 1, 0, None),
            row("u1", 4, 4, Some(3)),
            row("u3", 1, 1, Some(1))
        ]
    );
    assert_eq!(
        listed(&carol.req(json!({"msgid": 17}))),
        vec![row("u2", 1, 1, Some(1))]
    );
    // The old messages and the new one read as one history (on SQLite, migration 5 moved the old ones).
    assert_eq!(
        history_texts(&mut alice, "u2"),
        [(1, "a1"), (2, "b2"), (3, "a3"), (4, "b4")].map(|(p, t)| (p, t.to_owned()))
    );
}

crate::on_both_backends!(
    old_database_is_upgraded_in_place,
    identical_group_frames_stay_two_messages,
    read_positions_survive_migration_4,
);

/// SQLite at migration 7 (the log a row per message in commit order, indexed in sorted batches) with
/// part of it never indexed, as a node killed between batches leaves it: the first three messages
/// indexed (positions, cids, conversation rows), the last two only in the tail, one of those with a cid
/// and one in a conversation that only the tail has, whose row a READ wrote. Migration 8 (a row per
/// commit, the index in memory) keeps every message, cid and read position.
#[test]
fn sqlite_log_with_an_unindexed_tail_is_rewritten_whole() {
    let db = Db::fresh(Backend::Sqlite);
    let (ab, ac, bc) = (
        Conv::direct(1, 2).key(),
        Conv::direct(1, 3).key(),
        Conv::direct(2, 3).key(),
    );
    let conn = sqlite_at(&db, 7);
    for (id, name, hash, _) in old_rows().users {
        conn.execute(
            "INSERT INTO user (id, name, password) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, name, hash],
        )
        .unwrap();
    }
    conn.execute_batch(&format!(
        "INSERT INTO message (conv, pos, sender, ts, cid, time, text) VALUES \
         ({ab}, 1, 1, 10, 'a1', 't', 'one'), ({ab}, 2, 2, 11, NULL, 't', 'two'), \
         ({ac}, 1, 1, 12, NULL, 't', 'three'), ({ab}, 3, 1, 13, 'a3', 't', 'four'), \
         ({bc}, 1, 2, 14, NULL, 't', 'five'); \
         INSERT INTO position (conv, pos, seq) VALUES ({ab}, 1, 1), ({ab}, 2, 2), ({ac}, 1, 3); \
         INSERT INTO sent (sender, cid, seq) VALUES (1, 'a1', 1); \
         INSERT INTO conversation (id, lo, hi, last_pos, last_ts, lo_read, hi_read) VALUES \
         ({ab}, 1, 2, 2, 11, 1, 3), ({ac}, 1, 3, 1, 12, 1, 0), ({bc}, 2, 3, 1, 14, 0, 1); \
         UPDATE indexed SET seq = 3;"
    ))
    .unwrap();
    drop(conn);
    let server = Server::start(&db, &[]);
    assert_eq!(schema_state(&db, Backend::Sqlite), (all_versions(), false));
    let row =
        |conv: &str, last: i64, read: i64, peer: Option<i64>| (conv.to_owned(), last, read, peer);
    let mut alice = server.connect(Separator::Newline);
    assert_eq!(
        listed(&alice.login(1, "pw", 2)),
        vec![row("u2", 3, 3, Some(3)), row("u3", 1, 1, Some(0))]
    );
    let mut bob = server.connect(Separator::Newline);
    assert_eq!(
        listed(&bob.login(2, "pw", 2)),
        vec![row("u1", 3, 3, Some(3)), row("u3", 1, 1, Some(1))]
    );
    let mut carol = server.connect(Separator::Newline);
    assert_eq!(
        listed(&carol.login(3, "pw", 2)),
        vec![row("u1", 1, 0, Some(1)), row("u2", 1, 1, Some(1))]
    );
    assert_eq!(
        history_texts(&mut alice, "u2"),
        [(1, "one"), (2, "two"), (3, "four")].map(|(p, t)| (p, t.to_owned()))
    );
    // Resends of both cids, the indexed one and the tail's, get their first positions; a new message
    // goes on after the tail.
    for (cid, pos) in [("a1", 1), ("a3", 3), ("a4", 4)] {
        let ack = alice.req(json!({"msgid": 6, "toid": 2, "msg": "again", "cid": cid}));
        assert_eq!(
            (ack["msgid"].clone(), ack["pos"].clone()),
            (json!(16), json!(pos)),
            "{ack}"
        );
    }
    assert_eq!(bob.recv()["pos"], 4, "only the new message is delivered");
}
