//! The README's `nc` walk-through is a true transcript: this test plays its client lines against a real
//! node and checks that every server line the README shows is what the node answers, so the example
//! cannot drift from the server. Values that change from run to run (`ts`, `token`, the server's `time`)
//! are compared by shape only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use clusterchat::protocol::frame::Separator;

use crate::support::{Backend, Db, Server};

/// The lines of the README's `nc` session: what follows `$ nc 127.0.0.1 6000` up to the block's end.
fn transcript() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("$ nc 127.0.0.1 6000\n")
        .expect("the README shows an nc session");
    readme[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// A client line: the README's requests all start with their msgid; the server writes keys in
/// alphabetical order, so none of its replies there does.
fn is_request(line: &str) -> bool {
    line.starts_with("{\"msgid\":")
}

/// The line with its run-dependent values replaced by placeholders.
fn shape(line: &str) -> String {
    let mut out = line.to_owned();
    for (key, digits) in [
        ("\"ts\":", true),
        ("\"token\":\"", false),
        ("\"time\":\"", false),
    ] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key) {
            let begin = from + at + key.len();
            let end = begin
                + out[begin..]
                    .find(|c: char| {
                        if digits {
                            !c.is_ascii_digit()
                        } else {
                            c == '"'
                        }
                    })
                    .unwrap_or(out.len() - begin);
            out.replace_range(begin..end, "…");
            from = begin + '…'.len_utf8();
        }
    }
    out
}

#[test]
fn the_readme_nc_session_is_what_the_server_answers() {
    let lines = transcript();
    assert!(
        lines.iter().filter(|l| is_request(l)).count() >= 5,
        "the README's nc session: {lines:?}"
    );
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &[]);
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut registered_bob = false;
    for line in &lines {
        if is_request(line) {
            writer
                .write_all(format!("{line}\n").as_bytes())
                .expect("send");
            continue;
        }
        let mut got = String::new();
        reader.read_line(&mut got).expect("a reply");
        assert_eq!(
            shape(got.trim_end()),
            shape(line),
            "the README's line differs from the server's"
        );
        // "A session of alice (id 1) with a registered bob (id 2)": bob signs up once alice has.
        if !registered_bob {
            let mut bob = server.connect(Separator::Newline);
            assert_eq!(bob.register("bob", "secret"), 2);
            registered_bob = true;
        }
    }
    writer.write_all(b"{\"msgid\":99}\n").expect("send");
    let mut last = String::new();
    reader.read_line(&mut last).expect("a reply");
    assert!(
        last.contains("\"errno\":101"),
        "nothing beyond the transcript was waiting: {last}"
    );
}

#[test]
fn shapes_hide_only_run_dependent_values() {
    assert_eq!(
        shape(r#"{"pos":2,"time":"2026-12-01 22:32:46","token":"ab12","ts":179}"#),
        r#"{"pos":2,"time":"…","token":"…","ts":…}"#
    );
}
