//! `presence`: what PRESENCE pushes cost a node when many friends log in at once (issue 11: "a user with
//! 1,000 friends logging in sends at most one frame per online friend device").
//!
//! Setup registers `--users` and makes each a friend of `--friends` others around a ring (user i
//! befriends i+1 ..= i+F/2 with ADD_FRIEND, pipelined on one v2 login, which then logs out), all over a
//! bounded pool. Then the storm: every user logs in as one v2 device, in a shuffled order so that each
//! login finds a different share of its friends online, with `--storm-concurrency` logins awaiting their
//! ack at once; the connections stay open and every frame is read as it arrives. Each login should send
//! one frame to each friend already online, so about F/2 per login and U·F/2 in all. Then every device
//! logs out (LOGOUT, whose v2 ack comes after the server announced it), in another shuffled order, and the
//! `offline` frames are judged alike. The server's CPU, memory and context switches are read from /proc
//! around each storm.
//!
//! A login's frames cannot be attributed to it at the server, but every PRESENCE frame names the user it
//! is about, so each login's fan-out is counted at the receivers, and every frame is checked against the
//! windows in which the bench knows each device was (or was not) online: see `presence_tally`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use crate::cli::{CommonArgs, PresenceArgs};
use crate::conn::{Conn, ERROR_MSG};
use crate::load::Rng;
use crate::pool;
use crate::presence_io::{DeviceLog, StormRun, Storms};
use crate::presence_tally::{self, Frame, PhaseTally, Ring, Seen, Window};
use crate::procfs::{self, Sample};
use crate::report;
use crate::scenario;
use crate::setup::{self, User};
use crate::stats;

/// The device name of the setup logins, and of the storm's: distinct, so that a setup device still
/// being released could never be taken for the storm's.
const SETUP_DEVICE: &str = "bench-setup";
const STORM_DEVICE: &str = "bench-storm";
/// ADD_FRIEND and its v2 ack.
const ADD_FRIEND: i64 = 7;
const ADD_FRIEND_ACK: i64 = 12;
/// Storage could not carry the request out (SQLite busy): setup sends it again after a pause.
const BUSY: i64 = 109;
const BUSY_PAUSE: Duration = Duration::from_millis(50);
/// Requests one user's setup may send again before it counts as failed.
const RETRIES: u64 = 50;
/// A storm counts as settled when no PRESENCE frame came for this long.
const QUIET: Duration = Duration::from_secs(1);

/// Why one user's friendships could not be made.
#[derive(Debug, thiserror::Error)]
enum FriendFailure {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("login: {0}")]
    Login(String),
    #[error("ADD_FRIEND: {0}")]
    AddFriend(String),
    #[error("logout: {0}")]
    Logout(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The figures of one storm (logins or logouts).
#[derive(Debug, Clone, Serialize)]
pub struct StormFigures {
    /// Requests written, answered with success, and what went wrong otherwise.
    pub requests: u64,
    pub succeeded: u64,
    pub failures: BTreeMap<String, u64>,
    /// From the first request until the last answer, and successes per second of it.
    pub storm_s: f64,
    pub per_s: f64,
    /// Request written (for a login: connect started) until its answer was read.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// PRESENCE frames of this storm's state, judged (see `presence_tally`).
    #[serde(flatten)]
    pub presence: PhaseTally,
    /// Frames per event (login or logout) announced.
    pub frames_per_event: f64,
    /// The last PRESENCE frame came this long after the storm's last answer.
    pub last_frame_after_ms: f64,
    #[serde(flatten)]
    pub cost: Cost,
}

/// What a storm cost the server and the machine, from the first request until it settled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ms_per_event: Option<f64>,
    pub ctx_switches: Option<u64>,
    pub ctx_switches_per_event: Option<f64>,
    pub server_rss_mb: Option<f64>,
    /// VmHWM: the peak since the server started (the storms hold the most connections it ever had).
    pub server_peak_rss_mb: Option<f64>,
    pub server_threads: Option<u64>,
    /// The tool's own CPU, the whole machine's busy CPU, and what neither used (other work).
    pub bench_cpu_s: Option<f64>,
    pub machine_busy_s: Option<f64>,
    pub other_cpu_s: Option<f64>,
    /// /proc/loadavg (1, 5, 15 minutes) before and after.
    pub load_before: String,
    pub load_after: String,
}

/// The JSON line of `presence`.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceReport {
    pub scenario: String,
    pub label: String,
    pub users: usize,
    pub friends: usize,
    /// Friendships made: U × F / 2, which is also the online frames expected (one per pair: to the one of
    /// the two who logged in first), give or take pairs whose logins overlapped.
    pub friendships: usize,
    pub nodes: usize,
    pub storm_concurrency: usize,
    pub readers: usize,
    pub seed: u64,
    pub setup_s: f64,
    /// Setup requests sent again after errno 109 (storage busy).
    pub setup_retries: u64,
    pub login: StormFigures,
    pub logout: Option<StormFigures>,
    /// PRESENCE frames (of either state) that came before the device's own login ack, and after its
    /// logout ack.
    pub before_login_ack: u64,
    pub after_logout_ack: u64,
    /// What the devices believed of their friends after the login storm.
    pub views: presence_tally::Views,
    /// ERROR_MSG frames, other frames, and connections the server closed.
    pub errors: BTreeMap<String, u64>,
    pub other_frames: u64,
    pub closed_by_server: u64,
    /// No device got a friend's state twice or while it was not online, and no event reached more
    /// devices than the friends who could have been online: at most one frame per online friend device.
    pub contract_holds: bool,
    /// Every frame that had to come came, and every device was told every friend's "online" (by its login
    /// ack or a frame, in whatever order).
    pub complete: bool,
}

pub fn presence(args: &PresenceArgs) -> anyhow::Result<()> {
    let common = args.common()?;
    let ring = Ring::new(args.users, args.friends)?;
    scenario::check_open_files(args.users)?;
    let prefix = common
        .setup
        .prefix
        .clone()
        .unwrap_or_else(setup::run_prefix);
    let seed = args.seed.unwrap_or_else(clock_seed);
    let timeout = common.reply_timeout();
    eprintln!(
        "chat-bench presence: {} users with {} friends each ({} friendships) over {} node(s), names \
         {prefix}*, seed {seed}",
        ring.users(),
        ring.friends(),
        ring.pairs(),
        common.setup.addrs.len()
    );
    let start = Instant::now();
    let users = register_all(&common, &prefix)?;
    let setup_retries = befriend_all(&common, &ring, &users)?;
    let setup_s = start.elapsed().as_secs_f64();
    eprintln!("presence: setup took {setup_s:.1} s");
    // Every setup device logged out with an ack, so none is online; a moment for the setup's closes.
    std::thread::sleep(Duration::from_secs(1));

    let mut storms = Storms::start(users.len(), args.readers).context("starting the readers")?;
    let logins: Vec<(usize, SocketAddr, i64)> = shuffled(users.len(), seed)
        .into_iter()
        .map(|i| (i, setup::addr_of(&common.setup.addrs, i).1, users[i].id))
        .collect();
    let meter = Meter::start(&common.setup.server_pids);
    let login_run = storms.login_storm(
        &logins,
        &common.setup.password,
        STORM_DEVICE,
        args.storm_concurrency,
        timeout,
    );
    storms.settle(QUIET, Duration::from_secs_f64(args.grace));
    let login_cost = meter.finish();
    let login_last_frame = storms.last_presence_ns();

    let logout = if args.no_logout {
        None
    } else {
        let order = shuffled(users.len(), seed ^ 0x5EED_0FF1_CE00_0000);
        let meter = Meter::start(&common.setup.server_pids);
        let run = storms.logout_storm(&order, args.storm_concurrency, timeout);
        storms.settle(QUIET, Duration::from_secs_f64(args.grace));
        Some((run, meter.finish(), storms.last_presence_ns()))
    };
    let logs = storms.finish();

    let index_of: HashMap<i64, usize> = users.iter().map(|u| (u.id, u.index)).collect();
    let seen = to_seen(
        &logs,
        &login_run,
        logout.as_ref().map(|(run, _, _)| run),
        &index_of,
    );
    let views = presence_tally::views(&ring, &seen);
    let login = figures(
        &ring,
        &seen,
        &logs,
        &login_run,
        true,
        login_cost,
        login_last_frame,
    );
    let logout =
        logout.map(|(run, cost, last)| figures(&ring, &seen, &logs, &run, false, cost, last));
    let phases = std::iter::once(&login).chain(logout.as_ref());
    let contract_holds = phases.clone().all(|f| f.presence.within_contract())
        && logs.iter().all(|l| l.after_logout == 0);
    let complete = phases.clone().all(|f| f.presence.missing == 0) && views.stale_union == 0;
    let mut errors = BTreeMap::new();
    for errno in logs.iter().flat_map(|l| &l.errors) {
        *errors.entry(errno.to_string()).or_insert(0) += 1;
    }
    let report = PresenceReport {
        scenario: "presence".into(),
        label: common.setup.label.clone(),
        users: ring.users(),
        friends: ring.friends(),
        friendships: ring.pairs(),
        nodes: common.setup.addrs.len(),
        storm_concurrency: args.storm_concurrency,
        readers: args.readers,
        seed,
        setup_s,
        setup_retries,
        login,
        logout,
        before_login_ack: logs.iter().map(|l| l.before_ack).sum(),
        after_logout_ack: logs.iter().map(|l| l.after_logout).sum(),
        views,
        errors,
        other_frames: logs.iter().map(|l| l.other_frames).sum(),
        closed_by_server: logs.iter().filter(|l| l.closed).count() as u64,
        contract_holds,
        complete,
    };
    print_report(&report);
    report::print_json(&report);
    Ok(())
}

/// Registers users `0..U`; every one must succeed, or the ring (and every check) would have holes.
fn register_all(common: &CommonArgs, prefix: &str) -> anyhow::Result<Vec<User>> {
    let outcomes = pool::map(
        (0..common.users).collect(),
        common.login_concurrency,
        "presence setup: register",
        |_, index| setup::connect_and_register(common, prefix, index).map(|(_, user)| user),
    );
    let mut users = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(user) => users.push(user),
            Err(f) => failures.push(f),
        }
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} users could not be registered, e.g. {first}",
            failures.len(),
            common.users
        );
    }
    Ok(users)
}

/// Makes the ring's friendships: each user logs in (v2), asks its F/2 with ADD_FRIEND, logs out. Returns
/// the requests that had to be sent again because storage was busy (errno 109).
fn befriend_all(common: &CommonArgs, ring: &Ring, users: &[User]) -> anyhow::Result<u64> {
    let outcomes = pool::map(
        (0..users.len()).collect(),
        common.login_concurrency,
        "presence setup: friends",
        |_, index| befriend(common, ring, users, index),
    );
    let mut retries = 0;
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(r) => retries += r,
            Err(f) => failures.push(f),
        }
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} users could not make their friendships, e.g. {first}",
            failures.len(),
            users.len()
        );
    }
    if retries > 0 {
        eprintln!("presence setup: {retries} requests sent again after errno 109 (storage busy)");
    }
    Ok(retries)
}

/// One user's ADD_FRIEND requests, written at once and each acknowledged (v2 answers 12). A request that
/// storage could not carry out (109: SQLite busy under the setup's concurrent writes) is sent again, up
/// to [`RETRIES`] times per user: ADD_FRIEND of a friend is harmless. Returns the requests sent again.
fn befriend(
    common: &CommonArgs,
    ring: &Ring,
    users: &[User],
    index: usize,
) -> Result<u64, FriendFailure> {
    let timeout = common.reply_timeout();
    let user = &users[index];
    let (_, addr) = setup::addr_of(&common.setup.addrs, index);
    let mut conn = Conn::connect(addr, timeout).map_err(FriendFailure::Connect)?;
    let login = json!({"msgid": 1, "id": user.id, "password": common.setup.password, "v": 2, "device": SETUP_DEVICE});
    let mut retries = 0;
    loop {
        let ack = conn.request(&login, 2, timeout)?;
        match ack["errno"].as_i64() {
            Some(0) => break,
            Some(BUSY) if retries < RETRIES => {
                retries += 1;
                std::thread::sleep(BUSY_PAUSE);
            }
            _ => return Err(FriendFailure::Login(ack.to_string())),
        }
    }
    // Each request carries its friend's id as `seq`, which an ERROR_MSG echoes.
    let ask = |id: i64| {
        let mut bytes = json!({"msgid": ADD_FRIEND, "friendid": id, "seq": id})
            .to_string()
            .into_bytes();
        bytes.push(0);
        bytes
    };
    let mut left: BTreeSet<i64> = ring.asks(index).map(|j| users[j].id).collect();
    let batch: Vec<u8> = left.iter().flat_map(|&id| ask(id)).collect();
    conn.stream.write_all(&batch)?;
    while !left.is_empty() {
        let reply = conn.recv(timeout)?;
        let errno = reply["errno"].as_i64();
        match reply["msgid"].as_i64() {
            Some(ADD_FRIEND_ACK) if errno == Some(0) => {
                left.remove(&reply["friendid"].as_i64().unwrap_or(0));
            }
            Some(ERROR_MSG) if errno == Some(BUSY) && retries < RETRIES => {
                let Some(id) = reply["seq"].as_i64().filter(|id| left.contains(id)) else {
                    return Err(FriendFailure::AddFriend(reply.to_string()));
                };
                retries += 1;
                std::thread::sleep(BUSY_PAUSE);
                conn.stream.write_all(&ask(id))?;
            }
            Some(ADD_FRIEND_ACK | ERROR_MSG) => {
                return Err(FriendFailure::AddFriend(reply.to_string()));
            }
            _ => {}
        }
    }
    let ack = conn.request(&json!({"msgid": 3}), 11, timeout)?;
    if ack["errno"].as_i64() != Some(0) {
        return Err(FriendFailure::Logout(ack.to_string()));
    }
    Ok(retries)
}

/// `0..n` in an order drawn from `seed` (Fisher–Yates).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Puts the readers' logs and the driver's send times together, by user index, for the tally.
fn to_seen(
    logs: &[DeviceLog],
    login: &StormRun,
    logout: Option<&StormRun>,
    index_of: &HashMap<i64, usize>,
) -> Vec<Seen> {
    logs.iter()
        .enumerate()
        .map(|(i, log)| Seen {
            login: login.sent_ns[i].map(|start| Window {
                start,
                end: log.login_ack.map(|(at, _)| at),
            }),
            logged_in: matches!(log.login_ack, Some((_, 0))),
            logout: logout.and_then(|run| run.sent_ns[i]).map(|start| Window {
                start,
                end: log.logout_ack_ns,
            }),
            ack_online: log
                .ack_online
                .iter()
                .filter_map(|id| index_of.get(id).copied())
                .collect(),
            frames: log
                .presence
                .iter()
                .map(|&(id, online)| Frame {
                    from: index_of.get(&id).copied(),
                    online,
                })
                .collect(),
            before_ack: log.before_ack as usize,
        })
        .collect()
}

/// One storm's figures: answers and their latency, the PRESENCE tally, the cost.
fn figures(
    ring: &Ring,
    seen: &[Seen],
    logs: &[DeviceLog],
    run: &StormRun,
    online: bool,
    mut cost: Cost,
    last_frame_ns: u64,
) -> StormFigures {
    let mut latency = setup::latency_histogram();
    let mut failures = run.failures.clone();
    let mut requests = 0;
    let mut succeeded = 0;
    for (i, log) in logs.iter().enumerate() {
        let Some(sent) = run.sent_ns[i] else { continue };
        requests += 1;
        let answer = if online {
            log.login_ack
        } else {
            log.logout_ack_ns.map(|at| (at, 0))
        };
        let key = match answer {
            Some((at, 0)) => {
                succeeded += 1;
                record(&mut latency, at.saturating_sub(sent));
                continue;
            }
            Some((_, errno)) => format!("errno {errno}"),
            None if log.closed => "closed by the server".into(),
            None if !online && !log.errors.is_empty() => "ERROR_MSG".into(),
            None => "no answer".into(),
        };
        *failures.entry(key).or_insert(0) += 1;
    }
    let storm_s = run.last_ns.saturating_sub(run.first_ns) as f64 / 1e9;
    let p = stats::percentiles(&latency);
    let presence = presence_tally::tally(ring, seen, online);
    let per = |x: f64, n: u64| (n > 0).then(|| x / n as f64);
    cost.server_cpu_ms_per_event = cost
        .server_cpu_s
        .and_then(|c| per(c * 1e3, presence.events));
    cost.ctx_switches_per_event = cost
        .ctx_switches
        .and_then(|c| per(c as f64, presence.events));
    StormFigures {
        requests,
        succeeded,
        failures,
        storm_s,
        per_s: succeeded as f64 / storm_s.max(1e-9),
        p50_ms: p.p50,
        p90_ms: p.p90,
        p99_ms: p.p99,
        max_ms: p.max,
        frames_per_event: per(presence.frames as f64, presence.events).unwrap_or(0.0),
        last_frame_after_ms: last_frame_ns.saturating_sub(run.last_ns) as f64 / 1e6,
        presence,
        cost,
    }
}

fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1_000).max(1));
}

/// Readings of the server, the tool and the machine at the start of a storm.
struct Meter<'a> {
    pids: &'a [u32],
    server: Option<Sample>,
    bench: Option<Sample>,
    machine: Option<(u64, u64)>,
    load: String,
}

impl<'a> Meter<'a> {
    fn start(pids: &'a [u32]) -> Meter<'a> {
        Meter {
            pids,
            server: procfs::sample_all(pids),
            bench: procfs::sample(std::process::id()),
            machine: procfs::machine_ticks(),
            load: load_average(),
        }
    }

    fn finish(self) -> Cost {
        let ticks = procfs::ticks_per_second();
        let server = self
            .server
            .zip(procfs::sample_all(self.pids))
            .map(|(b, a)| procfs::usage(&b, &a, ticks));
        let bench_cpu_s = self
            .bench
            .zip(procfs::sample(std::process::id()))
            .map(|(b, a)| procfs::usage(&b, &a, ticks).cpu_s);
        let machine_busy_s = self
            .machine
            .zip(procfs::machine_ticks())
            .map(|((b, _), (a, _))| a.saturating_sub(b) as f64 / ticks as f64);
        let other_cpu_s = match (machine_busy_s, server, bench_cpu_s) {
            (Some(m), Some(s), Some(b)) => Some((m - s.cpu_s - b).max(0.0)),
            _ => None,
        };
        Cost {
            server_cpu_s: server.map(|u| u.cpu_s),
            ctx_switches: server.map(|u| u.ctx_switches),
            server_rss_mb: server.map(|u| u.rss_mb),
            server_peak_rss_mb: server.map(|u| u.peak_rss_mb),
            server_threads: server.map(|u| u.threads),
            bench_cpu_s,
            machine_busy_s,
            other_cpu_s,
            load_before: self.load,
            load_after: load_average(),
            ..Cost::default()
        }
    }
}

/// The first three fields of /proc/loadavg: the machine is shared, and this says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The table for people (stdout), before the JSON line.
fn print_report(r: &PresenceReport) {
    println!(
        "{:>7} {:>6} {:>6} {:>7} {:>8} {:>7} {:>7} {:>8} {:>8} {:>6} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>7}",
        "storm",
        "reqs",
        "ok",
        "s",
        "per s",
        "p50ms",
        "p99ms",
        "maxms",
        "frames",
        "f/ev",
        "maxfo",
        "must",
        "miss",
        "unexp",
        "dup",
        "over",
        "cpu s",
        "ctxsw",
        "peakMiB"
    );
    let row = |name: &str, f: &StormFigures| {
        let t = &f.presence;
        println!(
            "{name:>7} {:>6} {:>6} {:>7.2} {:>8.0} {:>7.1} {:>7.1} {:>8.1} {:>8} {:>6.2} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>7}",
            f.requests,
            f.succeeded,
            f.storm_s,
            f.per_s,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            t.frames,
            f.frames_per_event,
            t.max_fanout,
            t.must,
            t.missing,
            t.unexpected + t.strangers,
            t.duplicates,
            t.over_bound,
            f.cost
                .server_cpu_s
                .map_or("-".into(), |c| format!("{c:.2}")),
            f.cost.ctx_switches.map_or("-".into(), |c| c.to_string()),
            f.cost
                .server_peak_rss_mb
                .map_or("-".into(), |c| format!("{c:.1}")),
        );
    };
    row("login", &r.login);
    if let Some(logout) = &r.logout {
        row("logout", logout);
    }
    println!(
        "friendships {} (online frames expected ≈ {}); frames before a login ack {} (online ones the ack \
         then showed offline: {}), after a logout ack {}; stale views in arrival order {} ({} states), \
         of ack and frames together {}; contract holds: {}; complete: {}",
        r.friendships,
        r.friendships,
        r.before_login_ack,
        r.views.overridden_by_ack,
        r.after_logout_ack,
        r.views.stale_in_order,
        r.views.stale_states_in_order,
        r.views.stale_union,
        r.contract_holds,
        r.complete
    );
    for sample in std::iter::once(&r.login)
        .chain(r.logout.as_ref())
        .flat_map(|f| &f.presence.samples)
        .chain(&r.views.samples)
    {
        println!("  problem: {sample}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_and_follow_the_seed() {
        let a = shuffled(1_000, 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1_000).collect::<Vec<_>>());
        assert_eq!(a, shuffled(1_000, 7));
        assert_ne!(a, shuffled(1_000, 8));
        assert_ne!(a, sorted, "shuffled");
        assert!(shuffled(0, 1).is_empty());
    }

    #[test]
    fn logs_become_windows_by_index() {
        let logs = vec![
            DeviceLog {
                login_ack: Some((50, 0)),
                ack_online: vec![102, 999],
                presence: vec![(101, true), (999, false)],
                logout_ack_ns: Some(500),
                ..DeviceLog::default()
            },
            DeviceLog {
                login_ack: Some((60, 2)),
                ..DeviceLog::default()
            },
            DeviceLog::default(),
        ];
        let login = StormRun {
            sent_ns: vec![Some(10), Some(20), None],
            ..StormRun::default()
        };
        let logout = StormRun {
            sent_ns: vec![Some(400), None, None],
            ..StormRun::default()
        };
        let index_of: HashMap<i64, usize> = [(100, 0), (101, 1), (102, 2)].into_iter().collect();
        let seen = to_seen(&logs, &login, Some(&logout), &index_of);
        assert_eq!(
            seen[0].login,
            Some(Window {
                start: 10,
                end: Some(50)
            })
        );
        assert!(seen[0].logged_in && !seen[1].logged_in);
        assert_eq!(
            seen[0].logout,
            Some(Window {
                start: 400,
                end: Some(500)
            })
        );
        assert_eq!(seen[0].ack_online, vec![2]);
        assert_eq!(
            seen[0].frames,
            vec![
                Frame {
                    from: Some(1),
                    online: true
                },
                Frame {
                    from: None,
                    online: false
                }
            ]
        );
        assert!(seen[2].login.is_none());
        let ring = Ring::new(3, 2).unwrap();
        let f = figures(&ring, &seen, &logs, &login, true, Cost::default(), 0);
        assert_eq!((f.requests, f.succeeded), (2, 1));
        assert_eq!(f.failures.get("errno 2"), Some(&1));
        assert!(f.p50_ms > 0.0);
    }
}
