//! The scenarios, each from setup to report: `one` and `group` (load steps, optionally a sweep), `idle`
//! (memory per held connection) and `login-storm` (everyone logs in at once).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use serde_json::json;

use crate::cli::{CommonArgs, LoadArgs, StormArgs};
use crate::conn::Conn;
use crate::dbsize;
use crate::flood::Flood;
use crate::load::{self, AckPlan, Kind, Plan, Target, Writer};
use crate::pool;
use crate::procfs::{self, Sample};
use crate::receive::{Reader, Receivers};
use crate::report::{self, IdleReport, RunReport, StepResult, StormReport};
use crate::setup::{self, Credential, Failure, Groups, Session, SetupReport};
use crate::stats::{self, Shared, Step};
use crate::ws::Masks;

/// How long before message 0 is due the senders are started.
const LEAD: Duration = Duration::from_millis(20);

/// `one` (no group size) or `group`.
pub fn chat(load: &LoadArgs, group_size: Option<usize>) -> anyhow::Result<()> {
    let rates = load.rates()?;
    let common = &load.common;
    let scenario = if group_size.is_some() { "group" } else { "one" };
    let n = users_for(common.users, group_size)?;
    check_open_files(n)?;
    let prefix = common
        .setup
        .prefix
        .clone()
        .unwrap_or_else(setup::run_prefix);
    eprintln!(
        "chat-bench {scenario}: {n} users over {} node(s), names {prefix}*",
        common.setup.addrs.len()
    );

    // Group setup needs v2 acks to learn the groups' ids; acknowledged sends need v2 for the load too.
    let version = if group_size.is_some() || load.ack {
        2
    } else {
        1
    };
    let (sessions, mut setup_report) = setup::login_all(common, &prefix, n, version);
    let (sessions, groups) = match group_size {
        Some(g) => {
            let (s, groups) =
                setup::make_groups(sessions, common, &prefix, g, !load.ack, &mut setup_report);
            (s, Some(groups))
        }
        None => (sessions, None),
    };
    setup_report.warn();
    let (mut writers, readers) = split_sessions(sessions, groups.as_ref(), &mut setup_report);
    ensure!(
        !writers.is_empty(),
        "no user could be set up: {:?}",
        setup_report.samples
    );
    let kind = match (group_size, groups) {
        (Some(group_size), Some(groups)) => Kind::Group {
            group_size,
            live_members: groups.live_members,
        },
        _ => Kind::One {
            recipients: writers
                .iter()
                .map(|w| Target {
                    id: w.user.id,
                    addr_index: w.user.addr_index,
                })
                .collect(),
            cross_node: load.cross_node,
            peers: load.peers,
        },
    };

    let db_before = match &load.sqlite_db {
        Some(path) => Some(dbsize::measure(path)?),
        None => None,
    };
    let shared = Arc::new(Shared::new());
    let receivers = Receivers::spawn(readers, load.receivers, shared.clone())
        .context("starting receiver threads")?;
    let tick = Duration::from_secs_f64(load.flood_tick_ms / 1e3);
    let flood = match load.flood_rate {
        Some(rate) => Some(Flood::start(
            common,
            &prefix,
            n,
            load.flood_kind,
            rate,
            tick,
        )?),
        None => None,
    };
    let template = StepResult {
        scenario: scenario.into(),
        label: common.setup.label.clone(),
        transport: common.transport.name().into(),
        n,
        live_users: writers.len(),
        nodes: common.setup.addrs.len(),
        group_size,
        cross_node: load.cross_node,
        msg_bytes: load.msg_bytes,
        flood_rate: load.flood_rate,
        duration_s: common.duration,
        ..StepResult::default()
    };
    let run = StepRunner {
        load,
        kind: &kind,
        shared: &shared,
        template: &template,
        seed: load.seed.unwrap_or_else(clock_seed),
        ticks: procfs::ticks_per_second(),
        setup_failures: setup_report.failures(),
    };
    let mut steps = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let result = run.step(i as u32 + 1, rate, &mut writers);
        let passed = result.passed;
        steps.push(result);
        if load.sweep.is_some() && !passed && !load.sweep_all && i + 1 < rates.len() {
            eprintln!(
                "rate {rate}/s did not pass: the sweep stops here (--sweep-all runs every rate)"
            );
            break;
        }
    }
    let flood = flood.map(Flood::stop);
    receivers.stop();
    drop(writers);
    let storage = match (&load.sqlite_db, &db_before) {
        (Some(path), Some(before)) => {
            let stored: u64 = steps
                .iter()
                .map(|s| if s.ack { s.acked } else { s.sent })
                .sum();
            Some(dbsize::report(
                path,
                before,
                &dbsize::measure(path)?,
                stored,
            ))
        }
        _ => None,
    };

    let max_sustained_rate = report::max_sustained_rate(&steps);
    let headline = max_sustained_rate
        .and_then(|r| steps.iter().find(|s| s.rate == r))
        .unwrap_or(&steps[0])
        .clone();
    let login = stats::percentiles(&setup_report.login_us);
    report::print_steps(&steps);
    report::print_acks(&steps);
    if let Some(flood) = &flood {
        report::print_flood(flood);
    }
    if let Some(storage) = &storage {
        report::print_storage(storage);
    }
    if load.sweep.is_some() {
        println!(
            "max sustained rate (loss <= {} %, p99 <= {} ms): {}",
            load.max_loss_pct,
            load.max_p99_ms,
            max_sustained_rate.map_or("none".to_string(), |r| format!("{r:.0} msg/s"))
        );
    }
    report::print_json(&RunReport {
        headline,
        max_sustained_rate,
        setup_s: setup_report.elapsed.as_secs_f64(),
        setup_failures: setup_report.failures(),
        login_p50_ms: login.p50,
        login_p99_ms: login.p99,
        steps,
        flood,
        storage,
    });
    Ok(())
}

/// Users of a run: at least 2; for group chat, whole groups only.
fn users_for(users: usize, group_size: Option<usize>) -> anyhow::Result<usize> {
    ensure!(users >= 2, "--users must be at least 2");
    match group_size {
        None => Ok(users),
        Some(g) => {
            ensure!((2..=10_000).contains(&g), "--group-size must be 2 to 10000");
            ensure!(users >= g, "--users must be at least --group-size");
            if !users.is_multiple_of(g) {
                eprintln!(
                    "--users {users} is not a multiple of --group-size {g}: using {}",
                    users / g * g
                );
            }
            Ok(users / g * g)
        }
    }
}

/// Splits each logged-in session into its writer (for a sender thread) and its reader.
fn split_sessions(
    sessions: Vec<Option<Session>>,
    groups: Option<&Groups>,
    report: &mut SetupReport,
) -> (Vec<Writer>, Vec<Reader>) {
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let Some(Session { user, mut conn }) = session else {
            continue;
        };
        let stream = match conn.stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                report.note(&Failure::Connect(format!("cannot split the socket: {e}")));
                continue;
            }
        };
        writers.push(Writer {
            group: groups.and_then(|g| g.group_of[i]),
            user,
            stream,
            alive: true,
            transport: conn.transport,
            masks: std::mem::replace(&mut conn.masks, Masks::new(1)),
            wire: Vec::new(),
        });
        readers.push(Reader {
            stream: conn.stream,
            decoder: conn.decoder,
        });
    }
    (writers, readers)
}

/// Everything a load step needs besides its rate.
struct StepRunner<'a> {
    load: &'a LoadArgs,
    kind: &'a Kind,
    shared: &'a Shared,
    template: &'a StepResult,
    seed: u64,
    ticks: u64,
    setup_failures: u64,
}

impl StepRunner<'_> {
    /// Sends at `rate` for the step's duration, waits out the grace period, and measures.
    fn step(&self, id: u32, rate: f64, writers: &mut [Writer]) -> StepResult {
        let load = self.load;
        let planned = (rate * load.common.duration).round() as u64;
        let step = Arc::new(Step::new(id, planned, load.receivers, load.ack));
        self.shared.set_step(Some(step.clone()));
        let counters_before = self.shared.snapshot();
        let server_before = procfs::sample_all(&load.common.setup.server_pids);
        let bench_before = procfs::sample(std::process::id());
        let machine_before = procfs::machine_ticks();
        let clock = &self.shared.clock;
        let start_ns = clock.now_ns() + LEAD.as_nanos() as u64;
        let chunk = writers.len().div_ceil(load.senders).max(1);
        let slices: Vec<&mut [Writer]> = writers.chunks_mut(chunk).collect();
        let plan = Plan {
            step: &step,
            clock,
            kind: self.kind,
            rate,
            start_ns,
            senders: slices.len(),
            msg_bytes: load.msg_bytes,
            seed: self.seed.wrapping_add(u64::from(id)),
            ack: load.ack.then_some(AckPlan {
                timeout_ns: (load.ack_timeout * 1e9) as u64,
                grace_ns: (load.grace * 1e9) as u64,
            }),
        };
        let label = format!("[{} {rate:.0}/s]", self.template.scenario);
        let mut progress = Progress::new(label, &step, self.shared);
        std::thread::scope(|scope| {
            let handles: Vec<_> = slices
                .into_iter()
                .enumerate()
                .map(|(k, slice)| {
                    let plan = &plan;
                    scope.spawn(move || load::send(k, slice, plan))
                })
                .collect();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(50));
                progress.tick();
            }
        });
        // The schedule spans planned / rate seconds; a late last write stretches it.
        let last = step.last_send_ns.load(Ordering::Relaxed);
        let send_s = last.saturating_sub(start_ns) as f64 / 1e9 + 1.0 / rate;
        let grace_end = Instant::now() + Duration::from_secs_f64(load.grace);
        let waiting = || {
            step.received.load(Ordering::Relaxed) < step.expected_total.load(Ordering::Relaxed)
                || (load.ack
                    && step.acked.load(Ordering::Relaxed) < step.sent.load(Ordering::Relaxed))
        };
        while Instant::now() < grace_end && waiting() {
            std::thread::sleep(Duration::from_millis(20));
            progress.tick();
        }
        // Receivers move latencies into the histograms after each batch of events.
        std::thread::sleep(Duration::from_millis(100));
        let server_after = procfs::sample_all(&load.common.setup.server_pids);
        let bench_after = procfs::sample(std::process::id());
        let machine_after = procfs::machine_ticks();
        self.shared.set_step(None);
        let counters = self.shared.snapshot().since(&counters_before);
        let mut result = self.result(rate, &step, send_s, &counters);
        self.add_server_usage(&mut result, server_before, server_after);
        result.bench_cpu_s = bench_before
            .zip(bench_after)
            .map(|(b, a)| procfs::usage(&b, &a, self.ticks).cpu_s);
        result.machine_busy_s = machine_before
            .zip(machine_after)
            .map(|((b, _), (a, _))| a.saturating_sub(b) as f64 / self.ticks as f64);
        result.other_cpu_s = match (
            result.machine_busy_s,
            result.server_cpu_s,
            result.bench_cpu_s,
        ) {
            (Some(m), Some(s), Some(b)) => Some((m - s - b).max(0.0)),
            _ => None,
        };
        result.passed = result.passes(load.max_loss_pct, load.max_p99_ms);
        result
    }

    fn result(
        &self,
        rate: f64,
        step: &Step,
        send_s: f64,
        counters: &stats::Snapshot,
    ) -> StepResult {
        let tally = step.tally();
        let latency = stats::percentiles(&step.latency());
        let duration = self.load.common.duration;
        let sent = step.sent.load(Ordering::Relaxed);
        let acked = step.acked.load(Ordering::Relaxed);
        // Without acks nothing is counted as unacknowledged.
        let unacked = if self.load.ack {
            sent.saturating_sub(acked)
        } else {
            0
        };
        let acks = stats::percentiles(&step.ack_latency());
        let send_time = send_s.max(duration);
        StepResult {
            ack: self.load.ack,
            acked,
            unacked,
            unacked_pct: if sent == 0 {
                0.0
            } else {
                unacked as f64 * 100.0 / sent as f64
            },
            acked_per_s: acked as f64 / send_time,
            resends: step.resends.load(Ordering::Relaxed),
            dup_acks: step.dup_acks.load(Ordering::Relaxed),
            late_acks: counters.late_acks,
            ack_p50_ms: acks.p50,
            ack_p90_ms: acks.p90,
            ack_p99_ms: acks.p99,
            ack_p999_ms: acks.p999,
            ack_max_ms: acks.max,
            rate,
            planned: step.planned,
            sent,
            achieved: sent as f64 / send_time,
            send_failures: step.send_failures.load(Ordering::Relaxed),
            split_writes: step.split_writes.load(Ordering::Relaxed),
            max_send_lag_ms: step.max_lag_ns.load(Ordering::Relaxed) as f64 / 1e6,
            expected: tally.expected,
            received: tally.received,
            duplicates: tally.duplicates,
            stale: counters.stale,
            loss_pct: stats::loss_pct(&tally),
            deliveries_per_s: tally.received as f64 / duration,
            p50_ms: latency.p50,
            p90_ms: latency.p90,
            p99_ms: latency.p99,
            p999_ms: latency.p999,
            max_ms: latency.max,
            mean_ms: latency.mean,
            errors: counters
                .errors
                .iter()
                .map(|(errno, n)| (errno.to_string(), *n))
                .collect(),
            errors_total: counters.errors_total(),
            conn_failures: self.setup_failures + counters.disconnects,
            disconnects: counters.disconnects,
            other_frames: counters.other_frames,
            malformed: counters.malformed,
            ..self.template.clone()
        }
    }

    fn add_server_usage(&self, r: &mut StepResult, before: Option<Sample>, after: Option<Sample>) {
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        let usage = procfs::usage(&before, &after, self.ticks);
        let per_msg = |x: f64| (r.received > 0).then(|| x / r.received as f64);
        r.server_cpu_s = Some(usage.cpu_s);
        r.server_cpu_us_per_msg = per_msg(usage.cpu_s * 1e6);
        r.server_rss_mb = Some(usage.rss_mb);
        r.server_peak_rss_mb = Some(usage.peak_rss_mb);
        r.server_threads = Some(usage.threads);
        r.ctx_switches = Some(usage.ctx_switches);
        r.ctx_switches_per_msg = per_msg(usage.ctx_switches as f64);
    }
}

/// The once-a-second progress line of a load step (stderr).
struct Progress<'a> {
    label: String,
    step: &'a Step,
    shared: &'a Shared,
    start: Instant,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(label: String, step: &'a Step, shared: &'a Shared) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            label,
            step,
            shared,
            start: now,
            last: now,
        }
    }

    fn tick(&mut self) {
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let recent = stats::percentiles(&self.step.take_interval());
        let counters = self.shared.snapshot();
        eprintln!(
            "{} {:>3.0}s sent {}{} received {}/{} p99 {:.2} ms (last second) errors {} disconnects {}",
            self.label,
            self.start.elapsed().as_secs_f64(),
            self.step.sent.load(Ordering::Relaxed),
            if self.step.acks.is_empty() {
                String::new()
            } else {
                format!(
                    " acked {} resent {}",
                    self.step.acked.load(Ordering::Relaxed),
                    self.step.resends.load(Ordering::Relaxed)
                )
            },
            self.step.received.load(Ordering::Relaxed),
            self.step.expected_total.load(Ordering::Relaxed),
            recent.p99,
            counters.errors_total(),
            counters.disconnects
        );
    }
}

/// `idle`: log in N users, hold them, and report the server's memory per connection.
pub fn idle(common: &CommonArgs) -> anyhow::Result<()> {
    common.validate()?;
    check_open_files(common.users)?;
    let prefix = common
        .setup
        .prefix
        .clone()
        .unwrap_or_else(setup::run_prefix);
    let pids = &common.setup.server_pids;
    let before = procfs::sample_all(pids);
    eprintln!(
        "chat-bench idle: {} users over {} node(s), names {prefix}*",
        common.users,
        common.setup.addrs.len()
    );
    let (sessions, setup_report) = setup::login_all(common, &prefix, common.users, 1);
    setup_report.warn();
    let readers: Vec<Reader> = sessions
        .into_iter()
        .flatten()
        .map(|s| Reader {
            stream: s.conn.stream,
            decoder: s.conn.decoder,
        })
        .collect();
    let connected = readers.len();
    let shared = Arc::new(Shared::new());
    let receivers = Receivers::spawn(readers, 1, shared.clone()).context("starting the reader")?;
    let held_from = procfs::sample_all(pids);
    let start = Instant::now();
    let mut peak_rss_kib = held_from.map_or(0, |s| s.rss_kib);
    while start.elapsed() < common.duration() {
        std::thread::sleep(Duration::from_secs(1).min(common.duration()));
        let now = procfs::sample_all(pids);
        peak_rss_kib = peak_rss_kib.max(now.map_or(0, |s| s.rss_kib));
        eprintln!(
            "[idle] {:>3.0}s holding {connected} connections, server RSS {} MiB, disconnects {}",
            start.elapsed().as_secs_f64(),
            now.map_or("-".into(), |s| format!("{:.1}", s.rss_kib as f64 / 1024.0)),
            shared.disconnects.load(Ordering::Relaxed)
        );
    }
    let after = procfs::sample_all(pids);
    let ticks = procfs::ticks_per_second();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let report = IdleReport {
        scenario: "idle".into(),
        label: common.setup.label.clone(),
        transport: common.transport.name().into(),
        n: common.users,
        connected,
        nodes: common.setup.addrs.len(),
        conn_failures: setup_report.failures(),
        setup_s: setup_report.elapsed.as_secs_f64(),
        hold_s: start.elapsed().as_secs_f64(),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        server_rss_before_mb: before.map(|s| mib(s.rss_kib)),
        server_rss_mb: after.map(|s| mib(s.rss_kib)),
        server_peak_rss_mb: after.map(|s| mib(s.hwm_kib.max(peak_rss_kib))),
        server_kib_per_conn: before.zip(after).and_then(|(b, a)| {
            (connected > 0).then(|| (a.rss_kib as f64 - b.rss_kib as f64) / connected as f64)
        }),
        server_threads: after.map(|s| s.threads),
        server_cpu_s_while_idle: held_from
            .zip(after)
            .map(|(b, a)| procfs::usage(&b, &a, ticks).cpu_s),
    };
    receivers.stop();
    let value = serde_json::to_value(&report)?;
    report::print_pairs(&value);
    report::print_json(&report);
    Ok(())
}

/// `login-storm`: register N users (and with tokens, log each in once to get one), then log them all
/// in at once with `--login-concurrency` workers, holding every connection until the storm is over.
pub fn login_storm(args: &StormArgs) -> anyhow::Result<()> {
    let common = &args.common;
    common.validate()?;
    check_open_files(common.users)?;
    let prefix = common
        .setup
        .prefix
        .clone()
        .unwrap_or_else(setup::run_prefix);
    eprintln!(
        "chat-bench login-storm: {} users over {} node(s), {} at once, names {prefix}*",
        common.users,
        common.setup.addrs.len(),
        common.login_concurrency
    );
    let start = Instant::now();
    let registered = pool::map(
        (0..common.users).collect(),
        common.login_concurrency,
        "register",
        |_, index| register_for_storm(common, &prefix, index, args.use_tokens),
    );
    let register_s = start.elapsed().as_secs_f64();
    let mut failures = Vec::new();
    let users: Vec<_> = registered
        .into_iter()
        .filter_map(|r| r.map_err(|f| failures.push(f)).ok())
        .collect();
    let registered = users.len();
    if users.is_empty() {
        bail!(
            "no user could be registered: {:?}",
            failures.first().map(|f| f.to_string())
        );
    }
    // Connections closed after registration are logged out by the server in the background.
    std::thread::sleep(Duration::from_secs(1));

    let pids = &common.setup.server_pids;
    let before = procfs::sample_all(pids);
    let start = Instant::now();
    let outcomes = pool::map(
        users,
        common.login_concurrency,
        "login storm",
        |_, (user, token)| storm_login(common, &user, token.as_deref()),
    );
    let storm_s = start.elapsed().as_secs_f64();
    let after = procfs::sample_all(pids);
    let mut latency = setup::latency_histogram();
    let mut held: Vec<Conn> = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok((conn, took)) => {
                let _ = latency.record(setup::micros(took));
                held.push(conn);
            }
            Err(f) => failures.push(f),
        }
    }
    let p = stats::percentiles(&latency);
    let cpu_s = before
        .zip(after)
        .map(|(b, a)| procfs::usage(&b, &a, procfs::ticks_per_second()).cpu_s);
    let report = StormReport {
        scenario: "login-storm".into(),
        label: common.setup.label.clone(),
        n: common.users,
        nodes: common.setup.addrs.len(),
        use_tokens: args.use_tokens,
        login_concurrency: common.login_concurrency,
        registered,
        register_s,
        logged_in: held.len(),
        failures: setup::tally(&failures),
        storm_s,
        logins_per_s: held.len() as f64 / storm_s.max(1e-9),
        login_p50_ms: p.p50,
        login_p90_ms: p.p90,
        login_p99_ms: p.p99,
        login_max_ms: p.max,
        server_cpu_s: cpu_s,
        server_cpu_ms_per_login: cpu_s
            .filter(|_| !held.is_empty())
            .map(|c| c * 1e3 / held.len() as f64),
        server_peak_rss_mb: after.map(|s| s.hwm_kib as f64 / 1024.0),
    };
    drop(held);
    let value = serde_json::to_value(&report)?;
    report::print_pairs(&value);
    report::print_json(&report);
    Ok(())
}

/// Registers one user and, with tokens, logs it in once (v2) to get a resume token; then disconnects.
fn register_for_storm(
    common: &CommonArgs,
    prefix: &str,
    index: usize,
    use_tokens: bool,
) -> Result<(setup::User, Option<String>), Failure> {
    let (mut conn, user) = setup::connect_and_register(common, prefix, index)?;
    if !use_tokens {
        return Ok((user, None));
    }
    let (ack, _) = setup::login(
        &mut conn,
        &user,
        Credential::Password(&common.setup.password),
        2,
        common.reply_timeout(),
    )?;
    match ack["token"].as_str() {
        Some(token) => Ok((user, Some(token.to_string()))),
        None => Err(Failure::Login(format!(
            "the login ack has no \"token\" (does this server hand out resume tokens?): {}",
            json!(ack)
        ))),
    }
}

/// One login of the storm: connect and log in; the time counts from the connect.
fn storm_login(
    common: &CommonArgs,
    user: &setup::User,
    token: Option<&str>,
) -> Result<(Conn, Duration), Failure> {
    let start = Instant::now();
    let (_, addr) = setup::addr_of(&common.setup.addrs, user.index);
    let mut conn = Conn::connect_with(addr, common.reply_timeout(), common.transport)
        .map_err(|e| Failure::Connect(format!("{addr}: {e}")))?;
    let (credential, v) = match token {
        Some(t) => (Credential::Token(t), 2),
        None => (Credential::Password(&common.setup.password), 1),
    };
    setup::login(&mut conn, user, credential, v, common.reply_timeout())?;
    Ok((conn, start.elapsed()))
}

/// Refuses to start when this process may not open enough sockets.
pub fn check_open_files(connections: usize) -> anyhow::Result<()> {
    if let Some(limit) = procfs::open_files_limit() {
        let needed = connections as u64 * 2 + 64;
        ensure!(
            limit >= needed,
            "{connections} connections need about {needed} open files (each socket is split into a \
             reading and a writing handle); the limit is {limit}: raise it with `ulimit -n {needed}`"
        );
    }
    Ok(())
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_runs_use_whole_groups() {
        assert_eq!(users_for(1_000, Some(20)).unwrap(), 1_000);
        assert_eq!(users_for(1_010, Some(20)).unwrap(), 1_000);
        assert!(users_for(10, Some(20)).is_err());
        assert!(users_for(1, None).is_err());
        assert_eq!(users_for(7, None).unwrap(), 7);
    }
}
