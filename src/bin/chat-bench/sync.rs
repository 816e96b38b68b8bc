//! `sync`: what a user's new device pays to catch up. One user (the reader) gets `--peers` ×
//! `--per-peer` messages: every peer logs in with v2 and pipelines its messages to the reader, each with
//! its own cid, keeping up to [`WINDOW`] unacknowledged and resending (same cid) what stays
//! unacknowledged for a second. The reader is logged in meanwhile and reads them live, so nothing waits
//! in its offline list; then it logs out. The timed part: a fresh v2 login of the reader on a device never
//! used before, CONVERSATIONS, then HISTORY pages (`after`, from 0) until every conversation is read to
//! its `last` position. The tool checks that every message came exactly once, in ascending positions.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;
use serde_json::json;

use crate::cli::SyncArgs;
use crate::conn::{Conn, ERROR_MSG};
use crate::dbsize;
use crate::msgtext::{self, Stamp};
use crate::pool;
use crate::procfs;
use crate::report::{self, StorageReport};
use crate::setup::{self, Session};

/// Messages a peer keeps unacknowledged at most while preparing (well inside the rate limit's burst).
const WINDOW: usize = 256;
/// A peer resends its unacknowledged messages when no frame came for this long.
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// The JSON line of `sync`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub scenario: String,
    pub label: String,
    pub peers: usize,
    pub per_peer: usize,
    pub msg_bytes: usize,
    pub page: usize,
    pub in_flight: usize,
    /// Preparation: messages acknowledged, how long it took, the rate, resends and errors.
    pub prepared: u64,
    pub prepare_s: f64,
    pub prepare_msgs_per_s: f64,
    pub prepare_resends: u64,
    pub prepare_errors: u64,
    /// Messages the reader got live while they were prepared.
    pub live_received: u64,
    /// The timed sync: login (connect to ack), CONVERSATIONS, all HISTORY pages, and all of it.
    pub login_ms: f64,
    pub conversations_ms: f64,
    pub history_ms: f64,
    pub sync_s: f64,
    pub conversations: usize,
    pub history_requests: u64,
    pub messages_read: u64,
    /// Messages the fresh login found in `offlinemsg` (0 expected: the reader got everything live).
    pub offline_at_login: u64,
    /// Every conversation read to its `last`, each position once, ascending, and all messages found.
    pub complete: bool,
    pub problems: Vec<String>,
    pub server_cpu_s: Option<f64>,
    pub storage: Option<StorageReport>,
}

pub fn sync(args: &SyncArgs) -> anyhow::Result<()> {
    let common = args.common()?;
    let prefix = common
        .setup
        .prefix
        .clone()
        .unwrap_or_else(setup::run_prefix);
    let timeout = common.reply_timeout();
    eprintln!(
        "chat-bench sync: {} peers × {} messages to one user, names {prefix}*",
        args.peers, args.per_peer
    );
    let (sessions, setup_report) = setup::login_all(&common, &prefix, args.peers + 1, 2);
    setup_report.warn();
    let mut sessions = sessions.into_iter();
    let reader = sessions
        .next()
        .flatten()
        .context("the reader could not be set up")?;
    let peers: Vec<Session> = sessions.flatten().collect();
    ensure!(
        peers.len() == args.peers,
        "only {} of {} peers could be set up: {:?}",
        peers.len(),
        args.peers,
        setup_report.samples
    );
    let db_before = match &args.sqlite_db {
        Some(path) => Some(dbsize::measure(path)?),
        None => None,
    };

    // The reader takes its live deliveries meanwhile, so that nothing is left for its offline list.
    let expected = (args.peers * args.per_peer) as u64;
    let reader_user = reader.user.clone();
    let drain = std::thread::spawn(move || drain(reader.conn, expected, timeout));
    let start = Instant::now();
    let outcomes = pool::map(
        peers,
        common.login_concurrency,
        "sync: prepare",
        |_, peer| prepare(peer, reader_user.id, args, timeout),
    );
    let prepare_s = start.elapsed().as_secs_f64();
    let (mut prepared, mut resends, mut errors) = (0, 0, 0);
    for outcome in outcomes {
        let (acked, r, e) = outcome.map_err(|e| anyhow::anyhow!("a peer failed: {e}"))?;
        prepared += acked;
        resends += r;
        errors += e;
    }
    let (mut reader_conn, live_received) = drain
        .join()
        .map_err(|_| anyhow::anyhow!("the reader's thread panicked"))?;
    let logout = reader_conn.request(&json!({"msgid": 3}), 11, timeout)?;
    ensure!(
        logout["errno"].as_i64() == Some(0),
        "logout failed: {logout}"
    );
    drop(reader_conn);
    let storage = match (&args.sqlite_db, &db_before) {
        (Some(path), Some(before)) => Some(dbsize::report(
            path,
            before,
            &dbsize::measure(path)?,
            prepared,
        )),
        _ => None,
    };
    eprintln!(
        "sync: prepared {prepared} messages in {prepare_s:.1} s ({resends} resends, {errors} errors); \
         the reader got {live_received} live"
    );

    let before = procfs::sample_all(&common.setup.server_pids);
    let timed = timed_sync(
        args,
        &common.setup.addrs[0],
        &reader_user,
        &common.setup.password,
        timeout,
    )?;
    let after = procfs::sample_all(&common.setup.server_pids);
    let mut problems = timed.problems;
    if timed.messages_read != prepared {
        problems.push(format!(
            "read {} messages, {prepared} were acknowledged",
            timed.messages_read
        ));
    }
    let report = SyncReport {
        scenario: "sync".into(),
        label: common.setup.label.clone(),
        peers: args.peers,
        per_peer: args.per_peer,
        msg_bytes: args.msg_bytes,
        page: args.page,
        in_flight: args.in_flight,
        prepared,
        prepare_s,
        prepare_msgs_per_s: prepared as f64 / prepare_s.max(1e-9),
        prepare_resends: resends,
        prepare_errors: errors,
        live_received,
        login_ms: timed.login_ms,
        conversations_ms: timed.conversations_ms,
        history_ms: timed.history_ms,
        sync_s: timed.sync_s,
        conversations: timed.conversations,
        history_requests: timed.requests,
        messages_read: timed.messages_read,
        offline_at_login: timed.offline,
        complete: problems.is_empty(),
        problems: problems.into_iter().take(10).collect(),
        server_cpu_s: before
            .zip(after)
            .map(|(b, a)| procfs::usage(&b, &a, procfs::ticks_per_second()).cpu_s),
        storage,
    };
    let mut value = serde_json::to_value(&report)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("storage");
    }
    report::print_pairs(&value);
    if let Some(storage) = &report.storage {
        report::print_storage(storage);
    }
    report::print_json(&report);
    Ok(())
}

/// Reads the reader's connection until `expected` chats came or none came for `timeout`; returns the
/// connection and the chats counted.
fn drain(mut conn: Conn, expected: u64, timeout: Duration) -> (Conn, u64) {
    let mut got = 0;
    while got < expected {
        match conn.recv(timeout) {
            Ok(frame) if frame["msgid"].as_i64() == Some(6) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (conn, got)
}

/// One peer's messages: pipelined, at most [`WINDOW`] unacknowledged, resent when acks stop coming.
/// Returns (acknowledged, resends, errors).
fn prepare(
    peer: Session,
    to: i64,
    args: &SyncArgs,
    timeout: Duration,
) -> Result<(u64, u64, u64), String> {
    let Session { user, mut conn } = peer;
    let n = args.per_peer;
    let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let frame = |i: usize, out: &mut Vec<u8>| {
        let mut text = String::with_capacity(args.msg_bytes);
        let stamp = Stamp {
            step: 0,
            seq: i as u64,
            due_ns: 0,
        };
        msgtext::encode(stamp, args.msg_bytes, &mut text);
        // Names and texts need no escaping (letters, digits, `_`, `:`).
        let line = format!(
            r#"{{"msgid":6,"id":{},"name":"{}","toid":{to},"msg":"{text}","time":"{time}","cid":"s{i}"}}"#,
            user.id, user.name
        );
        out.extend_from_slice(line.as_bytes());
        out.push(0);
    };
    let mut acked = vec![false; n];
    let (mut n_acked, mut next, mut resends, mut errors) = (0usize, 0usize, 0u64, 0u64);
    let mut last_frame = Instant::now();
    let mut buf = Vec::new();
    while n_acked < n {
        buf.clear();
        while next < n && next - n_acked < WINDOW {
            frame(next, &mut buf);
            next += 1;
        }
        if !buf.is_empty() {
            conn.stream
                .write_all(&buf)
                .map_err(|e| format!("write: {e}"))?;
        }
        match conn.recv(RESEND_AFTER) {
            Ok(reply) => {
                last_frame = Instant::now();
                match reply["msgid"].as_i64() {
                    Some(16) if reply["errno"].as_i64() == Some(0) => {
                        let i = reply["cid"]
                            .as_str()
                            .and_then(|c| c.strip_prefix('s'))
                            .and_then(|c| c.parse::<usize>().ok());
                        if let Some(slot) = i.and_then(|i| acked.get_mut(i))
                            && !*slot
                        {
                            *slot = true;
                            n_acked += 1;
                        }
                    }
                    Some(ERROR_MSG) => errors += 1,
                    _ => {}
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                if last_frame.elapsed() > timeout {
                    return Err(format!(
                        "no ack for {timeout:?}: {n_acked} of {n} acknowledged"
                    ));
                }
                buf.clear();
                for (i, _) in acked.iter().enumerate().take(next).filter(|(_, a)| !**a) {
                    frame(i, &mut buf);
                    resends += 1;
                }
                conn.stream
                    .write_all(&buf)
                    .map_err(|e| format!("resend: {e}"))?;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok((n_acked as u64, resends, errors))
}

/// What the timed part saw.
struct Timed {
    login_ms: f64,
    conversations_ms: f64,
    history_ms: f64,
    sync_s: f64,
    conversations: usize,
    requests: u64,
    messages_read: u64,
    offline: u64,
    problems: Vec<String>,
}

/// One conversation being read.
struct Reading {
    last: u64,
    /// Highest position read so far (0 before the first page).
    read_to: u64,
    count: u64,
}

fn timed_sync(
    args: &SyncArgs,
    addr: &std::net::SocketAddr,
    user: &setup::User,
    password: &str,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    let start = Instant::now();
    let mut conn = Conn::connect(*addr, timeout)?;
    let device = format!("sync-{}", std::process::id());
    let ack = conn.request(
        &json!({"msgid": 1, "id": user.id, "password": password, "v": 2, "device": device}),
        2,
        timeout,
    )?;
    ensure!(ack["errno"].as_i64() == Some(0), "login failed: {ack}");
    let login_ms = ms(start.elapsed());
    let offline = ack["offlinemsg"].as_array().map_or(0, Vec::len) as u64;

    let t = Instant::now();
    let reply = conn.request(&json!({"msgid": 17}), 18, timeout)?;
    ensure!(
        reply["errno"].as_i64() == Some(0),
        "CONVERSATIONS failed: {reply}"
    );
    let conversations_ms = ms(t.elapsed());
    let mut reading: BTreeMap<String, Reading> = BTreeMap::new();
    for c in reply["conversations"].as_array().into_iter().flatten() {
        let (Some(conv), Some(last)) = (c["conv"].as_str(), c["last"].as_u64()) else {
            bail!("a conversation without conv or last: {c}");
        };
        reading.insert(
            conv.to_string(),
            Reading {
                last,
                read_to: 0,
                count: 0,
            },
        );
    }

    let t = Instant::now();
    let mut todo: VecDeque<String> = reading
        .iter()
        .filter(|(_, r)| r.last > 0)
        .map(|(c, _)| c.clone())
        .collect();
    let (mut in_flight, mut requests) = (0usize, 0u64);
    let mut problems = Vec::new();
    loop {
        while in_flight < args.in_flight
            && let Some(conv) = todo.pop_front()
        {
            let after = reading[&conv].read_to;
            conn.send(&json!({"msgid": 19, "conv": conv, "after": after, "limit": args.page}))?;
            in_flight += 1;
            requests += 1;
        }
        if in_flight == 0 {
            break;
        }
        let reply = conn.recv(timeout)?;
        match reply["msgid"].as_i64() {
            Some(20) => {}
            Some(ERROR_MSG) => bail!("HISTORY failed: {reply}"),
            _ => continue,
        }
        in_flight -= 1;
        let conv = reply["conv"].as_str().unwrap_or_default().to_string();
        let Some(r) = reading.get_mut(&conv) else {
            bail!("a HISTORY reply for a conversation not asked for: {reply}");
        };
        for m in reply["messages"].as_array().into_iter().flatten() {
            let pos = m["pos"].as_u64().unwrap_or(0);
            if pos != r.read_to + 1 {
                problems.push(format!("{conv}: position {pos} after {}", r.read_to));
            }
            r.read_to = r.read_to.max(pos);
            r.count += 1;
        }
        if reply["more"].as_bool() == Some(true) {
            todo.push_back(conv);
        } else if r.read_to != r.last {
            problems.push(format!("{conv}: read to {} of last {}", r.read_to, r.last));
        }
    }
    let history_ms = ms(t.elapsed());
    let sync_s = start.elapsed().as_secs_f64();
    let _ = conn.request(&json!({"msgid": 3}), 11, timeout);
    for (conv, r) in &reading {
        if r.count != r.last {
            problems.push(format!("{conv}: {} messages for last {}", r.count, r.last));
        }
    }
    Ok(Timed {
        login_ms,
        conversations_ms,
        history_ms,
        sync_s,
        conversations: reading.len(),
        requests,
        messages_read: reading.values().map(|r| r.count).sum(),
        offline,
        problems,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
