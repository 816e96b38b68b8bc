//! The HTTP listener's health checks: `/healthz` while the process serves, `/readyz` turning unready
//! when the store or Redis goes away and ready again when they return, and the statuses of what it does
//! not serve.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{ANY_PORT, Backend, Db, Mariadb, Redis, Server};

/// Sends `request` as it is and returns the status code and body of the answer.
fn exchange(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n"))
}

/// Polls `/readyz` until it answers `status`, for at most `within`; returns the body.
fn readyz_becomes(port: u16, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(port, "/readyz");
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {got} ({body:?}) after {within:?}, wanted {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_checks_and_what_is_not_served() {
    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &["--http", ANY_PORT]);
    let port = server.http_addr().port();
    assert_eq!(get(port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(port, "/readyz"), (200, "ready\n".into()));
    assert_eq!(get(port, "/readyz?verbose=1").0, 200);
    assert_eq!(get(port, "/nothing").0, 404);
    assert_eq!(
        exchange(port, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(exchange(port, "hello\r\n\r\n").0, 400);
}

#[test]
fn readyz_follows_the_store_and_redis() {
    let mut mariadb = Mariadb::start();
    let mut redis = Redis::start();
    let redis_url = redis.url();
    let server = Server::start_on(&mariadb.url(), &["--http", ANY_PORT, "--redis", &redis_url]);
    let port = server.http_addr().port();
    readyz_becomes(port, 200, Duration::from_secs(10));
    redis.stop();
    let body = readyz_becomes(port, 503, Duration::from_secs(10));
    assert!(body.contains("Redis"), "{body}");
    assert_eq!(get(port, "/healthz").0, 200, "the process still serves");
    redis.start_again();
    readyz_becomes(port, 200, Duration::from_secs(20));
    mariadb.stop();
    let body = readyz_becomes(port, 503, Duration::from_secs(20));
    assert!(body.contains("store"), "{body}");
    // The heartbeat's failures (every 2 s) are counted as store errors.
    let errors = || {
        sample(
            &scrape(port),
            "clusterchat_errors_total",
            &[("source", "store")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while errors().unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "no store error counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    mariadb.start_again();
    readyz_becomes(port, 200, Duration::from_secs(30));
}

/// The value of the sample `name` whose labels include all of `labels`, from a parsed page.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|got| got == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn scrape(port: u16) -> prometheus_parse::Scrape {
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics page parses")
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    use clusterchat::protocol::frame::Separator;
    use serde_json::json;

    let db = Db::fresh(Backend::Sqlite);
    let server = Server::start(&db, &["--http", ANY_PORT]);
    let port = server.http_addr().port();
    let before = scrape(port);
    assert_eq!(
        sample(
            &before,
            "clusterchat_requests_total",
            &[("msgid", "6"), ("errno", "0")]
        ),
        None
    );
    let mut a = server.connect(Separator::Newline);
    let mut b = server.connect(Separator::Newline);
    let a_id = a.register("ann", "pw");
    let b_id = b.register("ben", "pw");
    a.login(a_id, "pw", 2);
    b.login(b_id, "pw", 2);
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": b_id, "msg": "hi"}))["msgid"],
        16
    );
    assert_eq!(b.recv()["msg"], "hi");
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": 999, "msg": "x"}))["errno"],
        104
    );
    let after = scrape(port);
    let count = |labels: &[(&str, &str)]| sample(&after, "clusterchat_requests_total", labels);
    assert_eq!(count(&[("msgid", "6"), ("errno", "0")]), Some(1.0));
    assert_eq!(count(&[("msgid", "6"), ("errno", "104")]), Some(1.0));
    assert_eq!(count(&[("msgid", "1"), ("errno", "0")]), Some(2.0));
    assert_eq!(
        sample(&after, "clusterchat_deliveries_total", &[("route", "live")]),
        Some(1.0)
    );
    let tcp = [("transport", "tcp")];
    assert_eq!(sample(&after, "clusterchat_connections", &tcp), Some(2.0));
    assert_eq!(sample(&after, "clusterchat_devices", &[]), Some(2.0));
    assert_eq!(sample(&after, "clusterchat_users", &[]), Some(2.0));
    assert!(
        sample(&after, "clusterchat_log_commit_messages_count", &[]).is_some_and(|n| n >= 1.0),
        "a commit was observed"
    );
    // The SQLite log's index in memory: one message, in one conversation; no bus, nothing waits.
    assert_eq!(
        sample(&after, "clusterchat_log_index_messages", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "clusterchat_log_index_conversations", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "clusterchat_bus_publishes_waiting", &[]),
        Some(0.0)
    );
}
