//! The chat protocol over WebSocket (`/ws` on the HTTP listener): the same frames, checks, limits and
//! delivery as TCP, a WebSocket user and a TCP user (v1, NUL-framed like the C++ client) chatting on one
//! node and across two, and what the listener refuses. The frame-level tests write raw frames, masked or
//! not, and read the server's frames with tungstenite's frame parser.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameSocket};

use crate::support::{
    ANY_PORT, Backend, ConfigFile, Db, Redis, Server, login_eventually, numbered, user,
};

/// How long a test waits for one frame.
const REPLY: Duration = Duration::from_secs(10);

/// A WebSocket client on raw frames: what it sends is masked (unless a test says not), what it reads
/// is every frame the server sends, control frames included.
pub struct Ws {
    socket: FrameSocket<TcpStream>,
}

impl Ws {
    /// Opens `/ws` on the HTTP listener at `addr`.
    pub fn connect(addr: SocketAddr) -> Ws {
        Ws::over(
            TcpStream::connect(addr).expect("connect to the HTTP listener"),
            addr,
        )
    }

    /// Opens `/ws` on a stream connected to `addr` already.
    pub fn over(mut stream: TcpStream, addr: SocketAddr) -> Ws {
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .expect("send handshake");
        stream.set_read_timeout(Some(REPLY)).unwrap();
        // Byte by byte up to the blank line, so that no frame after it is swallowed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        Ws {
            socket: FrameSocket::new(stream),
        }
    }

    /// Sends one frame with `opcode`, masked as clients must.
    pub fn send_frame(&mut self, opcode: OpCode, payload: &[u8], masked: bool) {
        let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
        frame.header_mut().opcode = opcode;
        if masked {
            frame.header_mut().mask = Some([0x37, 0xfa, 0x21, 0x3d]);
        }
        let _ = self.socket.send(frame); // the server may have closed already
    }

    /// Sends one JSON frame as a text message.
    pub fn send(&mut self, frame: Value) {
        self.send_frame(OpCode::Data(Data::Text), frame.to_string().as_bytes(), true);
    }

    /// The next frame the server sends, or `None` once it closed the connection.
    pub fn frame(&mut self, wait: Duration) -> Option<Frame> {
        self.socket.get_mut().set_read_timeout(Some(wait)).unwrap();
        match self.socket.read(None) {
            Ok(frame) => frame,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                panic!("no frame within {wait:?}")
            }
            Err(_) => None,
        }
    }

    /// The next JSON frame (each in a text message of its own).
    pub fn recv(&mut self) -> Value {
        let frame = self.frame(REPLY).expect("server closed the connection");
        assert_eq!(frame.header().opcode, OpCode::Data(Data::Text), "{frame}");
        assert!(frame.header().is_final);
        serde_json::from_slice(frame.payload()).expect("one JSON frame per message")
    }

    pub fn req(&mut self, frame: Value) -> Value {
        self.send(frame);
        self.recv()
    }

    /// Reads until the server's close frame, returning the JSON frames before it and the close code.
    pub fn until_close(&mut self) -> (Vec<Value>, u16) {
        let mut frames = Vec::new();
        loop {
            let frame = self.frame(REPLY).expect("a close frame before EOF");
            match frame.header().opcode {
                OpCode::Control(Control::Close) => {
                    let p = frame.payload();
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    assert!(self.frame(REPLY).is_none(), "EOF after the close frame");
                    return (frames, code);
                }
                _ => frames.push(serde_json::from_slice(frame.payload()).unwrap()),
            }
        }
    }

    pub fn register(&mut self, name: &str) -> i64 {
        let ack = self.req(json!({"msgid": 4, "name": name, "password": "pw"}));
        assert_eq!(ack["errno"], 0, "{ack}");
        ack["id"].as_i64().unwrap()
    }

    pub fn login(&mut self, id: i64, v: u8) -> Value {
        let mut frame = json!({"msgid": 1, "id": id, "password": "pw"});
        if v == 2 {
            frame["v"] = json!(2);
            frame["device"] = json!("browser");
        }
        let ack = self.req(frame);
        assert_eq!(
            (ack["msgid"].clone(), ack["errno"].clone()),
            (json!(2), json!(0)),
            "{ack}"
        );
        ack
    }
}

/// A node with an HTTP listener; returns it and the listener's address.
fn node(db: &Db, extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec!["--http", ANY_PORT];
    args.extend_from_slice(extra);
    let server = Server::start(db, &args);
    let http = server.http_addr();
    (server, http)
}

/// A WebSocket user and a v1 TCP user (NUL-framed, as the C++ client) chat both ways on one node.
fn websocket_and_tcp_users_chat(backend: Backend) {
    let db = Db::fresh(backend);
    let (server, http) = node(&db, &[]);
    let mut web = Ws::connect(http);
    let web_id = web.register("wendy");
    let ack = web.login(web_id, 2);
    assert_eq!(ack["device"], "browser");
    let mut tcp = server.connect(Separator::Nul);
    let tcp_id = tcp.register("terry", "pw");
    tcp.login(tcp_id, "pw", 1);

    let sent =
        web.req(json!({"msgid": 6, "toid": tcp_id, "msg": "hello from a browser", "cid": "c1"}));
    assert_eq!(
        (sent["msgid"].clone(), sent["errno"].clone()),
        (json!(16), json!(0)),
        "{sent}"
    );
    let got = tcp.recv();
    assert_eq!(
        (got["msgid"].clone(), got["id"].clone()),
        (json!(6), json!(web_id))
    );
    assert_eq!(got["msg"], "hello from a browser");

    tcp.send(json!({"msgid": 6, "id": tcp_id, "toid": web_id, "msg": "hello from a terminal"}));
    let got = web.recv();
    assert_eq!(
        (got["msgid"].clone(), got["id"].clone()),
        (json!(6), json!(tcp_id)),
        "{got}"
    );
    assert_eq!(got["msg"], "hello from a terminal");
    assert!(
        got["pos"].as_i64().is_some(),
        "v2 frames carry the position: {got}"
    );

    // v1 over WebSocket too: the original protocol, frame for frame.
    let mut old = Ws::connect(http);
    let old_id = old.register("olga");
    let v1_ack = old.login(old_id, 1);
    assert!(
        v1_ack.get("v").is_none() && v1_ack.get("device").is_none(),
        "{v1_ack}"
    );
    tcp.send(json!({"msgid": 6, "id": tcp_id, "toid": old_id, "msg": "v1 to v1"}));
    let got = old.recv();
    assert_eq!(got["msg"], "v1 to v1");
    assert!(got.get("pos").is_none(), "a v1 frame: {got}");
}

crate::on_both_backends!(websocket_and_tcp_users_chat);

/// Across two nodes over Redis: a WebSocket user on one, a v1 TCP user (NUL-framed) on the other.
#[test]
fn websocket_and_tcp_users_chat_across_nodes() {
    let db = Db::fresh(Backend::Mysql);
    let redis = Redis::start();
    let url = redis.url();
    let (_a, a_http) = node(&db, &["--redis", &url]);
    let (b, _) = node(&db, &["--redis", &url]);
    let mut web = Ws::connect(a_http);
    let web_id = web.register("wes");
    web.login(web_id, 2);
    let mut tcp = b.connect(Separator::Nul);
    let tcp_id = tcp.register("tom", "pw");
    tcp.login(tcp_id, "pw", 1);
    let ack = web.req(json!({"msgid": 6, "toid": tcp_id, "msg": "over there", "cid": "x1"}));
    assert_eq!(ack["errno"], 0, "{ack}");
    assert_eq!(tcp.recv()["msg"], "over there");
    tcp.send(json!({"msgid": 6, "id": tcp_id, "toid": web_id, "msg": "and back"}));
    assert_eq!(web.recv()["msg"], "and back");
}

/// Bad input gets the errors TCP gets: 100 for what is not one JSON object (a binary message, invalid
/// UTF-8, two objects in one message), 106 and a close (1009) for an oversize message; a ping gets its
/// pong; a frame that breaks RFC 6455 (unmasked) closes with 1002.
#[test]
fn bad_input_over_websocket() {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new("max_frame_bytes = 1024\n");
    let (_server, http) = node(&db, &["--config", &conf.path]);
    let mut ws = Ws::connect(http);
    let malformed = |ws: &mut Ws, what: &str| {
        let answer = ws.recv();
        assert_eq!(
            (answer["msgid"].clone(), answer["errno"].clone()),
            (json!(15), json!(100)),
            "{what}: {answer}"
        );
        answer["errmsg"].as_str().unwrap().to_owned()
    };
    ws.send_frame(OpCode::Data(Data::Binary), br#"{"msgid":1}"#, true);
    assert!(malformed(&mut ws, "binary").contains("text message"));
    ws.send_frame(
        OpCode::Data(Data::Text),
        b"{\"msgid\":4,\"name\":\"\xff\"}",
        true,
    );
    malformed(&mut ws, "invalid UTF-8");
    ws.send_frame(
        OpCode::Data(Data::Text),
        br#"{"msgid":99}{"msgid":99}"#,
        true,
    );
    malformed(&mut ws, "two objects");
    ws.send_frame(OpCode::Data(Data::Text), b"hello", true);
    malformed(&mut ws, "not JSON");
    let unknown = ws.req(json!({"msgid": 99, "seq": 1}));
    assert_eq!(
        (unknown["errno"].clone(), unknown["seq"].clone()),
        (json!(101), json!(1))
    );
    ws.send_frame(OpCode::Control(Control::Ping), b"are you there", true);
    let pong = ws.frame(REPLY).unwrap();
    assert_eq!(pong.header().opcode, OpCode::Control(Control::Pong));
    assert_eq!(pong.payload(), b"are you there");
    // A message in two fragments, a ping between them, counts as one message.
    let mut first = Frame::message(br#"{"msgid":"#.to_vec(), OpCode::Data(Data::Text), false);
    first.header_mut().mask = Some([9, 8, 7, 6]);
    ws.socket.send(first).unwrap();
    ws.send_frame(OpCode::Control(Control::Ping), b"", true);
    let mut rest = Frame::message(b"99}".to_vec(), OpCode::Data(Data::Continue), true);
    rest.header_mut().mask = Some([5, 4, 3, 2]);
    ws.socket.send(rest).unwrap();
    let pong = ws.frame(REPLY).unwrap();
    assert_eq!(pong.header().opcode, OpCode::Control(Control::Pong));
    assert_eq!(ws.recv()["errno"], 101, "the two fragments as one message");

    let oversize = format!(r#"{{"msgid":99,"pad":"{}"}}"#, "x".repeat(1100));
    ws.send_frame(OpCode::Data(Data::Text), oversize.as_bytes(), true);
    let (frames, code) = ws.until_close();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["errno"], 106);
    assert_eq!(code, u16::from(CloseCode::Size));

    let mut rude = Ws::connect(http);
    rude.send_frame(OpCode::Data(Data::Text), br#"{"msgid":99}"#, false);
    let (frames, code) = rude.until_close();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, u16::from(CloseCode::Protocol));

    let mut polite = Ws::connect(http);
    polite.send_frame(
        OpCode::Control(Control::Close),
        &1000u16.to_be_bytes(),
        true,
    );
    assert_eq!(
        polite.until_close().1,
        1000,
        "a close is answered with a close"
    );
}

/// The rate limit holds over WebSocket: a flood is refused with 107, each refusal a message of its
/// own, then cut off (1008).
#[test]
fn a_websocket_flood_is_refused_then_cut_off() {
    let db = Db::fresh(Backend::Sqlite);
    let conf =
        ConfigFile::new("[rate_limit]\nper_sec = 100.0\nburst = 50.0\nabuse_frames = 500.0\n");
    let (_server, http) = node(&db, &["--config", &conf.path]);
    let mut flood = Ws::connect(http);
    let mut burst = Vec::new();
    for _ in 0..3_000 {
        let mut frame = Frame::message(br#"{"msgid":99}"#.to_vec(), OpCode::Data(Data::Text), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        frame.format(&mut burst).unwrap();
    }
    let _ = flood.socket.get_mut().write_all(&burst); // cut off before the end, maybe
    let (frames, code) = flood.until_close();
    let served = frames.iter().filter(|f| f["errno"] == 101).count();
    let limited = frames.iter().filter(|f| f["errno"] == 107).count();
    assert!((50..=80).contains(&served), "the burst is served: {served}");
    assert!(limited >= 400, "the rest is refused: {limited}");
    assert_eq!(code, u16::from(CloseCode::Policy));
}

/// A WebSocket client that never reads: it is closed when its mailbox fills, and every message is
/// delivered once, in what reached it or stored for its next login (here over TCP).
#[test]
fn a_websocket_client_that_never_reads_loses_nothing() {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new("mailbox_capacity = 8\n");
    let (server, http) = node(&db, &["--config", &conf.path]);
    let (mut sender, _) = user(&server, "sam");
    let mut slow = Ws::connect(http);
    let slow_id = slow.register("sly");
    slow.login(slow_id, 1);
    let text = "x".repeat(8_000);
    let total = 600; // ~5 MB: more than the socket buffers hold
    for i in 0..total {
        let frame = json!({"msgid": 6, "toid": slow_id, "msg": format!("{i}:{text}")});
        assert_eq!(sender.req(frame)["msgid"], 16, "message {i} accepted");
    }
    let mut seen: Vec<usize> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match slow.frame(Duration::from_secs(3)) {
            Some(frame) if frame.header().opcode == OpCode::Data(Data::Text) => {
                let value: Value = serde_json::from_slice(frame.payload()).unwrap();
                seen.push(numbered(&value));
            }
            _ => break,
        }
    }
    assert!(seen.len() < total, "the slow reader was never cut off");
    let (mut again, ack) = login_eventually(server.addr, slow_id, Duration::from_secs(5));
    seen.extend(ack["offlinemsg"].as_array().unwrap().iter().map(numbered));
    while let Ok(Some(frame)) = again.client.recv(Some(Duration::from_millis(500))) {
        seen.push(numbered(&frame));
    }
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "every message once, in order"
    );
}

/// What the HTTP listener refuses on `/ws`, and the connection counts by transport.
#[test]
fn the_listener_refuses_what_is_no_websocket_handshake() {
    let db = Db::fresh(Backend::Sqlite);
    let (_server, http) = node(&db, &[]);
    let status = |request: &str| {
        let mut stream = TcpStream::connect(http).unwrap();
        stream.set_read_timeout(Some(REPLY)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
    let old = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    assert_eq!(status(old), 426);
    let keyless = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(status(keyless), 400);
    assert_eq!(
        status("POST /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        405
    );
    assert_eq!(status("GET /ws/x HTTP/1.1\r\n\r\n"), 404);
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 200);

    let mut web = Ws::connect(http);
    // Answered once the connection is served (and counted), not just upgraded.
    assert_eq!(web.req(json!({"msgid": 99}))["errno"], 101);
    let page = {
        let mut stream = TcpStream::connect(http).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(
        page.contains("clusterchat_connections{transport=\"websocket\"} 1"),
        "{page}"
    );
}

/// The close frame says why the server ends a connection: 1008 for no login in time, 1001 when the node
/// shuts down (after what was queued).
#[test]
fn close_frames_say_why() {
    let db = Db::fresh(Backend::Sqlite);
    let (mut server, http) = node(&db, &["--login-timeout-secs", "1"]);
    let mut idle = Ws::connect(http);
    let (frames, code) = idle.until_close();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, u16::from(CloseCode::Policy));

    let mut web = Ws::connect(http);
    let id = web.register("stay");
    web.login(id, 2);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("the node stops");
    assert!(status.success(), "{status:?}");
    let (frames, code) = web.until_close();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, u16::from(CloseCode::Away));
}
