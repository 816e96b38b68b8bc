//! What the tool prints at the end: a table for people (stdout), then ONE JSON line with every figure for
//! scripts (`bench/run.sh` reads it, `plot` draws from it). Progress lines go to stderr while it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flood::FloodReport;

/// The figures of one load step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepResult {
    pub scenario: String,
    pub label: String,
    /// Users asked for, and those whose setup succeeded.
    pub n: usize,
    pub live_users: usize,
    pub nodes: usize,
    pub group_size: Option<usize>,
    pub cross_node: bool,
    pub msg_bytes: usize,
    /// Requests per second of the flooding connection running beside the load (`--flood-rate`).
    pub flood_rate: Option<f64>,
    /// Offered rate (messages per second) and the step's length.
    pub rate: f64,
    pub duration_s: f64,
    pub planned: u64,
    pub sent: u64,
    /// Messages written per second of the schedule.
    pub achieved: f64,
    pub send_failures: u64,
    pub split_writes: u64,
    /// Latest a message went out after its due time: when large, the tool itself could not keep up.
    pub max_send_lag_ms: f64,
    /// Deliveries expected (1 per one-to-one message, live members − 1 per group message) and received.
    pub expected: u64,
    pub received: u64,
    pub duplicates: u64,
    /// Deliveries of an earlier step that arrived during this one.
    pub stale: u64,
    pub loss_pct: f64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// ERROR_MSG frames by errno.
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    /// Setup failures plus connections lost during the step.
    pub conn_failures: u64,
    pub disconnects: u64,
    pub other_frames: u64,
    pub malformed: u64,
    pub server_cpu_s: Option<f64>,
    /// Server CPU per delivered message (per delivery, for group chat).
    pub server_cpu_us_per_msg: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
    pub server_threads: Option<u64>,
    pub ctx_switches: Option<u64>,
    pub ctx_switches_per_msg: Option<f64>,
    /// CPU seconds the bench itself used during the step: it shares the machine with the server.
    pub bench_cpu_s: Option<f64>,
    /// CPU seconds the whole machine was busy during the step, and what of it neither the server nor the
    /// bench used (other processes, the kernel's own work, Redis and MariaDB when they are involved).
    pub machine_busy_s: Option<f64>,
    pub other_cpu_s: Option<f64>,
    /// Loss, p99 and achieved rate within the limits (`--max-loss-pct`, `--max-p99-ms`, ≥ 95 % of rate).
    pub passed: bool,
}

impl StepResult {
    /// Whether this step counts as sustained.
    pub fn passes(&self, max_loss_pct: f64, max_p99_ms: f64) -> bool {
        self.sent > 0
            && self.loss_pct <= max_loss_pct
            && self.p99_ms <= max_p99_ms
            && self.achieved >= 0.95 * self.rate
    }
}

/// The highest rate among passing steps.
pub fn max_sustained_rate(steps: &[StepResult]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.rate)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

/// The JSON line of `one` and `group`: the headline step's figures at the top level (the highest passing
/// rate of a sweep, else the first step), the setup's, and every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub headline: StepResult,
    pub max_sustained_rate: Option<f64>,
    pub setup_s: f64,
    pub setup_failures: u64,
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    pub steps: Vec<StepResult>,
    /// What the flooding connection did, with `--flood-rate`.
    pub flood: Option<FloodReport>,
}

/// The JSON line of `idle`.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: String,
    pub label: String,
    pub n: usize,
    pub connected: usize,
    pub nodes: usize,
    pub conn_failures: u64,
    pub setup_s: f64,
    pub hold_s: f64,
    pub disconnects: u64,
    pub server_rss_before_mb: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
    /// (RSS with the connections − RSS before setup) / connections.
    pub server_kib_per_conn: Option<f64>,
    pub server_threads: Option<u64>,
    pub server_cpu_s_while_idle: Option<f64>,
}

/// The JSON line of `login-storm`.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub scenario: String,
    pub label: String,
    pub n: usize,
    pub nodes: usize,
    pub use_tokens: bool,
    pub login_concurrency: usize,
    pub registered: usize,
    pub register_s: f64,
    pub logged_in: usize,
    pub failures: BTreeMap<String, u64>,
    /// From the first connect of the storm until the last login ack.
    pub storm_s: f64,
    pub logins_per_s: f64,
    pub login_p50_ms: f64,
    pub login_p90_ms: f64,
    pub login_p99_ms: f64,
    pub login_max_ms: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ms_per_login: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
}

/// Prints the steps as a table.
pub fn print_steps(steps: &[StepResult]) {
    println!(
        "{:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>7} {:>4}",
        "rate",
        "achieved",
        "expected",
        "received",
        "loss%",
        "p50ms",
        "p90ms",
        "p99ms",
        "p99.9ms",
        "maxms",
        "errors",
        "disc",
        "cpuµs/m",
        "ctx/m",
        "ok"
    );
    for s in steps {
        println!(
            "{:>9.0} {:>9.0} {:>9} {:>9} {:>8.3} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>6} {:>6} {:>8} {:>7} {:>4}",
            s.rate,
            s.achieved,
            s.expected,
            s.received,
            s.loss_pct,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.p999_ms,
            s.max_ms,
            s.errors_total,
            s.disconnects,
            opt(s.server_cpu_us_per_msg, 1),
            opt(s.ctx_switches_per_msg, 2),
            if s.passed { "yes" } else { "no" }
        );
    }
}

/// Prints what the flooding connection did.
pub fn print_flood(f: &FloodReport) {
    println!(
        "flood: {:.0}/s offered, {} sent ({:.0}/s) in {:.1} s; refused (107) {}, other replies {}, closed by \
         the server {} times, logins {} (failed {})",
        f.rate,
        f.sent,
        f.achieved,
        f.seconds,
        f.refused_107,
        f.other_replies,
        f.closed_by_server,
        f.logins,
        f.login_failures
    );
}

/// Prints `key value` lines for a flat JSON object.
pub fn print_pairs(value: &serde_json::Value) {
    if let Some(map) = value.as_object() {
        for (key, v) in map {
            println!("{key:>28}  {v}");
        }
    }
}

/// Prints the single JSON line.
pub fn print_json<T: Serialize>(report: &T) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("cannot encode the report: {e}"),
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, loss_pct: f64, p99_ms: f64, achieved: f64) -> StepResult {
        let mut s = StepResult {
            rate,
            loss_pct,
            p99_ms,
            achieved,
            sent: 1,
            ..StepResult::default()
        };
        s.passed = s.passes(0.1, 200.0);
        s
    }

    #[test]
    fn pass_needs_low_loss_low_p99_and_the_offered_rate() {
        assert!(step(1_000.0, 0.1, 200.0, 1_000.0).passed);
        assert!(!step(1_000.0, 0.11, 10.0, 1_000.0).passed);
        assert!(!step(1_000.0, 0.0, 201.0, 1_000.0).passed);
        assert!(!step(1_000.0, 0.0, 10.0, 900.0).passed);
    }

    #[test]
    fn sustained_rate_is_the_highest_passing_one() {
        let steps = vec![
            step(5_000.0, 0.0, 3.0, 5_000.0),
            step(10_000.0, 0.0, 9.0, 10_000.0),
            step(15_000.0, 2.0, 900.0, 14_000.0),
        ];
        assert_eq!(max_sustained_rate(&steps), Some(10_000.0));
        assert_eq!(max_sustained_rate(&steps[2..]), None);
    }

    #[test]
    fn run_report_is_one_flat_json_line_with_its_steps() {
        let headline = step(10_000.0, 0.0, 9.0, 10_000.0);
        let report = RunReport {
            headline: headline.clone(),
            max_sustained_rate: Some(10_000.0),
            setup_s: 1.0,
            setup_failures: 0,
            login_p50_ms: 1.0,
            login_p99_ms: 2.0,
            steps: vec![headline],
            flood: None,
        };
        let line = serde_json::to_string(&report).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["rate"], 10_000.0);
        assert_eq!(v["p99_ms"], 9.0);
        assert_eq!(v["steps"][0]["rate"], 10_000.0);
        let back: RunReport = serde_json::from_str(&line).unwrap();
        assert_eq!(back.steps.len(), 1);
    }
}
