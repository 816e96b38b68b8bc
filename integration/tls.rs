//! TLS terminated by nginx (`conf/nginx.conf`) in front of two cluster nodes, with a certificate
//! authority the test makes itself (openssl): clients that trust that CA alone chat through nginx's TLS
//! servers, over the TCP protocol (the `stream` server) and over `wss://` (the `http` server's /ws);
//! a client that does not trust it is refused during the handshake.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use clusterchat::protocol::frame::{Decoded, FrameDecoder, Separator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::support::{
    ANY_PORT, Backend, Db, Nginx, REPLY, Redis, Server, TestCa, split_log_fields,
};

/// Two nodes of a cluster, each with its HTTP listener, behind nginx with TLS.
struct Front {
    nginx: Nginx,
    ca: TestCa,
    _nodes: Vec<Server>,
    _redis: Redis,
    _db: Db,
}

impl Front {
    fn start() -> Front {
        let ca = TestCa::make();
        let db = Db::fresh(Backend::Mysql);
        let redis = Redis::start();
        let url = redis.url();
        let mut nodes = Vec::new();
        let mut http = Vec::new();
        for _ in 0..2 {
            let node = Server::start(&db, &["--redis", &url, "--http", ANY_PORT]);
            http.push(node.http_addr());
            nodes.push(node);
        }
        let tcp: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        let nginx = Nginx::start_with(&tcp, &http, &ca);
        Front {
            nginx,
            ca,
            _nodes: nodes,
            _redis: redis,
            _db: db,
        }
    }
}

/// A rustls client configuration trusting the certificates in the PEM file `ca` and nothing else.
fn trusting(ca: &std::path::Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TCP connection to `addr` with a completed TLS handshake for `name`, or the handshake's error.
fn tls_connect(
    addr: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(REPLY))?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A chat client speaking the TCP protocol (frames cut by the separator) inside TLS.
struct TlsConn {
    tls: StreamOwned<ClientConnection, TcpStream>,
    decoder: FrameDecoder,
    sep: Separator,
}

impl TlsConn {
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>, sep: Separator) -> TlsConn {
        // By IP address: the certificate names 127.0.0.1 too.
        let name = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
        TlsConn {
            tls: tls_connect(addr, name, config).expect("TLS handshake with nginx"),
            decoder: FrameDecoder::new(1 << 20),
            sep,
        }
    }

    fn send(&mut self, frame: Value) {
        let mut bytes = frame.to_string().into_bytes();
        bytes.push(self.sep.byte());
        self.tls.write_all(&bytes).expect("send over TLS");
        self.tls.flush().expect("flush TLS");
    }

    fn recv(&mut self) -> Value {
        let mut buf = [0u8; 4096];
        loop {
            match self.decoder.next_frame() {
                Some(Decoded::Frame(bytes)) => {
                    return serde_json::from_slice(&bytes).expect("a JSON frame");
                }
                Some(other) => panic!("bad frame from the server: {other:?}"),
                None => {}
            }
            match self.tls.read(&mut buf) {
                Ok(0) => panic!("server closed the TLS connection"),
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("no frame within {REPLY:?} over TLS: {e}"),
            }
        }
    }

    fn req(&mut self, frame: Value) -> Value {
        self.send(frame);
        self.recv()
    }
}

/// A `wss://` client: tungstenite's client handshake and messages over the rustls stream.
struct WssConn {
    ws: WebSocket<StreamOwned<ClientConnection, TcpStream>>,
}

impl WssConn {
    /// Opens `wss://localhost:PORT/ws` on nginx's HTTPS server at `addr`.
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> WssConn {
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let tls = tls_connect(addr, name, config).expect("TLS handshake with nginx");
        let url = format!("wss://localhost:{}/ws", addr.port());
        let (ws, response) = tungstenite::client::client(url, tls).expect("WebSocket handshake");
        assert_eq!(response.status(), 101);
        WssConn { ws }
    }
}

impl Chat for WssConn {
    fn req(&mut self, frame: Value) -> Value {
        self.send_frame(frame);
        self.recv_frame()
    }

    fn send_frame(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .expect("send over wss");
    }

    /// The next text message, one JSON frame.
    fn recv_frame(&mut self) -> Value {
        match self.ws.read() {
            Ok(Message::Text(text)) => serde_json::from_str(&text).expect("one JSON frame"),
            Ok(other) => panic!("expected a text message, got {other:?}"),
            Err(e) => panic!("no message within {REPLY:?} over wss: {e}"),
        }
    }
}

/// Registers `name` (password "pw") on `c` and logs in with protocol version `v`; returns the id.
fn register_and_login(c: &mut impl Chat, name: &str, v: u8) -> i64 {
    let ack = c.req(json!({"msgid": 4, "name": name, "password": "pw"}));
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(5), json!(0)),
        "{ack}"
    );
    let id = ack["id"].as_i64().expect("id");
    let mut login = json!({"msgid": 1, "id": id, "password": "pw"});
    if v == 2 {
        login["v"] = json!(2);
    }
    let ack = c.req(login);
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(2), json!(0)),
        "{ack}"
    );
    id
}

/// What the test needs of a client, over either transport.
trait Chat {
    fn req(&mut self, frame: Value) -> Value;
    fn send_frame(&mut self, frame: Value);
    fn recv_frame(&mut self) -> Value;
}

impl Chat for TlsConn {
    fn req(&mut self, frame: Value) -> Value {
        TlsConn::req(self, frame)
    }
    fn send_frame(&mut self, frame: Value) {
        self.send(frame)
    }
    fn recv_frame(&mut self) -> Value {
        self.recv()
    }
}

/// `from` (user `from_id`, called `from_name`, logged in with v2) sends `text` to `to_id`, gets its
/// CHAT_MSG_ACK, and `to` receives it with the sender's id and name.
fn chat_v2_to(
    from: &mut impl Chat,
    (from_id, from_name): (i64, &str),
    to: &mut impl Chat,
    to_id: i64,
    text: &str,
) {
    let ack = from.req(json!({"msgid": 6, "toid": to_id, "msg": text, "cid": text}));
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(16), json!(0)),
        "{ack}"
    );
    let got = to.recv_frame();
    assert_eq!(
        (
            got["msgid"].clone(),
            got["id"].clone(),
            got["name"].clone(),
            got["msg"].clone()
        ),
        (json!(6), json!(from_id), json!(from_name), json!(text)),
        "{got}"
    );
}

#[test]
fn tls_tcp_clients_chat_through_nginx_and_an_untrusted_certificate_is_refused() {
    let front = Front::start();
    let config = trusting(&front.ca.ca_pem);
    // v2 (newline) and v1 (NUL, as the C++ client) over TLS; least_conn puts them on different nodes.
    let mut ana = TlsConn::connect(front.nginx.tls_addr, config.clone(), Separator::Newline);
    let ana_id = register_and_login(&mut ana, "ana", 2);
    let mut bo = TlsConn::connect(front.nginx.tls_addr, config, Separator::Nul);
    let bo_id = register_and_login(&mut bo, "bo", 1);
    chat_v2_to(&mut ana, (ana_id, "ana"), &mut bo, bo_id, "over tls");
    // v1 sends have no ack: the message itself is the answer, with the log's fields for a v2 reader.
    bo.send_frame(json!({"msgid": 6, "toid": ana_id, "msg": "and back", "time": "t"}));
    let mut got = ana.recv();
    let (conv, _) = split_log_fields(&mut got);
    assert_eq!(conv, json!(format!("u{bo_id}")), "{got}");
    assert_eq!(
        got,
        json!({"msgid": 6, "id": bo_id, "toid": ana_id, "name": "bo", "msg": "and back", "time": "t"})
    );
    // A client trusting another CA (nginx's certificate is not signed by it) fails the handshake.
    let other = TestCa::make();
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let Err(err) = tls_connect(front.nginx.tls_addr, name, trusting(&other.ca_pem)) else {
        panic!("a handshake against an untrusted certificate succeeded");
    };
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[test]
fn a_wss_client_and_a_tls_tcp_client_chat_through_nginx() {
    let front = Front::start();
    let config = trusting(&front.ca.ca_pem);
    let mut web = WssConn::connect(front.nginx.https_addr, config.clone());
    let web_id = register_and_login(&mut web, "web", 2);
    let mut tcp = TlsConn::connect(front.nginx.tls_addr, config.clone(), Separator::Newline);
    let tcp_id = register_and_login(&mut tcp, "tcp", 2);
    chat_v2_to(
        &mut web,
        (web_id, "web"),
        &mut tcp,
        tcp_id,
        "from the browser",
    );
    chat_v2_to(
        &mut tcp,
        (tcp_id, "tcp"),
        &mut web,
        web_id,
        "from the terminal",
    );
    // v1 over wss too, to a second v1 TLS client: same frames as on TCP.
    let mut web1 = WssConn::connect(front.nginx.https_addr, config.clone());
    let web1_id = register_and_login(&mut web1, "web1", 1);
    web1.send_frame(json!({"msgid": 6, "toid": tcp_id, "msg": "v1 over wss", "time": "t"}));
    let got = tcp.recv();
    assert_eq!(
        (got["id"].clone(), got["msg"].clone()),
        (json!(web1_id), json!("v1 over wss")),
        "{got}"
    );
    // The plain HTTP server of the same block serves the same /ws (for local use).
    let plain = TcpStream::connect(front.nginx.http_addr).expect("connect to nginx's HTTP server");
    plain.set_read_timeout(Some(REPLY)).expect("timeout");
    let url = format!("ws://127.0.0.1:{}/ws", front.nginx.http_addr.port());
    let (mut ws, _) = tungstenite::client::client(url, plain).expect("WebSocket handshake");
    ws.send(Message::text(json!({"msgid": 99}).to_string()))
        .expect("send");
    let reply: Value = match ws.read().expect("an answer") {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (reply["msgid"].clone(), reply["errno"].clone()),
        (json!(15), json!(101)),
        "{reply}"
    );
}
