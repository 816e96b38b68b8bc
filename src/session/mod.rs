//! One client connection, from accept to close.
//!
//! The worker thread that owns the connection reads: bytes → frames (through the connection's
//! [`transport`], framed TCP or WebSocket) → [`service::Turn::dispatch`]. Frames for the client go through
//! its mailbox, which writes them at once when it can and otherwise queues them for a writer thread started
//! on demand ([`writer`]); an idle connection costs one thread. Everyone shares the socket as `&TcpStream`,
//! which is `Read + Write`, so a connection costs one file descriptor.
//!
//! The connection's delivery state has one owner, [`connection::Connection`], which also winds it down
//! when the reader stops, in the one order that loses nothing (its `close` says why each step comes where
//! it does).

mod connection;
pub mod outbox;
mod transport;
mod writer;

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::protocol::frame::Decoded;
use crate::protocol::{Errno, reply};
use crate::service::{self, Caller, Context};
pub use connection::WriterCount;
use connection::{Conn, Connection};
pub use transport::Transport;
use transport::{Framing, Inbound, Unit};

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
    /// Broke its transport's protocol (a WebSocket frame unmasked, say).
    Broken,
    /// Never served: the node was full (108).
    Refused,
}

/// A connection handed to the worker pool: its socket, the transport it speaks, what was read past
/// the WebSocket handshake (nothing, from a well-behaved client), and the client's address if a trusted
/// proxy named it in the handshake (`X-Forwarded-For`; a TCP connection's PROXY header comes later, as
/// [`Unit::Proxied`]).
pub struct Accepted {
    pub stream: TcpStream,
    pub transport: Transport,
    pub early: Vec<u8>,
    pub client: Option<IpAddr>,
}

/// Serves one connection until it closes. Runs on a worker thread of the connection pool.
pub fn serve(
    ctx: &Arc<Context>,
    stream: &Arc<TcpStream>,
    transport: Transport,
    early: &[u8],
    client: Option<IpAddr>,
    cfg: &SessionConfig,
    stopping: &AtomicBool,
) {
    let peer_addr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let peer = peer_addr.to_string();
    let _ = stream.set_nodelay(true);
    tracing::info!(%peer, transport = transport.name(), "connected");
    let _open = ctx.metrics.connection(transport.name());
    let connection = Connection::open(ctx, stream, Framing::new(transport), cfg);
    let client = client.unwrap_or(peer_addr.ip());
    let mut caller = Caller::new(connection.mailbox().clone(), client);
    let mut inbound = Inbound::new(transport, cfg.max_frame_bytes);
    inbound.feed(early);
    let end = catch_unwind(AssertUnwindSafe(|| {
        let reader = Reader {
            stream,
            inbound,
            conn: connection.conn(),
        };
        read_loop(ctx, reader, &mut caller, cfg, stopping)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%peer, user = ?caller.user.as_ref().map(|u| u.id), "handler panicked; closing");
        End::Panicked
    });
    connection.close(end, &mut caller);
    tracing::info!(%peer, reason = ?end, "closed");
}

/// The reading side of a connection: its socket, its transport's decoder, and its write side (where
/// the decoder leaves the TCP separator).
struct Reader<'a> {
    stream: &'a TcpStream,
    inbound: Inbound,
    conn: &'a Conn,
}

/// Reads frames and dispatches them until the connection ends.
fn read_loop(
    ctx: &Arc<Context>,
    mut reader: Reader,
    caller: &mut Caller,
    cfg: &SessionConfig,
    stopping: &AtomicBool,
) -> End {
    let mut buf = vec![0u8; READ_BYTES];
    let mut idle = IdleClock::new(cfg.login_timeout);
    let mut rate = RateLimiter::new(&cfg.rate);
    loop {
        // First what is there already (bytes sent right behind a WebSocket handshake), then each read.
        let refused = match handle_units(ctx, &mut reader, caller, cfg, &mut rate, &mut idle) {
            Ok(refused) => refused,
            Err(end) => return end,
        };
        if refused {
            // Over the limit: let the client's next frames gather in the socket while the bucket refills,
            // so a flood costs one wake-up, one read and one commit per pause rather than per frame.
            std::thread::sleep(rate.pause());
        }
        size_read(&mut buf, refused);
        if idle.arm(reader.stream, caller.user.is_some()).is_err() {
            return End::Idle;
        }
        match reader.stream.read(&mut buf) {
            Ok(0) => return stop_reason(stopping, End::ClientGone),
            Ok(n) => reader.inbound.feed(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return stop_reason(stopping, End::ClientGone),
        }
    }
}

/// Handles every whole unit the decoder holds, as one turn (the read's chats are committed and
/// answered when it ends, however it ends). `Ok` says whether the rate limit refused any; `Err` why
/// the connection ends.
fn handle_units(
    ctx: &Arc<Context>,
    reader: &mut Reader,
    caller: &mut Caller,
    cfg: &SessionConfig,
    rate: &mut RateLimiter,
    idle: &mut IdleClock,
) -> Result<bool, End> {
    let framing = &reader.conn.framing;
    let mut refusals = Refusals::default();
    let mut turn = caller.turn(ctx);
    while let Some(unit) = reader.inbound.next(framing) {
        if !matches!(
            unit,
            Unit::Frame(Decoded::TooLarge) | Unit::End(_) | Unit::Proxied(_)
        ) {
            match rate.check() {
                Verdict::Allow => {
                    refusals.flush(&mut turn, framing);
                }
                verdict => {
                    ctx.metrics.rate_limited();
                    match &unit {
                        Unit::Frame(unit) => refusals.add(service::rate_limited(unit)),
                        Unit::Refused(_) => {
                            refusals.add(service::rate_limited(&Decoded::Malformed))
                        }
                        // An unanswered ping costs nothing more.
                        _ => {}
                    }
                    if verdict == Verdict::Close {
                        refusals.flush(&mut turn, framing);
                        if let Some(user) = &turn.user {
                            ctx.penalties.record(user.id);
                            ctx.bus.cut_off(user.id);
                        }
                        return Err(End::Abuse);
                    }
                    continue;
                }
            }
        }
        match unit {
            Unit::Frame(Decoded::Frame(bytes)) => {
                let was_logged_in = turn.user.is_some();
                turn.dispatch(&bytes);
                match (&turn.user, was_logged_in) {
                    (None, true) => idle.restart(),
                    (Some(user), false) if ctx.penalties.holds(user.id) => rate.penalise(),
                    _ => {}
                }
            }
            Unit::Frame(Decoded::Malformed) => {
                turn.reply(malformed("malformed frame: expected one JSON object"))
            }
            Unit::Refused(why) => turn.reply(malformed(why)),
            Unit::Frame(Decoded::TooLarge) => {
                let msg = format!("frame larger than {} bytes", cfg.max_frame_bytes);
                turn.reply(reply::error(Errno::TooLarge.code(), &msg, None, None));
                return Err(End::TooLarge);
            }
            Unit::Answer(bytes) => turn.send_framed(bytes),
            Unit::End(end) => return Err(end),
            Unit::Proxied(client) => turn.peer = proxied(ctx, turn.peer, client),
        }
    }
    Ok(refusals.flush(&mut turn, framing))
}

/// The client's address once a PROXY header named `client` on a connection from `peer`: `client` if
/// `peer` is a trusted proxy. From anyone else the header is read past and its address ignored (said once
/// in the log: a proxy that sends PROXY headers and is not listed in `trusted_proxies` is a setup mistake,
/// and its clients then all count as its address).
fn proxied(ctx: &Context, peer: IpAddr, client: IpAddr) -> IpAddr {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !ctx.proxies.trusts(peer) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%peer, "a PROXY header from an address not in trusted_proxies: its address is ignored");
    }
    ctx.proxies.client(peer, client)
}

/// The 100 answer to a unit that is no frame.
fn malformed(why: &str) -> String {
    reply::error(Errno::Malformed.code(), why, None, None)
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
    fn flush(&mut self, caller: &mut Caller, framing: &Framing) -> bool {
        if self.0.is_empty() {
            return false;
        }
        caller.send_framed(framing.encode_all(&self.0));
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

/// Writes one error frame straight to a socket that has no session (the pool or a thread was refused),
/// then closes it (a WebSocket with 1013, try again later).
pub fn refuse(stream: &TcpStream, transport: Transport, errno: Errno, msg: &str) {
    use std::io::Write;
    let framing = Framing::new(transport);
    let mut bytes = framing.encode(&reply::error(errno.code(), msg, None, None));
    bytes.extend(framing.goodbye(End::Refused).unwrap_or_default());
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = (&*stream).write_all(&bytes);
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
