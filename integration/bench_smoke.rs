//! The load generator against a real server: a tiny one-to-one run must deliver every message.

use std::process::Command;

use serde_json::Value;

use crate::support::{Backend, Db, Server};

#[test]
fn chat_bench_one_to_one_delivers_everything() {
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(["one", "--addr", &server.addr.to_string()])
        .args(["--users", "20", "--rate", "200", "--duration", "2"])
        .args(["--login-concurrency", "8", "--grace", "5"])
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
}
