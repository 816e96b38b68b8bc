//! The load generator against a real server: a tiny one-to-one run must deliver every message.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use crate::support::{ANY_PORT, Backend, Db, Server};

#[test]
fn chat_bench_one_to_one_delivers_everything() {
    let report = run_one(&[]);
    assert_eq!(report["flood"], Value::Null, "{report}");
    assert_eq!(report["transport"], "tcp", "{report}");
}

/// `--transport ws`: the same run over WebSocket, on the node's `/ws`.
#[test]
fn chat_bench_one_to_one_over_websocket_delivers_everything() {
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &["--http", ANY_PORT]);
    let report = run_one_on(server.http_addr(), &["--transport", "ws"]);
    assert_eq!(report["transport"], "ws", "{report}");
}

/// The flooder runs beside the load, is refused (107) by the server's rate limit, and the load still
/// gets every message through.
#[test]
fn chat_bench_flood_is_refused_while_the_load_gets_through() {
    let report = run_one(&["--flood-rate", "8000", "--flood-kind", "chat"]);
    let flood = &report["flood"];
    assert_eq!(flood["kind"], "chat", "{report}");
    let sent = flood["sent"].as_u64().expect("flood.sent");
    assert!(sent > 4_000, "{report}");
    assert!(flood["refused_107"].as_u64() > Some(0), "{report}");
    assert!(flood["logins"].as_u64() >= Some(1), "{report}");
}

/// Runs a tiny one-to-one scenario (plus `extra` flags) and checks that every message arrived; returns
/// the JSON report.
fn run_one(extra: &[&str]) -> Value {
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &[]);
    run_one_on(server.addr, extra)
}

/// The same against the node already listening on `addr`.
fn run_one_on(addr: SocketAddr, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(["one", "--addr", &addr.to_string()])
        .args(["--users", "20", "--rate", "200", "--duration", "2"])
        .args(["--login-concurrency", "8", "--grace", "5"])
        .args(extra)
        .output()
        .expect("run chat-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chat-bench failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}\n{stderr}"));
    let report: Value = serde_json::from_str(line).expect("the JSON line parses");
    assert_eq!(report["scenario"], "one", "{report}");
    assert_eq!(report["live_users"], 20, "{report}");
    let expected = report["expected"].as_u64().expect("expected");
    assert!(expected > 0, "{report}");
    assert_eq!(report["received"].as_u64(), Some(expected), "{report}");
    assert_eq!(report["loss_pct"].as_f64(), Some(0.0), "{report}");
    assert_eq!(report["errors_total"], 0, "{report}");
    assert_eq!(report["conn_failures"], 0, "{report}");
    report
}
