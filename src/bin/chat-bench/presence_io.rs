//! The network side of `presence`: storms of v2 logins and logouts with a bounded number awaiting their
//! answer, over connections that stay open and are read all the time. One driver (the caller's thread)
//! connects and writes the requests; a few reader threads wait on every socket with one `mio::Poll`
//! each, take the answers (each frees a slot for the driver) and record every PRESENCE frame as it
//! arrives. No thread blocks on one socket, so two readers follow 8,000 devices without taking the
//! server's CPU — the tool shares the machine with it. Times are on one clock, so the answers bound when
//! the server acted (see `presence_tally`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::{Decoded, FrameDecoder};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::{Condvar, Mutex};
use serde::Deserialize;
use serde_json::json;

use crate::conn::{self, ERROR_MSG};
use crate::stats::Clock;

/// Largest frame a reader accepts (a login ack lists every friend).
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// The token that wakes a reader for new connections or for the stop.
const WAKE: Token = Token(usize::MAX);
const LOGIN_ACK: i64 = 2;
const LOGOUT_ACK: i64 = 11;
const PRESENCE: i64 = 50;

/// What one device's reader saw.
#[derive(Debug, Clone, Default)]
pub struct DeviceLog {
    /// Login ack: when (ns), its errno, and the friends (ids) it showed online.
    pub login_ack: Option<(u64, i64)>,
    pub ack_online: Vec<i64>,
    /// PRESENCE frames in arrival order: (id, online).
    pub presence: Vec<(i64, bool)>,
    /// PRESENCE frames that came before the login ack, and after the logout ack.
    pub before_ack: u64,
    pub after_logout: u64,
    pub logout_ack_ns: Option<u64>,
    /// ERROR_MSG errnos, other frames, and whether the server closed the connection.
    pub errors: Vec<i64>,
    pub other_frames: u64,
    pub closed: bool,
}

/// One storm as the driver ran it.
#[derive(Debug, Default)]
pub struct StormRun {
    /// When each device's request was written (ns; the login's counts from before its connect).
    pub sent_ns: Vec<Option<u64>>,
    /// Devices whose request could not be written, with why.
    pub failures: BTreeMap<String, u64>,
    pub first_ns: u64,
    /// When the last answer came (or the driver gave up waiting).
    pub last_ns: u64,
    /// Requests still unanswered at the end.
    pub unanswered: u64,
}

/// Requests awaiting their answer, shared by the driver and the readers.
struct Gate {
    in_flight: Mutex<usize>,
    changed: Condvar,
}

impl Gate {
    fn take(&self) {
        *self.in_flight.lock() += 1;
    }

    fn release(&self) {
        let mut n = self.in_flight.lock();
        *n = n.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Waits until fewer than `limit` are in flight; `false` when none was answered for `patience`.
    fn wait_below(&self, limit: usize, patience: Duration) -> bool {
        let mut n = self.in_flight.lock();
        let mut deadline = Instant::now() + patience;
        let mut seen = *n;
        while *n >= limit {
            if self.changed.wait_until(&mut n, deadline).timed_out() {
                if *n >= seen {
                    return false;
                }
                deadline = Instant::now() + patience;
            }
            seen = seen.min(*n);
        }
        true
    }
}

/// What the readers and the driver share about each device.
struct Shared {
    clock: Clock,
    gate: Gate,
    /// Per device: a request of it awaits its answer (cleared by the first answer or the close).
    awaiting: Vec<AtomicBool>,
    /// Per device: its login was answered with errno 0.
    logged_in: Vec<AtomicBool>,
    /// Requests answered so far (for progress, and to notice a storm that stalled).
    answers: AtomicU64,
    presence_frames: AtomicU64,
    last_presence_ns: AtomicU64,
}

impl Shared {
    fn new(devices: usize) -> Shared {
        Shared {
            clock: Clock::new(),
            gate: Gate {
                in_flight: Mutex::new(0),
                changed: Condvar::new(),
            },
            awaiting: (0..devices).map(|_| AtomicBool::new(false)).collect(),
            logged_in: (0..devices).map(|_| AtomicBool::new(false)).collect(),
            answers: AtomicU64::new(0),
            presence_frames: AtomicU64::new(0),
            last_presence_ns: AtomicU64::new(0),
        }
    }

    /// The device's request got its answer (or can no longer get one).
    fn answered(&self, index: usize) {
        if self.awaiting[index].swap(false, Ordering::AcqRel) {
            self.answers.fetch_add(1, Ordering::Relaxed);
            self.gate.release();
        }
    }
}

/// One reader thread as the driver sees it.
struct ReaderHandle {
    new: Sender<(usize, TcpStream)>,
    waker: Arc<Waker>,
    thread: JoinHandle<Vec<(usize, DeviceLog)>>,
}

/// The running readers and the writing halves of every connection.
pub struct Storms {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    readers: Vec<ReaderHandle>,
    writers: Vec<Option<TcpStream>>,
}

impl Storms {
    /// Starts `threads` readers for up to `devices` connections.
    pub fn start(devices: usize, threads: usize) -> io::Result<Storms> {
        let shared = Arc::new(Shared::new(devices));
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for k in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            let (new, incoming) = crossbeam_channel::unbounded();
            let (shared, stop) = (shared.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("presence-recv-{k}"))
                .spawn(move || read_loop(poll, &incoming, &shared, &stop))?;
            readers.push(ReaderHandle { new, waker, thread });
        }
        Ok(Storms {
            shared,
            stop,
            readers,
            writers: (0..devices).map(|_| None).collect(),
        })
    }

    pub fn presence_frames(&self) -> u64 {
        self.shared.presence_frames.load(Ordering::Relaxed)
    }

    pub fn last_presence_ns(&self) -> u64 {
        self.shared.last_presence_ns.load(Ordering::Relaxed)
    }

    /// Logs in every `(index, addr, id)` of `logins`, in that order, as v2 device `device`, with at
    /// most `concurrency` awaiting their ack; returns once every login is answered, or none was for
    /// `patience`.
    pub fn login_storm(
        &mut self,
        logins: &[(usize, SocketAddr, i64)],
        password: &str,
        device: &str,
        concurrency: usize,
        patience: Duration,
    ) -> StormRun {
        let mut run = self.begin(logins.len());
        let mut progress = Progress::new("presence: login storm", logins.len());
        for (n, &(index, addr, id)) in logins.iter().enumerate() {
            if !self.shared.gate.wait_below(concurrency, patience) {
                stalled(&mut run, logins.len() - n);
                break;
            }
            progress.tick(&self.shared);
            let frame =
                json!({"msgid": 1, "id": id, "password": password, "v": 2, "device": device});
            let sent = self.shared.clock.now_ns();
            run.sent_ns[index] = Some(sent);
            if let Err(why) = self.open(index, addr, &frame, patience) {
                run.sent_ns[index] = None;
                *run.failures.entry(why).or_default() += 1;
            }
        }
        self.end(run, patience, &mut progress)
    }

    /// Logs out (LOGOUT, msgid 3; v2 answers 11) every logged-in device of `order`, in that order, with at
    /// most `concurrency` awaiting their ack. The connections stay open, logged out.
    pub fn logout_storm(
        &mut self,
        order: &[usize],
        concurrency: usize,
        patience: Duration,
    ) -> StormRun {
        let mut run = self.begin(order.len());
        let mut progress = Progress::new("presence: logout storm", order.len());
        let mut frame = json!({"msgid": 3}).to_string().into_bytes();
        frame.push(0);
        for (n, &index) in order.iter().enumerate() {
            if !self.shared.logged_in[index].load(Ordering::Acquire) {
                continue;
            }
            let Some(stream) = self.writers[index].as_mut() else {
                continue;
            };
            if !self.shared.gate.wait_below(concurrency, patience) {
                stalled(&mut run, order.len() - n);
                break;
            }
            progress.tick(&self.shared);
            self.shared.gate.take();
            self.shared.awaiting[index].store(true, Ordering::Release);
            run.sent_ns[index] = Some(self.shared.clock.now_ns());
            if conn::write_frame(stream, &frame, patience).is_err() {
                run.sent_ns[index] = None;
                self.shared.answered(index);
                *run.failures.entry("logout not written".into()).or_default() += 1;
            }
        }
        self.end(run, patience, &mut progress)
    }

    /// Waits until no PRESENCE frame has come for `quiet`, at most `limit`.
    pub fn settle(&self, quiet: Duration, limit: Duration) {
        let start = Instant::now();
        let mut count = self.presence_frames();
        let mut since = Instant::now();
        while since.elapsed() < quiet && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.presence_frames();
            if now != count {
                count = now;
                since = Instant::now();
            }
        }
    }

    /// Stops the readers and returns what each device saw, by index; then closes every connection.
    pub fn finish(self) -> Vec<DeviceLog> {
        self.stop.store(true, Ordering::Relaxed);
        let mut logs = vec![DeviceLog::default(); self.writers.len()];
        for reader in self.readers {
            drop(reader.new);
            let _ = reader.waker.wake();
            match reader.thread.join() {
                Ok(seen) => {
                    for (index, log) in seen {
                        logs[index] = log;
                    }
                }
                Err(_) => {
                    eprintln!("presence: a reader thread panicked; its devices count as silent")
                }
            }
        }
        logs
    }

    fn begin(&self, n: usize) -> StormRun {
        StormRun {
            sent_ns: vec![None; self.writers.len().max(n)],
            first_ns: self.shared.clock.now_ns(),
            ..StormRun::default()
        }
    }

    /// Waits for the answers still awaited, and counts those that never came.
    fn end(&self, mut run: StormRun, patience: Duration, progress: &mut Progress) -> StormRun {
        while !self
            .shared
            .gate
            .wait_below(1, Duration::from_millis(200).min(patience))
        {
            progress.tick(&self.shared);
            if progress.quiet_for() > patience {
                break;
            }
        }
        run.last_ns = self.shared.clock.now_ns();
        run.unanswered = self
            .shared
            .awaiting
            .iter()
            .filter(|a| a.load(Ordering::Acquire))
            .count() as u64;
        progress.tick(&self.shared);
        run
    }

    /// Connects device `index`, writes its login, and hands the connection to its reader.
    fn open(
        &mut self,
        index: usize,
        addr: SocketAddr,
        login: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect: {}", e.kind()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {}", e.kind()))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("split: {}", e.kind()))?;
        let mut bytes = login.to_string().into_bytes();
        bytes.push(0);
        self.shared.gate.take();
        self.shared.awaiting[index].store(true, Ordering::Release);
        let handed = (&stream)
            .write_all(&bytes)
            .map_err(|e| format!("login not written: {}", e.kind()))
            .and_then(|()| {
                stream
                    .set_nonblocking(true)
                    .map_err(|e| format!("nonblocking: {}", e.kind()))
            })
            .and_then(|()| {
                let reader = &self.readers[index % self.readers.len()];
                reader
                    .new
                    .send((index, stream))
                    .map_err(|_| "reader gone".to_string())?;
                reader
                    .waker
                    .wake()
                    .map_err(|e| format!("wake: {}", e.kind()))
            });
        match handed {
            Ok(()) => {
                self.writers[index] = Some(writer);
                Ok(())
            }
            Err(why) => {
                self.shared.answered(index);
                Err(why)
            }
        }
    }
}

/// Counts the requests a stalled storm did not send (none was answered for the patience).
fn stalled(run: &mut StormRun, left: usize) {
    eprintln!("presence: no answer for the patience; {left} requests not sent");
    *run.failures
        .entry("not sent: the storm stalled".into())
        .or_default() += left as u64;
}

/// The driver's once-a-second progress line (stderr).
struct Progress {
    label: &'static str,
    total: usize,
    last: Instant,
    last_change: Instant,
    answers: u64,
}

impl Progress {
    fn new(label: &'static str, total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            label,
            total,
            last: now,
            last_change: now,
            answers: 0,
        }
    }

    fn tick(&mut self, shared: &Shared) {
        let answers = shared.answers.load(Ordering::Relaxed);
        if answers != self.answers {
            self.answers = answers;
            self.last_change = Instant::now();
        }
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        eprintln!(
            "{}: {} requests, {} in flight, {} PRESENCE frames so far",
            self.label,
            self.total,
            *shared.gate.in_flight.lock(),
            shared.presence_frames.load(Ordering::Relaxed)
        );
    }

    /// How long no answer has come.
    fn quiet_for(&self) -> Duration {
        self.last_change.elapsed()
    }
}

/// One connection as its reader holds it.
struct Device {
    index: usize,
    stream: mio::net::TcpStream,
    decoder: FrameDecoder,
    open: bool,
    log: DeviceLog,
}

fn read_loop(
    mut poll: Poll,
    incoming: &Receiver<(usize, TcpStream)>,
    shared: &Shared,
    stop: &AtomicBool,
) -> Vec<(usize, DeviceLog)> {
    let mut devices: Vec<Device> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("presence: a reader's poll failed: {e}");
            break;
        }
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            if let Some(device) = devices.get_mut(event.token().0) {
                read_ready(device, &mut buf, shared);
            }
        }
        // New connections: registered, then read at once (their answer may be in already).
        while let Ok((index, stream)) = incoming.try_recv() {
            let slot = devices.len();
            let mut device = Device {
                index,
                stream: mio::net::TcpStream::from_std(stream),
                decoder: FrameDecoder::new(MAX_FRAME),
                open: true,
                log: DeviceLog::default(),
            };
            if let Err(e) =
                poll.registry()
                    .register(&mut device.stream, Token(slot), Interest::READABLE)
            {
                eprintln!("presence: cannot watch a connection: {e}");
                device.open = false;
                shared.answered(index);
            }
            read_ready(&mut device, &mut buf, shared);
            devices.push(device);
        }
    }
    devices.into_iter().map(|d| (d.index, d.log)).collect()
}

/// Reads a readable connection until it would block (the poll is edge-triggered).
fn read_ready(device: &mut Device, buf: &mut [u8], shared: &Shared) {
    while device.open {
        match device.stream.read(buf) {
            Ok(0) => close(device, shared),
            Ok(n) => {
                device.decoder.feed(&buf[..n]);
                let now = shared.clock.now_ns();
                while let Some(unit) = device.decoder.next_frame() {
                    match unit {
                        Decoded::Frame(bytes) => handle_frame(device, &bytes, now, shared),
                        Decoded::Malformed | Decoded::TooLarge => device.log.other_frames += 1,
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => close(device, shared),
        }
    }
}

fn close(device: &mut Device, shared: &Shared) {
    device.open = false;
    device.log.closed = true;
    shared.answered(device.index);
}

/// The fields of a server frame this scenario reads; the rest is skipped undecoded.
#[derive(Deserialize)]
struct Incoming<'a> {
    msgid: Option<i64>,
    errno: Option<i64>,
    id: Option<i64>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    friends: Option<Vec<Friend<'a>>>,
}

#[derive(Deserialize)]
struct Friend<'a> {
    id: i64,
    #[serde(borrow)]
    state: Cow<'a, str>,
}

fn handle_frame(device: &mut Device, bytes: &[u8], now: u64, shared: &Shared) {
    let Ok(frame) = serde_json::from_slice::<Incoming<'_>>(bytes) else {
        device.log.other_frames += 1;
        return;
    };
    let log = &mut device.log;
    match frame.msgid {
        Some(PRESENCE) => {
            let (Some(id), Some(state)) = (frame.id, frame.state) else {
                log.other_frames += 1;
                return;
            };
            log.presence.push((id, state == "online"));
            if log.login_ack.is_none() {
                log.before_ack += 1;
            }
            if log.logout_ack_ns.is_some() {
                log.after_logout += 1;
            }
            shared.presence_frames.fetch_add(1, Ordering::Relaxed);
            shared.last_presence_ns.fetch_max(now, Ordering::Relaxed);
        }
        Some(LOGIN_ACK) if log.login_ack.is_none() => {
            let errno = frame.errno.unwrap_or(-1);
            log.login_ack = Some((now, errno));
            log.ack_online = frame
                .friends
                .into_iter()
                .flatten()
                .filter(|f| f.state == "online")
                .map(|f| f.id)
                .collect();
            if errno == 0 {
                shared.logged_in[device.index].store(true, Ordering::Release);
            }
            shared.answered(device.index);
        }
        Some(LOGOUT_ACK) => {
            log.logout_ack_ns.get_or_insert(now);
            shared.answered(device.index);
        }
        Some(ERROR_MSG) => {
            log.errors.push(frame.errno.unwrap_or(-1));
            shared.answered(device.index);
        }
        _ => log.other_frames += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            in_flight: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    #[test]
    fn the_gate_bounds_what_is_in_flight() {
        let g = gate();
        assert!(g.wait_below(2, Duration::from_millis(1)));
        g.take();
        g.take();
        assert!(
            !g.wait_below(2, Duration::from_millis(20)),
            "nothing answered"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                g.release();
            });
            assert!(g.wait_below(2, Duration::from_secs(5)));
        });
        assert_eq!(*g.in_flight.lock(), 1);
        g.release();
        g.release();
        assert_eq!(*g.in_flight.lock(), 0, "never below zero");
    }

    #[test]
    fn frames_are_sorted_into_the_device_log() {
        let shared = Shared::new(1);
        shared.awaiting[0].store(true, Ordering::Relaxed);
        shared.gate.take();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut device = Device {
            index: 0,
            stream: mio::net::TcpStream::from_std(stream),
            decoder: FrameDecoder::new(MAX_FRAME),
            open: true,
            log: DeviceLog::default(),
        };
        let frames: [&[u8]; 5] = [
            br#"{"msgid":50,"id":7,"state":"online"}"#,
            br#"{"msgid":2,"errno":0,"id":5,"friends":[{"id":7,"name":"a","state":"online"},{"id":8,"name":"b","state":"offline"}],"groups":[],"conversations":[]}"#,
            br#"{"msgid":50,"id":8,"state":"online"}"#,
            br#"{"msgid":11,"errno":0}"#,
            br#"{"msgid":50,"id":8,"state":"offline"}"#,
        ];
        for (i, f) in frames.iter().enumerate() {
            handle_frame(&mut device, f, i as u64 + 1, &shared);
        }
        let log = &device.log;
        assert_eq!(log.login_ack, Some((2, 0)));
        assert_eq!(log.ack_online, vec![7]);
        assert_eq!(log.presence, vec![(7, true), (8, true), (8, false)]);
        assert_eq!((log.before_ack, log.after_logout), (1, 1));
        assert_eq!(log.logout_ack_ns, Some(4));
        assert!(shared.logged_in[0].load(Ordering::Relaxed));
        assert!(!shared.awaiting[0].load(Ordering::Relaxed));
        assert_eq!(*shared.gate.in_flight.lock(), 0);
        assert_eq!(
            shared.answers.load(Ordering::Relaxed),
            1,
            "the logout ack found nothing awaiting"
        );
        assert_eq!(shared.presence_frames.load(Ordering::Relaxed), 3);
        assert_eq!(shared.last_presence_ns.load(Ordering::Relaxed), 5);
    }
}
