//! Limits that protect everyone else: the per-connection rate limit and the failed-login throttle.

use std::io::Write;
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::json;

use crate::support::{
    Backend, ConfigFile, Conn, Db, Redis, Server, login_eventually, numbered, user,
};

/// The rate limit a test can flood quickly: 100 frames a second, a burst of 50, closed after 500
/// refusals.
fn flood_limit() -> ConfigFile {
    ConfigFile::new("[rate_limit]\nper_sec = 100.0\nburst = 50.0\nabuse_frames = 500.0\n")
}

/// A node with [`flood_limit`].
fn floodable() -> (Db, ConfigFile, Server) {
    let db = Db::fresh(Backend::Sqlite);
    let conf = flood_limit();
    let server = Server::start(&db, &["--config", &conf.path]);
    (db, conf, server)
}

/// `n` unknown requests written at once on `c` (a newline-framed connection), whether or not the
/// server reads them all.
fn burst(c: &mut Conn, n: usize) {
    let frames: Vec<u8> = (0..n).flat_map(|_| b"{\"msgid\":99}\n".to_vec()).collect();
    let _ = c.client.stream().try_clone().unwrap().write_all(&frames);
}

/// Errnos of the answers to `n` unknown requests written at once by `c`.
fn answers_to_a_burst(c: &mut Conn, n: usize) -> Vec<i64> {
    burst(c, n);
    (0..n)
        .map(|_| c.recv()["errno"].as_i64().unwrap())
        .collect()
}

#[test]
fn a_flood_is_refused_then_cut_off_while_others_are_served() {
    let (_db, _conf, server) = floodable();
    let (mut a, _) = user(&server, "calm");
    let (mut b, b_id) = user(&server, "friend");
    let mut flood = server.connect(Separator::Newline);
    burst(&mut flood, 3_000); // the server may cut us off before we finish
    let frames = flood.expect_closed(Duration::from_secs(10));
    let errnos: Vec<i64> = frames
        .iter()
        .map(|f| f["errno"].as_i64().unwrap())
        .collect();
    let served = errnos.iter().filter(|&&e| e == 101).count();
    let limited = errnos.iter().filter(|&&e| e == 107).count();
    assert!(
        (50..=80).contains(&served),
        "the burst allowance is served: {served}"
    );
    assert!(limited >= 400, "the rest is refused with 107: {limited}");
    assert!(
        served + limited < 3_000,
        "the connection was closed before the flood ended"
    );
    // A calm client on the same server is unaffected.
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": b_id, "msg": "still fine"}))["msgid"],
        16
    );
    assert_eq!(b.recv()["msg"], "still fine");
}

/// A user cut off for flooding logs in again without a burst allowance for a while (a connection's
/// limit is its own, so a reconnect used to bring a fresh one); others keep theirs.
#[test]
fn a_flooder_cut_off_comes_back_without_a_burst() {
    let (_db, _conf, server) = floodable();
    let (mut flood, flooder) = user(&server, "flooder");
    let (mut calm, _) = user(&server, "calm");
    burst(&mut flood, 3_000);
    flood.expect_closed(Duration::from_secs(10));

    let mut again = server.connect(Separator::Newline);
    again.login(flooder, "pw", 2);
    no_fresh_burst(&mut again, &mut calm, "after the cut");
}

/// A burst from `again`, a flooder cut off a moment ago and logged in again, is mostly refused (`when`
/// says where), while `calm`, never cut off, still gets its whole burst served.
fn no_fresh_burst(again: &mut Conn, calm: &mut Conn, when: &str) {
    let errnos = answers_to_a_burst(again, 40);
    let limited = errnos.iter().filter(|&&e| e == 107).count();
    assert!(limited >= 20, "no fresh burst {when}: {errnos:?}");
    assert_eq!(
        answers_to_a_burst(calm, 40),
        vec![101; 40],
        "a user never cut off keeps the burst"
    );
}

/// In a cluster, the user cut off on one node logs in on another without a burst either (nodes tell
/// each other over Redis): a reconnect through the load balancer lands anywhere.
#[test]
fn a_flooder_cut_off_on_one_node_has_no_burst_on_another() {
    let db = Db::fresh(Backend::Mysql);
    let redis = Redis::start();
    let conf = flood_limit();
    let nodes: Vec<Server> = (0..2)
        .map(|_| Server::start(&db, &["--config", &conf.path, "--redis", &redis.url()]))
        .collect();
    let (mut flood, flooder) = user(&nodes[0], "flooder");
    let (mut calm, _) = user(&nodes[1], "calm");
    burst(&mut flood, 3_000);
    flood.expect_closed(Duration::from_secs(10));
    // The word goes through Redis, best effort: a reconnect through a balancer takes longer than this.
    std::thread::sleep(Duration::from_millis(200));
    let mut again = nodes[1].connect(Separator::Newline);
    again.login(flooder, "pw", 2);
    no_fresh_burst(&mut again, &mut calm, "on the other node");
}

/// A flooder that reads nothing while messages pile up for it: its writer blocks on the full socket, and
/// the cut-off still completes: its device is released (the same device logs in again within seconds)
/// and every message sent to it arrives once, in order, from the socket or stored.
#[test]
fn a_flooder_that_reads_nothing_is_released_and_loses_nothing() {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new(
        "mailbox_capacity = 100000\n[rate_limit]\nper_sec = 5000.0\nburst = 50.0\nabuse_frames = 500.0\n",
    );
    let server = Server::start(&db, &["--config", &conf.path]);
    let (mut sender, _) = user(&server, "gus");
    let (mut flooder, flooder_id) = user(&server, "hal");
    let text = "x".repeat(8_000);
    let total = 600; // ~5 MB: more than the socket buffers hold, so the writer blocks
    for i in 0..total {
        let frame = json!({"msgid": 6, "toid": flooder_id, "msg": format!("{i}:{text}"), "cid": format!("c{i}")});
        assert_eq!(sender.req(frame)["errno"], 0, "message {i} accepted");
    }
    burst(&mut flooder, 20_000);
    let (mut again, ack) = login_eventually(server.addr, flooder_id, Duration::from_secs(10));
    let mut seen: Vec<usize> = Vec::new();
    while let Ok(Some(frame)) = flooder.client.recv(Some(Duration::from_secs(2))) {
        if frame["msgid"] == 6 {
            seen.push(numbered(&frame));
        }
    }
    seen.extend(ack["offlinemsg"].as_array().unwrap().iter().map(numbered));
    while let Ok(Some(frame)) = again.client.recv(Some(Duration::from_millis(500))) {
        if frame["msgid"] == 6 {
            seen.push(numbered(&frame));
        }
    }
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "every message once, in order"
    );
}

#[test]
fn a_client_at_the_limit_is_never_cut_off() {
    let db = Db::fresh(Backend::Sqlite);
    let conf =
        ConfigFile::new("[rate_limit]\nper_sec = 200.0\nburst = 20.0\nabuse_frames = 100.0\n");
    let server = Server::start(&db, &["--config", &conf.path]);
    let mut c = server.connect(Separator::Nul);
    let started = Instant::now();
    for i in 0..200 {
        // 100 frames per second: half the limit.
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            c.req(json!({"msgid": 99, "seq": i}))["errno"],
            101,
            "frame {i}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn failed_logins_are_throttled_but_known_users_get_in() {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new(
        "[login_throttle]\nwindow_secs = 2\nper_user_and_address = 3\nper_user = 10\nper_address = 5\n",
    );
    let server = Server::start(&db, &["--config", &conf.path]);
    let mut c = server.connect(Separator::Nul);
    let honest = c.register("honest", "pw");
    let victim = c.register("victim", "pw");
    let newcomer = c.register("newcomer", "pw");
    c.login(honest, "pw", 1);
    let mut attacker = server.connect(Separator::Nul);
    let attempt = |conn: &mut crate::support::Conn, id: i64, pw: &str| {
        conn.req(json!({"msgid": 1, "id": id, "password": pw}))["errno"]
            .as_i64()
            .unwrap()
    };
    let errnos: Vec<i64> = (0..4)
        .map(|_| attempt(&mut attacker, victim, "guess"))
        .collect();
    assert_eq!(
        errnos,
        vec![1, 1, 1, 107],
        "three failures per user and address, then 107"
    );
    assert_eq!(
        attempt(&mut attacker, victim, "pw"),
        107,
        "even the right password waits"
    );
    // Guessing other ids exhausts the address's allowance...
    for id in 1000..1005 {
        attempt(&mut attacker, id, "guess");
    }
    let mut other = server.connect(Separator::Nul);
    assert_eq!(
        attempt(&mut other, newcomer, "pw"),
        107,
        "an unknown user from that address waits"
    );
    // ...but a user who logged in from this address before still gets in.
    let mut again = server.connect(Separator::Nul);
    drop(c); // the honest user's first connection goes away, freeing the account
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(attempt(&mut again, honest, "pw"), 0);
    // After the window everyone may try again.
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(attempt(&mut other, newcomer, "pw"), 0);
}
