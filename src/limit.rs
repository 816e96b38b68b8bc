//! Limits that protect everyone else from one client: the per-connection request rate (errno 107, then
//! disconnection on sustained abuse) and the throttle on failed logins (login errno 107).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::model::UserId;

/// Per-connection request rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Frames per second a connection may send, on average.
    pub per_sec: f64,
    /// Frames a connection may send at once above the average.
    pub burst: f64,
    /// How far over the limit a connection may go before it is closed: frames refused beyond what the
    /// average rate would have allowed (a client sending at twice the rate is refused half its frames but
    /// never closed; at ten times the rate it is closed within about a second).
    pub abuse_frames: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            per_sec: 1_000.0,
            burst: 2_000.0,
            abuse_frames: 5_000.0,
        }
    }
}

impl RateConfig {
    /// Refuses settings the bucket cannot work with.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        anyhow::ensure!(positive(self.per_sec), "rate_limit.per_sec must be above 0");
        anyhow::ensure!(
            self.burst.is_finite() && self.burst >= 1.0,
            "rate_limit.burst must be at least 1"
        );
        anyhow::ensure!(
            self.abuse_frames.is_finite() && self.abuse_frames >= 0.0,
            "rate_limit.abuse_frames must be 0 or more"
        );
        Ok(())
    }
}

/// Frames a refused connection's bucket earns back before its next read ([`RateLimiter::pause`]).
const PAUSE_FRAMES: f64 = 16.0;

/// Longest pause before a refused connection's next read, unless one frame takes longer to earn back.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// What the rate limiter says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer 107 and skip the frame.
    Refuse,
    /// Sustained abuse: close the connection.
    Close,
}

/// A token bucket for frames, and a leaky count of refused frames that closes the connection when full.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateConfig,
    tokens: f64,
    strikes: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(cfg: &RateConfig) -> Self {
        RateLimiter {
            tokens: cfg.burst,
            strikes: 0.0,
            last: Instant::now(),
            cfg: cfg.clone(),
        }
    }

    /// How long a refused connection waits before its next read: until the bucket has earned back
    /// [`PAUSE_FRAMES`] frames, so that the frames gathering in the socket meanwhile are handled together
    /// (one wake-up, one read, one commit of their offline messages); at most [`MAX_PAUSE`], unless
    /// earning back a single frame takes longer (at most a second).
    pub fn pause(&self) -> Duration {
        let one = (1.0 / self.cfg.per_sec).min(1.0);
        let several = (PAUSE_FRAMES / self.cfg.per_sec).min(MAX_PAUSE.as_secs_f64());
        Duration::from_secs_f64(several.max(one))
    }

    /// Counts one frame arriving now.
    pub fn check(&mut self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let refill = elapsed * self.cfg.per_sec;
        self.tokens = (self.tokens + refill).min(self.cfg.burst);
        self.strikes = (self.strikes - refill).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        self.strikes += 1.0;
        if self.strikes > self.cfg.abuse_frames {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }

    /// Takes the burst allowance away and leaves half the abuse allowance: for a user who was cut off
    /// for flooding a moment ago ([`Penalties`]), so that logging in again buys no fresh burst.
    pub fn penalise(&mut self) {
        self.tokens = 0.0;
        self.strikes = self.strikes.max(self.cfg.abuse_frames / 2.0);
    }
}

/// How long a user cut off for flooding logs in again without a burst allowance.
const PENALTY: Duration = Duration::from_secs(60);

/// The users this node, or another node of the cluster (which says so over the bus), cut off for
/// flooding ([`Verdict::Close`]) within [`PENALTY`]. A connection's rate limit is its own, so without
/// this a flooder would get a fresh burst with every reconnect, on whichever node the balancer picks.
/// Bounded like the login throttle's maps: past [`MAX_TRACKED`] users, stale ones are dropped, and if
/// none is stale a new one is not remembered (the per-connection limit still holds).
#[derive(Default)]
pub struct Penalties {
    cut: Mutex<HashMap<UserId, Instant>>,
}

impl Penalties {
    /// `user` was cut off for flooding just now.
    pub fn record(&self, user: UserId) {
        let mut cut = self.cut.lock();
        if cut.len() >= MAX_TRACKED {
            cut.retain(|_, at| at.elapsed() < PENALTY);
        }
        if has_room(&cut, &user) {
            cut.insert(user, Instant::now());
        }
    }

    /// Whether `user` was cut off for flooding within [`PENALTY`].
    pub fn holds(&self, user: UserId) -> bool {
        self.cut
            .lock()
            .get(&user)
            .is_some_and(|at| at.elapsed() < PENALTY)
    }
}

/// Failed-login throttling.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginThrottleConfig {
    /// Length of the counting window.
    pub window_secs: u64,
    /// Failures allowed for one user id from one address per window.
    pub per_user_and_address: u32,
    /// Failures allowed for one user id from all addresses together per window.
    pub per_user: u32,
    /// Failures allowed from one address for all user ids together per window. Users who logged in
    /// successfully from that address before are not held back by it, so honest users behind a shared
    /// address still get in while someone there guesses passwords.
    pub per_address: u32,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        LoginThrottleConfig {
            window_secs: 60,
            per_user_and_address: 5,
            per_user: 20,
            per_address: 50,
        }
    }
}

/// A failure count in a fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

#[derive(Default)]
struct Counts {
    pairs: HashMap<(IpAddr, UserId), Window>,
    users: HashMap<UserId, Window>,
    addresses: HashMap<IpAddr, Window>,
    /// (address, user) pairs that logged in successfully, with when.
    trusted: HashMap<(IpAddr, UserId), Instant>,
    last_sweep: Option<Instant>,
}

/// Most entries one map of the throttle holds. Failed logins for ids that do not exist cost no password
/// hash, so a client rotating ids (or addresses) could otherwise grow the maps at its request rate for a
/// whole window. Past this, new keys go uncounted until the next sweep (failing open: honest users are
/// never locked out by someone else filling the maps; the hash pool still bounds the CPU guesses take).
const MAX_TRACKED: usize = 100_000;

/// Least time between two sweeps forced by a full map.
const FORCED_SWEEP_GAP: Duration = Duration::from_secs(1);

/// The source a login is counted against: the address, or for IPv6 its /64, which one subscriber
/// typically holds whole (rotating within it must not escape the per-address count).
fn source(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// Whether `map` may hold `key`: it does already, or it is below [`MAX_TRACKED`].
fn has_room<K: std::hash::Hash + Eq, V>(map: &HashMap<K, V>, key: &K) -> bool {
    map.len() < MAX_TRACKED || map.contains_key(key)
}

/// Counts a failure under `key`, adding the key only while the map has room.
fn bump<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: Instant,
    window: Duration,
) {
    if !has_room(map, &key) {
        return;
    }
    let w = map.entry(key).or_insert(Window {
        start: now,
        failures: 0,
    });
    if now - w.start >= window {
        *w = Window {
            start: now,
            failures: 0,
        };
    }
    w.failures += 1;
}

/// Counts failed logins (only failures) and says when to stop checking passwords for a while: argon2 is
/// expensive, so a guessing loop must not burn the CPU that everyone's logins need.
pub struct LoginThrottle {
    cfg: LoginThrottleConfig,
    counts: Mutex<Counts>,
}

/// How long a successful login keeps its address trusted for that user.
const TRUST: Duration = Duration::from_secs(24 * 3600);

impl LoginThrottle {
    pub fn new(cfg: &LoginThrottleConfig) -> Self {
        LoginThrottle {
            cfg: cfg.clone(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs)
    }

    /// Whether a login attempt for `user` from `addr` may go ahead now.
    pub fn allows(&self, addr: IpAddr, user: UserId) -> bool {
        self.allows_at(addr, user, Instant::now())
    }

    fn allows_at(&self, addr: IpAddr, user: UserId, now: Instant) -> bool {
        let addr = source(addr);
        let window = self.window();
        let c = self.counts.lock();
        let count = |w: Option<&Window>| {
            w.filter(|w| now - w.start < window)
                .map_or(0, |w| w.failures)
        };
        if count(c.pairs.get(&(addr, user))) >= self.cfg.per_user_and_address
            || count(c.users.get(&user)) >= self.cfg.per_user
        {
            return false;
        }
        let trusted = c
            .trusted
            .get(&(addr, user))
            .is_some_and(|&at| now - at < TRUST);
        trusted || count(c.addresses.get(&addr)) < self.cfg.per_address
    }

    /// Records a failed attempt.
    pub fn failed(&self, addr: IpAddr, user: UserId) {
        self.failed_at(addr, user, Instant::now());
    }

    fn failed_at(&self, addr: IpAddr, user: UserId, now: Instant) {
        let addr = source(addr);
        let window = self.window();
        let mut c = self.counts.lock();
        sweep(&mut c, now, window);
        bump(&mut c.pairs, (addr, user), now, window);
        bump(&mut c.users, user, now, window);
        bump(&mut c.addresses, addr, now, window);
    }

    /// Records a successful login: the pair's failures are forgiven and the address is trusted for the user.
    pub fn succeeded(&self, addr: IpAddr, user: UserId) {
        let addr = source(addr);
        let now = Instant::now();
        let mut c = self.counts.lock();
        sweep(&mut c, now, self.window());
        c.pairs.remove(&(addr, user));
        if has_room(&c.trusted, &(addr, user)) {
            c.trusted.insert((addr, user), now);
        }
    }
}

/// Drops expired entries once a window, or sooner (at most once a second) when a map is full, so the
/// maps stay as small as the recent failures.
fn sweep(c: &mut Counts, now: Instant, window: Duration) {
    let full = [
        c.pairs.len(),
        c.users.len(),
        c.addresses.len(),
        c.trusted.len(),
    ]
    .iter()
    .any(|&n| n >= MAX_TRACKED);
    let gap = if full { FORCED_SWEEP_GAP } else { window };
    if c.last_sweep.is_some_and(|at| now - at < gap) {
        return;
    }
    c.last_sweep = Some(now);
    c.pairs.retain(|_, w| now - w.start < window);
    c.users.retain(|_, w| now - w.start < window);
    c.addresses.retain(|_, w| now - w.start < window);
    c.trusted.retain(|_, &mut at| now - at < TRUST);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_the_burst_then_the_rate() {
        let cfg = RateConfig {
            per_sec: 10.0,
            burst: 5.0,
            abuse_frames: 100.0,
        };
        let mut rl = RateLimiter::new(&cfg);
        let t0 = rl.last;
        let verdicts: Vec<Verdict> = (0..7).map(|_| rl.check_at(t0)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..], &[Verdict::Refuse; 2]);
        // 100 ms later one more token is there.
        assert_eq!(rl.check_at(t0 + Duration::from_millis(100)), Verdict::Allow);
    }

    #[test]
    fn settings_the_bucket_cannot_work_with_are_refused() {
        assert!(RateConfig::default().validate().is_ok());
        let with = |per_sec, burst, abuse_frames| RateConfig {
            per_sec,
            burst,
            abuse_frames,
        };
        assert!(with(0.0, 10.0, 10.0).validate().is_err());
        assert!(with(-1.0, 10.0, 10.0).validate().is_err());
        assert!(with(f64::NAN, 10.0, 10.0).validate().is_err());
        assert!(with(10.0, 0.5, 10.0).validate().is_err());
        assert!(with(10.0, 10.0, -1.0).validate().is_err());
        assert!(with(10.0, 1.0, 0.0).validate().is_ok());
    }

    #[test]
    fn the_pause_earns_back_several_frames_within_bounds() {
        let at = |per_sec| {
            RateLimiter::new(&RateConfig {
                per_sec,
                ..RateConfig::default()
            })
            .pause()
        };
        assert_eq!(at(1_000.0), Duration::from_millis(16));
        assert_eq!(at(100.0), MAX_PAUSE, "16 frames would take 160 ms");
        assert_eq!(
            at(20.0),
            Duration::from_millis(50),
            "one frame takes longer"
        );
        assert_eq!(
            at(0.1),
            Duration::from_secs(1),
            "one frame, at most a second"
        );
    }

    /// 100 frames a second, a burst of 10, closed after 50 refusals.
    fn hundred_a_second() -> RateConfig {
        RateConfig {
            per_sec: 100.0,
            burst: 10.0,
            abuse_frames: 50.0,
        }
    }

    #[test]
    fn sustained_abuse_closes_but_twice_the_rate_does_not() {
        let cfg = hundred_a_second();
        // Twice the rate for 10 s: half refused, never closed.
        let mut rl = RateLimiter::new(&cfg);
        let t0 = rl.last;
        for i in 0..2_000u64 {
            let v = rl.check_at(t0 + Duration::from_micros(i * 5_000));
            assert_ne!(v, Verdict::Close, "frame {i}");
        }
        // Ten times the rate: closed quickly.
        let mut rl = RateLimiter::new(&cfg);
        let t0 = rl.last;
        let closed_at = (0..10_000u64)
            .position(|i| rl.check_at(t0 + Duration::from_micros(i * 1_000)) == Verdict::Close)
            .expect("closed");
        assert!(closed_at < 200, "closed after {closed_at} frames");
    }

    #[test]
    fn a_penalised_limiter_has_no_burst_and_half_the_patience() {
        let cfg = hundred_a_second();
        let mut rl = RateLimiter::new(&cfg);
        rl.penalise();
        let t0 = rl.last;
        assert_eq!(rl.check_at(t0), Verdict::Refuse, "no burst");
        let closed_at = (1..100u64)
            .position(|_| rl.check_at(t0) == Verdict::Close)
            .expect("closed");
        assert_eq!(closed_at, 24, "half of 50 refusals, then closed");
        assert_eq!(
            rl.check_at(t0 + Duration::from_secs(1)),
            Verdict::Allow,
            "the rate itself is not taken"
        );
    }

    #[test]
    fn penalties_last_their_time_and_name_only_their_users() {
        let p = Penalties::default();
        p.record(UserId::from(7));
        assert!(p.holds(UserId::from(7)));
        assert!(!p.holds(UserId::from(8)));
        p.cut
            .lock()
            .insert(UserId::from(9), Instant::now() - PENALTY);
        assert!(!p.holds(UserId::from(9)), "past its time");
    }

    #[test]
    fn login_throttle_counts_failures_per_pair_user_and_address() {
        let cfg = LoginThrottleConfig {
            window_secs: 60,
            per_user_and_address: 2,
            per_user: 3,
            per_address: 4,
        };
        let t = LoginThrottle::new(&cfg);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        t.failed_at(a, 1, now);
        assert!(t.allows_at(a, 1, now));
        t.failed_at(a, 1, now);
        assert!(!t.allows_at(a, 1, now), "pair limit");
        assert!(t.allows_at(b, 1, now), "another address may still try");
        t.failed_at(b, 1, now);
        assert!(!t.allows_at(b, 1, now), "user limit across addresses");
        // The window passes.
        assert!(t.allows_at(a, 1, now + Duration::from_secs(61)));
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source(a), source(b));
        assert_ne!(source(a), source(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        let cfg = LoginThrottleConfig {
            per_address: 2,
            ..LoginThrottleConfig::default()
        };
        let t = LoginThrottle::new(&cfg);
        let now = Instant::now();
        t.failed_at(a, 1, now);
        t.failed_at(b, 2, now);
        assert!(!t.allows_at(b, 3, now), "one /64, one address count");
        assert!(t.allows_at(other, 3, now));
    }

    #[test]
    fn maps_stop_growing_at_their_bound_and_known_keys_still_count() {
        let cfg = LoginThrottleConfig {
            per_user_and_address: 2,
            per_user: 1_000_000,
            per_address: 1_000_000,
            ..LoginThrottleConfig::default()
        };
        let t = LoginThrottle::new(&cfg);
        let now = Instant::now();
        let addr: IpAddr = "198.51.100.1".parse().unwrap();
        t.failed_at(addr, 0, now);
        for id in 1..(MAX_TRACKED as UserId + 500) {
            t.failed_at(addr, id, now);
        }
        {
            let c = t.counts.lock();
            assert_eq!(c.pairs.len(), MAX_TRACKED);
            assert_eq!(c.users.len(), MAX_TRACKED);
        }
        t.failed_at(addr, 0, now);
        assert!(
            !t.allows_at(addr, 0, now),
            "a key counted before still counts"
        );
        // Once the window has passed, a sweep makes room again.
        let later = now + Duration::from_secs(61);
        t.failed_at(addr, 7, later);
        assert_eq!(t.counts.lock().pairs.len(), 1);
    }

    #[test]
    fn honest_users_behind_a_guessing_address_still_get_in() {
        let cfg = LoginThrottleConfig {
            window_secs: 60,
            per_user_and_address: 5,
            per_user: 20,
            per_address: 3,
        };
        let t = LoginThrottle::new(&cfg);
        let shared: IpAddr = "192.0.2.7".parse().unwrap();
        t.succeeded(shared, 42);
        let now = Instant::now();
        for guessed in 100..110 {
            t.failed_at(shared, guessed, now);
        }
        assert!(
            !t.allows_at(shared, 200, now),
            "unknown users from the address wait"
        );
        assert!(
            t.allows_at(shared, 42, now),
            "a user who logged in from there before gets in"
        );
    }
}
