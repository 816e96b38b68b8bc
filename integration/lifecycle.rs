//! Connections and the node's life: presence that never gets stuck, crashes, graceful stops, the
//! connection limit, the login timeout, slow readers, and the race between delivery and login.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::json;

use crate::support::{Backend, ConfigFile, Conn, Db, Server, login_eventually, numbered, user};

fn disconnect_without_logout_is_offline_at_once(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (a, a_id) = user(&server, "ada");
    drop(a);
    // No waiting for a timeout: the next login succeeds within moments.
    login_eventually(server.addr, a_id, Duration::from_secs(2));
}

fn kill9_and_restart_frees_everyone(backend: Backend) {
    let db = Db::fresh(backend);
    let mut server = Server::start(&db, &[]);
    let (_a, a_id) = user(&server, "bea");
    let (_b, b_id) = user(&server, "cal");
    server.restart(); // SIGKILL, then the same node id starts again
    login_eventually(server.addr, a_id, Duration::from_secs(1));
    login_eventually(server.addr, b_id, Duration::from_secs(1));
}

fn sigterm_flushes_and_logs_everyone_out(backend: Backend) {
    let db = Db::fresh(backend);
    let mut server = Server::start(&db, &[]);
    let (mut a, _) = user(&server, "dan");
    let (mut b, b_id) = user(&server, "eli");
    for i in 0..200 {
        a.send(json!({"msgid": 6, "toid": b_id, "msg": format!("m{i}")}));
    }
    for _ in 0..200 {
        assert_eq!(a.recv()["msgid"], 16);
    }
    let started = Instant::now();
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("exited within 5 s");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Every accepted message reached b's socket before the close.
    let mut texts = Vec::new();
    while let Ok(Some(frame)) = b.client.recv(Some(Duration::from_secs(2))) {
        if frame["msgid"] == 6 {
            texts.push(frame["msg"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    // Presence was released in storage: a restarted node (any id) lets them in at once.
    let store = db.store();
    store.heartbeat("another-node").unwrap();
    assert_eq!(
        store
            .claim_device(b_id as i32, "default", "another-node", 1)
            .unwrap(),
        clusterchat::store::Claim::Claimed { first: true },
        "b still marked online"
    );
}

fn connection_limit_answers_108(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &["--max-connections", "2"]);
    let mut a = server.connect(Separator::Nul);
    let mut b = server.connect(Separator::Nul);
    assert_eq!(a.req(json!({"msgid": 99}))["errno"], 101);
    assert_eq!(b.req(json!({"msgid": 99}))["errno"], 101);
    let mut c = server.connect(Separator::Nul);
    let frames = c.expect_closed(Duration::from_secs(5));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        (frames[0]["errno"].clone(), frames[0]["ref"].clone()),
        (json!(108), json!(null))
    );
    // A freed slot is usable again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = server.connect(Separator::Nul);
        d.send(json!({"msgid": 99}));
        if d.recv()["errno"] == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.req(json!({"msgid": 99}))["errno"], 101);
}

fn connections_that_never_log_in_time_out(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &["--login-timeout-secs", "1"]);
    let (mut logged_in, _) = user(&server, "fay");
    let mut idle = server.connect(Separator::Nul);
    idle.send(json!({"msgid": 99})); // activity is not a login: the clock keeps running
    assert_eq!(idle.recv()["errno"], 101);
    let started = Instant::now();
    idle.expect_closed(Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        logged_in.req(json!({"msgid": 99}))["errno"],
        101,
        "logged-in connections stay"
    );
}

/// A client that never reads while another sends at full rate: it is closed when its mailbox fills, and
/// every message is delivered once, either in what reached its socket or stored for its next login.
fn slow_reader_loses_nothing(backend: Backend) {
    let db = Db::fresh(backend);
    let conf = ConfigFile::new("mailbox_capacity = 8\n");
    let server = Server::start(&db, &["--config", &conf.path]);
    let (mut sender, _) = user(&server, "gus");
    let (mut slow, slow_id) = user(&server, "hal");
    let (mut bystander, by_id) = user(&server, "ida");
    let text = "x".repeat(8_000);
    let total = 600; // ~5 MB: more than the socket buffers hold
    for i in 0..total {
        let frame = json!({"msgid": 6, "toid": slow_id, "msg": format!("{i}:{text}")});
        assert_eq!(sender.req(frame)["msgid"], 16, "message {i} accepted");
    }
    // Others are still served meanwhile.
    assert_eq!(
        sender.req(json!({"msgid": 6, "toid": by_id, "msg": "still here"}))["msgid"],
        16
    );
    assert_eq!(bystander.recv()["msg"], "still here");
    // What reached the slow client's socket, then what was stored for it.
    let mut seen: Vec<usize> = Vec::new();
    let mut closed = false;
    while let Ok(Some(frame)) = slow.client.recv(Some(Duration::from_secs(3))) {
        if frame["msgid"] == 6 {
            seen.push(numbered(&frame));
        }
    }
    if seen.len() < total {
        closed = true;
        let (mut again, ack) = login_eventually(server.addr, slow_id, Duration::from_secs(5));
        seen.extend(ack["offlinemsg"].as_array().unwrap().iter().map(numbered));
        // Beyond one ack's worth, the rest follows as chat frames.
        while let Ok(Some(frame)) = again.client.recv(Some(Duration::from_millis(500))) {
            seen.push(numbered(&frame));
        }
    }
    assert!(
        closed,
        "the slow reader was never cut off (mailbox 8, {total} large messages)"
    );
    let expected: Vec<usize> = (0..total).collect();
    assert_eq!(seen, expected, "every message once, in order");
}

/// Messages sent while the recipient is logging in: each arrives exactly once, live, in the login ack,
/// or fetched right after the login (the race PROTOCOL.md describes), without waiting for another login.
fn delivery_races_with_login(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (sender, _) = user(&server, "jay");
    let (mut receiver, r_id) = user(&server, "kai");
    let sender = std::sync::Arc::new(std::sync::Mutex::new(sender));
    let per_round = 60;
    for round in 0..20u64 {
        assert_eq!(receiver.req(json!({"msgid": 3}))["msgid"], 11);
        let s = sender.clone();
        let burst = std::thread::spawn(move || {
            let mut s = s.lock().unwrap();
            for i in 0..per_round {
                let frame = json!({"msgid": 6, "toid": r_id, "msg": format!("{i}:")});
                assert_eq!(s.req(frame)["msgid"], 16);
            }
        });
        std::thread::sleep(Duration::from_millis(round % 10));
        let ack = receiver.req(json!({"msgid": 1, "id": r_id, "password": "pw", "v": 2}));
        assert_eq!(
            (ack["msgid"].clone(), ack["errno"].clone()),
            (json!(2), json!(0)),
            "{ack}"
        );
        let mut seen: Vec<usize> = ack["offlinemsg"]
            .as_array()
            .unwrap()
            .iter()
            .map(numbered)
            .collect();
        burst.join().unwrap();
        // Everything of this round must arrive on this login: no later login will fetch it.
        while let Ok(Some(frame)) = receiver.client.recv(Some(Duration::from_millis(500))) {
            seen.push(numbered(&frame));
        }
        let unique: HashSet<usize> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "round {round}: duplicates delivered"
        );
        assert_eq!(
            unique,
            (0..per_round).collect::<HashSet<_>>(),
            "round {round}: messages missing"
        );
    }
}

/// The node's live thread count, from /proc.
fn threads(server: &Server) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Frames go out on the thread that delivers them when the socket takes them at once, and writer
/// threads exist only while something waits: an idle logged-in connection costs one thread (its reader).
fn idle_connections_cost_one_thread_each(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let base = threads(&server);
    let users: Vec<(Conn, i64)> = (0..60).map(|i| user(&server, &format!("t{i}"))).collect();
    let mut users = users;
    for i in 0..users.len() {
        let to = users[(i + 1) % users.len()].1;
        users[i]
            .0
            .send(json!({"msgid": 6, "toid": to, "msg": "ping"}));
    }
    for (conn, _) in &mut users {
        // The ack and the ping from the neighbour, in either order.
        let mut ids: Vec<i64> = (0..2)
            .map(|_| conn.recv()["msgid"].as_i64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![6, 16]);
    }
    // Writer threads that were needed stop after two idle seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads(&server) > base + users.len() + 2 {
        assert!(
            Instant::now() < deadline,
            "{} threads for {} idle connections",
            threads(&server),
            users.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

crate::on_both_backends!(
    idle_connections_cost_one_thread_each,
    delivery_races_with_login,
    disconnect_without_logout_is_offline_at_once,
    kill9_and_restart_frees_everyone,
    sigterm_flushes_and_logs_everyone_out,
    connection_limit_answers_108,
    connections_that_never_log_in_time_out,
    slow_reader_loses_nothing,
);
