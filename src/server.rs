//! The listener: accepts connections and hands each to the worker pool, and shuts the node down.
//! WebSocket connections come from the HTTP listener after their handshake, through the same
//! [`Admission`], so both transports share one bound, one pool and one shutdown.
//!
//! Shutdown is one explicit type, [`Shutdown`]: it sets the stop flag, wakes the blocked `accept()` by
//! connecting to our own address (signal handlers restart `accept`, they do not interrupt it), and shuts
//! the read side of every live connection so its reader stops and its writer flushes what is queued.

use std::collections::HashMap;
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};

use crate::pool::Pool;
use crate::protocol::Errno;
use crate::service::Context;
use crate::session::{self, Accepted, SessionConfig, Transport};

/// Listen backlog: std's 128 overflowed when 1,000 clients connected at once.
const BACKLOG: i32 = 4096;

/// Binds `addr` with SO_REUSEADDR (a restarted node binds at once) and a large backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The live connections, so shutdown can reach their sockets.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, Arc<TcpStream>>>,
}

/// Removes a connection from the registry when its session ends, however it ends.
struct Registered<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.streams.lock().remove(&self.id);
    }
}

impl Registry {
    fn register(&self, stream: &Arc<TcpStream>) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.streams.lock().insert(id, stream.clone());
        Registered { registry: self, id }
    }

    fn shutdown_all(&self, how: NetShutdown) {
        for stream in self.streams.lock().values() {
            let _ = stream.shutdown(how);
        }
    }

    fn len(&self) -> usize {
        self.streams.lock().len()
    }
}

/// Stops the node: see the module doc.
pub struct Shutdown {
    stopping: AtomicBool,
    wake_addr: SocketAddr,
    registry: Registry,
}

impl Shutdown {
    /// Starts stopping: no more connections are accepted, and readers are told to stop.
    pub fn begin(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(1));
        self.registry.shutdown_all(NetShutdown::Read);
    }

    /// Waits until every connection has finished flushing, or `grace` has passed; then closes what is
    /// left outright (their queued chat frames are stored offline by their writers).
    pub fn drain(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.registry.len() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.registry.shutdown_all(NetShutdown::Both);
        let hard = Instant::now() + Duration::from_secs(1);
        while self.registry.len() > 0 && Instant::now() < hard {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the node is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A bound listener with its worker pool.
pub struct Server {
    listener: TcpListener,
    admission: Arc<Admission>,
    shutdown: Arc<Shutdown>,
}

/// Where accepted connections go: to a worker of the pool, or, at the bound, to the refuser.
pub struct Admission {
    pool: Pool<Accepted>,
    /// Connections refused at the limit, answered with 108 off the accepting thread.
    refused: Sender<Accepted>,
}

impl Admission {
    /// Hands `accepted` to a worker, or refuses it (108) when every worker is busy.
    pub fn admit(&self, accepted: Accepted) {
        if let Err(accepted) = self.pool.submit(accepted) {
            tracing::warn!(
                busy = self.pool.busy(),
                transport = accepted.transport.name(),
                "connection limit reached; refusing"
            );
            // When even the refuser is backed up, the connection is simply closed.
            let _ = self.refused.try_send(accepted);
        }
    }
}

/// Answers refused connections one after another on a thread of its own, so a flood of refusals costs one
/// thread and never blocks `accept()`.
fn start_refuser() -> std::io::Result<Sender<Accepted>> {
    let (tx, rx) = crossbeam_channel::bounded::<Accepted>(256);
    std::thread::Builder::new()
        .name("refuser".into())
        .spawn(move || {
            for accepted in rx {
                let (stream, transport) = (&accepted.stream, accepted.transport);
                session::refuse(stream, transport, Errno::ServerFull, "server full");
            }
        })?;
    Ok(tx)
}

impl Server {
    /// Prepares to serve `listener` with at most `max_connections` connections at once.
    pub fn new(
        listener: TcpListener,
        ctx: Arc<Context>,
        cfg: SessionConfig,
        max_connections: usize,
        worker_stack_bytes: usize,
    ) -> std::io::Result<Server> {
        let local = listener.local_addr()?;
        let wake_ip = if local.ip().is_unspecified() {
            match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            }
        } else {
            local.ip()
        };
        let shutdown = Arc::new(Shutdown {
            stopping: AtomicBool::new(false),
            wake_addr: SocketAddr::new(wake_ip, local.port()),
            registry: Registry::default(),
        });
        let sd = shutdown.clone();
        let pool = Pool::new(
            "conn",
            max_connections,
            worker_stack_bytes,
            move |accepted: Accepted| {
                let stream = Arc::new(accepted.stream);
                let _registered = sd.registry.register(&stream);
                if sd.is_stopping() {
                    return;
                }
                let (transport, early, client) =
                    (accepted.transport, &accepted.early, accepted.client);
                session::serve(&ctx, &stream, transport, early, client, &cfg, &sd.stopping);
            },
        );
        let admission = Arc::new(Admission {
            pool,
            refused: start_refuser()?,
        });
        Ok(Server {
            listener,
            admission,
            shutdown,
        })
    }

    /// Where the HTTP listener hands WebSocket connections.
    pub fn admission(&self) -> Arc<Admission> {
        self.admission.clone()
    }

    /// The handle that stops this server.
    pub fn shutdown_handle(&self) -> Arc<Shutdown> {
        self.shutdown.clone()
    }

    /// Accepts connections until shutdown begins.
    pub fn run(&self) {
        for conn in self.listener.incoming() {
            if self.shutdown.is_stopping() {
                break;
            }
            let stream = match conn {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.admission.admit(Accepted {
                stream,
                transport: Transport::Tcp,
                early: Vec::new(),
                client: None,
            });
        }
    }
}
