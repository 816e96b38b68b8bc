//! Command-line flags: one subcommand per scenario, plus `plot`. Every count and duration is bounded, and
//! every address must be a loopback address, so a typo cannot turn the tool on a machine that is not ours.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::{Args, Parser, Subcommand};

use crate::flood::FloodKind;
use crate::ws::Transport;

/// Most users (connections) one run may hold.
pub const MAX_USERS: usize = 100_000;
/// Longest load step or hold, in seconds.
pub const MAX_DURATION_S: f64 = 3_600.0;
/// Highest offered rate, in messages per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Most messages one step may plan (bounds the per-message delivery counters).
pub const MAX_MESSAGES_PER_STEP: u64 = 50_000_000;

/// `chat-bench`: a load generator for servers speaking the cluster chat protocol.
#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load generator for cluster chat servers: how many people one node holds, how many messages per \
             second, how fast a message arrives"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-to-one chat (msgid 6) from random users to random users.
    One(LoadArgs),
    /// Group chat (msgid 10) in groups of --group-size; the tool creates the groups and joins the members.
    Group(GroupArgs),
    /// Hold N logged-in connections for --duration and report the server's memory per connection.
    Idle(CommonArgs),
    /// Register N users, then log them all in at once; report the time until all are in.
    LoginStorm(StormArgs),
    /// Give one user --peers × --per-peer messages (pipelined, acknowledged v2 sends from each peer), then
    /// time a fresh v2 login of that user reading every conversation with CONVERSATIONS and HISTORY.
    Sync(SyncArgs),
    /// PRESENCE under a login storm: register --users, make each a friend of --friends others (a ring of
    /// ADD_FRIEND), then log them all in with v2 as fast as --storm-concurrency allows and read every
    /// PRESENCE frame; then log them all out. Checks at most one frame per online friend device per
    /// login (and logout), and reports the server's CPU, memory and context switches over each storm.
    Presence(PresenceArgs),
    /// Draw latency (p50, p99) against offered rate from the JSON lines of `one` or `group` runs (SVG).
    Plot(PlotArgs),
}

/// Flags every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub setup: SetupArgs,
    /// How connections reach the nodes: their chat port (NUL-terminated frames, as the C++ client), or
    /// WebSocket on `/ws` of their HTTP listener (one frame per masked text message).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Users, one connection each.
    #[arg(short = 'n', long, default_value_t = 1_000)]
    pub users: usize,
    /// Logins (and registrations) in flight at once; argon2 makes each one slow by design.
    #[arg(long, default_value_t = 32)]
    pub login_concurrency: usize,
    /// Seconds of load per step (for `idle`: seconds to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// Flags of the chat scenarios.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Offered rate, messages per second, over all senders (open loop: sent on schedule, answered or not).
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Comma-separated rates to run in turn on the same connections, e.g. 5000,10000,20000; overrides --rate.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Run every rate of --sweep even after one fails (by default the sweep stops after the first failure).
    #[arg(long)]
    pub sweep_all: bool,
    /// Length of each message's text in bytes (at least what the sequence number and timestamp take).
    #[arg(long, default_value_t = 64)]
    pub msg_bytes: usize,
    /// Sender threads; each owns a slice of the connections.
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Receiver threads; each reads a slice of the connections.
    #[arg(long, default_value_t = 2)]
    pub receivers: usize,
    /// Seconds to wait after the last send for late deliveries before counting loss.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// With two or more --addr: every one-to-one message goes to a user on another node than its sender.
    #[arg(long)]
    pub cross_node: bool,
    /// One-to-one: each user writes only to the N users after it (its peers), as people mostly write to a
    /// few; 0, the default: to any user at random, where nearly every message of a run opens a
    /// conversation (the hard case for the log's index).
    #[arg(long, default_value_t = 0)]
    pub peers: usize,
    /// Seed of the random choice of senders and recipients [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// A step passes when its loss is at most this many percent...
    #[arg(long, default_value_t = 0.1)]
    pub max_loss_pct: f64,
    /// ...and its p99 latency at most this many milliseconds.
    #[arg(long, default_value_t = 200.0)]
    pub max_p99_ms: f64,
    /// One more connection, of its own user, sends this many requests per second for the whole run (it
    /// logs in again whenever the server closes it): what one abusive client does to everyone's latency.
    #[arg(long)]
    pub flood_rate: Option<f64>,
    /// What the flood sends.
    #[arg(long, value_enum, default_value_t = FloodKind::Chat)]
    pub flood_kind: FloodKind,
    /// The flooder writes the frames due every this many milliseconds in one write, as a pipelining
    /// attacker would; 0 writes each frame alone at its due time (which costs the tool more than the server).
    #[arg(long, default_value_t = 1.0)]
    pub flood_tick_ms: f64,
    /// v2 acknowledged sends: users log in with v2, every message carries a unique cid, counts as
    /// acknowledged when its CHAT_MSG_ACK (16) comes back, and is resent with the same cid while it is
    /// not (after --ack-timeout, also after the schedule until the grace period ends).
    #[arg(long)]
    pub ack: bool,
    /// With --ack: seconds after which an unacknowledged message is sent again (same cid).
    #[arg(long, default_value_t = 1.0)]
    pub ack_timeout: f64,
    /// The node's SQLite database file: the tool opens it read-only and reports its bytes per message
    /// ((page_count × page_size) after the steps − before them) / messages acknowledged (or sent).
    #[arg(long)]
    pub sqlite_db: Option<PathBuf>,
}

/// Flags of the group scenario.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Members per group (the sender's message goes to the other G-1).
    #[arg(long, default_value_t = 20)]
    pub group_size: usize,
}

/// Flags of the login storm.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Log in once with passwords to get resume tokens, disconnect, then storm with the tokens (needs a
    /// server that hands out tokens in its v2 login ack).
    #[arg(long)]
    pub use_tokens: bool,
}

/// Flags of `sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub setup: SetupArgs,
    /// Users who each write to the one user: one conversation each.
    #[arg(long, default_value_t = 100)]
    pub peers: usize,
    /// Messages each peer sends (pipelined, with cids, each acknowledged).
    #[arg(long, default_value_t = 100)]
    pub per_peer: usize,
    /// HISTORY page size (the protocol allows 1 to 200).
    #[arg(long, default_value_t = 200)]
    pub page: usize,
    /// HISTORY requests in flight at once during the timed sync (1 = one page at a time).
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Length of each message's text in bytes.
    #[arg(long, default_value_t = 64)]
    pub msg_bytes: usize,
    /// Peers writing at once while the messages are prepared.
    #[arg(long, default_value_t = 32)]
    pub login_concurrency: usize,
    /// The node's SQLite database file, for bytes per stored message (see `one --sqlite-db`).
    #[arg(long)]
    pub sqlite_db: Option<PathBuf>,
}

impl SyncArgs {
    /// Checks the bounds; returns the flags setup shares with the other scenarios.
    pub fn common(&self) -> anyhow::Result<CommonArgs> {
        ensure!(
            (1..=10_000).contains(&self.peers),
            "--peers must be 1 to 10000"
        );
        ensure!(
            (1..=100_000).contains(&self.per_peer),
            "--per-peer must be 1 to 100000"
        );
        ensure!((1..=200).contains(&self.page), "--page must be 1 to 200");
        ensure!(
            (1..=1_024).contains(&self.in_flight),
            "--in-flight must be 1 to 1024"
        );
        ensure!(
            (crate::msgtext::MIN_BYTES..=16_384).contains(&self.msg_bytes),
            "--msg-bytes must be {} to 16384",
            crate::msgtext::MIN_BYTES
        );
        self.setup.common(1, self.peers + 1, self.login_concurrency)
    }
}

/// Flags of `presence`.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub setup: SetupArgs,
    /// Users, one v2 device each during the storm.
    #[arg(short = 'n', long, default_value_t = 8_000)]
    pub users: usize,
    /// Friends of each user (even): user i befriends i+1 ..= i+F/2 around a ring of all users; 0 runs the
    /// same storms without presence, as a baseline.
    #[arg(long, default_value_t = 50)]
    pub friends: usize,
    /// Setup requests (register; login, ADD_FRIEND and logout) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub login_concurrency: usize,
    /// Logins (and logouts) of the storms awaiting their answer at once.
    #[arg(long, default_value_t = 128)]
    pub storm_concurrency: usize,
    /// Reader threads following the storm's connections.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Seconds to wait after each storm until no PRESENCE frame came for one second (at most this long).
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    /// Skip the logout storm (the connections are just closed at the end).
    #[arg(long)]
    pub no_logout: bool,
    /// Seed of the storms' orders (a shuffle of the users) [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl PresenceArgs {
    /// Checks the bounds; returns the flags setup shares with the other scenarios.
    pub fn common(&self) -> anyhow::Result<CommonArgs> {
        ensure!(
            (2..=4_096).contains(&self.storm_concurrency),
            "--storm-concurrency must be 2 to 4096"
        );
        ensure!(
            (1..=64).contains(&self.readers),
            "--readers must be 1 to 64"
        );
        ensure!(self.friends <= 1_000, "--friends must be 0 to 1000");
        check_seconds("--grace", self.grace)?;
        self.setup
            .common(self.setup.addrs.len(), self.users, self.login_concurrency)
    }
}

/// Where the nodes are, how to name and log in the bench's users, and how to label the run: the flags of
/// every scenario, and all that `sync` and `presence` take of [`CommonArgs`] (they have their own users,
/// setup concurrency and timing).
#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// Server address (loopback only); repeat for several nodes, users are spread over them round-robin
    /// (`sync` uses the first). With `--transport ws`, each node's HTTP listener (`--http`).
    #[arg(long = "addr", required = true, value_delimiter = ',')]
    pub addrs: Vec<SocketAddr>,
    /// The server's process id, for its CPU time, memory and context switches; repeat for each node.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Prefix of the user and group names [default: random, so that runs against one database never clash].
    #[arg(long)]
    pub prefix: Option<String>,
    /// Password of every bench user.
    #[arg(long, default_value = "bench-pw")]
    pub password: String,
    /// Seconds to wait for a setup reply (register, login, group) before counting a failure (`presence`:
    /// a storm in which nothing is answered for this long stops).
    #[arg(long, default_value_t = 30.0)]
    pub reply_timeout: f64,
    /// A free-form label copied into the JSON line (e.g. "sqlite"), used as the series name by `plot`.
    #[arg(long, default_value = "")]
    pub label: String,
}

impl SetupArgs {
    /// The [`CommonArgs`] for `users` users over the first `nodes` addresses, over TCP, checked.
    fn common(
        &self,
        nodes: usize,
        users: usize,
        login_concurrency: usize,
    ) -> anyhow::Result<CommonArgs> {
        let common = CommonArgs {
            setup: SetupArgs {
                addrs: self.addrs.iter().take(nodes).copied().collect(),
                ..self.clone()
            },
            users,
            login_concurrency,
            duration: 1.0,
            transport: Transport::Tcp,
        };
        common.validate()?;
        Ok(common)
    }
}

/// Flags of `plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Files holding the JSON lines of `one` or `group` runs (with --sweep); one series pair per label.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long)]
    pub output: PathBuf,
    /// The chart's title.
    #[arg(long, default_value = "chat-bench: one-to-one latency vs offered rate")]
    pub title: String,
}

impl CommonArgs {
    /// Checks the bounds; the tool refuses anything but loopback targets.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.setup.addrs.is_empty(), "give at least one --addr");
        for addr in &self.setup.addrs {
            ensure!(
                addr.ip().is_loopback(),
                "{addr} is not a loopback address: chat-bench only loads servers on this machine"
            );
        }
        ensure!(
            (1..=MAX_USERS).contains(&self.users),
            "--users must be 1 to {MAX_USERS}"
        );
        ensure!(
            (1..=4_096).contains(&self.login_concurrency),
            "--login-concurrency must be 1 to 4096"
        );
        check_seconds("--duration", self.duration)?;
        check_seconds("--reply-timeout", self.setup.reply_timeout)?;
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn reply_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.setup.reply_timeout)
    }
}

impl LoadArgs {
    /// Checks the bounds and returns the rates to run, in order.
    pub fn rates(&self) -> anyhow::Result<Vec<f64>> {
        ensure!(
            !self.ack || self.flood_rate.is_none(),
            "--ack and --flood-rate do not go together"
        );
        ensure!(
            self.common.transport == Transport::Tcp || self.flood_rate.is_none(),
            "--flood-rate speaks TCP only: leave out --transport ws"
        );
        self.common.validate()?;
        ensure!(
            (1..=64).contains(&self.senders) && (1..=64).contains(&self.receivers),
            "--senders and --receivers must be 1 to 64"
        );
        ensure!(
            (crate::msgtext::MIN_BYTES..=16_384).contains(&self.msg_bytes),
            "--msg-bytes must be {} to 16384",
            crate::msgtext::MIN_BYTES
        );
        check_seconds("--grace", self.grace)?;
        ensure!(
            !self.cross_node || self.common.setup.addrs.len() >= 2,
            "--cross-node needs two or more --addr"
        );
        if self.ack {
            check_seconds("--ack-timeout", self.ack_timeout)?;
        }
        if let Some(rate) = self.flood_rate {
            check_rate(rate).context("--flood-rate")?;
            ensure!(
                (0.0..=1_000.0).contains(&self.flood_tick_ms),
                "--flood-tick-ms must be 0 to 1000"
            );
        }
        let rates = match &self.sweep {
            Some(list) => parse_sweep(list)?,
            None => vec![self.rate],
        };
        for &rate in &rates {
            check_rate(rate)?;
            let planned = rate * self.common.duration;
            ensure!(
                planned <= MAX_MESSAGES_PER_STEP as f64,
                "rate {rate} for {} s plans more than {MAX_MESSAGES_PER_STEP} messages",
                self.common.duration
            );
        }
        Ok(rates)
    }
}

/// Parses `--sweep`: comma-separated positive rates such as `5000,10000,2.5e4`.
pub fn parse_sweep(list: &str) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rate: f64 = part
            .parse()
            .with_context(|| format!("--sweep: {part:?} is not a number"))?;
        check_rate(rate).with_context(|| format!("--sweep: {part:?}"))?;
        rates.push(rate);
    }
    if rates.is_empty() {
        bail!("--sweep needs at least one rate");
    }
    if rates.len() > 100 {
        bail!("--sweep takes at most 100 rates");
    }
    Ok(rates)
}

fn check_rate(rate: f64) -> anyhow::Result<()> {
    ensure!(
        rate.is_finite() && rate > 0.0 && rate <= MAX_RATE,
        "a rate must be above 0 and at most {MAX_RATE} messages per second"
    );
    Ok(())
}

fn check_seconds(flag: &str, seconds: f64) -> anyhow::Result<()> {
    ensure!(
        seconds.is_finite() && seconds > 0.0 && seconds <= MAX_DURATION_S,
        "{flag} must be above 0 and at most {MAX_DURATION_S} seconds"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_parses_in_order_with_spaces_and_exponents() {
        assert_eq!(
            parse_sweep("5000, 10000,2.5e4,").unwrap(),
            vec![5_000.0, 10_000.0, 25_000.0]
        );
    }

    #[test]
    fn sweep_refuses_bad_rates() {
        assert!(parse_sweep("").is_err());
        assert!(parse_sweep(",,").is_err());
        assert!(parse_sweep("1000,abc").is_err());
        assert!(parse_sweep("0").is_err());
        assert!(parse_sweep("-5").is_err());
        assert!(parse_sweep("inf").is_err());
        assert!(parse_sweep("1e9").is_err());
    }

    #[test]
    fn presence_flags_are_bounded() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["chat-bench", "presence", "--addr", "127.0.0.1:6000"];
            argv.extend_from_slice(extra);
            let Command::Presence(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("presence expected")
            };
            args
        };
        let args = parse(&[]);
        assert_eq!((args.users, args.friends), (8_000, 50));
        assert_eq!(args.common().unwrap().users, 8_000);
        assert!(parse(&["--storm-concurrency", "0"]).common().is_err());
        assert!(parse(&["--friends", "5000"]).common().is_err());
        assert!(parse(&["--readers", "65"]).common().is_err());
        assert!(parse(&["--grace", "0"]).common().is_err());
        assert!(parse(&["--users", "0"]).common().is_err());
    }

    #[test]
    fn sync_and_presence_pass_the_setup_flags_on() {
        let shared = [
            "--addr",
            "127.0.0.1:6000,127.0.0.1:6001",
            "--server-pid",
            "7",
            "--prefix",
            "p",
            "--label",
            "l",
        ];
        let parse = |scenario: &str| {
            let mut argv = vec!["chat-bench", scenario];
            argv.extend_from_slice(&shared);
            Cli::try_parse_from(argv).unwrap().command
        };
        let Command::Sync(sync) = parse("sync") else {
            panic!("sync expected")
        };
        let Command::Presence(presence) = parse("presence") else {
            panic!("presence expected")
        };
        let (sync, presence) = (sync.common().unwrap(), presence.common().unwrap());
        assert_eq!(sync.setup.addrs.len(), 1, "sync uses the first node only");
        assert_eq!(presence.setup.addrs.len(), 2);
        assert_eq!((sync.users, presence.users), (101, 8_000));
        for common in [sync, presence] {
            assert_eq!(common.setup.server_pids, vec![7]);
            assert_eq!(
                (common.setup.prefix.as_deref(), common.setup.label.as_str()),
                (Some("p"), "l")
            );
        }
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let cli = Cli::try_parse_from(["chat-bench", "idle", "--addr", "10.0.0.1:6000"]).unwrap();
        let Command::Idle(common) = cli.command else {
            panic!("idle expected")
        };
        assert!(common.validate().is_err());
        let cli = Cli::try_parse_from([
            "chat-bench",
            "idle",
            "--addr",
            "127.0.0.1:6000,127.0.0.2:6001",
        ])
        .unwrap();
        let Command::Idle(common) = cli.command else {
            panic!("idle expected")
        };
        assert_eq!(common.setup.addrs.len(), 2);
        assert!(common.validate().is_ok());
    }
}
