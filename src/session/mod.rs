//! One client connection, from accept to close.
//!
//! The worker thread that owns the connection reads: bytes → frames → [`service::dispatch`]. A writer
//! thread of its own drains the connection's mailbox to the socket ([`writer`]). Both share the socket as
//! `&TcpStream`, which is `Read + Write`, so a connection costs one file descriptor.
//!
//! When the reader stops, the connection winds down in one order: the mailbox starts closing, the writer
//! finishes: it flushes everything (server shutdown, idle timeout, oversize frame) or, when the client went
//! away, writes only replies and stores chat frames offline rather than into a dying socket; then the
//! user leaves (out of the online map, presence released). Messages arriving after the mailbox closed are
//! stored by their senders, after everything older, so the order per sender holds.

mod writer;

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::mailbox::Mailbox;
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
    pub rate: RateConfig,
}

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

/// State the reader and the writer share.
pub(crate) struct Shared {
    /// The separator byte the writer appends; the reader sets it from the client's first separator.
    separator: AtomicU8,
    /// Set before the writer is told to finish: write replies only, store chat frames.
    client_gone: AtomicBool,
}

/// Serves one connection until it closes. Runs on a worker thread of the connection pool.
pub fn serve(ctx: &Context, stream: &Arc<TcpStream>, cfg: &SessionConfig, stopping: &AtomicBool) {
    let peer_addr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let peer = peer_addr.to_string();
    let _ = stream.set_nodelay(true);
    tracing::info!(%peer, "connected");
    let closer = stream.clone();
    let (mailbox, rx) = Mailbox::new(cfg.mailbox_capacity, move || {
        let _ = closer.shutdown(Shutdown::Both);
    });
    let shared = Shared {
        separator: AtomicU8::new(Separator::Newline.byte()),
        client_gone: AtomicBool::new(false),
    };
    let (close_tx, close_rx) = crossbeam_channel::bounded::<()>(0);
    let mut caller = Caller {
        user: None,
        mailbox: mailbox.clone(),
        peer: peer_addr.ip(),
    };
    let end = std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(cfg.writer_stack_bytes)
            .spawn_scoped(scope, || {
                writer::run(ctx, stream, rx, close_rx, &mailbox, &shared);
            });
        if let Err(e) = writer {
            tracing::warn!(%peer, error = %e, "no thread for the writer; refusing");
            refuse(stream, Errno::ServerFull, "server full");
            return End::ClientGone;
        }
        let end = catch_unwind(AssertUnwindSafe(|| {
            read_loop(ctx, stream, &mut caller, cfg, &shared, stopping)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(%peer, user = ?caller.user.as_ref().map(|u| u.id), "handler panicked; closing");
            End::Panicked
        });
        if matches!(end, End::ClientGone | End::Panicked) {
            shared.client_gone.store(true, Ordering::SeqCst);
        }
        mailbox.begin_close();
        drop(close_tx);
        end
    });
    if let Some(me) = caller.user.take() {
        account::leave(ctx, &me, &caller);
    }
    if end == End::TooLarge {
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
    shared: &Shared,
    stopping: &AtomicBool,
) -> End {
    let mut decoder = FrameDecoder::new(cfg.max_frame_bytes);
    let mut buf = vec![0u8; 16 * 1024];
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
        while let Some(unit) = decoder.next_frame() {
            if let Some(sep) = decoder.separator() {
                shared.separator.store(sep.byte(), Ordering::Relaxed);
            }
            if unit != Decoded::TooLarge {
                match rate.check() {
                    Verdict::Allow => {}
                    verdict => {
                        let msg = "rate limited: too many requests";
                        caller.reply(reply::error(Errno::RateLimited.code(), msg, None, None));
                        if verdict == Verdict::Close {
                            return End::Abuse;
                        }
                        continue;
                    }
                }
            }
            match unit {
                Decoded::Frame(bytes) => {
                    let was_logged_in = caller.user.is_some();
                    service::dispatch(ctx, caller, &bytes);
                    if was_logged_in && caller.user.is_none() {
                        idle.restart();
                    }
                }
                Decoded::Malformed => caller.reply(reply::error(
                    Errno::Malformed.code(),
                    "malformed frame: expected one JSON object",
                    None,
                    None,
                )),
                Decoded::TooLarge => {
                    let msg = format!("frame larger than {} bytes", cfg.max_frame_bytes);
                    caller.reply(reply::error(Errno::TooLarge.code(), &msg, None, None));
                    return End::TooLarge;
                }
            }
        }
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
