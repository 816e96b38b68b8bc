//! What a node counts, for Prometheus (`GET /metrics` on the HTTP listener, in the text format of the
//! `prometheus-client` crate). Counters and histograms are updated where things happen; the gauges of
//! what is there now (connections, users, devices, writer threads, publishes waiting for Redis, the
//! SQLite log's index) are read when the page is asked for.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::Indexed;

/// A request's kind and how it ended (errno 0 for success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub msgid: i64,
    pub errno: i64,
}

/// Where a committed message went for one recipient.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `live` (a device on this node took it), `forwarded` (another node did), `stored` (offline).
    pub route: &'static str,
}

/// What failed: `store` (the database) or `redis` (the bus between nodes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// The transport of a connection: `tcp` or `websocket`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    deliveries: Family<RouteLabels, Counter>,
    commit_messages: Histogram,
    commit_seconds: Histogram,
    rate_limited: Counter,
    errors: Family<SourceLabels, Counter>,
    connections: Family<TransportLabels, Gauge>,
    users: Gauge,
    devices: Gauge,
    writers: Gauge,
    bus_waiting: Gauge,
    index_messages: Gauge,
    index_conversations: Gauge,
}

/// What is there now, read when the page is asked for.
pub struct Now {
    pub users: usize,
    pub devices: usize,
    pub writers: usize,
    /// Publishes not yet taken by Redis ([`crate::bus::Bus::waiting`]).
    pub bus_waiting: usize,
    /// The log's index in memory, on the embedded store ([`crate::store::Log::indexed`]).
    pub indexed: Option<Indexed>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("clusterchat");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by msgid and errno (0: success)",
            requests.clone(),
        );
        let deliveries = Family::<RouteLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Committed messages handed to a recipient: live here, forwarded to another node, or stored offline",
            deliveries.clone(),
        );
        let commit_messages = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "log_commit_messages",
            "Messages per log commit (group commit)",
            commit_messages.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "log_commit_seconds",
            "Time of one log commit",
            commit_seconds.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Frames refused by the per-connection rate limit (107)",
            rate_limited.clone(),
        );
        let errors = Family::<SourceLabels, Counter>::default();
        registry.register(
            "errors",
            "Store and Redis operations that failed: log commits, offline records, heartbeats and requests \
             answered 109 (store); forwards and subscriptions (redis)",
            errors.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let connections = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "connections",
            "Open connections, by transport (tcp, websocket)",
            connections.clone(),
        );
        let users = gauge(&mut registry, "users", "Users with a device on this node");
        let devices = gauge(&mut registry, "devices", "Logged-in devices on this node");
        let writers = gauge(
            &mut registry,
            "writer_threads",
            "Connection writer threads alive",
        );
        let bus_waiting = gauge(
            &mut registry,
            "bus_publishes_waiting",
            "Publishes not yet taken by Redis: queued, or nudges and group changes kept to send again once it answers",
        );
        let index_messages = gauge(
            &mut registry,
            "log_index_messages",
            "Positions (messages) in the log's index in memory; it grows with the log (embedded store only: 0 on MySQL)",
        );
        let index_conversations = gauge(
            &mut registry,
            "log_index_conversations",
            "Conversations in the log's index in memory (embedded store only: 0 on MySQL)",
        );
        Metrics {
            registry,
            requests,
            deliveries,
            commit_messages,
            commit_seconds,
            rate_limited,
            errors,
            connections,
            users,
            devices,
            writers,
            bus_waiting,
            index_messages,
            index_conversations,
        }
    }
}

/// Counts a connection as open until dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A request with `msgid` ended with `errno` (0: success).
    pub fn request(&self, msgid: i64, errno: i64) {
        self.requests
            .get_or_create(&RequestLabels { msgid, errno })
            .inc();
    }

    /// `count` recipients got a committed message by `route` (`live`, `forwarded` or `stored`).
    pub fn delivered(&self, route: &'static str, count: usize) {
        if count > 0 {
            self.deliveries
                .get_or_create(&RouteLabels { route })
                .inc_by(count as u64);
        }
    }

    /// One log commit of `messages` messages took `took`.
    pub fn commit(&self, messages: usize, took: Duration) {
        self.commit_messages.observe(messages as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// A frame refused by the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// An operation on `source` (`store` or `redis`) failed.
    pub fn error(&self, source: &'static str) {
        self.errors.get_or_create(&SourceLabels { source }).inc();
    }

    /// Counts a connection over `transport` as open while the returned guard lives.
    pub fn connection(&self, transport: &'static str) -> OpenConnection {
        let gauge = self
            .connections
            .get_or_create(&TransportLabels { transport })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// The page, with the gauges set to `now`.
    pub fn render(&self, now: Now) -> String {
        self.users.set(now.users as i64);
        self.devices.set(now.devices as i64);
        self.writers.set(now.writers as i64);
        self.bus_waiting.set(now.bus_waiting as i64);
        if let Some(indexed) = now.indexed {
            self.index_messages.set(indexed.messages as i64);
            self.index_conversations.set(indexed.conversations as i64);
        }
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &self.registry)
            .expect("writing to a String cannot fail");
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_on_the_page() {
        let m = Metrics::default();
        m.request(6, 0);
        m.request(6, 0);
        m.request(6, 104);
        m.delivered("live", 3);
        m.error("redis");
        m.commit(5, Duration::from_millis(2));
        let _open = m.connection("tcp");
        drop(m.connection("websocket"));
        let page = m.render(Now {
            users: 2,
            devices: 3,
            writers: 1,
            bus_waiting: 4,
            indexed: Some(Indexed {
                messages: 10,
                conversations: 2,
            }),
        });
        assert!(
            page.contains("clusterchat_requests_total{msgid=\"6\",errno=\"0\"} 2"),
            "{page}"
        );
        assert!(page.contains("clusterchat_requests_total{msgid=\"6\",errno=\"104\"} 1"));
        assert!(page.contains("clusterchat_deliveries_total{route=\"live\"} 3"));
        assert!(page.contains("clusterchat_connections{transport=\"tcp\"} 1"));
        assert!(page.contains("clusterchat_connections{transport=\"websocket\"} 0"));
        assert!(page.contains("clusterchat_devices 3"));
        assert!(page.contains("clusterchat_errors_total{source=\"redis\"} 1"));
        assert!(page.contains("clusterchat_log_commit_messages_count 1"));
        assert!(page.contains("clusterchat_bus_publishes_waiting 4"));
        assert!(page.contains("clusterchat_log_index_messages 10"));
        assert!(page.contains("clusterchat_log_index_conversations 2"));
    }
}
