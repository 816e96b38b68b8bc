//! Setup before the load: register and log in N users, spread round-robin over the given addresses, and
//! for group chat create the groups and join their members. Failures are counted, never fatal: the load
//! runs with the users that made it, and the report says how many did not.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cli::CommonArgs;
use crate::conn::Conn;
use crate::pool;

/// One bench user.
#[derive(Debug, Clone)]
pub struct User {
    /// Position in the run, 0..N; decides the node (round-robin) and the group.
    pub index: usize,
    pub id: i64,
    pub name: String,
    /// Which `--addr` this user connects to.
    pub addr_index: usize,
}

/// A logged-in user and its connection.
pub struct Session {
    pub user: User,
    pub conn: Conn,
}

/// Why one user's setup failed.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Register(String),
    Login(String),
    Group(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Register(e) => write!(f, "register: {e}"),
            Failure::Login(e) => write!(f, "login: {e}"),
            Failure::Group(e) => write!(f, "group setup: {e}"),
        }
    }
}

/// What setup achieved.
pub struct SetupReport {
    pub connect_failures: u64,
    pub register_failures: u64,
    pub login_failures: u64,
    pub group_failures: u64,
    /// The first few failure messages, to show what went wrong.
    pub samples: Vec<String>,
    /// Login round trips (request sent → ack), microseconds.
    pub login_us: Histogram<u64>,
    pub elapsed: Duration,
}

impl SetupReport {
    fn new() -> SetupReport {
        SetupReport {
            connect_failures: 0,
            register_failures: 0,
            login_failures: 0,
            group_failures: 0,
            samples: Vec::new(),
            login_us: latency_histogram(),
            elapsed: Duration::ZERO,
        }
    }

    /// Counts one failure.
    pub fn note(&mut self, failure: &Failure) {
        match failure {
            Failure::Connect(_) => self.connect_failures += 1,
            Failure::Register(_) => self.register_failures += 1,
            Failure::Login(_) => self.login_failures += 1,
            Failure::Group(_) => self.group_failures += 1,
        }
        if self.samples.len() < 5 {
            self.samples.push(failure.to_string());
        }
    }

    /// Connection-level failures of setup: connect, register, login and group steps.
    pub fn failures(&self) -> u64 {
        self.connect_failures + self.register_failures + self.login_failures + self.group_failures
    }

    /// Prints the failures seen, if any.
    pub fn warn(&self) {
        if self.failures() > 0 {
            eprintln!(
                "setup failures: {} connect, {} register, {} login, {} group; e.g. {:?}",
                self.connect_failures,
                self.register_failures,
                self.login_failures,
                self.group_failures,
                self.samples
            );
        }
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A prefix unique to this run (clock and pid), so that repeated runs against one database never ask
/// for a name that is taken.
pub fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("b{:08x}_", mixed >> 32)
}

/// Where user `index` connects: round-robin over the addresses.
pub fn addr_of(addrs: &[SocketAddr], index: usize) -> (usize, SocketAddr) {
    let at = index % addrs.len();
    (at, addrs[at])
}

/// Connects user `index` and registers it.
pub fn connect_and_register(
    common: &CommonArgs,
    prefix: &str,
    index: usize,
) -> Result<(Conn, User), Failure> {
    let (addr_index, addr) = addr_of(&common.setup.addrs, index);
    let mut conn = Conn::connect_with(addr, common.reply_timeout(), common.transport)
        .map_err(|e| Failure::Connect(format!("{addr}: {e}")))?;
    let name = format!("{prefix}{index}");
    let ack = conn
        .request(
            &json!({"msgid": 4, "name": name, "password": common.setup.password}),
            5,
            common.reply_timeout(),
        )
        .map_err(|e| Failure::Register(e.to_string()))?;
    let id = match (ack["errno"].as_i64(), ack["id"].as_i64()) {
        (Some(0), Some(id)) => id,
        _ => return Err(Failure::Register(ack.to_string())),
    };
    let user = User {
        index,
        id,
        name,
        addr_index,
    };
    Ok((conn, user))
}

/// What a login sends instead of the password.
pub enum Credential<'a> {
    Password(&'a str),
    Token(&'a str),
}

/// Logs `user` in on `conn` with protocol version `v`; returns the ack and the round trip.
pub fn login(
    conn: &mut Conn,
    user: &User,
    credential: Credential<'_>,
    v: u8,
    timeout: Duration,
) -> Result<(Value, Duration), Failure> {
    let mut frame = json!({"msgid": 1, "id": user.id});
    match credential {
        Credential::Password(p) => frame["password"] = json!(p),
        Credential::Token(t) => frame["token"] = json!(t),
    }
    if v == 2 {
        frame["v"] = json!(2);
    }
    let start = Instant::now();
    let ack = conn
        .request(&frame, 2, timeout)
        .map_err(|e| Failure::Login(e.to_string()))?;
    let took = start.elapsed();
    if ack["errno"].as_i64() != Some(0) {
        return Err(Failure::Login(ack.to_string()));
    }
    Ok((ack, took))
}

/// Registers and logs in users `0..n` with version `v`, `--login-concurrency` at a time. The result has
/// one slot per user: `None` where setup failed.
pub fn login_all(
    common: &CommonArgs,
    prefix: &str,
    n: usize,
    v: u8,
) -> (Vec<Option<Session>>, SetupReport) {
    let start = Instant::now();
    let outcomes = pool::map(
        (0..n).collect(),
        common.login_concurrency,
        "setup: register + login",
        |_, index| {
            let (mut conn, user) = connect_and_register(common, prefix, index)?;
            let (_, took) = login(
                &mut conn,
                &user,
                Credential::Password(&common.setup.password),
                v,
                common.reply_timeout(),
            )?;
            Ok::<_, Failure>((Session { user, conn }, took))
        },
    );
    let mut report = SetupReport::new();
    let sessions = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok((session, took)) => {
                let _ = report.login_us.record(micros(took));
                Some(session)
            }
            Err(failure) => {
                report.note(&failure);
                None
            }
        })
        .collect();
    report.elapsed = start.elapsed();
    (sessions, report)
}

/// The groups of a group-chat run: each user's group id (`None` when setup failed for it) and how many
/// members of each group are live.
pub struct Groups {
    pub group_of: Vec<Option<i64>>,
    /// Live members per group, by group number (user index / group size).
    pub live_members: Vec<usize>,
}

/// Creates one group per `group_size` consecutive users (the first live member creates it; the rest
/// join), using v2 acks to learn each group's id; then, with `relogin_v1`, every member logs out and in
/// again with v1, so the load itself runs on v1 connections exactly like the C++ client's.
pub fn make_groups(
    sessions: Vec<Option<Session>>,
    common: &CommonArgs,
    prefix: &str,
    group_size: usize,
    relogin_v1: bool,
    report: &mut SetupReport,
) -> (Vec<Option<Session>>, Groups) {
    let timeout = common.reply_timeout();
    let mut chunks: Vec<Vec<Option<Session>>> = Vec::new();
    let mut it = sessions.into_iter();
    loop {
        let chunk: Vec<_> = it.by_ref().take(group_size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let outcomes = pool::map(
        chunks,
        common.login_concurrency,
        "setup: groups",
        |number, members| {
            let password = relogin_v1.then_some(common.setup.password.as_str());
            setup_group(members, number, prefix, password, timeout)
        },
    );
    let mut sessions = Vec::new();
    let mut group_of = Vec::new();
    let mut live_members = Vec::new();
    for (members, gid, failures) in outcomes {
        for failure in &failures {
            report.note(failure);
        }
        live_members.push(members.iter().filter(|m| m.is_some()).count());
        for member in members {
            group_of.push(member.as_ref().and(gid));
            sessions.push(member);
        }
    }
    (
        sessions,
        Groups {
            group_of,
            live_members,
        },
    )
}

/// Sets up one group: create, join, then (given the password) log every member back in with v1.
fn setup_group(
    mut members: Vec<Option<Session>>,
    number: usize,
    prefix: &str,
    password: Option<&str>,
    timeout: Duration,
) -> (Vec<Option<Session>>, Option<i64>, Vec<Failure>) {
    let mut failures = Vec::new();
    let mut gid = None;
    for slot in members.iter_mut() {
        let Some(session) = slot else { continue };
        let result = match gid {
            None => create_group(session, &format!("{prefix}g{number}"), timeout).map(|id| {
                gid = Some(id);
            }),
            Some(id) => join_group(session, id, timeout),
        }
        .and_then(|()| match password {
            Some(password) => relogin_v1(session, password, timeout),
            None => Ok(()),
        });
        if let Err(failure) = result {
            failures.push(failure);
            *slot = None;
        }
    }
    (members, gid, failures)
}

fn create_group(session: &mut Session, name: &str, timeout: Duration) -> Result<i64, Failure> {
    let ack = session
        .conn
        .request(
            &json!({"msgid": 8, "groupname": name, "groupdesc": "chat-bench"}),
            13,
            timeout,
        )
        .map_err(|e| Failure::Group(e.to_string()))?;
    match (ack["errno"].as_i64(), ack["groupid"].as_i64()) {
        (Some(0), Some(id)) => Ok(id),
        _ => Err(Failure::Group(ack.to_string())),
    }
}

fn join_group(session: &mut Session, gid: i64, timeout: Duration) -> Result<(), Failure> {
    let ack = session
        .conn
        .request(&json!({"msgid": 9, "groupid": gid}), 14, timeout)
        .map_err(|e| Failure::Group(e.to_string()))?;
    expect_ok(&ack)
}

/// Logs out (v2 ack 11) and in again with v1.
fn relogin_v1(session: &mut Session, password: &str, timeout: Duration) -> Result<(), Failure> {
    let ack = session
        .conn
        .request(&json!({"msgid": 3}), 11, timeout)
        .map_err(|e| Failure::Group(e.to_string()))?;
    expect_ok(&ack)?;
    login(
        &mut session.conn,
        &session.user,
        Credential::Password(password),
        1,
        timeout,
    )?;
    Ok(())
}

fn expect_ok(ack: &Value) -> Result<(), Failure> {
    if ack["errno"].as_i64() == Some(0) {
        Ok(())
    } else {
        Err(Failure::Group(ack.to_string()))
    }
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Errors by errno seen in failure samples; used by the login storm.
pub fn errno_of(failure: &Failure) -> Option<i64> {
    let text = match failure {
        Failure::Login(t) | Failure::Register(t) | Failure::Group(t) => t,
        Failure::Connect(_) => return None,
    };
    serde_json::from_str::<Value>(text).ok()?["errno"].as_i64()
}

/// Counts failures by kind ("connect", "login errno 2", ...), for the login storm's report.
pub fn tally(failures: &[Failure]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for failure in failures {
        let key = match (failure, errno_of(failure)) {
            (Failure::Connect(_), _) => "connect".to_string(),
            (Failure::Login(_), Some(errno)) => format!("login errno {errno}"),
            (Failure::Login(_), None) => "login i/o".to_string(),
            (Failure::Register(_), _) => "register".to_string(),
            (Failure::Group(_), _) => "group".to_string(),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_go_round_robin_over_addresses() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(addr_of(&addrs, 0).0, 0);
        assert_eq!(addr_of(&addrs, 1).0, 1);
        assert_eq!(addr_of(&addrs, 2).0, 0);
    }

    #[test]
    fn prefixes_differ_between_runs() {
        let a = run_prefix();
        std::thread::sleep(Duration::from_millis(1));
        assert_ne!(a, run_prefix());
        assert!(a.len() <= 12);
    }

    #[test]
    fn failures_are_tallied_by_errno() {
        let failures = vec![
            Failure::Login(r#"{"msgid":2,"errno":2,"errmsg":"x"}"#.into()),
            Failure::Login(r#"{"msgid":2,"errno":2,"errmsg":"x"}"#.into()),
            Failure::Login("timed out".into()),
            Failure::Connect("refused".into()),
        ];
        let tally = tally(&failures);
        assert_eq!(tally["login errno 2"], 2);
        assert_eq!(tally["login i/o"], 1);
        assert_eq!(tally["connect"], 1);
    }
}
