//! The bookkeeping of `presence`, without sockets: who befriends whom ([`Ring`]), and whether the
//! PRESENCE frames each device got are the ones the contract allows. The server's own moments cannot be
//! seen from here, so each login and logout is known by its *window* on the bench's clock: it happened at
//! the server after its request was written and before its answer was read. The server announces a login
//! (and a logout) before it answers it, so:
//! - an event whose window lies wholly inside the time a device was surely logged in (from its login
//!   ack to its logout request) **must** reach that device, once;
//! - an event whose window lies wholly outside the time it may have been logged in (from its login
//!   request to its logout ack) **must not** reach it;
//! - anything overlapping **may** (two friends logging in at once may each hear of the other, or neither;
//!   the later one's login ack then shows the earlier online).
//!
//! The rule of the issue, "at most one frame per online friend device per login", then reads: no
//! device gets a user's state twice, no frame reaches a device that was not online (must-not), and no
//! event reached more devices than there were friends who could have been online.

use std::fmt;

/// The friendship layout: user `i` asks `i+1 ..= i+F/2` (mod U) with ADD_FRIEND, so every user has
/// exactly F friends, F/2 on each side of the ring, and every friendship is made once. F = 0 is the
/// baseline: the same storms without presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    users: usize,
    friends: usize,
}

/// Why a ring cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Each user's friends are split evenly between both sides of the ring.
    #[error("--friends must be even (half on each side of a user), not {0}")]
    Odd(usize),
    /// With F ≥ U a user would befriend itself or one friend twice.
    #[error("--friends ({friends}) must be below --users ({users})")]
    TooMany { friends: usize, users: usize },
}

impl Ring {
    pub fn new(users: usize, friends: usize) -> Result<Ring, LayoutError> {
        if !friends.is_multiple_of(2) {
            return Err(LayoutError::Odd(friends));
        }
        if friends >= users {
            return Err(LayoutError::TooMany { friends, users });
        }
        Ok(Ring { users, friends })
    }

    pub fn users(&self) -> usize {
        self.users
    }

    pub fn friends(&self) -> usize {
        self.friends
    }

    /// The users `i` befriends with ADD_FRIEND during setup.
    pub fn asks(&self, i: usize) -> impl Iterator<Item = usize> + use<> {
        let users = self.users;
        (1..=self.friends / 2).map(move |k| (i + k) % users)
    }

    /// All F friends of `i`.
    pub fn friends_of(&self, i: usize) -> impl Iterator<Item = usize> + use<> {
        let users = self.users;
        (1..=self.friends / 2).flat_map(move |k| [(i + k) % users, (i + users - k) % users])
    }

    pub fn are_friends(&self, a: usize, b: usize) -> bool {
        let d = a.abs_diff(b) % self.users;
        let d = d.min(self.users - d);
        d >= 1 && d <= self.friends / 2
    }

    /// Friendships in all: U × F / 2.
    pub fn pairs(&self) -> usize {
        self.users * self.friends / 2
    }
}

/// A request's window on the bench's clock (ns): written at `start`, answered at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    /// `None`: no answer came (the server may or may not have acted).
    pub end: Option<u64>,
}

/// What one device did and saw, by user index.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The login; `None` when it was never sent (the connect failed).
    pub login: Option<Window>,
    /// The login was answered with errno 0.
    pub logged_in: bool,
    /// The logout; `None` when none was sent.
    pub logout: Option<Window>,
    /// Friends (by index) the login ack showed online.
    pub ack_online: Vec<usize>,
    /// PRESENCE frames in arrival order.
    pub frames: Vec<Frame>,
    /// How many of `frames` came before the login ack.
    pub before_ack: usize,
}

/// One PRESENCE frame as a device got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The user it names, by index; `None` for an id that is no user of this run.
    pub from: Option<usize>,
    pub online: bool,
}

/// What a device should get of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Must,
    May,
    MustNot,
}

/// The span (ns, both ends inclusive) a device is logged in, surely and possibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listening {
    surely: Option<(u64, u64)>,
    possibly: Option<(u64, u64)>,
}

impl Listening {
    fn of(seen: &Seen) -> Listening {
        let Some(login) = seen.login else {
            return Listening {
                surely: None,
                possibly: None,
            };
        };
        // A login refused with an errno never made the device online; one without an answer may have.
        if login.end.is_some() && !seen.logged_in {
            return Listening {
                surely: None,
                possibly: None,
            };
        }
        let (surely_to, possibly_to) = match seen.logout {
            Some(w) => (w.start, w.end.unwrap_or(u64::MAX)),
            None => (u64::MAX, u64::MAX),
        };
        Listening {
            surely: login.end.map(|end| (end, surely_to)),
            possibly: Some((login.start, possibly_to)),
        }
    }

    fn expect(&self, event: Window) -> Expect {
        let Some((from, to)) = self.possibly else {
            return Expect::MustNot;
        };
        let Some(end) = event.end else {
            return if event.start > to {
                Expect::MustNot
            } else {
                Expect::May
            };
        };
        if end < from || event.start > to {
            return Expect::MustNot;
        }
        match self.surely {
            Some((from, to)) if from <= event.start && end <= to => Expect::Must,
            _ => Expect::May,
        }
    }
}

/// The event of user `x` in one phase: its login (online) or its logout (offline) window, when the
/// server may have announced it.
fn event_of(seen: &Seen, online: bool) -> Option<Window> {
    if online {
        // A refused login announces nothing; one without an answer may have.
        seen.login.filter(|w| seen.logged_in || w.end.is_none())
    } else if seen.logged_in {
        seen.logout
    } else {
        None
    }
}

/// The frames of one state (online or offline) over all devices, judged.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PhaseTally {
    /// Events (logins or logouts) the server may have announced.
    pub events: u64,
    /// PRESENCE frames of this state received, duplicates included.
    pub frames: u64,
    /// (device, friend's event) pairs by what the device should get.
    pub must: u64,
    pub may: u64,
    pub must_not: u64,
    /// Pairs that got their frame, by class.
    pub got_must: u64,
    pub got_may: u64,
    /// Must pairs without a frame.
    pub missing: u64,
    /// Frames in must-not pairs: the device was not online when the friend's state changed.
    pub unexpected: u64,
    /// Frames naming someone who is no friend of the device (or no user of this run), or an event that
    /// never happened.
    pub strangers: u64,
    /// Frames beyond the first of one friend's state at one device.
    pub duplicates: u64,
    /// Most devices one event reached, and the mean.
    pub max_fanout: u64,
    pub mean_fanout: f64,
    /// Events that reached more devices than the friends who could have been online then.
    pub over_bound: u64,
    /// The first few problems, each naming the device and the friend (user indexes).
    pub samples: Vec<String>,
}

impl PhaseTally {
    /// No frame beyond one per friend device that could have been online.
    pub fn within_contract(&self) -> bool {
        self.unexpected == 0 && self.strangers == 0 && self.duplicates == 0 && self.over_bound == 0
    }

    fn note(&mut self, sample: impl fmt::Display) {
        if self.samples.len() < 10 {
            self.samples.push(sample.to_string());
        }
    }
}

/// Judges every device's frames of one state (`online`: the login storm's, else the logout storm's).
pub fn tally(ring: &Ring, seen: &[Seen], online: bool) -> PhaseTally {
    let word = if online { "online" } else { "offline" };
    let mut t = PhaseTally::default();
    let events: Vec<Option<Window>> = seen.iter().map(|s| event_of(s, online)).collect();
    t.events = events.iter().flatten().count() as u64;
    let mut fanout = vec![0u64; seen.len()];
    let mut bound = vec![0u64; seen.len()];
    for (d, device) in seen.iter().enumerate() {
        let listening = Listening::of(device);
        let mut got: Vec<usize> = Vec::new();
        for frame in device.frames.iter().filter(|f| f.online == online) {
            t.frames += 1;
            match frame.from {
                Some(x) if ring.are_friends(d, x) && events[x].is_some() => got.push(x),
                other => {
                    t.strangers += 1;
                    t.note(format_args!(
                        "device {d}: {word} of {other:?}, not a friend's event"
                    ));
                }
            }
        }
        got.sort_unstable();
        let before = got.len();
        got.dedup();
        if got.len() < before {
            t.duplicates += (before - got.len()) as u64;
            t.note(format_args!(
                "device {d}: {} duplicate {word} frame(s)",
                before - got.len()
            ));
        }
        for x in ring.friends_of(d) {
            let Some(event) = events[x] else { continue };
            let received = got.binary_search(&x).is_ok();
            if received {
                fanout[x] += 1;
            }
            match listening.expect(event) {
                Expect::Must => {
                    t.must += 1;
                    bound[x] += 1;
                    if received {
                        t.got_must += 1;
                    } else {
                        t.missing += 1;
                        t.note(format_args!("device {d}: no {word} of friend {x}"));
                    }
                }
                Expect::May => {
                    t.may += 1;
                    bound[x] += 1;
                    t.got_may += u64::from(received);
                }
                Expect::MustNot => {
                    t.must_not += 1;
                    if received {
                        t.unexpected += 1;
                        t.note(format_args!(
                            "device {d}: {word} of friend {x}, but it was not logged in then"
                        ));
                    }
                }
            }
        }
    }
    for x in (0..seen.len()).filter(|&x| events[x].is_some()) {
        if fanout[x] > bound[x] {
            t.over_bound += 1;
            t.note(format_args!(
                "friend {x}'s {word} reached {} devices, at most {} were online",
                fanout[x], bound[x]
            ));
        }
    }
    t.max_fanout = fanout.iter().copied().max().unwrap_or(0);
    if t.events > 0 {
        t.mean_fanout = fanout.iter().sum::<u64>() as f64 / t.events as f64;
    }
    t
}

/// What each logged-in device believes of its friends after the login storm, had it applied its frames
/// in the order they came (a PRESENCE sets one friend's state; the login ack sets every friend's), and
/// had it merely collected every "online" it was told, in whatever order. Only "online" frames count:
/// the login storm has no others (its users' setup devices logged out before it), and the logout
/// storm's "offline" frames are judged by [`tally`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Views {
    /// Devices whose view, in arrival order, lacks a logged-in friend's "online", and the states lacking.
    pub stale_in_order: u64,
    pub stale_states_in_order: u64,
    /// The same for the union of the login ack and the frames: 0 unless a state was never told at all.
    pub stale_union: u64,
    pub stale_states_union: u64,
    /// "online" frames that came before the device's login ack, and of them those the ack then showed
    /// "offline" (a client applying frames in order shows that friend offline until it hears again).
    pub before_ack: u64,
    pub overridden_by_ack: u64,
    /// The first few overridden frames, with both logins' windows (ms on the bench's clock).
    pub samples: Vec<String>,
}

/// A window as "start–end ms" for a sample.
fn window_ms(w: Option<Window>) -> String {
    let ms = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
    match w {
        Some(Window {
            start,
            end: Some(end),
        }) => format!("{}–{} ms", ms(start), ms(end)),
        Some(Window { start, end: None }) => format!("{}– ms, unanswered", ms(start)),
        None => "never sent".into(),
    }
}

/// Judges every logged-in device's view of its friends after the login storm.
pub fn views(ring: &Ring, seen: &[Seen]) -> Views {
    let mut v = Views::default();
    for (d, device) in seen.iter().enumerate().filter(|(_, s)| s.logged_in) {
        let (early, late) = device
            .frames
            .split_at(device.before_ack.min(device.frames.len()));
        let mut acked: Vec<usize> = device.ack_online.clone();
        acked.sort_unstable();
        let mut union = acked.clone();
        for f in early.iter().filter(|f| f.online) {
            v.before_ack += 1;
            if let Some(x) = f.from {
                union.push(x);
                if acked.binary_search(&x).is_err() {
                    v.overridden_by_ack += 1;
                    if v.samples.len() < 5 {
                        v.samples.push(format!(
                            "device {d} (login {}) got friend {x}'s online (login {}) before its own \
                             login ack, which showed {x} offline",
                            window_ms(device.login),
                            window_ms(seen[x].login)
                        ));
                    }
                }
            }
        }
        let mut ordered = acked;
        for x in late.iter().filter(|f| f.online).filter_map(|f| f.from) {
            ordered.push(x);
            union.push(x);
        }
        ordered.sort_unstable();
        union.sort_unstable();
        let lacking = |known: &[usize]| {
            ring.friends_of(d)
                .filter(|&x| seen[x].logged_in && known.binary_search(&x).is_err())
                .count() as u64
        };
        let (in_order, in_union) = (lacking(&ordered), lacking(&union));
        v.stale_in_order += u64::from(in_order > 0);
        v.stale_states_in_order += in_order;
        v.stale_union += u64::from(in_union > 0);
        v.stale_states_union += in_union;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_gives_everyone_f_friends_each_made_once() {
        for (users, friends) in [(5, 4), (8_000, 50), (101, 2), (60, 58)] {
            let ring = Ring::new(users, friends).unwrap();
            let mut pairs = std::collections::BTreeSet::new();
            for i in 0..users {
                for j in ring.asks(i) {
                    assert_ne!(i, j);
                    assert!(pairs.insert((i.min(j), i.max(j))), "{i}-{j} made twice");
                }
                let mut mine: Vec<usize> = ring.friends_of(i).collect();
                mine.sort_unstable();
                mine.dedup();
                assert_eq!(mine.len(), friends, "user {i} of {users}");
                assert!(
                    mine.iter()
                        .all(|&j| ring.are_friends(i, j) && ring.are_friends(j, i))
                );
            }
            assert_eq!(pairs.len(), ring.pairs());
            let friendly = (0..users)
                .flat_map(|i| (0..users).map(move |j| (i, j)))
                .filter(|&(i, j)| ring.are_friends(i, j))
                .count();
            assert_eq!(friendly, 2 * ring.pairs());
        }
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert_eq!(Ring::new(10, 3), Err(LayoutError::Odd(3)));
        let alone = Ring::new(10, 0).unwrap();
        assert_eq!((alone.pairs(), alone.friends_of(3).count()), (0, 0));
        assert_eq!(
            Ring::new(10, 10),
            Err(LayoutError::TooMany {
                friends: 10,
                users: 10
            })
        );
        assert!(Ring::new(11, 10).is_ok());
    }

    fn w(start: u64, end: u64) -> Window {
        Window {
            start,
            end: Some(end),
        }
    }

    fn online_at(login: Window) -> Seen {
        Seen {
            login: Some(login),
            logged_in: true,
            ..Seen::default()
        }
    }

    #[test]
    fn windows_decide_what_a_device_must_get() {
        let device = Seen {
            logout: Some(w(100, 110)),
            ..online_at(w(10, 20))
        };
        let l = Listening::of(&device);
        assert_eq!(l.expect(w(30, 40)), Expect::Must);
        assert_eq!(l.expect(w(20, 100)), Expect::Must);
        assert_eq!(l.expect(w(1, 5)), Expect::MustNot, "over before it began");
        assert_eq!(l.expect(w(111, 120)), Expect::MustNot, "after its logout");
        assert_eq!(l.expect(w(15, 30)), Expect::May, "during its login");
        assert_eq!(l.expect(w(105, 130)), Expect::May, "during its logout");
        assert_eq!(l.expect(w(5, 15)), Expect::May);
        let unanswered = Window {
            start: 30,
            end: None,
        };
        assert_eq!(l.expect(unanswered), Expect::May);
        let refused = Seen {
            logged_in: false,
            ..device.clone()
        };
        assert_eq!(Listening::of(&refused).expect(w(30, 40)), Expect::MustNot);
        let no_logout = online_at(w(10, 20));
        assert_eq!(Listening::of(&no_logout).expect(w(500, 600)), Expect::Must);
    }

    /// Four users in a ring of friends 2 (each has its two neighbours), logged in one after the other.
    fn in_turn() -> (Ring, Vec<Seen>) {
        let ring = Ring::new(4, 2).unwrap();
        let seen = (0..4u64)
            .map(|i| online_at(w(100 * i + 1, 100 * i + 10)))
            .collect();
        (ring, seen)
    }

    fn from(x: usize) -> Frame {
        Frame {
            from: Some(x),
            online: true,
        }
    }

    #[test]
    fn logins_in_turn_each_tell_the_friends_online_before() {
        let (ring, mut seen) = in_turn();
        // 0 hears of 1 and 3; 1 of 2; 2 of 3; 3 of nobody (its friends 0 and 2 came before it).
        seen[0].frames = vec![from(1), from(3)];
        seen[1].frames = vec![from(2)];
        seen[2].frames = vec![from(3)];
        seen[1].ack_online = vec![0];
        seen[2].ack_online = vec![1];
        seen[3].ack_online = vec![0, 2];
        let t = tally(&ring, &seen, true);
        assert_eq!(t.events, 4);
        assert_eq!(t.frames, 4);
        assert_eq!((t.must, t.may, t.must_not), (4, 0, 4));
        assert_eq!((t.got_must, t.missing, t.unexpected), (4, 0, 0));
        assert_eq!(t.max_fanout, 2, "3 reached 0 and 2");
        assert_eq!(t.mean_fanout, 1.0);
        assert!(t.within_contract(), "{t:?}");
        assert_eq!(views(&ring, &seen), Views::default());
        assert_eq!(tally(&ring, &seen, false).events, 0);
    }

    #[test]
    fn duplicates_strangers_misses_and_frames_to_absent_devices_are_counted() {
        let (ring, mut seen) = in_turn();
        seen[0].frames = vec![from(1), from(1), from(3)];
        seen[1].frames = vec![from(0), from(3)]; // 0 was in before 1: must not; 3 is no friend of 1
        seen[2].frames = vec![from(3)];
        seen[2].ack_online = vec![1];
        seen[3].ack_online = vec![0, 2];
        let t = tally(&ring, &seen, true);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.strangers, 1);
        assert_eq!(t.unexpected, 1);
        assert_eq!(t.missing, 1, "1 never heard of 2");
        assert_eq!(t.over_bound, 1, "0's login reached 1, which was not online");
        assert!(!t.within_contract());
        // 1's ack showed nobody and no frame told it of 2; the frame of 0 came, if wrongly.
        let v = views(&ring, &seen);
        assert_eq!((v.stale_in_order, v.stale_states_in_order), (1, 1));
        assert_eq!((v.stale_union, v.stale_states_union), (1, 1));
    }

    #[test]
    fn a_frame_before_the_login_ack_is_undone_by_an_ack_that_shows_the_friend_offline() {
        let (ring, mut seen) = in_turn();
        // 1 heard of 2 before its own ack, and the ack (read before 2 came online) showed 2 offline.
        seen[1].frames = vec![from(2)];
        seen[1].before_ack = 1;
        seen[1].ack_online = vec![0];
        seen[0].frames = vec![from(1), from(3)];
        seen[2].frames = vec![from(3)];
        seen[2].ack_online = vec![1];
        seen[3].ack_online = vec![0, 2];
        let v = views(&ring, &seen);
        assert_eq!((v.before_ack, v.overridden_by_ack), (1, 1));
        assert_eq!(
            v.samples,
            vec![
                "device 1 (login 0.000–0.000 ms) got friend 2's online (login 0.000–0.000 ms) \
                 before its own login ack, which showed 2 offline"
                    .to_string()
            ]
        );
        assert_eq!((v.stale_in_order, v.stale_states_in_order), (1, 1));
        assert_eq!(v.stale_union, 0, "it was told, in the wrong order");
        // The same frame after the ack, then the logout storm's offline: the view was right.
        seen[1].before_ack = 0;
        seen[1].frames.push(Frame {
            from: Some(2),
            online: false,
        });
        assert_eq!(views(&ring, &seen), Views::default());
    }

    #[test]
    fn overlapping_logins_may_go_either_way_and_logouts_are_judged_alike() {
        let ring = Ring::new(4, 2).unwrap();
        let mut seen: Vec<Seen> = (0..4).map(|_| online_at(w(1, 50))).collect();
        seen[0].frames = vec![from(1)];
        let t = tally(&ring, &seen, true);
        assert_eq!((t.must, t.may, t.must_not), (0, 8, 0));
        assert_eq!(t.got_may, 1);
        assert!(t.within_contract());
        // Logouts in turn: 0 first, then 1, 2, 3; each still logged in hears of those before it.
        for (i, s) in seen.iter_mut().enumerate() {
            s.frames.clear();
            s.logout = Some(w(1_000 + 100 * i as u64, 1_010 + 100 * i as u64));
        }
        let off = |x| Frame {
            from: Some(x),
            online: false,
        };
        seen[1].frames = vec![off(0)];
        seen[2].frames = vec![off(1)];
        seen[3].frames = vec![off(0), off(2)];
        let t = tally(&ring, &seen, false);
        assert_eq!(t.events, 4);
        assert_eq!((t.must, t.must_not, t.missing), (4, 4, 0));
        assert!(t.within_contract());
        seen[0].frames = vec![off(1)];
        let t = tally(&ring, &seen, false);
        assert_eq!(t.unexpected, 1, "0 had logged out before 1 did");
    }
}
