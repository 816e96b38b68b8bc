//! One client connection, from accept to close.
//!
//! The worker thread that owns the connection reads: bytes → frames → [`service::Turn::dispatch`]. Frames for the
//! client go through its mailbox, which writes them at once when it can and otherwise queues them for a
//! writer thread started on demand ([`writer`]); an idle connection costs one thread. Everyone shares the
//! socket as `&TcpStream`, which is `Read + Write`, so a connection costs one file descriptor.
//!
//! The connection's delivery state has one owner, [`connection::Connection`], which also winds it down
//! when the reader stops, in the one order that loses nothing (its `close` says why each step comes where
//! it does).

mod connection;
pub mod outbox;
mod writer;

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::protocol::frame::{Decoded, FrameDecoder};
use crate::protocol::{Errno, reply};
use crate::service::{self, Caller, Context};
pub use connection::WriterCount;
use connection::{Conn, Connection};

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_frame_bytes: usize,
    pub mailbox_capacity: usize,
    /// A connection that has not logged in for this long is closed.
    pub login_timeout: Duration,
    pub writer_stack_bytes: usize,
    /// The node's writer threads, bounded (they count against its thread ceiling).
    pub writers: Arc<WriterCount>,
    pub rate: RateConfig,
}

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
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
    let _open = ctx.metrics.connection();
    let connection = Connection::open(ctx, stream, cfg);
    let mut caller = Caller::new(connection.mailbox().clone(), peer_addr.ip());
    let end = catch_unwind(AssertUnwindSafe(|| {
        read_loop(ctx, stream, &mut caller, cfg, connection.conn(), stopping)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%peer, user = ?caller.user.as_ref().map(|u| u.id), "handler panicked; closing");
        End::Panicked
    });
    connection.close(end, &mut caller);
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
                        ctx.metrics.rate_limited();
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
