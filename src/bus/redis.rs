//! The cluster bus: Redis publish/subscribe, one channel per user (`PREFIX` + `u` + id).
//!
//! Two threads, each owning its own connection:
//! - the **subscriber** owns the SUBSCRIBE connection: it applies queued subscribe/unsubscribe commands
//!   between short reads, hands each forwarded frame to the [`Inbox`], and after losing Redis reconnects
//!   with backoff, re-subscribes every user it should hold and asks the inbox to fetch what was stored
//!   meanwhile;
//! - the **publisher** takes whatever PUBLISH requests have queued and sends them as one pipeline, so many
//!   connections publishing at once cost one round trip; each request still gets its own receiver count.
//!
//! While Redis is unreachable, calls fail fast (the caller stores the message offline) instead of waiting;
//! nudges and group changes, which nobody waits for, are sent again once Redis answers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use parking_lot::Mutex;
use redis::{Client, Connection};

use super::{Bus, BusError, Inbox};
use crate::model::{GroupId, UserId};

/// The payload of a nudge; every other payload is a JSON object, starting with `{`.
const NUDGE: &str = "N";
/// The channel (after the prefix) on which nodes announce group membership changes.
const GROUPS: &str = "groups";
/// The channel (after the prefix) on which nodes announce the users they cut off for flooding.
const CUT_OFF: &str = "cutoff";
/// How long the subscriber blocks in a read before it looks at queued commands.
const POLL: Duration = Duration::from_millis(20);
/// Timeouts for connecting and for commands that expect a reply.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Most PUBLISH commands in one pipeline.
const PIPELINE: usize = 256;
/// Backoff between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

fn bus_err(e: impl std::fmt::Display) -> BusError {
    BusError(e.to_string())
}

/// What the subscriber thread is asked to do.
enum Command {
    Subscribe(UserId, Sender<Result<(), BusError>>),
    Unsubscribe(UserId, Sender<()>),
}

/// One PUBLISH for the publisher thread, and what becomes of its outcome.
struct Publish {
    channel: String,
    payload: Arc<str>,
    then: Then,
}

/// What the publisher does with a publish's outcome.
enum Then {
    /// Hands the receiver count, or the error, to the caller waiting for it.
    Answer(Sender<Result<i64, BusError>>),
    /// Nobody waits; if Redis did not take it, it goes out again once Redis answers ([`Missed`]): a
    /// nudge or a group change means the same later.
    Again,
    /// Nobody waits, and later it would mean something else (a cut-off, whose penalty runs from its
    /// arrival): dropped if Redis did not take it.
    Forget,
}

/// The Redis bus of one node.
pub struct RedisBus {
    client: Client,
    prefix: String,
    commands: Sender<Command>,
    command_rx: Mutex<Option<Receiver<Command>>>,
    publishes: Sender<Publish>,
    /// Whether the subscriber holds a confirmed subscription now (set and cleared by it).
    subscribed: Arc<AtomicBool>,
    /// How many publishes wait for Redis in the publisher's [`Missed`] (set by it).
    waiting: Arc<AtomicUsize>,
}

impl RedisBus {
    /// Starts the publisher; the subscriber starts with [`Bus::start`]. Redis need not be reachable yet:
    /// both threads connect, and reconnect, by themselves.
    pub fn open(url: &str, prefix: &str) -> anyhow::Result<RedisBus> {
        let client = Client::open(url)?;
        if let Err(e) = client.get_connection_with_timeout(IO_TIMEOUT) {
            tracing::warn!(error = %e, "Redis unreachable at start; running degraded until it answers");
        }
        let (publishes, publish_rx) = bounded(64 * 1024);
        let publisher = client.clone();
        let waiting = Arc::new(AtomicUsize::new(0));
        let shown = waiting.clone();
        std::thread::Builder::new()
            .name("redis-pub".into())
            .spawn(move || publish_loop(&publisher, &publish_rx, &shown))?;
        let (commands, command_rx) = bounded(64 * 1024);
        Ok(RedisBus {
            client,
            prefix: prefix.to_owned(),
            commands,
            command_rx: Mutex::new(Some(command_rx)),
            publishes,
            subscribed: Arc::default(),
            waiting,
        })
    }

    fn channel(&self, user: UserId) -> String {
        channel(&self.prefix, user)
    }

    /// Publishes `payload` to every node on the node-wide channel `name` (a full queue drops it; an
    /// absent Redis drops it too, or gets it once it answers: `then`).
    fn announce(&self, name: &str, payload: String, then: Then) {
        let request = Publish {
            channel: node_wide(&self.prefix, name),
            payload: Arc::from(payload),
            then,
        };
        let _ = self.publishes.try_send(request);
    }
}

fn channel(prefix: &str, user: UserId) -> String {
    format!("{prefix}u{user}")
}

/// The node-wide channel `name` ([`GROUPS`], [`CUT_OFF`]), which every node subscribes to.
fn node_wide(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

impl Bus for RedisBus {
    fn start(&self, inbox: Arc<dyn Inbox>) {
        let Some(commands) = self.command_rx.lock().take() else {
            return;
        };
        let mut subscriber = Subscriber {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            commands,
            inbox,
            users: HashSet::new(),
            subscribed: self.subscribed.clone(),
        };
        std::thread::Builder::new()
            .name("redis-sub".into())
            .spawn(move || subscriber.run())
            .expect("starting the Redis subscriber thread");
    }

    fn is_cluster(&self) -> bool {
        true
    }

    fn is_ready(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn forward(&self, user: UserId, payload: Arc<str>) -> Result<usize, BusError> {
        let (reply, rx) = bounded(1);
        let request = Publish {
            channel: self.channel(user),
            payload,
            then: Then::Answer(reply),
        };
        self.publishes.try_send(request).map_err(bus_err)?;
        let receivers = rx
            .recv_timeout(IO_TIMEOUT * 2)
            .map_err(|_| BusError("no answer from the publisher".into()))??;
        Ok(usize::try_from(receivers).unwrap_or(0))
    }

    fn nudge(&self, user: UserId) {
        let request = Publish {
            channel: self.channel(user),
            payload: Arc::from(NUDGE),
            then: Then::Again,
        };
        let _ = self.publishes.try_send(request);
    }

    fn group_changed(&self, group: GroupId) {
        self.announce(GROUPS, group.to_string(), Then::Again);
    }

    fn cut_off(&self, user: UserId) {
        self.announce(CUT_OFF, user.to_string(), Then::Forget);
    }

    fn subscribe(&self, user: UserId) -> Result<(), BusError> {
        let (reply, rx) = bounded(1);
        self.commands
            .send(Command::Subscribe(user, reply))
            .map_err(bus_err)?;
        rx.recv_timeout(IO_TIMEOUT * 2)
            .map_err(|_| BusError("subscription not confirmed in time".into()))?
    }

    fn unsubscribe(&self, user: UserId) {
        let (reply, rx) = bounded(1);
        if self
            .commands
            .send(Command::Unsubscribe(user, reply))
            .is_ok()
        {
            let _ = rx.recv_timeout(IO_TIMEOUT * 2);
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed) + self.publishes.len()
    }
}

/// The publisher thread: pipelines whatever has queued, reconnecting after failures. Publishes that
/// Redis did not take and that mean the same later ([`Then::Again`]) go out again with later batches
/// ([`Missed`]).
fn publish_loop(client: &Client, requests: &Receiver<Publish>, waiting: &AtomicUsize) {
    let mut conn: Option<Connection> = None;
    let mut retry_at = Instant::now();
    let mut missed = Missed::default();
    let mut failing = false;
    loop {
        // Missed publishes go out at once while Redis answers, and are tried again every
        // BACKOFF_MAX while it does not.
        let wait = match (missed.is_empty(), failing) {
            (true, _) => None,
            (false, false) => Some(Duration::ZERO),
            (false, true) => Some(BACKOFF_MAX),
        };
        let Some(mut batch) = next_batch(requests, wait) else {
            return;
        };
        missed.add_to(&mut batch);
        if batch.is_empty() {
            continue;
        }
        if conn.is_none() && Instant::now() >= retry_at {
            conn = connect(client).ok();
            if conn.is_none() {
                retry_at = Instant::now() + BACKOFF_MIN * 5;
            }
        }
        let result = match conn.as_mut() {
            Some(c) => publish_batch(c, &batch),
            None => Err(Failed::unreachable()),
        };
        if let Err(e) = &result
            && conn.take().is_some()
        {
            tracing::warn!(error = %e.error, "Redis publish failed; messages for other nodes go offline");
        }
        failing = result.is_err();
        answer(batch, result, &mut missed);
        waiting.store(missed.len(), Ordering::Relaxed);
    }
}

/// The requests queued now, up to a pipeline's worth, waiting for the first at most `wait` (for ever
/// without one; then none); `None` once the node is going away.
fn next_batch(requests: &Receiver<Publish>, wait: Option<Duration>) -> Option<Vec<Publish>> {
    let first = match wait {
        None => requests.recv().ok()?,
        Some(wait) => match requests.recv_timeout(wait) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => return Some(Vec::new()),
            Err(RecvTimeoutError::Disconnected) => return None,
        },
    };
    let mut batch = vec![first];
    batch.extend(requests.try_iter().take(PIPELINE - 1));
    Some(batch)
}

/// Why a batch was not published, and whether trying again could help (the connection, not the
/// command, failed).
struct Failed {
    error: BusError,
    transient: bool,
}

impl Failed {
    fn unreachable() -> Failed {
        Failed {
            error: BusError("Redis unreachable".into()),
            transient: true,
        }
    }
}

impl From<redis::RedisError> for Failed {
    fn from(e: redis::RedisError) -> Failed {
        Failed {
            transient: e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal(),
            error: bus_err(e),
        }
    }
}

/// Publishes that Redis did not take and that mean the same later ([`Then::Again`]), to send again once
/// it answers, each once. A nudge lost while Redis stalled left a message recorded offline for a user
/// online on another node, unseen until their next login, when that node's subscription outlived the
/// stall (it re-subscribes and fetches only after losing its connection). Bounded: past [`MAX_MISSED`]
/// more are dropped, with one warning per batch; a node that stops forgets them (its users' nodes
/// fetch at their next login, or when they lose Redis themselves).
#[derive(Default)]
struct Missed(HashSet<(String, Arc<str>)>);

/// The most missed publishes a node keeps.
const MAX_MISSED: usize = 65_536;

impl Missed {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Keeps a publish of a failed batch that means the same later; `false` if there is no room.
    fn keep(&mut self, channel: String, payload: Arc<str>) -> bool {
        let room = self.0.len() < MAX_MISSED;
        if room {
            self.0.insert((channel, payload));
        }
        room
    }

    /// Moves as many as fit into `batch`, behind what it holds.
    fn add_to(&mut self, batch: &mut Vec<Publish>) {
        let room = PIPELINE.saturating_sub(batch.len());
        let taken: Vec<(String, Arc<str>)> = self.0.iter().take(room).cloned().collect();
        for key in taken {
            self.0.remove(&key);
            let (channel, payload) = key;
            batch.push(Publish {
                channel,
                payload,
                then: Then::Again,
            });
        }
    }
}

fn connect(client: &Client) -> redis::RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

fn publish_batch(conn: &mut Connection, batch: &[Publish]) -> Result<Vec<i64>, Failed> {
    let mut pipe = redis::pipe();
    for p in batch {
        pipe.cmd("PUBLISH")
            .arg(&p.channel)
            .arg(p.payload.as_bytes());
    }
    Ok(pipe.query(conn)?)
}

/// Gives each waiting caller its receiver count, or the error; of a batch that failed for want of a
/// connection, keeps in `missed` what means the same later.
fn answer(batch: Vec<Publish>, result: Result<Vec<i64>, Failed>, missed: &mut Missed) {
    let failed = match result {
        Ok(counts) => {
            for (p, count) in batch.into_iter().zip(counts) {
                if let Then::Answer(reply) = p.then {
                    let _ = reply.send(Ok(count));
                }
            }
            return;
        }
        Err(failed) => failed,
    };
    let mut dropped = 0;
    for p in batch {
        match p.then {
            Then::Answer(reply) => {
                let _ = reply.send(Err(BusError(failed.error.0.clone())));
            }
            Then::Again if failed.transient => {
                dropped += usize::from(!missed.keep(p.channel, p.payload));
            }
            Then::Again | Then::Forget => {}
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "too many publishes waiting for Redis; dropping these"
        );
    }
}

/// The subscriber thread's state.
struct Subscriber {
    client: Client,
    prefix: String,
    commands: Receiver<Command>,
    inbox: Arc<dyn Inbox>,
    /// Users who should be subscribed here: re-subscribed after every reconnection.
    users: HashSet<UserId>,
    /// Shown to readiness probes: true from a confirmed subscription until the connection is lost.
    subscribed: Arc<AtomicBool>,
}

impl Subscriber {
    fn run(&mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        loop {
            let ended = self.session(connected_before);
            self.subscribed.store(false, Ordering::Relaxed);
            match ended {
                Ok(()) => return, // the node is going away: the command queue closed
                Err(SessionEnd::Connected(e)) => {
                    tracing::warn!(error = %e, "lost the Redis subscription; reconnecting");
                    connected_before = true;
                    backoff = BACKOFF_MIN;
                }
                Err(SessionEnd::NoConnection(e)) => {
                    tracing::debug!(error = %e, "Redis unreachable");
                }
            }
            if !self.wait_offline(backoff) {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: subscribe everyone, then read messages and apply commands.
    fn session(&mut self, reconnected: bool) -> Result<(), SessionEnd> {
        let mut conn = connect(&self.client).map_err(|e| SessionEnd::NoConnection(bus_err(e)))?;
        let mut pubsub = conn.as_pubsub();
        let mut channels: Vec<String> = self
            .users
            .iter()
            .map(|&u| channel(&self.prefix, u))
            .collect();
        channels.extend([GROUPS, CUT_OFF].map(|name| node_wide(&self.prefix, name)));
        pubsub
            .subscribe(channels)
            .map_err(|e| SessionEnd::Connected(bus_err(e)))?;
        self.subscribed.store(true, Ordering::Relaxed);
        if reconnected {
            tracing::info!(users = self.users.len(), "Redis is back; re-subscribed");
            // Anything stored for our users, or changed in groups, while Redis was away is caught up now.
            self.inbox.group_changed(None);
            for &user in &self.users {
                self.inbox.nudge(user);
            }
        }
        pubsub
            .set_read_timeout(Some(POLL))
            .map_err(|e| SessionEnd::Connected(bus_err(e)))?;
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.apply(&mut pubsub, command)?,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            match pubsub.get_message() {
                Ok(msg) => self.handle(&msg),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(SessionEnd::Connected(bus_err(e))),
            }
        }
    }

    fn apply(&mut self, pubsub: &mut redis::PubSub, command: Command) -> Result<(), SessionEnd> {
        let lost = |e: redis::RedisError| SessionEnd::Connected(bus_err(e));
        pubsub.set_read_timeout(Some(IO_TIMEOUT)).map_err(lost)?;
        match command {
            Command::Subscribe(user, reply) => {
                self.users.insert(user);
                let result = pubsub.subscribe(channel(&self.prefix, user));
                let _ = reply.send(result.as_ref().map(|_| ()).map_err(bus_err));
                result.map_err(lost)?;
            }
            Command::Unsubscribe(user, reply) if self.inbox.holds(user) => {
                let _ = reply.send(());
            }
            Command::Unsubscribe(user, reply) => {
                self.users.remove(&user);
                let result = pubsub.unsubscribe(channel(&self.prefix, user));
                let _ = reply.send(());
                result.map_err(lost)?;
            }
        }
        pubsub.set_read_timeout(Some(POLL)).map_err(lost)
    }

    fn handle(&self, msg: &redis::Msg) {
        let Some(name) = msg.get_channel_name().strip_prefix(&self.prefix) else {
            return;
        };
        let payload = String::from_utf8_lossy(msg.get_payload_bytes());
        if name == GROUPS {
            if let Ok(group) = payload.parse::<GroupId>() {
                self.inbox.group_changed(Some(group));
            }
            return;
        }
        if name == CUT_OFF {
            if let Ok(user) = payload.parse::<UserId>() {
                self.inbox.cut_off(user);
            }
            return;
        }
        let Some(user) = name
            .strip_prefix('u')
            .and_then(|id| id.parse::<UserId>().ok())
        else {
            return;
        };
        if payload == NUDGE {
            self.inbox.nudge(user);
        } else {
            self.inbox.deliver(user, &payload);
        }
    }

    /// Without a connection: answers commands at once (subscriptions fail, and are kept to be made on
    /// reconnection) for `wait`. `false` when the node is going away.
    fn wait_offline(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.commands.recv_timeout(left) {
                Ok(Command::Subscribe(user, reply)) => {
                    self.users.insert(user);
                    let _ = reply.send(Err(BusError("Redis unreachable".into())));
                }
                Ok(Command::Unsubscribe(user, reply)) => {
                    if !self.inbox.holds(user) {
                        self.users.remove(&user);
                    }
                    let _ = reply.send(());
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}

/// Why a subscriber connection ended.
enum SessionEnd {
    /// Could not connect at all.
    NoConnection(BusError),
    /// Was connected, then lost it.
    Connected(BusError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channel: &str, then: Then) -> Publish {
        Publish {
            channel: channel.into(),
            payload: Arc::from(NUDGE),
            then,
        }
    }

    fn unreachable() -> Result<Vec<i64>, Failed> {
        Err(Failed::unreachable())
    }

    /// A batch that Redis did not take: the waiting caller gets the error, a nudge is kept (once), a
    /// cut-off is not; kept ones go out with a later batch, behind what it holds.
    #[test]
    fn what_means_the_same_later_is_kept_once_for_a_later_batch() {
        let mut missed = Missed::default();
        let (reply, answered) = bounded(1);
        let batch = vec![
            publish("u1", Then::Answer(reply)),
            publish("u2", Then::Again),
            publish("u2", Then::Again),
            publish("cutoff", Then::Forget),
        ];
        answer(batch, unreachable(), &mut missed);
        assert!(answered.try_recv().unwrap().is_err());
        let mut later = vec![publish("u3", Then::Again)];
        missed.add_to(&mut later);
        let channels: Vec<&str> = later.iter().map(|p| p.channel.as_str()).collect();
        assert_eq!(channels, ["u3", "u2"]);
        assert!(missed.is_empty());
        // Taken: the later batch went out.
        answer(later, Ok(vec![1, 1]), &mut missed);
        assert!(missed.is_empty());
    }

    /// An error of the command, not of the connection, would come again: nothing is kept for it.
    #[test]
    fn a_refused_command_is_not_kept() {
        let mut missed = Missed::default();
        let refused = Failed {
            error: BusError("NOPERM".into()),
            transient: false,
        };
        answer(vec![publish("u1", Then::Again)], Err(refused), &mut missed);
        assert!(missed.is_empty());
    }

    #[test]
    fn a_batch_takes_missed_publishes_only_as_far_as_a_pipeline_holds() {
        let mut missed = Missed::default();
        for n in 0..PIPELINE + 10 {
            assert!(missed.keep(format!("u{n}"), Arc::from(NUDGE)));
        }
        let mut batch: Vec<Publish> = (0..5).map(|_| publish("x", Then::Forget)).collect();
        missed.add_to(&mut batch);
        assert_eq!(batch.len(), PIPELINE);
        assert_eq!(missed.len(), 15);
    }
}
