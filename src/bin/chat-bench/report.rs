//! What the tool prints at the end: a table for people (stdout), then ONE JSON line with every figure for
//! scripts (`bench/run.sh` reads it, `plot` draws from it). Progress lines go to stderr while it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flood::FloodReport;

/// The figures of one load step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepResult {
    pub scenario: String,
    pub label: String,
    /// "tcp" or "ws" (`--transport`); empty in lines of older runs.
    pub transport: String,
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
    /// Acknowledged sends (`--ack`): v2 logins, a cid on every message, resends of late ones.
    pub ack: bool,
    /// Messages acknowledged (each counted once), written but never acknowledged, and as a percentage of
    /// those written.
    pub acked: u64,
    pub unacked: u64,
    pub unacked_pct: f64,
    /// Messages acknowledged per second of the schedule.
    pub acked_per_s: f64,
    /// Frames written again because their ack had not come within `--ack-timeout`.
    pub resends: u64,
    /// Acks beyond a message's first (the answer to a resend whose original was acknowledged too).
    pub dup_acks: u64,
    /// Acks of an earlier step that arrived during this one.
    pub late_acks: u64,
    /// Due time to first ack.
    pub ack_p50_ms: f64,
    pub ack_p90_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_max_ms: f64,
    /// Loss, p99 and achieved rate within the limits (`--max-loss-pct`, `--max-p99-ms`, ≥ 95 % of rate);
    /// with acks, the unacknowledged share, the ack p99 and the acknowledged rate as well.
    pub passed: bool,
}

impl StepResult {
    /// Whether this step counts as sustained.
    pub fn passes(&self, max_loss_pct: f64, max_p99_ms: f64) -> bool {
        self.sent > 0
            && self.loss_pct <= max_loss_pct
            && self.p99_ms <= max_p99_ms
            && self.achieved >= 0.95 * self.rate
            && (!self.ack
                || (self.unacked_pct <= max_loss_pct
                    && self.ack_p99_ms <= max_p99_ms
                    && self.acked_per_s >= 0.95 * self.rate))
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
    /// The SQLite file's growth over the steps, with `--sqlite-db`.
    pub storage: Option<StorageReport>,
}

/// Bytes an SQLite database grew by per stored message (`--sqlite-db`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageReport {
    pub path: String,
    /// Messages stored in between: acknowledged ones (or, without acks, those written).
    pub messages: u64,
    pub page_size: u64,
    /// page_count × page_size before and after (a read transaction's view: the WAL's pages included).
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// (bytes_after − bytes_before) / messages.
    pub bytes_per_msg: f64,
    /// The same without the free-list pages: what the rows and indexes take.
    pub used_bytes_per_msg: f64,
    /// The WAL file's size afterwards (not yet checkpointed pages; counted in page_count already).
    pub wal_bytes_after: Option<u64>,
    /// Growth per message of each table and index (from the dbstat table, where SQLite has it).
    pub per_object: BTreeMap<String, f64>,
}

/// The JSON line of `idle`.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: String,
    pub label: String,
    pub transport: String,
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

/// Prints the ack figures of acknowledged steps.
pub fn print_acks(steps: &[StepResult]) {
    if !steps.iter().any(|s| s.ack) {
        return;
    }
    println!(
        "{:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "rate",
        "sent",
        "acked",
        "unacked",
        "acked/s",
        "resends",
        "dupacks",
        "ackp50ms",
        "ackp99ms",
        "ackp999",
        "ackmaxms"
    );
    for s in steps {
        println!(
            "{:>9.0} {:>9} {:>9} {:>8} {:>9.0} {:>8} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>8.1}",
            s.rate,
            s.sent,
            s.acked,
            s.unacked,
            s.acked_per_s,
            s.resends,
            s.dup_acks,
            s.ack_p50_ms,
            s.ack_p99_ms,
            s.ack_p999_ms,
            s.ack_max_ms
        );
    }
}

/// Prints the storage figures.
pub fn print_storage(s: &StorageReport) {
    println!(
        "storage: {} messages, {} -> {} bytes ({} B pages): {:.1} bytes per message ({:.1} without free pages)",
        s.messages,
        s.bytes_before,
        s.bytes_after,
        s.page_size,
        s.bytes_per_msg,
        s.used_bytes_per_msg
    );
    for (name, bytes) in &s.per_object {
        println!("  {name:>24}  {bytes:.1} bytes per message");
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
    fn acknowledged_steps_also_need_their_acks() {
        let acked = |unacked_pct: f64, ack_p99_ms: f64, acked_per_s: f64| {
            let mut s = StepResult {
                rate: 1_000.0,
                achieved: 1_000.0,
                sent: 1,
                ack: true,
                unacked_pct,
                ack_p99_ms,
                acked_per_s,
                ..StepResult::default()
            };
            s.passed = s.passes(0.1, 200.0);
            s.passed
        };
        assert!(acked(0.0, 5.0, 1_000.0));
        assert!(!acked(0.2, 5.0, 1_000.0));
        assert!(!acked(0.0, 250.0, 1_000.0));
        assert!(!acked(0.0, 5.0, 900.0));
    }

    #[test]
    fn old_json_lines_without_the_ack_fields_still_parse() {
        let line = r#"{"scenario":"one","rate":5000.0,"p99_ms":1.0,"steps":[{"rate":5000.0,"p50_ms":0.2,"p99_ms":1.0}],"max_sustained_rate":5000.0,"setup_s":1.0,"setup_failures":0,"login_p50_ms":1.0,"login_p99_ms":1.0,"flood":null}"#;
        let run: RunReport = serde_json::from_str(line).unwrap();
        assert_eq!(run.steps[0].rate, 5_000.0);
        assert!(!run.steps[0].ack);
        assert!(run.storage.is_none());
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
            storage: None,
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
