//! Framing and the order of checks: separators, split and coalesced frames, garbage, oversize frames.

use std::io::Write;
use std::time::Duration;

use clusterchat::protocol::frame::Separator;
use serde_json::json;

use crate::support::{Backend, Conn, Db, Server};

fn register_frame(name: &str) -> String {
    json!({"msgid": 4, "name": name, "password": "pw"}).to_string()
}

fn separators_split_and_coalesced_frames(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    // No separator at all, several frames in one write: replies use newline (nothing chosen yet).
    let mut c = server.connect(Separator::Newline);
    let mut stream = c.client.stream().try_clone().unwrap();
    stream
        .write_all(format!("{}{}", register_frame("a1"), register_frame("a2")).as_bytes())
        .unwrap();
    assert_eq!(c.recv()["errno"], 0);
    assert_eq!(c.recv()["errno"], 0);
    assert_eq!(c.client.reader.separator(), Some(Separator::Newline));

    // A frame split across writes, byte by byte, its last byte and NUL together (as the C++ client's
    // `strlen + 1` arrives): replies switch to NUL for good.
    let mut c = server.connect(Separator::Nul);
    let mut stream = c.client.stream().try_clone().unwrap();
    let frame = format!("{}\0", register_frame("b1"));
    let (head, tail) = frame.as_bytes().split_at(frame.len() - 2);
    for byte in head {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    stream.write_all(tail).unwrap();
    assert_eq!(c.recv()["errno"], 0);
    assert_eq!(c.client.reader.separator(), Some(Separator::Nul));
    stream
        .write_all(format!("{}\n", register_frame("b2")).as_bytes())
        .unwrap();
    assert_eq!(c.recv()["errno"], 0);
    assert_eq!(
        c.client.reader.separator(),
        Some(Separator::Nul),
        "sticky: the first separator decides"
    );

    // NUL and whitespace between frames are skipped; newlines inside a frame are fine.
    let mut c = server.connect(Separator::Newline);
    let mut stream = c.client.stream().try_clone().unwrap();
    stream
        .write_all(b"\0\0 \r\n{\n\"msgid\": 4,\n\"name\": \"c1\",\n\"password\": \"pw\"\n}\r\n\0")
        .unwrap();
    assert_eq!(c.recv()["errno"], 0);
}

fn errors_in_the_order_of_checks(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c = server.connect(Separator::Nul);
    let err = |errno: i64, reference: serde_json::Value| (json!(15), json!(errno), reference);
    let shape = |v: serde_json::Value| (v["msgid"].clone(), v["errno"].clone(), v["ref"].clone());
    // 100: not JSON, not an object, invalid UTF-8; the connection goes on.
    c.send_raw(b"this is not json");
    assert_eq!(shape(c.recv()), err(100, json!(null)));
    c.send_raw(b"[1,2,3]");
    assert_eq!(shape(c.recv()), err(100, json!(null)));
    c.send_raw(b"{\"msgid\":4,\"name\":\"\xff\xfe\",\"password\":\"x\"}");
    assert_eq!(shape(c.recv()), err(100, json!(null)));
    // 102 with ref null: msgid missing or not an integer; seq still echoed.
    let missing = c.req(json!({"name": "x", "seq": "q"}));
    assert_eq!(
        (shape(missing.clone()), missing["seq"].clone()),
        (err(102, json!(null)), json!("q"))
    );
    assert_eq!(shape(c.req(json!({"msgid": 1.0}))), err(102, json!(null)));
    assert_eq!(shape(c.req(json!({"msgid": "6"}))), err(102, json!(null)));
    // 101: unknown msgids, including server-only ones, zero and negative.
    for id in [0, -1, 2, 5, 11, 15, 16, 18, 20, 22, 23, 1000] {
        assert_eq!(
            shape(c.req(json!({"msgid": id}))),
            err(101, json!(id)),
            "msgid {id}"
        );
    }
    // 103 before field checks: not logged in.
    for id in [3, 6, 7, 8, 9, 10, 17, 19, 21] {
        assert_eq!(
            shape(c.req(json!({"msgid": id, "seq": 5}))),
            err(103, json!(id)),
            "msgid {id}"
        );
    }
    // Still usable after all that.
    assert_eq!(
        c.req(json!({"msgid": 4, "name": "after", "password": "pw"}))["errno"],
        0
    );
    // Unknown fields are ignored.
    assert_eq!(
        c.req(json!({"msgid": 4, "name": "extra", "password": "pw", "colour": "blue"}))["errno"],
        0
    );
}

fn oversize_frame_closes_the_connection(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &["--max-frame-bytes", "1000"]);
    let mut ok = server.connect(Separator::Nul);
    let padded = |n: usize| {
        format!(
            "{{\"msgid\":4,\"name\":\"n\",\"password\":\"pw\",\"pad\":\"{}\"}}",
            "x".repeat(n)
        )
    };
    let fits = padded(1000 - 47);
    assert_eq!(fits.len(), 1000);
    let over = padded(1000 - 46);
    assert_eq!(
        ok.req(serde_json::from_str(&fits).unwrap())["errno"],
        0,
        "exactly at the limit"
    );
    let mut big = server.connect(Separator::Nul);
    big.send_raw(over.as_bytes());
    let frames = big.expect_closed(Duration::from_secs(5));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        (frames[0]["errno"].clone(), frames[0]["ref"].clone()),
        (json!(106), json!(null))
    );
    // Everyone else is still served.
    assert_eq!(
        ok.req(json!({"msgid": 4, "name": "m", "password": "pw"}))["errno"],
        0
    );
}

fn many_frames_in_one_write_are_all_answered(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let mut c: Conn = server.connect(Separator::Nul);
    let burst: String = (0..50)
        .map(|i| format!("{{\"msgid\":99,\"seq\":{i}}}\0"))
        .collect();
    c.send_raw(burst.trim_end_matches('\0').as_bytes());
    for i in 0..50 {
        assert_eq!(c.recv()["seq"], i);
    }
}

crate::on_both_backends!(
    separators_split_and_coalesced_frames,
    errors_in_the_order_of_checks,
    oversize_frame_closes_the_connection,
    many_frames_in_one_write_are_all_answered,
);
