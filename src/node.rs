//! A whole node: storage, the service context, the heartbeat, the listener, and an orderly stop.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::redis::RedisBus;
use crate::config::{Settings, connection_ceiling, machine_limits};
use crate::hasher::Hasher;
use crate::http;
use crate::limit::LoginThrottle;
use crate::metrics::Metrics;
use crate::protocol::proxy::TrustedProxies;
use crate::server::{self, Server, Shutdown};
use crate::service::chat::NodeInbox;
use crate::service::{Context, account, chat, presence};
use crate::session::{SessionConfig, WriterCount};
use crate::store;
use crate::store::batch::LogWriter;

/// Stack of a connection's reader: handlers, JSON and the database driver run on it.
const WORKER_STACK: usize = 256 * 1024;
/// Stack of a connection's writer, which only copies frames and calls the store on its way out.
const WRITER_STACK: usize = 128 * 1024;
/// How long a stopping node lets its connections flush before closing them outright.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

/// A started node, ready to [`Node::run`].
pub struct Node {
    ctx: Arc<Context>,
    server: Server,
}

impl Node {
    /// Opens storage, releases users this node held in a previous life, and binds the listener.
    pub fn start(settings: &Settings) -> anyhow::Result<Node> {
        let listener = server::bind(settings.listen)?;
        let local_addr = listener.local_addr()?;
        let node_id = settings.node_id(local_addr.port());
        let store = store::open(&settings.database, settings.db_pool_size)?;
        store.release_node(&node_id)?;
        store.heartbeat(&node_id)?;
        let bus: Box<dyn Bus> = match &settings.redis {
            Some(url) => Box::new(RedisBus::open(url, &settings.channel_prefix)?),
            None => Box::new(LocalBus),
        };
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context {
            log: LogWriter::start(store.clone(), metrics.clone())?,
            store,
            online: Default::default(),
            bus,
            hasher: Hasher::new(&settings.argon2, settings.hash_threads)?,
            limits: settings.limits.clone(),
            node: node_id.clone(),
            offline_batch: settings.offline_batch,
            max_devices: settings.max_devices,
            unreleased: Default::default(),
            unrecorded: Default::default(),
            login_throttle: LoginThrottle::new(&settings.login_throttle),
            penalties: Default::default(),
            proxies: TrustedProxies::new(settings.trusted_proxies.clone()),
            members: Default::default(),
            users: Default::default(),
            typing: Default::default(),
            metrics,
        });
        ctx.bus.start(Arc::new(NodeInbox(Arc::downgrade(&ctx))));
        let (threads, nofile) = machine_limits();
        let ceiling = connection_ceiling(threads, nofile);
        let max_connections = match settings.max_connections {
            Some(n) if n > ceiling => {
                tracing::warn!(
                    requested = n,
                    ceiling,
                    "max_connections above what this machine allows; lowered (see README: raising the ceiling)"
                );
                ceiling
            }
            Some(n) => n,
            None => ceiling,
        };
        let session = SessionConfig {
            max_frame_bytes: settings.max_frame_bytes,
            mailbox_capacity: settings.mailbox_capacity,
            login_timeout: settings.login_timeout(),
            writer_stack_bytes: WRITER_STACK,
            writers: Arc::new(WriterCount::new(
                threads.saturating_sub(max_connections).max(1),
            )),
            rate: settings.rate_limit.clone(),
        };
        let writers = session.writers.clone();
        let server = Server::new(
            listener,
            ctx.clone(),
            session,
            max_connections,
            WORKER_STACK,
        )?;
        if let Some(addr) = settings.http {
            let bound = http::start(addr, Arc::downgrade(&ctx), writers, server.admission())?;
            tracing::info!(addr = %bound, "web client on http://{bound}/ (WebSocket /ws); health checks and metrics on /healthz, /readyz, /metrics");
        }
        let mode = if settings.redis.is_some() {
            "cluster"
        } else {
            "single node"
        };
        tracing::info!(addr = %local_addr, node = %node_id, max_connections, mode, database = %redact(&settings.database), "listening");
        Ok(Node { ctx, server })
    }

    /// The handle that stops the node (from a signal thread).
    pub fn shutdown_handle(&self) -> Arc<Shutdown> {
        self.server.shutdown_handle()
    }

    /// Serves until shutdown begins, then flushes connections and releases this node's users.
    pub fn run(self) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let ctx = self.ctx.clone();
        let heartbeat = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat(&ctx, &stop_rx))
            .expect("starting the heartbeat thread");
        self.server.run();
        let shutdown = self.server.shutdown_handle();
        shutdown.drain(FLUSH_GRACE);
        drop(stop_tx);
        let _ = heartbeat.join();
        // One last try at the offline records storage refused (the closing connections' included).
        chat::retry_offline(&self.ctx);
        if let Err(e) = self.ctx.store.release_node(&self.ctx.node) {
            tracing::warn!(error = %e, "could not release this node's users; they are freed when its heartbeat goes stale");
        }
        tracing::info!("stopped");
    }
}

/// Keeps this node's heartbeat fresh, so its users count as online, retries failed releases, and frees
/// the users of nodes that stopped beating (telling their friends).
fn heartbeat(ctx: &Context, stop: &Receiver<()>) {
    loop {
        if let Err(e) = ctx.store.heartbeat(&ctx.node) {
            ctx.metrics.error("store");
            tracing::warn!(error = %e, "heartbeat failed");
        }
        account::retry_releases(ctx);
        chat::retry_offline(ctx);
        presence::reap(ctx);
        match stop.recv_timeout(store::HEARTBEAT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// The database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            super::redact("mysql://root:secret@127.0.0.1:3306/chat"),
            "mysql://root:***@127.0.0.1:3306/chat"
        );
        assert_eq!(super::redact("sqlite://chat.db"), "sqlite://chat.db");
    }
}
