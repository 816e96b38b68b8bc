//! One client connection, from accept to close.
//!
//! The worker thread that owns the connection reads: bytes → frames → [`service::Turn::dispatch`]. Frames for the
//! client go through its mailbox, which writes them at once when it can and otherwise queues them for a
//! writer thread started on demand ([`writer`]); an idle connection costs one thread. Everyone shares the
//! socket as `&TcpStream`, which is `Read + Write`, so a connection costs one file descriptor.
//!
//! When the reader stops, the connection winds down in one order: the mailbox starts closing, any writer
//! thread stops, and what is still queued is flushed (server shutdown, idle timeout, oversize frame) or,
//! when the client went away, replies are written and chat frames stored offline rather than written into
//! a dying socket; then the user leaves (out of the online map, presence released). Messages arriving
//! after the mailbox closed are stored by their senders, after everything older, so the order per sender
//! holds.

pub mod outbox;
mod writer;

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::mailbox::{Mailbox, Outgoing, Sink};
use crate::protocol::frame::{Decoded, FrameDecoder, Separator};
use crate::protocol::{Errno, reply};
use crate::service::{self, Caller, Context, account};

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_frame_bytes: usize,
    pub mailbox_capacity: usize,
    /// A connection that has not logged in for this long is closed.
    pub login_timeout: Duration,
    pub writer_stack_bytes: usize,
    /// Most writer threads alive at once on the node (they count against its thread ceiling).
    pub max_writers: usize,
    pub rate: RateConfig,
}

/// Writer threads alive on this node.
static WRITERS: AtomicUsize = AtomicUsize::new(0);

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF or a read error: the client went away.
    ClientGone,
    /// The server is shutting down.
    Shutdown,
    /// No successful login within the timeout.
    Idle,
    /// A frame over the size limit (106 was queued).
    TooLarge,
    /// A handler panicked; logged, the connection is closed.
    Panicked,
    /// Kept sending far over the rate limit after being refused (107).
    Abuse,
}

/// The write side of one connection, shared by its mailbox (as its [`Sink`]) and its writer threads.
pub(crate) struct Conn {
    ctx: Arc<Context>,
    stream: Arc<TcpStream>,
    /// The separator byte appended to frames; the reader sets it from the client's first separator.
    separator: AtomicU8,
    /// Set before the end: write replies only, store chat frames.
    client_gone: AtomicBool,
    writer: Mutex<writer::Writer>,
    /// Disconnected when the session ends, which stops a running writer thread.
    close: Receiver<()>,
    /// The mailbox and its queue, for writer threads (weak: the mailbox owns this connection's sink).
    mailbox: OnceLock<(Weak<Mailbox>, Receiver<Outgoing>)>,
    /// The writer thread last started, joined at the end.
    thread: Mutex<Option<JoinHandle<()>>>,
    writer_stack: usize,
    max_writers: usize,
}

/// A connection as its mailbox's sink.
struct ConnSink(Arc<Conn>);

impl Sink for ConnSink {
    fn try_direct(&self, item: Outgoing) -> Vec<Outgoing> {
        self.0.writer.lock().try_direct(&self.0, item)
    }

    fn start_writer(&self) -> bool {
        let conn = self.0.clone();
        let Some((mailbox, mail)) = conn.mailbox.get().cloned() else {
            return false;
        };
        if WRITERS.fetch_add(1, Ordering::SeqCst) >= conn.max_writers {
            WRITERS.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        let spawned = std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(conn.writer_stack)
            .spawn({
                let conn = conn.clone();
                move || {
                    if let Some(mailbox) = mailbox.upgrade() {
                        writer::run(&conn, &mailbox, &mail);
                    }
                    WRITERS.fetch_sub(1, Ordering::SeqCst);
                }
            });
        match spawned {
            Ok(handle) => {
                *conn.thread.lock() = Some(handle);
                true
            }
            Err(_) => {
                WRITERS.fetch_sub(1, Ordering::SeqCst);
                false
            }
        }
    }

    fn overflow(&self) {
        let _ = self.0.stream.shutdown(Shutdown::Both);
    }
}

/// Serves one connection until it closes. Runs on a worker thread of the connection pool.
pub fn serve(
    ctx: &Arc<Context>,
    stream: &Arc<TcpStream>,
    cfg: &SessionConfig,
    stopping: &AtomicBool,
) {
    let peer_addr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let peer = peer_addr.to_string();
    let _ = stream.set_nodelay(true);
    tracing::info!(%peer, "connected");
    let (close_tx, close_rx): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(0);
    let conn = Arc::new(Conn {
        ctx: ctx.clone(),
        stream: stream.clone(),
        separator: AtomicU8::new(Separator::Newline.byte()),
        client_gone: AtomicBool::new(false),
        writer: Mutex::new(writer::Writer::default()),
        close: close_rx,
        mailbox: OnceLock::new(),
        thread: Mutex::new(None),
        writer_stack: cfg.writer_stack_bytes,
        max_writers: cfg.max_writers,
    });
    let (mailbox, mail) = Mailbox::with_sink(cfg.mailbox_capacity, ConnSink(conn.clone()));
    let _ = conn.mailbox.set((Arc::downgrade(&mailbox), mail.clone()));
    let mut caller = Caller::new(mailbox.clone(), peer_addr.ip());
    let end = catch_unwind(AssertUnwindSafe(|| {
        read_loop(ctx, stream, &mut caller, cfg, &conn, stopping)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%peer, user = ?caller.user.as_ref().map(|u| u.id), "handler panicked; closing");
        End::Panicked
    });
    if matches!(end, End::ClientGone | End::Panicked) {
        conn.client_gone.store(true, Ordering::SeqCst);
    }
    mailbox.begin_close();
    drop(close_tx);
    let running = conn.thread.lock().take();
    if let Some(thread) = running {
        let _ = thread.join();
    }
    writer::finish(&conn, &mailbox, &mail);
    if let Some(me) = caller.user.take() {
        account::leave(ctx, &me, &caller);
    }
    // Closing on a client that is still sending would reset the connection before it read our last
    // frames (106, 107): drain its input for a moment first.
    if matches!(end, End::TooLarge | End::Abuse) {
        linger(stream);
    }
    let _ = stream.shutdown(Shutdown::Both);
    tracing::info!(%peer, reason = ?end, "closed");
}

/// Reads frames and dispatches them until the connection ends.
fn read_loop(
    ctx: &Context,
    stream: &TcpStream,
    caller: &mut Caller,
    cfg: &SessionConfig,
    conn: &Conn,
    stopping: &AtomicBool,
) -> End {
    let mut decoder = FrameDecoder::new(cfg.max_frame_bytes);
    let mut buf = vec![0u8; READ_BYTES];
    let mut idle = IdleClock::new(cfg.login_timeout);
    let mut rate = RateLimiter::new(&cfg.rate);
    loop {
        if idle.arm(stream, caller.user.is_some()).is_err() {
            return End::Idle;
        }
        let n = match (&*stream).read(&mut buf) {
            Ok(0) => return stop_reason(stopping, End::ClientGone),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return stop_reason(stopping, End::ClientGone),
        };
        decoder.feed(&buf[..n]);
        let mut refusals = Refusals::default();
        // The read's chats are committed and answered when the turn ends, however it ends.
        let mut turn = caller.turn(ctx);
        while let Some(unit) = decoder.next_frame() {
            if let Some(sep) = decoder.separator() {
                conn.separator.store(sep.byte(), Ordering::Relaxed);
            }
            if unit != Decoded::TooLarge {
                match rate.check() {
                    Verdict::Allow => {
                        refusals.flush(&mut turn, conn);
                    }
                    verdict => {
                        refusals.add(service::rate_limited(&unit));
                        if verdict == Verdict::Close {
                            refusals.flush(&mut turn, conn);
                            return End::Abuse;
                        }
                        continue;
                    }
                }
            }
            match unit {
                Decoded::Frame(bytes) => {
                    let was_logged_in = turn.user.is_some();
                    turn.dispatch(&bytes);
                    if was_logged_in && turn.user.is_none() {
                        idle.restart();
                    }
                }
                Decoded::Malformed => turn.reply(reply::error(
                    Errno::Malformed.code(),
                    "malformed frame: expected one JSON object",
                    None,
                    None,
                )),
                Decoded::TooLarge => {
                    let msg = format!("frame larger than {} bytes", cfg.max_frame_bytes);
                    turn.reply(reply::error(Errno::TooLarge.code(), &msg, None, None));
                    return End::TooLarge;
                }
            }
        }
        let refused = refusals.flush(&mut turn, conn);
        drop(turn);
        if refused {
            // Over the limit: let the client's next frames gather in the socket while the bucket refills,
            // so a flood costs one wake-up, one read and one commit per pause rather than per frame.
            std::thread::sleep(rate.pause());
        }
        size_read(&mut buf, refused);
    }
}

/// Bytes read at once: frames accumulate in the decoder, so this only bounds one read (and costs every
/// connection).
const READ_BYTES: usize = 4 * 1024;

/// Bytes read at once after a pause for the rate limit: what gathered meanwhile, so that the limiter
/// sees a flood at the rate it is sent (and cuts it off in time) rather than at the rate it is read.
const PAUSED_READ_BYTES: usize = 64 * 1024;

/// Sizes the read buffer for the next read: larger after a pause for the rate limit, small again after.
fn size_read(buf: &mut Vec<u8>, paused: bool) {
    let want = if paused {
        PAUSED_READ_BYTES
    } else {
        READ_BYTES
    };
    if buf.len() != want {
        buf.resize(want, 0);
        buf.shrink_to_fit();
    }
}

/// The 107 answers to the refused frames of one read, written together: a flood's refusals cost one
/// write per read rather than one per frame. Flushed before any admitted frame is handled, so replies
/// keep the order of the frames they answer.
#[derive(Default)]
struct Refusals(Vec<String>);

impl Refusals {
    fn add(&mut self, frame: String) {
        self.0.push(frame);
    }

    /// Queues the gathered answers as one write; returns whether there were any.
    fn flush(&mut self, caller: &mut Caller, conn: &Conn) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let separator = char::from(conn.separator.load(Ordering::Relaxed)).to_string();
        caller.reply(self.0.join(&separator));
        self.0.clear();
        true
    }
}

/// A read that ends because the server shut the socket is a shutdown, not a client leaving.
fn stop_reason(stopping: &AtomicBool, otherwise: End) -> End {
    if stopping.load(Ordering::SeqCst) {
        End::Shutdown
    } else {
        otherwise
    }
}

/// Closes connections that stay without a successful login for too long, using the socket read timeout.
struct IdleClock {
    limit: Duration,
    since: Instant,
    /// Whether a read timeout is currently set on the socket.
    armed: bool,
}

impl IdleClock {
    fn new(limit: Duration) -> Self {
        IdleClock {
            limit,
            since: Instant::now(),
            armed: false,
        }
    }

    /// The clock starts again (after a logout).
    fn restart(&mut self) {
        self.since = Instant::now();
    }

    /// Sets the read timeout for the next read; `Err` when the time is up.
    fn arm(&mut self, stream: &TcpStream, logged_in: bool) -> Result<(), ()> {
        if logged_in {
            if self.armed {
                let _ = stream.set_read_timeout(None);
                self.armed = false;
            }
            return Ok(());
        }
        let left = self.limit.checked_sub(self.since.elapsed()).ok_or(())?;
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        self.armed = true;
        Ok(())
    }
}

/// Writes one error frame straight to a socket that has no session (the pool or a thread was refused).
pub fn refuse(stream: &TcpStream, errno: Errno, msg: &str) {
    use std::io::Write;
    let mut frame = reply::error(errno.code(), msg, None, None).into_bytes();
    frame.push(b'\n');
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = (&*stream).write_all(&frame);
    linger(stream);
}

/// Half-closes and drains what the client still sends for a moment, so that closing with unread input
/// does not reset the connection before the client has read our last frame.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
