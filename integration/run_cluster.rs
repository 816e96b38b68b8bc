//! `make run-cluster` (integration/run-cluster.sh) stops everything it started and removes its temp dir,
//! whatever stops it: SIGINT or SIGTERM to the script or to `make`, a group SIGINT when it was started with
//! SIGINT ignored (a background job of a script), and Ctrl-C under a pipe whose reader is gone (`| tee`).
//!
//! Each run uses the debug binaries (`CLUSTER_BIN_DIR`), two nodes and a free front port, in a process
//! group of its own. Once it is up, it is signalled, and within 20 s make and the script must have exited,
//! the temp dir must be gone, no process of its group or with the temp dir in its command line may be
//! left, and none of the ports it reported (MariaDB, Redis, nodes, nginx) may accept connections. The
//! runs each start a MariaDB, so they take turns.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::free_port;

/// How long the cluster may take to come up (MariaDB's first start is most of it).
const UP: Duration = Duration::from_secs(60);
/// How long everything may take to stop once it is signalled.
const DOWN: Duration = Duration::from_secs(20);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How a run is started.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// `bash integration/run-cluster.sh`.
    Script,
    /// `make run-cluster`.
    Make,
    /// `make run-cluster` with SIGINT ignored, as a background job of a script starts it.
    MakeIgnoringInt,
    /// `make run-cluster | tee`: stdout is a pipe.
    MakePiped,
}

/// One `run-cluster` in a process group of its own; dropping it kills whatever is left of it.
struct Run {
    child: Child,
    /// The pid of the script itself (the child's, or make's child).
    script: u32,
    /// What it wrote (stdout and stderr), as far as read.
    output: Arc<Mutex<String>>,
    /// Reads a piped stdout until the "up" message, then closes it.
    reader: Option<JoinHandle<()>>,
    log: PathBuf,
    dir: PathBuf,
    ports: Vec<u16>,
    _logdir: tempfile::TempDir,
}

impl Run {
    /// Starts a run and waits until it is up. A start that fails on its own is tried again: services.sh
    /// picks ports that nobody listens on, but on a busy machine one may still be held by a closed
    /// connection (TIME-WAIT) and the bind fails.
    fn start(how: Start) -> Run {
        let mut failures = Vec::new();
        while failures.len() < 3 {
            match Run::try_start(how) {
                Ok(run) => return run,
                Err(said) => {
                    eprintln!("run-cluster failed to start; it said:\n{said}");
                    failures.push(said);
                }
            }
        }
        panic!(
            "run-cluster exited before it was up, three times:\n{}",
            failures.join("\n")
        );
    }

    fn try_start(how: Start) -> Result<Run, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_chatserver"))
            .parent()
            .expect("the binaries' directory");
        let logdir = tempfile::tempdir().expect("temp dir");
        let log = logdir.path().join("run-cluster.log");
        let mut cmd = match how {
            Start::Script => {
                let mut cmd = Command::new("bash");
                cmd.arg("integration/run-cluster.sh");
                cmd
            }
            Start::Make | Start::MakePiped => {
                let mut cmd = Command::new("make");
                cmd.args(["--no-print-directory", "run-cluster"]);
                cmd
            }
            Start::MakeIgnoringInt => {
                let mut cmd = Command::new("bash");
                cmd.args([
                    "-c",
                    "trap '' INT; exec make --no-print-directory run-cluster",
                ]);
                cmd
            }
        };
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("run-cluster log")
        };
        cmd.current_dir(root)
            .env("CLUSTER_BIN_DIR", bin_dir)
            .env("NODES", "2")
            .env("FRONT_PORT", free_port().to_string())
            .env("NO_COLOR", "1")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .stdin(Stdio::null())
            .stdout(if how == Start::MakePiped {
                Stdio::piped()
            } else {
                Stdio::from(file())
            })
            .stderr(file())
            .process_group(0);
        let mut child = cmd.spawn().expect("start run-cluster");
        let output = Arc::new(Mutex::new(String::new()));
        let reader = child
            .stdout
            .take()
            .map(|stdout| read_until_up(stdout, output.clone()));
        let mut run = Run {
            reader,
            script: 0,
            dir: PathBuf::new(),
            ports: Vec::new(),
            child,
            output,
            log,
            _logdir: logdir,
        };
        run.wait_up()?;
        run.script = match how {
            Start::Script => run.child.id(),
            _ => run.make_child(),
        };
        Ok(run)
    }

    /// Everything it wrote so far.
    fn text(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{}{log}", self.output.lock().unwrap())
    }

    /// Waits for the "cluster is up" message, then learns the temp dir and every port it reported.
    fn wait_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + UP;
        loop {
            let text = self.text();
            if text.contains("cluster is up") && text.contains("Press Ctrl-C") {
                let logs = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Logs: "))
                    .expect("the message names the logs");
                let logs = logs.split_whitespace().next().unwrap();
                self.dir = PathBuf::from(logs.strip_suffix("/node*.log").expect("node*.log"));
                assert!(
                    self.dir.starts_with("/tmp") && self.dir.is_dir(),
                    "temp dir {:?}",
                    self.dir
                );
                self.ports = ports(&text);
                // MariaDB, Redis, two nodes and nginx.
                assert!(self.ports.len() >= 5, "ports {:?} in:\n{text}", self.ports);
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("({status}):\n{text}"));
            }
            assert!(
                Instant::now() < deadline,
                "run-cluster not up within {UP:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of make's child, the script (make runs the recipe without a shell).
    fn make_child(&self) -> u32 {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("make's children");
        let kids: Vec<u32> = children
            .split_whitespace()
            .map(|k| k.parse().unwrap())
            .collect();
        assert_eq!(kids.len(), 1, "make's children {kids:?}");
        let cmdline = cmdline(kids[0]);
        assert!(
            cmdline.contains("run-cluster.sh"),
            "make's child is {cmdline:?}"
        );
        kids[0]
    }

    fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `DOWN` for everything to be gone; panics with what is left otherwise.
    fn assert_all_gone(&mut self, what: &str) {
        let deadline = Instant::now() + DOWN;
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: {DOWN:?} after the signal, still there:\n  {}\noutput:\n{}",
                    left.join("\n  "),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is left of the run: live processes, the temp dir, listening ports.
    fn leftovers(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        if self.child.try_wait().expect("try_wait").is_none() {
            left.push(format!("the started process {}", self.child.id()));
        }
        for pid in live_pids() {
            let cmd = cmdline(pid);
            if pid == self.child.id() {
                continue; // reported above
            } else if pid == self.script {
                left.push(format!("the script {pid} ({cmd})"));
            } else if pgid(pid) == Some(self.pgid()) {
                left.push(format!("process {pid} of its group ({cmd})"));
            } else if cmd.contains(self.dir.to_str().unwrap()) {
                left.push(format!("process {pid} with the temp dir ({cmd})"));
            }
        }
        if self.dir.exists() {
            left.push(format!("the temp dir {}", self.dir.display()));
        }
        for &port in &self.ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                left.push(format!("something listening on {addr}"));
            }
        }
        left
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap_or_default().to_owned();
        for pid in live_pids() {
            if pid == self.script
                || pgid(pid) == Some(self.pgid())
                || (!dir.is_empty() && cmdline(pid).contains(&dir))
            {
                kill(&pid.to_string(), "KILL");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !dir.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads stdout until the "up" message is complete, then closes the pipe, as a `tee` killed by Ctrl-C
/// would.
fn read_until_up(stdout: ChildStdout, output: Arc<Mutex<String>>) -> JoinHandle<()> {
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + UP;
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { return };
            let done = line.contains("Press Ctrl-C");
            let mut out = output.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
            if done {
                return;
            }
        }
    })
}

/// Every 127.0.0.1:PORT in `text`.
fn ports(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .split("127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Pids of processes that are not zombies (orphaned zombies may never be reaped in a container).
fn live_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| stat(pid).is_some_and(|(state, _)| state != "Z"))
        .collect()
}

/// State and process group of `pid`, from /proc/PID/stat.
fn stat(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_owned();
    let pgrp = fields.nth(2)?.parse().ok()?;
    Some((state, pgrp))
}

fn pgid(pid: u32) -> Option<u32> {
    stat(pid).map(|(_, pgrp)| pgrp)
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `kill -SIG -- TARGET` (a negative target is a process group).
fn kill(target: &str, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .status();
}

/// Starts a run, signals it, and checks that nothing of it is left.
fn stop(how: Start, sig: &str, to: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(how);
    if let Some(reader) = run.reader.take() {
        reader.join().expect("stdout reader");
    }
    let target = match to {
        "script" => run.script.to_string(),
        "make" => run.child.id().to_string(),
        "group" => format!("-{}", run.pgid()),
        _ => unreachable!(),
    };
    kill(&target, sig);
    run.assert_all_gone(&format!("SIG{sig} to the {to}"));
}

#[test]
fn run_cluster_stops_on_sigint_to_the_script() {
    stop(Start::Script, "INT", "script");
}

#[test]
fn run_cluster_stops_on_sigterm_to_the_script() {
    stop(Start::Script, "TERM", "script");
}

#[test]
fn run_cluster_stops_on_sigint_to_make() {
    stop(Start::Make, "INT", "make");
}

#[test]
fn run_cluster_stops_on_sigterm_to_make() {
    stop(Start::Make, "TERM", "make");
}

#[test]
fn run_cluster_stops_on_group_sigint_when_started_ignoring_sigint() {
    stop(Start::MakeIgnoringInt, "INT", "group");
}

#[test]
fn run_cluster_stops_on_ctrl_c_under_a_closed_pipe() {
    stop(Start::MakePiped, "INT", "group");
}
