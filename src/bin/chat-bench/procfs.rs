//! The server's own costs, read from /proc: CPU time (utime + stime of all its threads), memory (VmRSS,
//! and VmHWM, the peak), threads, and context switches summed over /proc/PID/task/*/status. Sampled
//! before and after each load step; the differences divided by delivered messages give per-message costs.

use std::fs;
use std::process::Command;

/// One reading of one or more server processes (summed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Voluntary + involuntary context switches of the threads alive now.
    pub ctx_switches: u64,
    pub rss_kib: u64,
    /// Peak resident set since the process started.
    pub hwm_kib: u64,
    pub threads: u64,
}

/// Differences between two samples, in the units the report uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_s: f64,
    pub ctx_switches: u64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    pub threads: u64,
}

/// utime + stime from the text of /proc/PID/stat (fields 14 and 15). The command name in parentheses
/// may itself hold spaces or parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The number after `key:` in a /proc status file (`VmRSS:  1234 kB` gives 1234).
pub fn parse_status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Voluntary + involuntary context switches in one status file.
pub fn parse_ctx_switches(status: &str) -> u64 {
    parse_status_field(status, "voluntary_ctxt_switches").unwrap_or(0)
        + parse_status_field(status, "nonvoluntary_ctxt_switches").unwrap_or(0)
}

/// Reads one process; `None` when it is gone or /proc is not readable.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut ctx_switches = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            // A thread may end between the listing and the read: skip it.
            if let Ok(text) = fs::read_to_string(task.path().join("status")) {
                ctx_switches += parse_ctx_switches(&text);
            }
        }
    }
    Some(Sample {
        cpu_ticks: parse_stat_ticks(&stat)?,
        ctx_switches,
        rss_kib: parse_status_field(&status, "VmRSS").unwrap_or(0),
        hwm_kib: parse_status_field(&status, "VmHWM").unwrap_or(0),
        threads: parse_status_field(&status, "Threads").unwrap_or(0),
    })
}

/// Reads every process and sums them; `None` when no pid was given or one cannot be read.
pub fn sample_all(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = Sample::default();
    for &pid in pids {
        let s = sample(pid)?;
        total.cpu_ticks += s.cpu_ticks;
        total.ctx_switches += s.ctx_switches;
        total.rss_kib += s.rss_kib;
        total.hwm_kib += s.hwm_kib;
        total.threads += s.threads;
    }
    Some(total)
}

/// What happened between `before` and `after`.
pub fn usage(before: &Sample, after: &Sample, ticks_per_s: u64) -> Usage {
    Usage {
        cpu_s: after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_s.max(1) as f64,
        ctx_switches: after.ctx_switches.saturating_sub(before.ctx_switches),
        rss_mb: after.rss_kib as f64 / 1024.0,
        peak_rss_mb: after.hwm_kib as f64 / 1024.0,
        threads: after.threads,
    }
}

/// CPU ticks of the whole machine, busy and in all, from the first line of /proc/stat (`cpu user nice
/// system idle iowait irq softirq steal ...`): the bench shares the machine with the server and with
/// whatever else runs, and the report says how much of the machine that was.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total - idle, total))
}

/// Busy and total CPU ticks of the machine now.
pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
pub fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The soft limit on open files of this process, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (chat server) S 1 4242 4242 0 -1 4194560 2616 0 0 0 1234 567 0 0 20 0 \
                        2005 0 123456 3000000000 9000 18446744073709551615 1 1 0 0 0 0 0 4096 17990 0 0 0 \
                        17 1 0 0 0 0 0";

    const STATUS: &str = "Name:\tchatserver\nState:\tS (sleeping)\nVmPeak:\t 2000000 kB\nVmHWM:\t  120000 kB\n\
                          VmRSS:\t  100000 kB\nThreads:\t2005\nvoluntary_ctxt_switches:\t150\n\
                          nonvoluntary_ctxt_switches:\t7\n";

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        assert_eq!(parse_stat_ticks(STAT), Some(1234 + 567));
        let odd = STAT.replace("(chat server)", "(a) b (c))");
        assert_eq!(parse_stat_ticks(&odd), Some(1234 + 567));
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_fields() {
        assert_eq!(parse_status_field(STATUS, "VmRSS"), Some(100_000));
        assert_eq!(parse_status_field(STATUS, "VmHWM"), Some(120_000));
        assert_eq!(parse_status_field(STATUS, "Threads"), Some(2005));
        assert_eq!(parse_status_field(STATUS, "VmSwap"), None);
        // "voluntary_ctxt_switches" must not match the "nonvoluntary_" line or vice versa.
        assert_eq!(parse_ctx_switches(STATUS), 157);
    }

    #[test]
    fn machine_ticks_from_proc_stat() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1 2\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 1180)));
        assert_eq!(parse_machine_ticks("intr 1 2\n"), None);
        assert!(machine_ticks().is_some());
    }

    #[test]
    fn usage_is_the_difference() {
        let before = Sample {
            cpu_ticks: 100,
            ctx_switches: 1_000,
            rss_kib: 10_240,
            hwm_kib: 10_240,
            threads: 10,
        };
        let after = Sample {
            cpu_ticks: 350,
            ctx_switches: 6_000,
            rss_kib: 20_480,
            hwm_kib: 30_720,
            threads: 2_010,
        };
        let u = usage(&before, &after, 100);
        assert_eq!(u.cpu_s, 2.5);
        assert_eq!(u.ctx_switches, 5_000);
        assert_eq!(u.rss_mb, 20.0);
        assert_eq!(u.peak_rss_mb, 30.0);
        assert_eq!(u.threads, 2_010);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.threads >= 1);
    }
}
