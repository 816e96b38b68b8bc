//! Shared helpers: real `chatserver` processes on free ports, fresh databases, and protocol clients.
//!
//! MySQL tests need a MariaDB server: `make test` starts a private one and sets `CLUSTERCHAT_TEST_MYSQL`
//! to a URL whose user may create databases. Without it those tests fail (they are never skipped).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clusterchat::client::Client;
use clusterchat::protocol::frame::Separator;
use clusterchat::store::{self, Store};
use serde_json::{Value, json};

/// How long a test waits for a reply it expects.
pub const REPLY: Duration = Duration::from_secs(10);

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
}

/// A fresh, empty database for one test.
pub struct Db {
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Db {
    pub fn fresh(backend: Backend) -> Db {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("chat.db").display());
                Db {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Mysql => {
                let admin = std::env::var("CLUSTERCHAT_TEST_MYSQL").expect(
                    "MySQL tests need CLUSTERCHAT_TEST_MYSQL (mysql://USER:PASS@HOST:PORT); run them with `make test`",
                );
                let name = format!(
                    "cc_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                use r2d2_mysql::mysql::prelude::Queryable;
                let mut conn = r2d2_mysql::mysql::Conn::new(
                    r2d2_mysql::mysql::Opts::from_url(&admin)
                        .expect("valid CLUSTERCHAT_TEST_MYSQL"),
                )
                .expect("connect to the test MariaDB");
                conn.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
                    .expect("create test database");
                Db {
                    url: format!("{}/{name}", admin.trim_end_matches('/')),
                    _dir: None,
                }
            }
        }
    }

    /// The number a counting query (`SELECT COUNT(*) …`) gives, asked of the database directly.
    pub fn count(&self, sql: &str) -> i64 {
        match self.url.strip_prefix("sqlite://") {
            Some(path) => rusqlite::Connection::open(path)
                .expect("open the SQLite file")
                .query_row(sql, [], |r| r.get(0))
                .expect("a count"),
            None => {
                use r2d2_mysql::mysql::prelude::Queryable;
                let opts = r2d2_mysql::mysql::Opts::from_url(&self.url).expect("a MySQL URL");
                let mut conn = r2d2_mysql::mysql::Conn::new(opts).expect("connect to MariaDB");
                conn.query_first(sql).expect("a count").expect("a row")
            }
        }
    }

    /// Opens the same database directly, to check what the server stored.
    pub fn store(&self) -> Arc<dyn Store> {
        store::open(&self.url, 1).expect("open test database")
    }
}

/// A running `chatserver` process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub db_url: String,
    args: Vec<String>,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

/// The address to give `--http` for a listener on any free port: the node binds it itself and logs it
/// ([`Server::http_addr`]), so no other process can take the port first.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

impl Server {
    /// Starts a node on `db` with cheap password hashing and `extra` flags.
    pub fn start(db: &Db, extra: &[&str]) -> Server {
        Server::start_on(&db.url, extra)
    }

    /// Starts a node on the database at `url`.
    pub fn start_on(url: &str, extra: &[&str]) -> Server {
        let logdir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            child: None,
            // Port 0: the node binds a free port itself and logs it, so parallel tests never collide.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db_url: url.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            log: logdir.path().join("server.log"),
            _logdir: logdir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_chatserver"))
            .args([
                "--listen",
                &self.addr.to_string(),
                "--database",
                &self.db_url,
            ])
            .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chatserver");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits for the node's "listening" log line (learning the port it bound the first time), or fails
    /// with its log if it exits first.
    fn wait_ready(&mut self) {
        // Generous: a node on a fresh MariaDB database first creates its tables, which on a loaded
        // machine (a browser test starting beside it) has taken more than 20 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        let starts_before = self.log_text().matches(" listening ").count();
        while Instant::now() < deadline {
            let log = self.log_text();
            if let Some(line) = log
                .lines()
                .filter(|l| l.contains(" listening "))
                .nth(starts_before)
            {
                self.addr = logged_addr(line).expect("the listening line names the address");
                // This start's HTTP listener, logged just before: a restart binds the same port again.
                let before = &log[..log.find(line).unwrap_or(0)];
                if let Some(http) = before.lines().rev().find(|l| l.contains(" web client on ")) {
                    let http = logged_addr(http).expect("the web client line names the address");
                    if let Some(at) = self.args.iter().position(|a| a == "--http") {
                        self.args[at + 1] = http.to_string();
                    }
                }
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("chatserver exited early ({status}); log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "chatserver did not listen in time; log:\n{}",
            self.log_text()
        );
    }

    /// The address of the node's HTTP listener (given with `--http`, or the one it bound for
    /// [`ANY_PORT`]).
    pub fn http_addr(&self) -> SocketAddr {
        let at = self.args.iter().position(|a| a == "--http");
        at.and_then(|at| self.args[at + 1].parse().ok())
            .expect("a node started with --http")
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit, at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same port and database.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A client connection to this server.
    pub fn connect(&self, sep: Separator) -> Conn {
        Conn::connect(self.addr, sep)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            eprintln!("chatserver on {} had exited: {status}", self.addr);
        }
        self.kill9();
        // A failing test shows what its server said.
        if std::thread::panicking() {
            eprintln!(
                "--- chatserver log ({}) ---\n{}",
                self.addr,
                self.log_text()
            );
        }
    }
}

/// Sends a signal with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// A test's client connection, with assertions built in.
pub struct Conn {
    pub client: Client,
}

impl Conn {
    pub fn connect(addr: SocketAddr, sep: Separator) -> Conn {
        Conn {
            client: Client::connect(addr, sep).expect("connect to chatserver"),
        }
    }

    /// Connects from the local address `source` (any of 127.0.0.0/8 on loopback): a client at an
    /// address of its own.
    pub fn connect_from(addr: SocketAddr, source: IpAddr, sep: Separator) -> Conn {
        Conn {
            client: Client::over(tcp_from(addr, source), sep).expect("a client"),
        }
    }

    pub fn send(&mut self, frame: Value) {
        self.client.send(&frame).expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.client.send_raw(bytes).expect("send");
    }

    /// The next frame; panics if none comes in time or the server closed.
    pub fn recv(&mut self) -> Value {
        match self.client.recv(Some(REPLY)) {
            Ok(Some(v)) => v,
            Ok(None) => panic!("server closed the connection"),
            Err(e) => panic!("no frame within {REPLY:?}: {e}"),
        }
    }

    /// Sends a request and returns the next frame.
    pub fn req(&mut self, frame: Value) -> Value {
        self.send(frame);
        self.recv()
    }

    /// Asserts that nothing arrives for `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        match self.client.recv(Some(wait)) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Asserts that the server closes the connection within `wait` (frames before that are returned).
    pub fn expect_closed(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "connection still open after {wait:?}");
            match self.client.recv(Some(left)) {
                Ok(Some(v)) => frames.push(v),
                Ok(None) => return frames,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return frames,
                Err(e) => panic!("connection still open after {wait:?}: {e}"),
            }
        }
    }

    /// Registers `name`, returning the new id.
    pub fn register(&mut self, name: &str, password: &str) -> i64 {
        let ack = self.req(json!({"msgid": 4, "name": name, "password": password}));
        assert_eq!(ack["msgid"], 5, "{ack}");
        assert_eq!(ack["errno"], 0, "{ack}");
        ack["id"].as_i64().expect("id in register ack")
    }

    /// Logs in with the given protocol version and returns the ack (asserting success).
    pub fn login(&mut self, id: i64, password: &str, v: u8) -> Value {
        let mut frame = json!({"msgid": 1, "id": id, "password": password});
        if v == 2 {
            frame["v"] = json!(2);
        }
        let ack = self.req(frame);
        assert_eq!(ack["msgid"], 2, "{ack}");
        assert_eq!(ack["errno"], 0, "{ack}");
        ack
    }
}

/// A TOML config file for a test's server, removed with the value.
pub struct ConfigFile {
    pub path: String,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write config");
        ConfigFile {
            path: path.to_str().expect("utf-8 temp path").to_owned(),
            _dir: dir,
        }
    }
}

/// The `msg` of each stored message in a v2 login ack, oldest first.
pub fn offline_texts(ack: &Value) -> Vec<Value> {
    ack["offlinemsg"]
        .as_array()
        .expect("a v2 login ack lists offlinemsg")
        .iter()
        .map(|m| m["msg"].clone())
        .collect()
}

/// Logs `id` (password "pw") in on a fresh v2 connection to `addr`, retrying while the account still
/// shows as in use; returns the connection and its login ack.
pub fn login_eventually(addr: SocketAddr, id: i64, within: Duration) -> (Conn, Value) {
    let deadline = Instant::now() + within;
    loop {
        let mut c = Conn::connect(addr, Separator::Newline);
        let ack = c.req(json!({"msgid": 1, "id": id, "password": "pw", "v": 2}));
        if ack["errno"] == 0 {
            return (c, ack);
        }
        assert_eq!(ack["errno"], 2, "{ack}");
        assert!(
            Instant::now() < deadline,
            "user {id} still in use after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A v2 client registered and logged in as `name` (password "pw").
pub fn user(server: &Server, name: &str) -> (Conn, i64) {
    let mut c = server.connect(Separator::Newline);
    let id = c.register(name, "pw");
    c.login(id, "pw", 2);
    (c, id)
}

/// The number a numbered test message (`"<n>:…"`) starts with.
pub fn numbered(frame: &Value) -> usize {
    let msg = frame["msg"].as_str().unwrap();
    msg[..msg.find(':').unwrap()].parse().unwrap()
}

/// Generates one `#[test]` per backend for each named test function `fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )*
        }
        mod mysql {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Mysql) } )*
        }
    };
}

/// A private `redis-server` on a free loopback port, keeping nothing on disk.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.start_again();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port).
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (make test installs it)");
        self.child = Some(child);
        assert!(
            is_listening(self.port),
            "redis-server did not listen on port {}",
            self.port
        );
    }

    /// Stops the server without closing anything (SIGSTOP): it reads and answers nothing until
    /// [`resume`](Self::resume), as a stalled server would.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running").id(), "STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running").id(), "CONT");
    }

    /// Kills the server, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A certificate authority of a test's own and a server certificate it signed for `localhost` and
/// `127.0.0.1` (P-256, made with the `openssl` command in a temp dir): clients trust `ca_pem` only.
pub struct TestCa {
    /// The CA's certificate (PEM), the one root a client should trust.
    pub ca_pem: PathBuf,
    /// The server's certificate (PEM), signed by the CA.
    pub cert_pem: PathBuf,
    /// The server certificate's private key (PEM).
    pub key_pem: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn make() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        // Our own config: the system's openssl.cnf may add extensions of its own.
        std::fs::write(
            path("openssl.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = clusterchat test CA\n\
             [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n\
             authorityKeyIdentifier = keyid\n",
        )
        .expect("write openssl.cnf");
        // In the temp dir, so that every file is named by itself.
        let openssl = |args: &str| {
            let out = Command::new("openssl")
                .args(args.split(' '))
                .current_dir(dir.path())
                .output()
                .expect("run openssl (make test installs it with nginx)");
            assert!(
                out.status.success(),
                "openssl {args} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(&format!(
            "req -x509 -config openssl.cnf -extensions ca -days 2 {key} -keyout ca.key -out ca.pem"
        ));
        openssl(&format!(
            "req -new -config openssl.cnf -subj /CN=localhost {key} -keyout server.key -out server.csr"
        ));
        openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
             -extfile openssl.cnf -extensions server -out server.pem",
        );
        let (ca_pem, cert_pem, key_pem) = (path("ca.pem"), path("server.pem"), path("server.key"));
        TestCa {
            ca_pem,
            cert_pem,
            key_pem,
            _dir: dir,
        }
    }
}

/// A TCP connection to `addr` from the local address `source`.
pub fn tcp_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// nginx from `conf/nginx.conf`: a TCP load balancer in front of the nodes' chat listeners, plain
/// (`addr`) and with TLS (`tls_addr`), and an HTTP proxy to their HTTP listeners, plain (`http_addr`) and
/// with TLS (`https_addr`).
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    #[allow(dead_code)]
    pub tls_addr: SocketAddr,
    #[allow(dead_code)]
    pub http_addr: SocketAddr,
    #[allow(dead_code)]
    pub https_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx in front of the chat listeners `backends` only (its HTTP upstream is one server marked
    /// down, its TLS servers use a throwaway certificate).
    pub fn start(backends: &[SocketAddr]) -> Nginx {
        Nginx::start_with(backends, &[], &TestCa::make())
    }

    /// nginx in front of the chat listeners `tcp` and the HTTP listeners `http`, its TLS servers using
    /// `tls`'s server certificate (the files are read at start). Its four ports are picked free; when
    /// another process takes one first, nginx gives up and starts again on new ports.
    pub fn start_with(tcp: &[SocketAddr], http: &[SocketAddr], tls: &TestCa) -> Nginx {
        let mut refusals = String::new();
        for _ in 0..5 {
            match Nginx::try_start(tcp, http, tls) {
                Ok(nginx) => return nginx,
                Err(logs) => refusals.push_str(&logs),
            }
        }
        panic!("nginx did not start:\n{refusals}");
    }

    /// One start on four fresh ports: nginx once its pid file is written (which it does only after
    /// binding every listener), or its logs when it exited first.
    fn try_start(tcp: &[SocketAddr], http: &[SocketAddr], tls: &TestCa) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let [addr, tls_addr, http_addr, https_addr] =
            [(); 4].map(|()| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let servers = |backends: &[SocketAddr]| -> String {
            if backends.is_empty() {
                return "server 127.0.0.1:9 down;".to_owned();
            }
            backends
                .iter()
                .map(|b| format!("server {b} max_fails=3 fail_timeout=10s;\n        "))
                .collect()
        };
        let conf = include_str!("../conf/nginx.conf")
            .replace("@RUN_DIR@", &dir.path().display().to_string())
            .replace("@LISTEN@", &addr.to_string())
            .replace("@TLS_LISTEN@", &tls_addr.to_string())
            .replace("@HTTP_LISTEN@", &http_addr.to_string())
            .replace("@HTTPS_LISTEN@", &https_addr.to_string())
            .replace("@TLS_CERT@", &tls.cert_pem.display().to_string())
            .replace("@TLS_KEY@", &tls.key_pem.display().to_string())
            .replace("@HTTP_UPSTREAM_SERVERS@", &servers(http))
            .replace("@UPSTREAM_SERVERS@", &servers(tcp));
        assert!(!conf.contains("@"), "a placeholder left in nginx.conf");
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let nginx = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.path().join("startup-error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (make test installs it)");
        let mut nginx = Nginx {
            child,
            addr,
            tls_addr,
            http_addr,
            https_addr,
            _dir: dir,
        };
        let pid_file = nginx._dir.path().join("nginx.pid");
        // nginx retries a taken port for 2.5 s before it exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid_file.exists() && Instant::now() < deadline {
            if let Ok(Some(_)) = nginx.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if pid_file.exists() {
            return Ok(nginx);
        }
        let log =
            |name: &str| std::fs::read_to_string(nginx._dir.path().join(name)).unwrap_or_default();
        Err(format!(
            "{}{}",
            log("startup-error.log"),
            log("nginx-error.log")
        ))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr=` field of a log line.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
}

/// Whether something accepts connections on 127.0.0.1:`port` within 10 s.
pub fn is_listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A MariaDB of a test's own, for tests that stop and restart the database (the shared one of
/// `make test` must stay up for everyone else).
pub struct Mariadb {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mariadb {
    pub fn start() -> Mariadb {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db (make test installs MariaDB)");
        assert!(status.success(), "mariadb-install-db failed");
        let mut db = Mariadb {
            child: None,
            port: free_port(),
            dir,
        };
        db.start_again();
        let sock = db.dir.path().join("mysqld.sock");
        let sql = "CREATE USER 'chat'@'127.0.0.1' IDENTIFIED BY 'chat'; \
                   GRANT ALL ON *.* TO 'chat'@'127.0.0.1'; CREATE DATABASE chat;";
        let status = Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-S"])
            .arg(&sock)
            .args(["-e", sql])
            .status()
            .expect("mariadb client");
        assert!(status.success(), "creating the test user failed");
        db
    }

    /// A URL for the `chat` database.
    pub fn url(&self) -> String {
        format!("mysql://chat:chat@127.0.0.1:{}/chat", self.port)
    }

    /// Starts the server (again, on the same port and data).
    pub fn start_again(&mut self) {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let mysqld = if std::path::Path::new("/usr/sbin/mariadbd").exists() {
            "/usr/sbin/mariadbd"
        } else {
            "mariadbd"
        };
        let child = Command::new(mysqld)
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--socket={}", path("mysqld.sock")))
            .arg(format!("--pid-file={}", path("mysqld.pid")))
            .arg(format!("--log-error={}", path("error.log")))
            .arg(format!("--port={}", self.port))
            .args(["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"])
            // A test's data need not survive the machine: no fsync (see services.sh, mariadb_start).
            .args(["--innodb-flush-method=nosync", "--innodb-doublewrite=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        assert!(
            is_listening(self.port),
            "mariadbd did not listen on port {}",
            self.port
        );
    }

    /// Kills the server, as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Takes the log's fields (`conv`, `pos`, `ts`, `cid`) out of a v2 frame, so the rest compares with the
/// original's frame; returns them as `[conv, pos, ts]` (`ts` only checked for being a number).
pub fn split_log_fields(frame: &mut Value) -> (Value, Value) {
    let map = frame.as_object_mut().expect("a frame is an object");
    let ts = map.remove("ts").unwrap_or(Value::Null);
    assert!(ts.is_i64(), "ts is a number: {ts}");
    map.remove("cid");
    let conv = map.remove("conv").unwrap_or(Value::Null);
    let pos = map.remove("pos").unwrap_or(Value::Null);
    (conv, pos)
}

/// Milliseconds since the Unix epoch by this machine's clock (the servers' `ts` clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Logs `id` (password "pw") in as v2 `device` on a new connection to `server`, asserting success;
/// returns the connection and its login ack.
pub fn device(server: &Server, id: i64, device: &str) -> (Conn, Value) {
    let mut c = server.connect(Separator::Newline);
    let ack = c.req(json!({"msgid": 1, "id": id, "password": "pw", "v": 2, "device": device}));
    assert_eq!(
        (ack["msgid"].clone(), ack["errno"].clone()),
        (json!(2), json!(0)),
        "{ack}"
    );
    (c, ack)
}

/// The next frame with `msgid`, skipping (and returning) the frames that come before it.
pub fn recv_until(c: &mut Conn, msgid: i64) -> (Value, Vec<Value>) {
    let mut skipped = Vec::new();
    loop {
        let frame = c.recv();
        if frame["msgid"] == msgid {
            return (frame, skipped);
        }
        skipped.push(frame);
    }
}

/// Nodes of a cluster for tests outside `cluster.rs`: a fresh MariaDB database and a private Redis.
pub struct Nodes {
    /// Kept alive while the nodes run (and open for checks of what they stored).
    #[allow(dead_code)]
    pub db: Db,
    #[allow(dead_code)]
    pub redis: Redis,
    pub nodes: Vec<Server>,
}

impl Nodes {
    /// Starts `n` nodes with `--redis` and `extra` flags.
    pub fn start(n: usize, extra: &[&str]) -> Nodes {
        let db = Db::fresh(Backend::Mysql);
        let redis = Redis::start();
        let url = redis.url();
        let mut args = vec!["--redis", url.as_str()];
        args.extend_from_slice(extra);
        let nodes = (0..n).map(|_| Server::start(&db, &args)).collect();
        Nodes { db, redis, nodes }
    }
}

// People, groups, presence and typing (PROTOCOL-2 sections 5 and 6): helpers of `people.rs` and `groups.rs`.

/// Registers `names` (password "pw") on one connection without logging them in; returns their ids, in order.
pub fn register_all(server: &Server, names: &[&str]) -> Vec<i64> {
    let mut c = server.connect(Separator::Newline);
    names.iter().map(|n| c.register(n, "pw")).collect()
}

/// A v1 connection (NUL-separated, as the original client) logged in as `id` with password "pw".
pub fn v1_login(server: &Server, id: i64) -> Conn {
    let mut c = server.connect(Separator::Nul);
    c.login(id, "pw", 1);
    c
}

/// Sends `request` and reads until its answer (the frame with msgid `answer`) and `pushes` other frames have
/// come, in whatever order; returns the answer and the others in arrival order. An ERROR_MSG where an ack
/// was expected fails at once, as does a frame beyond the `pushes` expected.
pub fn req_and_pushes(
    c: &mut Conn,
    request: Value,
    answer: i64,
    pushes: usize,
) -> (Value, Vec<Value>) {
    c.send(request.clone());
    let mut reply = None;
    let mut others = Vec::new();
    while reply.is_none() || others.len() < pushes {
        let frame = c.recv();
        if reply.is_none() && frame["msgid"] == answer {
            reply = Some(frame);
            continue;
        }
        assert!(
            frame["msgid"] != 15,
            "{request} -> {frame} (wanted msgid {answer})"
        );
        others.push(frame);
        assert!(
            others.len() <= pushes,
            "{request}: more frames than the {pushes} expected besides its answer: {others:?}"
        );
    }
    (reply.expect("an answer"), others)
}

/// Sends `request` and asserts that its answer is `ack` with errno 0 (and the request's `seq`), with
/// `pushes` other frames before or after it; returns the ack and those frames.
pub fn acked_with_pushes(
    c: &mut Conn,
    request: Value,
    ack: i64,
    pushes: usize,
) -> (Value, Vec<Value>) {
    let (reply, others) = req_and_pushes(c, request.clone(), ack, pushes);
    assert_eq!(
        (reply["msgid"].clone(), reply["errno"].clone()),
        (json!(ack), json!(0)),
        "{request} -> {reply}"
    );
    assert_eq!(reply.get("seq"), request.get("seq"), "{request} -> {reply}");
    (reply, others)
}

/// Sends `request` and asserts that the next frame is its ack: msgid `ack`, errno 0, the request's `seq`.
pub fn acked_as(c: &mut Conn, request: Value, ack: i64) -> Value {
    acked_with_pushes(c, request, ack, 0).0
}

/// Sends `request` and asserts that the next frame is ERROR_MSG with `errno`, `ref` = the request's msgid,
/// an `errmsg` and the request's `seq`; returns it.
pub fn refused_with(c: &mut Conn, request: Value, errno: i64) -> Value {
    let reply = c.req(request.clone());
    assert_eq!(
        (
            reply["msgid"].clone(),
            reply["errno"].clone(),
            reply["ref"].clone()
        ),
        (json!(15), json!(errno), request["msgid"].clone()),
        "{request} -> {reply}"
    );
    assert!(reply["errmsg"].is_string(), "{reply}");
    assert_eq!(reply.get("seq"), request.get("seq"), "{request} -> {reply}");
    reply
}

/// The next frame with msgid `msgid`, asserting that exactly the frame `besides` comes too, before or after
/// it, and nothing else (for a push racing an answer or a message).
pub fn recv_around(c: &mut Conn, msgid: i64, besides: &Value) -> Value {
    let (mut wanted, mut seen) = (None, false);
    while wanted.is_none() || !seen {
        let frame = c.recv();
        if !seen && frame == *besides {
            seen = true;
        } else if wanted.is_none() && frame["msgid"] == msgid {
            wanted = Some(frame);
        } else {
            panic!("expected msgid {msgid} and {besides}, got {frame}");
        }
    }
    wanted.expect("the frame")
}

/// The next frame, waiting at most `wait` (for pushes that may take longer than `REPLY`).
pub fn recv_within(c: &mut Conn, wait: Duration) -> Value {
    match c.client.recv(Some(wait)) {
        Ok(Some(v)) => v,
        Ok(None) => panic!("server closed the connection"),
        Err(e) => panic!("no frame within {wait:?}: {e}"),
    }
}

/// Asserts that none of `conns` receives anything for `wait`: one window for all of them.
pub fn expect_all_silent(conns: &mut [&mut Conn], wait: Duration) {
    let deadline = Instant::now() + wait;
    for c in conns.iter_mut() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        c.expect_silence(left);
    }
}

/// Asserts that nothing is waiting for `c`: the next frame is the 101 answering an unknown msgid sent now.
/// For v1 connections, whose successes are silent and which get no pushes.
pub fn assert_nothing_queued(c: &mut Conn) {
    let reply = c.req(json!({"msgid": 99}));
    assert_eq!(
        (reply["msgid"].clone(), reply["errno"].clone()),
        (json!(15), json!(101)),
        "something came first: {reply}"
    );
}

/// Logs `id` in with a resume token for `device` on a new v2 connection to `addr`, retrying while the
/// device is still logged in (errno 2, a dropped connection not yet noticed), at most `within`; returns
/// the first other login ack.
pub fn token_login_eventually(
    addr: SocketAddr,
    id: i64,
    token: &str,
    device: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    let mut c = Conn::connect(addr, Separator::Newline);
    loop {
        let ack = c.req(json!({"msgid": 1, "id": id, "token": token, "v": 2, "device": device}));
        if ack["errno"] != 2 {
            return ack;
        }
        assert!(
            Instant::now() < deadline,
            "device {device:?} of user {id} still logged in after {within:?}: {ack}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates group `name` (no description) on a v2 connection, returning its id; CREATE_GROUP pushes nothing.
pub fn make_group(c: &mut Conn, name: &str) -> i64 {
    let ack = acked_as(c, json!({"msgid": 8, "groupname": name}), 13);
    ack["groupid"].as_i64().expect("groupid in the ack")
}

/// A GROUP_EVENT push (without the extra fields of `role` and `updated` events).
pub fn group_event(group: i64, event: &str, id: i64, by: i64) -> Value {
    json!({"msgid": 49, "groupid": group, "event": event, "id": id, "by": by})
}

/// GROUP_INFO's `group` object (asserting the ack's shape).
pub fn group_info(c: &mut Conn, group: i64) -> Value {
    let reply = acked_as(c, json!({"msgid": 47, "groupid": group}), 48);
    let g = &reply["group"];
    assert_eq!(g["id"], group, "{reply}");
    assert!(
        g["groupname"].is_string() && g["groupdesc"].is_string() && g["users"].is_array(),
        "{reply}"
    );
    g.clone()
}

// Pushes that the setups of the older tests cause (PROTOCOL-2 sections 5 and 6), asserted exactly.

/// Asserts that the next frame on `c` is the GROUP_EVENT of `user` joining `group` by ADD_GROUP (9): what
/// the v2 devices of the members (and the joiner's other devices) get; the joining connection has its ack.
pub fn joined(c: &mut Conn, group: i64, user: i64) {
    assert_eq!(
        c.recv(),
        group_event(group, "joined", user, user),
        "user {user} joined group {group}"
    );
}

/// Asserts that the next frame on `c` is the PRESENCE push of `user` with `state` ("online": their first
/// device logged in; "offline": their last one left): what the v2 devices of their online friends get.
pub fn presence(c: &mut Conn, user: i64, state: &str) {
    assert_eq!(
        c.recv(),
        json!({"msgid": 50, "id": user, "state": state}),
        "presence of user {user}"
    );
}
