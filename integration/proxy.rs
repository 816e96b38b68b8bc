//! Clients behind a proxy keep their own addresses: nginx names each TCP client in a PROXY line and each
//! WebSocket client in `X-Forwarded-For` (and a proxy played by the test, in a binary version 2 header),
//! and a node that trusts the proxy's address counts the failed-login throttle per client, not per
//! proxy. Clients take addresses of their own on loopback (127.0.0.2, 127.0.0.3) to connect to nginx
//! from.

use std::net::IpAddr;
use std::time::Duration;

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{ANY_PORT, Backend, ConfigFile, Conn, Db, Nginx, Server, TestCa, tcp_from};
use crate::websocket::Ws;

/// Failures from one address before its newcomers wait (the other limits stay out of the way).
const THROTTLE: &str = "[login_throttle]\nwindow_secs = 60\nper_user_and_address = 3\nper_user = 100\nper_address = 5\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// How a client reaches the node through nginx.
#[derive(Clone, Copy, Debug)]
enum Via {
    Tcp,
    WebSocket,
}

/// One login attempt through nginx from `source`; its errno.
fn attempt(nginx: &Nginx, via: Via, source: IpAddr, id: i64, password: &str) -> Value {
    let login = json!({"msgid": 1, "id": id, "password": password});
    let ack = match via {
        Via::Tcp => Conn::connect_from(nginx.addr, source, Separator::Nul).req(login),
        Via::WebSocket => {
            let stream = tcp_from(nginx.http_addr, source);
            Ws::over(stream, nginx.http_addr).req(login)
        }
    };
    ack["errno"].clone()
}

/// A guesser at 127.0.0.2 uses up its address's failures through nginx; then what a newcomer at
/// 127.0.0.3 and one at 127.0.0.2 get (errnos), on a node whose `--trusted-proxies` is `trusted` (nginx
/// is 127.0.0.1).
fn newcomers_after_guessing(via: Via, trusted: Option<&str>) -> (Value, Value) {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new(THROTTLE);
    let mut args = vec!["--config", conf.path.as_str(), "--http", ANY_PORT];
    if let Some(trusted) = trusted {
        args.extend(["--trusted-proxies", trusted]);
    }
    let server = Server::start(&db, &args);
    let nginx = Nginx::start_with(&[server.addr], &[server.http_addr()], &TestCa::make());
    let mut c = server.connect(Separator::Nul);
    let [here, there] = ["here", "there"].map(|n| c.register(n, "pw"));
    let (guesser, elsewhere) = (ip("127.0.0.2"), ip("127.0.0.3"));
    for id in 1000..1005 {
        assert_eq!(attempt(&nginx, via, guesser, id, "guess"), json!(1));
    }
    (
        attempt(&nginx, via, elsewhere, there, "pw"),
        attempt(&nginx, via, guesser, here, "pw"),
    )
}

/// Through nginx over `via`, on a node that trusts it: the guesser's address waits, another gets in.
fn each_client_counts_as_its_own_address(via: Via, trusted: &str) {
    let (elsewhere, guesser) = newcomers_after_guessing(via, Some(trusted));
    assert_eq!(elsewhere, json!(0), "a newcomer at another address gets in");
    assert_eq!(
        guesser,
        json!(107),
        "a newcomer at the guesser's address waits"
    );
}

#[test]
fn behind_nginx_each_tcp_client_counts_as_its_own_address() {
    each_client_counts_as_its_own_address(Via::Tcp, "127.0.0.1");
}

#[test]
fn behind_nginx_each_websocket_client_counts_as_its_own_address() {
    // A range holding nginx's address (127.0.0.0–127.0.0.1) and neither client's.
    each_client_counts_as_its_own_address(Via::WebSocket, "127.0.0.0/31");
}

/// A node that does not list nginx reads past its PROXY lines (the connection works) but counts every
/// client as nginx's address, as before: what a PROXY line or `X-Forwarded-For` says is believed only
/// from a trusted proxy.
#[test]
fn an_untrusted_proxy_names_no_one() {
    for via in [Via::Tcp, Via::WebSocket] {
        let (elsewhere, guesser) = newcomers_after_guessing(via, None);
        assert_eq!(
            elsewhere,
            json!(107),
            "{via:?}: everyone is nginx's address"
        );
        assert_eq!(guesser, json!(107), "{via:?}");
    }
}

/// A PROXY version 2 header (what HAProxy's `send-proxy-v2` and cloud load balancers send; nginx sends
/// version 1) naming `source` as the client of a TCP connection over IPv4.
fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend(source);
    header.extend([127, 0, 0, 1, 0xc7, 0x38, 0x17, 0x70]);
    header
}

/// A proxy that sends binary PROXY headers, played by the test on connections from 127.0.0.1 to a node
/// that trusts it: the guesser's address waits, another gets in, as behind nginx.
#[test]
fn binary_proxy_headers_name_each_client() {
    let db = Db::fresh(Backend::Sqlite);
    let conf = ConfigFile::new(THROTTLE);
    let trusted = "127.0.0.1";
    let server = Server::start(&db, &["--config", &conf.path, "--trusted-proxies", trusted]);
    let mut c = server.connect(Separator::Nul);
    let [here, there] = ["here", "there"].map(|n| c.register(n, "pw"));
    let attempt = |source: [u8; 4], id: i64, password: &str| {
        let mut conn = server.connect(Separator::Nul);
        conn.send_raw(&proxy_v2(source));
        conn.req(json!({"msgid": 1, "id": id, "password": password}))["errno"].clone()
    };
    let (guesser, elsewhere) = ([192, 0, 2, 7], [192, 0, 2, 8]);
    for id in 1000..1005 {
        assert_eq!(attempt(guesser, id, "guess"), json!(1));
    }
    assert_eq!(
        attempt(elsewhere, there, "pw"),
        json!(0),
        "another address gets in"
    );
    assert_eq!(
        attempt(guesser, here, "pw"),
        json!(107),
        "the guesser's address waits"
    );
}

/// A header that is not valid (here datagrams, which chat never runs over) ends the connection before
/// anything is answered, while the node goes on serving others.
#[test]
fn an_invalid_proxy_header_ends_the_connection() {
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &["--trusted-proxies", "127.0.0.1"]);
    let mut header = proxy_v2([192, 0, 2, 7]);
    header[13] = 0x12;
    let mut conn = server.connect(Separator::Nul);
    conn.send_raw(&header);
    conn.send(json!({"msgid": 4, "name": "x", "password": "pw"}));
    assert_eq!(
        conn.expect_closed(Duration::from_secs(5)),
        Vec::<Value>::new()
    );
    let mut other = server.connect(Separator::Nul);
    other.register("after", "pw");
}
