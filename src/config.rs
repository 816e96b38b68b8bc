//! Configuration: defaults, overridden by a TOML file (`--config`), overridden by environment variables
//! (`CHAT_…`), overridden by flags. `conf/clusterchat.toml` lists every key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde::Deserialize;

use crate::hasher::HashCost;
use crate::limit::{LoginThrottleConfig, RateConfig};
use crate::protocol::proxy::ProxyRange;
use crate::protocol::request::Limits;

/// Flags of `chatserver`; each also read from the environment variable named.
#[derive(Debug, Parser)]
#[command(name = "chatserver", version, about = "clusterchat server node")]
pub struct Args {
    /// TOML config file; flags and environment variables override its values.
    #[arg(long, env = "CHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:6000].
    #[arg(long, env = "CHAT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB [default: sqlite://clusterchat.db].
    #[arg(long, env = "CHAT_DATABASE")]
    pub database: Option<String>,
    /// Most connections served at once; more get errno 108 [default: what the machine's limits allow].
    #[arg(long, env = "CHAT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// redis://HOST:PORT: turns on cluster mode (messages between nodes over Redis pub/sub).
    #[arg(long, env = "CHAT_REDIS")]
    pub redis: Option<String>,
    /// This node's id, recorded with its users' presence [default: HOSTNAME:PORT].
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// Largest frame accepted, in bytes [default: 65536].
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Seconds a connection may stay without a successful login [default: 120].
    #[arg(long, env = "CHAT_LOGIN_TIMEOUT_SECS")]
    pub login_timeout_secs: Option<u64>,
    /// argon2id memory per hash, KiB [default: 19456].
    #[arg(long, env = "CHAT_ARGON2_MEMORY_KIB")]
    pub argon2_memory_kib: Option<u32>,
    /// argon2id passes [default: 2].
    #[arg(long, env = "CHAT_ARGON2_ITERATIONS")]
    pub argon2_iterations: Option<u32>,
    /// Most devices a user may have logged in at once, across the cluster [default: 8].
    #[arg(long, env = "CHAT_MAX_DEVICES")]
    pub max_devices: Option<usize>,
    /// Address of the HTTP listener: web client (`/`), WebSocket (`/ws`), health checks (`/healthz`,
    /// `/readyz`) and metrics (`/metrics`) [default: none].
    #[arg(long, env = "CHAT_HTTP")]
    pub http: Option<SocketAddr>,
    /// Addresses or CIDR ranges (`10.0.0.0/8`) of the proxies (nginx) whose word on a client's address
    /// is taken: a PROXY header ahead of a TCP connection, `X-Forwarded-For` on a WebSocket's upgrade;
    /// comma-separated [default: none].
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<ProxyRange>>,
}

/// Every setting, as the config file spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: String,
    /// `None`: computed from the machine's limits at start-up.
    pub max_connections: Option<usize>,
    /// `None`: `HOSTNAME:PORT`, stable across restarts of the same node.
    pub node_id: Option<String>,
    /// `None`: a single node. `redis://HOST:PORT`: a cluster node.
    pub redis: Option<String>,
    /// `None`: no HTTP listener. Else the address of the web client, WebSocket, health checks and metrics.
    pub http: Option<SocketAddr>,
    /// Prefix of this deployment's Redis channels, so several deployments can share one Redis.
    pub channel_prefix: String,
    pub max_frame_bytes: usize,
    pub login_timeout_secs: u64,
    /// Items a connection's mailbox holds before the connection counts as not reading and is closed.
    pub mailbox_capacity: usize,
    /// Stored messages in one login ack (and in each later batch).
    pub offline_batch: usize,
    /// Most devices a user may have logged in at once, across the cluster.
    pub max_devices: usize,
    /// Database connections in the pool.
    pub db_pool_size: u32,
    /// Threads hashing passwords (0: one per core).
    pub hash_threads: usize,
    pub argon2: HashCost,
    pub limits: Limits,
    pub rate_limit: RateConfig,
    pub login_throttle: LoginThrottleConfig,
    /// The proxies (addresses or CIDR ranges) whose word on a client's address is taken.
    pub trusted_proxies: Vec<ProxyRange>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "0.0.0.0:6000".parse().expect("valid default address"),
            database: "sqlite://clusterchat.db".into(),
            max_connections: None,
            node_id: None,
            redis: None,
            http: None,
            channel_prefix: "clusterchat:".into(),
            max_frame_bytes: 64 * 1024,
            login_timeout_secs: 120,
            mailbox_capacity: 1024,
            offline_batch: 500,
            max_devices: 8,
            db_pool_size: 16,
            hash_threads: 0,
            argon2: HashCost::default(),
            limits: Limits::default(),
            rate_limit: RateConfig::default(),
            login_throttle: LoginThrottleConfig::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Settings {
    /// Reads the file named by `--config` (if any) and applies flags and environment over it.
    pub fn load(args: Args) -> anyhow::Result<Settings> {
        let mut s = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Settings::default(),
        };
        let Args {
            config: _,
            listen,
            database,
            max_connections,
            redis,
            node_id,
            max_frame_bytes,
            login_timeout_secs,
            argon2_memory_kib,
            argon2_iterations,
            max_devices,
            http,
            trusted_proxies,
        } = args;
        override_with(&mut s.max_devices, max_devices);
        override_with(&mut s.listen, listen);
        override_with(&mut s.database, database);
        override_with(&mut s.max_frame_bytes, max_frame_bytes);
        override_with(&mut s.login_timeout_secs, login_timeout_secs);
        override_with(&mut s.argon2.memory_kib, argon2_memory_kib);
        override_with(&mut s.argon2.iterations, argon2_iterations);
        s.max_connections = max_connections.or(s.max_connections);
        s.node_id = node_id.or(s.node_id);
        s.redis = redis.or(s.redis);
        s.http = http.or(s.http);
        override_with(&mut s.trusted_proxies, trusted_proxies);
        // Nodes on separate SQLite files share no users, no log and no presence.
        anyhow::ensure!(
            s.redis.is_none() || !s.database.starts_with("sqlite://"),
            "cluster mode (redis) needs a database all nodes share: use --database mysql://…, not SQLite"
        );
        anyhow::ensure!(s.offline_batch > 0, "offline_batch must be at least 1");
        anyhow::ensure!(s.max_devices > 0, "max_devices must be at least 1");
        anyhow::ensure!(
            s.mailbox_capacity > 0,
            "mailbox_capacity must be at least 1"
        );
        s.rate_limit.validate()?;
        Ok(s)
    }

    /// The node id, defaulting to `HOSTNAME:PORT` with the port actually bound (`--listen …:0` picks one).
    pub fn node_id(&self, bound_port: u16) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}:{bound_port}")
        })
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
}

fn override_with<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Threads this node runs besides its connections (acceptor, signals, heartbeat, hashers, pools…).
const BASE_THREADS: usize = 64;
/// Memory maps per thread (stack, guard page, and the allocator's share), measured with margin.
const MAPS_PER_THREAD: usize = 4;
/// Maps and file descriptors kept for everything else.
const RESERVED_MAPS: usize = 2_000;
const RESERVED_FDS: usize = 200;

/// How many threads this process may run for connections: near the kernel's ceiling a failed spawn can
/// abort the process inside std instead of returning an error, so the node stays under it by design.
pub fn thread_ceiling(max_map_count: usize, threads_max: usize) -> usize {
    let by_maps = max_map_count.saturating_sub(RESERVED_MAPS) / MAPS_PER_THREAD;
    by_maps.min(threads_max).saturating_sub(BASE_THREADS).max(2)
}

/// The most connections for `threads` connection threads and `nofile` descriptors. Each connection has
/// its reader thread; writer threads come and go with traffic, and a quarter of the threads is kept for
/// them.
pub fn connection_ceiling(threads: usize, nofile: usize) -> usize {
    (threads * 3 / 4)
        .min(nofile.saturating_sub(RESERVED_FDS))
        .max(1)
}

/// The machine's limits: the thread ceiling (see [`thread_ceiling`]) and the open-files limit.
pub fn machine_limits() -> (usize, usize) {
    let read =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let maps = read("/proc/sys/vm/max_map_count").unwrap_or(65_530);
    let threads = read("/proc/sys/kernel/threads-max").unwrap_or(usize::MAX);
    let nofile = open_files_limit().unwrap_or(1024);
    (thread_ceiling(maps, threads), nofile)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    Some(soft.parse().unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_on_this_kind_of_machine() {
        // vm.max_map_count 65,530 and 20,000 fds: maps are the limit, 15,818 threads, 11,863 connections.
        let threads = thread_ceiling(65_530, 200_000);
        assert_eq!(threads, (65_530 - 2_000) / 4 - 64);
        assert_eq!(connection_ceiling(threads, 20_000), threads * 3 / 4);
        assert_eq!(
            connection_ceiling(threads, 1_024),
            824,
            "or the open-files limit"
        );
        assert_eq!(connection_ceiling(thread_ceiling(0, 0), 0), 1);
    }

    #[test]
    fn the_example_config_holds_the_defaults() {
        let text = include_str!("../conf/clusterchat.toml");
        let file: Settings = toml::from_str(text).expect("conf/clusterchat.toml parses");
        let defaults = Settings::default();
        assert_eq!(format!("{file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn cluster_mode_on_sqlite_is_refused() {
        let args = Args::parse_from(["chatserver", "--redis", "redis://127.0.0.1:1"]);
        let e = Settings::load(args).unwrap_err().to_string();
        assert!(e.contains("mysql://"), "{e}");
        let args = Args::parse_from([
            "chatserver",
            "--redis",
            "redis://127.0.0.1:1",
            "--database",
            "mysql://u:p@127.0.0.1:3306/chat",
        ]);
        assert!(Settings::load(args).is_ok());
    }

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("cc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nmax_frame_bytes = 100\n[argon2]\nmemory_kib = 64\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "chatserver",
            "--config",
            path.to_str().unwrap(),
            "--max-frame-bytes",
            "200",
        ]);
        let s = Settings::load(args).unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.max_frame_bytes, 200);
        assert_eq!(s.argon2.memory_kib, 64);
        assert_eq!(s.argon2.iterations, 2);
        assert!(
            s.node_id(7000).ends_with(":7000"),
            "default node id is HOST:PORT"
        );
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let args = Args::parse_from(["chatserver", "--config", path.to_str().unwrap()]);
        assert!(Settings::load(args).is_err(), "unknown keys are refused");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let dir = std::env::temp_dir().join(format!("cc-proxies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        let load = |text: &str, flags: &[&str]| {
            std::fs::write(&path, text).unwrap();
            let args = [&["chatserver", "--config", path.to_str().unwrap()], flags].concat();
            Settings::load(Args::parse_from(args)).map(|s| {
                let listed: Vec<String> = s.trusted_proxies.iter().map(|r| r.to_string()).collect();
                listed.join(" ")
            })
        };
        let file = "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n";
        assert_eq!(load(file, &[]).unwrap(), "10.0.0.0/8 127.0.0.1/32");
        let flag = ["--trusted-proxies", "fd00::/8,192.0.2.1"];
        assert_eq!(load(file, &flag).unwrap(), "fd00::/8 192.0.2.1/32");
        let e = load("trusted_proxies = [\"10.0.0.0/40\"]\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("10.0.0.0/40"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
