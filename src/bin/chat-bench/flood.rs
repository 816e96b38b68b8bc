//! `--flood-rate`: one more connection, of its own user, sending requests at a fixed rate for the whole
//! run, so that a step's latency shows what one abusive client does to everyone else. The flooder behaves
//! as a determined attacker would: it reads (and counts) what the server answers, and when the server
//! closes it for abuse it logs in again and goes on at the same rate.

use std::io::{ErrorKind, Write as _};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::cli::CommonArgs;
use crate::conn::{Conn, ERROR_MSG};
use crate::setup::{self, Credential, User};

/// ERROR_MSG errno of a refused (rate-limited) request.
const RATE_LIMITED: i64 = 107;
/// A write that cannot finish in this long means the server stopped reading the flooder.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed attempts to log in again, so a down server is not hammered by the tool itself.
const RELOGIN_PAUSE: Duration = Duration::from_millis(100);

/// What the flooder sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodKind {
    /// `{"msgid":99}`: an unknown request, answered with an error frame.
    Unknown,
    /// One-to-one chat to a user who is never online: every accepted one is stored offline.
    Chat,
}

/// The flooder's figures for the whole run (JSON `flood`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloodReport {
    pub kind: Option<FloodKind>,
    pub rate: f64,
    pub seconds: f64,
    /// Frames written, and per second of the flood.
    pub sent: u64,
    pub achieved: f64,
    /// Frames the server answered with errno 107, and every other frame it answered with.
    pub refused_107: u64,
    pub other_replies: u64,
    /// Times the server closed the flooder's connection, and logins (the first included).
    pub closed_by_server: u64,
    pub logins: u64,
    pub login_failures: u64,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    closed: AtomicU64,
    logins: AtomicU64,
    login_failures: AtomicU64,
}

/// A running flooder; [`Flood::stop`] ends it and reports.
pub struct Flood {
    kind: FloodKind,
    rate: f64,
    started: Instant,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: JoinHandle<()>,
}

/// Everything the flooder thread needs.
struct Flooder {
    common: CommonArgs,
    user: User,
    frame: Vec<u8>,
    rate: f64,
    tick: Duration,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
}

impl Flood {
    /// Registers the flooder (user index `index`) and, for `chat`, its never-online target (`index + 1`),
    /// then starts flooding at `rate` requests per second.
    pub fn start(
        common: &CommonArgs,
        prefix: &str,
        index: usize,
        kind: FloodKind,
        rate: f64,
        tick: Duration,
    ) -> anyhow::Result<Flood> {
        let (_, user) = setup::connect_and_register(common, prefix, index)
            .map_err(|e| anyhow::anyhow!("flooder {e}"))?;
        let frame = match kind {
            FloodKind::Unknown => r#"{"msgid":99}"#.to_string(),
            FloodKind::Chat => {
                let (_, sink) = setup::connect_and_register(common, prefix, index + 1)
                    .map_err(|e| anyhow::anyhow!("flood target {e}"))?;
                format!(
                    r#"{{"msgid":6,"id":{},"name":"{}","toid":{},"msg":"flood flood flood flood flood flood flood flood","time":"2026-01-01 00:00:00"}}"#,
                    user.id, user.name, sink.id
                )
            }
        };
        let mut frame = frame.into_bytes();
        frame.push(0);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let flooder = Flooder {
            common: common.clone(),
            user,
            frame,
            rate,
            tick,
            stop: stop.clone(),
            counts: counts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("flooder".into())
            .spawn(move || flooder.run())?;
        Ok(Flood {
            kind,
            rate,
            started: Instant::now(),
            stop,
            counts,
            thread,
        })
    }

    /// Stops the flooder and returns its figures.
    pub fn stop(self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let seconds = self.started.elapsed().as_secs_f64();
        let c = &self.counts;
        let sent = c.sent.load(Ordering::Relaxed);
        FloodReport {
            kind: Some(self.kind),
            rate: self.rate,
            seconds,
            sent,
            achieved: sent as f64 / seconds.max(1e-9),
            refused_107: c.refused.load(Ordering::Relaxed),
            other_replies: c.other.load(Ordering::Relaxed),
            closed_by_server: c.closed.load(Ordering::Relaxed),
            logins: c.logins.load(Ordering::Relaxed),
            login_failures: c.login_failures.load(Ordering::Relaxed),
        }
    }
}

impl Flooder {
    /// Logs in, floods until the server closes the connection, and again, until told to stop.
    fn run(self) {
        while !self.stopped() {
            match self.login() {
                Some(conn) => self.flood(conn),
                None => std::thread::sleep(RELOGIN_PAUSE),
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn login(&self) -> Option<Conn> {
        let (_, addr) = setup::addr_of(&self.common.setup.addrs, self.user.index);
        let timeout = self.common.reply_timeout();
        let outcome = Conn::connect(addr, timeout).ok().and_then(|mut conn| {
            let password = Credential::Password(&self.common.setup.password);
            setup::login(&mut conn, &self.user, password, 1, timeout)
                .ok()
                .map(|_| conn)
        });
        let counter = match outcome {
            Some(_) => &self.counts.logins,
            None => &self.counts.login_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// Sends on an open-loop schedule at the flood rate until a write fails or the run ends; a reader
    /// thread counts the replies meanwhile.
    fn flood(&self, conn: Conn) {
        let Ok(mut stream) = conn.stream.try_clone() else {
            return;
        };
        if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
            return;
        }
        let counts = self.counts.clone();
        let reader = std::thread::spawn(move || count_replies(conn, &counts));
        let start = Instant::now();
        let mut sent: u64 = 0;
        let mut batch = Vec::new();
        while !self.stopped() {
            let next = start + Duration::from_secs_f64(sent as f64 / self.rate);
            let wake = next.max(Instant::now() + self.tick);
            if let Some(wait) = wake.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let due = (start.elapsed().as_secs_f64() * self.rate) as u64 + 1;
            let frames = due.saturating_sub(sent).max(1);
            batch.clear();
            for _ in 0..frames {
                batch.extend_from_slice(&self.frame);
            }
            if stream.write_all(&batch).is_err() {
                self.counts.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            self.counts.sent.fetch_add(frames, Ordering::Relaxed);
            sent += frames;
        }
        let _ = stream.shutdown(Shutdown::Both);
        let _ = reader.join();
    }
}

/// Reads the flooder's connection until it closes, counting refusals (errno 107) and other replies.
fn count_replies(mut conn: Conn, counts: &Counts) {
    loop {
        match conn.recv(Duration::from_secs(1)) {
            Ok(reply) => {
                let refused = reply["msgid"].as_i64() == Some(ERROR_MSG)
                    && reply["errno"].as_i64() == Some(RATE_LIMITED);
                let counter = if refused {
                    &counts.refused
                } else {
                    &counts.other
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
