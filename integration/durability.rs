//! kill -9 of a node in the middle of a stream of acknowledged chats (PROTOCOL-2 section 2): senders that
//! reconnect to another node and resend every unacknowledged message with its cid lose nothing and
//! duplicate nothing; recipients have every message exactly once, in position order, live or from history.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{Backend, ConfigFile, Conn, Db, Nodes, REPLY, Server, user};

const SENDERS: usize = 4;
const EACH: usize = 300;
const WINDOW: usize = 25;

fn cid(round: usize, sender: usize, k: usize) -> String {
    format!("c-{round}-{sender}-{k}")
}

fn login(addr: SocketAddr, id: i64, device: &str) -> Conn {
    let mut c = Conn::connect(addr, Separator::Newline);
    let ack = c.req(json!({"msgid": 1, "id": id, "password": "pw", "v": 2, "device": device}));
    assert_eq!(ack["errno"], 0, "{ack}");
    c
}

/// What a sender saw: the ack of every message (index = message number), whether its connection broke.
struct Sent {
    acks: Vec<Value>,
    broke: bool,
}

/// Streams EACH chats to `to` in windows, from node 0; when the connection breaks (node 0 killed), logs in
/// on node 1 and goes on from the first unacknowledged message, resending it and every later one with
/// the same cid (and, to check the first ack comes back, the last acknowledged one too).
fn sender(
    mut conn: Conn,
    fallback: SocketAddr,
    me: (usize, usize, i64),
    to: i64,
    acked: &AtomicUsize,
) -> Sent {
    let (round, index, my_id) = me;
    let mut acks: Vec<Value> = Vec::with_capacity(EACH);
    let mut broke = false;
    let chat = |k: usize| json!({"msgid": 6, "toid": to, "msg": k.to_string(), "cid": cid(round, index, k)});
    while acks.len() < EACH {
        let window = acks.len()..(acks.len() + WINDOW).min(EACH);
        let mut alive = window.clone().all(|k| conn.client.send(&chat(k)).is_ok());
        for k in window {
            if !alive {
                break;
            }
            match conn.client.recv(Some(REPLY)) {
                Ok(Some(ack)) => {
                    assert_eq!(
                        (ack["msgid"].clone(), ack["cid"].clone()),
                        (json!(16), json!(cid(round, index, k))),
                        "{ack}"
                    );
                    acks.push(ack);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(None) => alive = false,
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    alive = false
                }
                Err(e) => panic!("sender {index}: no ack for message {k}: {e}"),
            }
        }
        if !alive {
            assert!(!broke, "sender {index}: the connection to node 1 broke too");
            broke = true;
            conn = login(fallback, my_id, "after-crash");
            if let Some(last) = acks.len().checked_sub(1) {
                let again = conn.req(chat(last));
                assert_eq!(
                    again, acks[last],
                    "a resend of an acknowledged message gets its ack"
                );
            }
        }
    }
    Sent { acks, broke }
}

/// Collects what arrives on a recipient's connection until `done` is set and nothing came for a while.
fn recipient(conn: &mut Conn, done: &AtomicBool) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        match conn.client.recv(Some(Duration::from_millis(300))) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => panic!("node 1 closed a recipient's connection"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if done.load(Ordering::SeqCst) {
                    return frames;
                }
            }
            Err(e) => panic!("recipient: {e}"),
        }
    }
}

/// Every message of `conv`, through HISTORY pages of 200 going forward.
fn whole_history(conn: &mut Conn, conv: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["pos"].as_i64().unwrap());
        let reply = conn.req(json!({"msgid": 19, "conv": conv, "after": after, "limit": 200}));
        assert_eq!(
            (reply["msgid"].clone(), reply["errno"].clone()),
            (json!(20), json!(0)),
            "{reply}"
        );
        all.extend(reply["messages"].as_array().unwrap().iter().cloned());
        if reply["more"] == false {
            return all;
        }
    }
}

/// One round: fresh senders on node 0 and recipients on node 1; node 0 is killed once `kill_after`
/// messages in all were acknowledged. Returns how many messages the recipients read from history only.
fn round(c: &mut Nodes, round: usize, kill_after: usize) -> usize {
    let (addr0, addr1) = (c.nodes[0].addr, c.nodes[1].addr);
    let mut reg = Conn::connect(addr1, Separator::Newline);
    let senders: Vec<i64> = (0..SENDERS)
        .map(|i| reg.register(&format!("s{round}-{i}"), "pw"))
        .collect();
    let recipients: Vec<i64> = (0..SENDERS)
        .map(|i| reg.register(&format!("r{round}-{i}"), "pw"))
        .collect();
    let mut inboxes: Vec<Conn> = recipients
        .iter()
        .map(|&r| login(addr1, r, "default"))
        .collect();
    let outboxes: Vec<Conn> = senders
        .iter()
        .map(|&s| login(addr0, s, "default"))
        .collect();
    let acked = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (sent, live): (Vec<Sent>, Vec<Vec<Value>>) = std::thread::scope(|s| {
        let readers: Vec<_> = inboxes
            .iter_mut()
            .map(|conn| {
                let done = &done;
                s.spawn(move || recipient(conn, done))
            })
            .collect();
        let writers: Vec<_> = outboxes
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let (acked, me, to) = (&acked, (round, i, senders[i]), recipients[i]);
                s.spawn(move || sender(conn, addr1, me, to, acked))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.load(Ordering::SeqCst) < kill_after {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} acks in 20 s",
                acked.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        c.nodes[0].kill9();
        let sent: Vec<Sent> = writers.into_iter().map(|t| t.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        let live = readers.into_iter().map(|t| t.join().unwrap()).collect();
        (sent, live)
    });
    assert!(
        sent.iter().any(|s| s.broke),
        "round {round}: node 0 died while every sender had finished"
    );
    let mut from_history = 0;
    for i in 0..SENDERS {
        let conv = format!("u{}", senders[i]);
        // Every message acknowledged, at the position of its number, in the sender's conversation.
        for (k, ack) in sent[i].acks.iter().enumerate() {
            let ts = ack["ts"].clone();
            assert_eq!(
                *ack,
                json!({"msgid": 16, "errno": 0, "conv": format!("u{}", recipients[i]), "pos": k + 1, "ts": ts, "cid": cid(round, i, k)}),
                "round {round}, sender {i}, message {k}"
            );
        }
        // The log: each message once, in the order sent, where its ack said.
        let history = whole_history(&mut inboxes[i], &conv);
        let expected: Vec<(i64, String, String, i64)> = (0..EACH)
            .map(|k| ((k + 1) as i64, k.to_string(), cid(round, i, k), senders[i]))
            .collect();
        let got: Vec<(i64, String, String, i64)> = history
            .iter()
            .map(|m| {
                (
                    m["pos"].as_i64().unwrap(),
                    m["msg"].as_str().unwrap().to_owned(),
                    m["cid"].as_str().unwrap_or("").to_owned(),
                    m["id"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "round {round}: history of recipient {i}");
        for (k, m) in history.iter().enumerate() {
            assert_eq!(
                m["ts"], sent[i].acks[k]["ts"],
                "round {round}: ts of message {k}"
            );
        }
        // Live: only chat frames of the log, each at most once, in position order.
        let mut last = 0;
        for frame in &live[i] {
            let pos = frame["pos"].as_i64().unwrap_or_else(|| {
                panic!("round {round}, recipient {i}: not a chat frame: {frame}")
            });
            assert!(
                pos > last,
                "round {round}, recipient {i}: pos {pos} after {last} (a duplicate or out of order)"
            );
            assert_eq!(
                *frame,
                history[(pos - 1) as usize],
                "round {round}, recipient {i}: live frame = history"
            );
            last = pos;
        }
        from_history += EACH - live[i].len();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "round {round} took {took:?}"
    );
    eprintln!(
        "round {round}: killed after {kill_after} acks; {} senders reconnected; {from_history} messages only in history; {took:?}",
        sent.iter().filter(|s| s.broke).count()
    );
    from_history
}

#[test]
fn kill9_mid_stream_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut c = Nodes::start(2, &[]);
    for (i, kill_after) in [150, 500, 850].into_iter().enumerate() {
        round(&mut c, i, kill_after);
        c.nodes[0].restart();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// A SQLite node keeps its log's index in memory (src/store/sqlite/index.rs) and reads it back from the
/// log at start. Killed with -9 after 9,000 acknowledged messages, it starts again whole: positions go on
/// from the last one, a resent cid gets its first ack, and the offline list, unread counts and history
/// hold every message once, in order.
#[test]
fn sqlite_node_killed_with_its_index_in_memory_restarts_whole() {
    const SENT: usize = 9_000;
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new("[rate_limit]\nper_sec = 100000.0\nburst = 1000.0\n");
    let mut server = Server::start(&db, &["--config", &conf.path]);
    let (mut a, a_id) = user(&server, "ann");
    let mut b = server.connect(Separator::Newline);
    let b_id = b.register("bob", "pw");
    drop(b);
    let chat = |k: usize| json!({"msgid": 6, "toid": b_id, "msg": format!("m{k}"), "cid": format!("k{k}")});
    let mut acks = Vec::with_capacity(SENT);
    for window in (0..SENT).collect::<Vec<_>>().chunks(100) {
        for &k in window {
            a.send(chat(k));
        }
        for &k in window {
            let ack = a.recv();
            assert_eq!(
                (ack["msgid"].clone(), ack["pos"].clone()),
                (json!(16), json!(k + 1)),
                "{ack}"
            );
            acks.push(ack);
        }
    }
    drop(a);
    server.restart();

    let mut a = login(server.addr, a_id, "default");
    assert_eq!(
        a.req(chat(SENT - 1)),
        acks[SENT - 1],
        "a resent cid gets its first ack"
    );
    assert_eq!(a.req(chat(SENT))["pos"], json!(SENT + 1));
    let everything: Vec<String> = (0..=SENT).map(|k| format!("m{k}")).collect();

    let mut phone = server.connect(Separator::Newline);
    let ack = phone.login(b_id, "pw", 1);
    let mut offline: Vec<String> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s.as_str().unwrap()).unwrap()["msg"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    while offline.len() < everything.len() {
        let frame = phone.recv();
        assert_eq!(frame["msgid"], 6, "{frame}");
        offline.push(frame["msg"].as_str().unwrap().to_owned());
    }
    assert_eq!(offline, everything);

    let mut web = Conn::connect(server.addr, Separator::Newline);
    let ack = web.req(json!({"msgid": 1, "id": b_id, "password": "pw", "v": 2, "device": "web"}));
    let conv = format!("u{a_id}");
    let listed: Vec<(Value, Value, Value)> = ack["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("{ack}"))
        .iter()
        .map(|c| (c["conv"].clone(), c["last"].clone(), c["read"].clone()))
        .collect();
    assert_eq!(listed, vec![(json!(conv), json!(SENT + 1), json!(0))]);
    let history: Vec<(i64, String)> = whole_history(&mut web, &conv)
        .iter()
        .map(|m| {
            (
                m["pos"].as_i64().unwrap(),
                m["msg"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = everything
        .into_iter()
        .zip(1..)
        .map(|(t, p)| (p, t))
        .collect();
    assert_eq!(history, expected);
}
