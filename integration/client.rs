//! The interactive `chat` client, driven through standard input as a script would.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{Backend, Db, Server};

/// Runs `chat` against `server` with `input` on standard input; returns its exit success and stdout.
fn chat(server: &Server, input: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["--server", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("chat finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn scripted_session(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let (ok, out) = chat(
        &server,
        "2\nalice\nsecret\n2\nbob\npw\n2\nalice\nx\n1\n1\nwrong\n1\n1\nsecret\n\
         addfriend:2\ncreategroup:devs:rust people\nchat:2:hello: bob\ngroupchat:1:hi all\n\
         addfriend:99\nchat:x:y\nloginout\n3\n",
    );
    assert!(ok, "{out}");
    for expected in [
        "register success, userid is 1, do not forget it!",
        "register success, userid is 2, do not forget it!",
        "register failed:",
        "login failed: wrong user id or password",
        "login success: alice (id 1)",
        "friend 2 added",
        "group devs created, groupid is 1",
        "sent",
        "addfriend failed: no such user or group",
        "invalid id 'x'",
        "logged out",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Bob, by name, sees alice as a friend and her message, stored while he was away.
    let (ok, out) = chat(&server, "1\nbob\npw\nloginout\n3\n");
    assert!(ok, "{out}");
    assert!(out.contains("login success: bob (id 2)"), "{out}");
    assert!(out.contains("1 alice offline"), "{out}");
    assert!(out.contains("alice(1) -> you: hello: bob"), "{out}");
}

crate::on_both_backends!(scripted_session);
