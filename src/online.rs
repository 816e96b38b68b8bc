//! The devices logged in on this node: user id → each device's name, version and mailbox.
//!
//! Delivery looks a user up and queues into their mailboxes while holding the read lock, and removal takes
//! the write lock. So once [`Online::remove`] has returned, nothing more can reach that mailbox through the
//! map, and whatever it holds can be recorded offline without a race.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::mailbox::{Copies, Live, Mailbox, Outgoing};
use crate::model::UserId;
use crate::protocol::Version;

/// One logged-in connection of a user.
#[derive(Clone)]
pub struct Device {
    pub name: Arc<str>,
    pub version: Version,
    pub mailbox: Arc<Mailbox>,
}

/// A chat frame in the shapes its readers need: the original's for v1 devices, the log's for v2. A carbon
/// has no v1 shape (v1 devices get none). A shape may be made only when a reader first asks for it
/// (`service::chat`'s frames of a committed message): most users' devices here are of one version, and a
/// sender seldom has another device to take a carbon.
pub trait Frames {
    fn v1(&self) -> Option<Arc<str>>;
    fn v2(&self) -> Arc<str>;
}

/// Shapes made already (what another node sent).
pub struct Made {
    pub v1: Option<Arc<str>>,
    pub v2: Arc<str>,
}

impl Frames for Made {
    fn v1(&self) -> Option<Arc<str>> {
        self.v1.clone()
    }

    fn v2(&self) -> Arc<str> {
        self.v2.clone()
    }
}

/// The online-user map of one node.
#[derive(Default)]
pub struct Online {
    users: RwLock<HashMap<UserId, Vec<Device>>>,
}

impl Online {
    /// Registers a device of `user`; `None` if a device of that name is online here already, else
    /// whether it is the user's first device here.
    pub fn insert(&self, user: UserId, device: Device) -> Option<bool> {
        let mut users = self.users.write();
        let devices = users.entry(user).or_default();
        if devices.iter().any(|d| d.name == device.name) {
            return None;
        }
        devices.push(device);
        Some(devices.len() == 1)
    }

    /// Unregisters the device of `user` whose mailbox is `mailbox`; returns whether the user has no device
    /// left here (and so this node no longer needs their messages).
    pub fn remove(&self, user: UserId, mailbox: &Arc<Mailbox>) -> bool {
        let mut users = self.users.write();
        let Some(devices) = users.get_mut(&user) else {
            return true;
        };
        devices.retain(|d| !Arc::ptr_eq(&d.mailbox, mailbox));
        if devices.is_empty() {
            users.remove(&user);
            return true;
        }
        false
    }

    /// Queues a chat frame for every device of `user` here but the one named `except`, each in its
    /// version's shape; returns whether the message is in a device's care: `false` when none took it,
    /// or when the copies taken were already given up unwritten (devices closing at once) by the time
    /// the last one was refused. Then the caller records it.
    pub fn deliver(
        &self,
        user: UserId,
        frames: &dyn Frames,
        at: Option<(crate::model::Conv, crate::model::Pos)>,
        except: Option<&str>,
    ) -> bool {
        let users = self.users.read();
        let Some(devices) = users.get(&user) else {
            return false;
        };
        let readers: Vec<(&Device, Arc<str>)> = devices
            .iter()
            .filter(|d| Some(&*d.name) != except)
            .filter_map(|d| {
                let frame = match d.version {
                    Version::V1 => frames.v1(),
                    Version::V2 => Some(frames.v2()),
                };
                Some((d, frame?))
            })
            .collect();
        let copies = Copies::new(readers.len());
        let (mut taken, mut orphaned) = (false, false);
        for (d, frame) in readers {
            let live = match at {
                Some(at) => Live::copy(user, frame, at, copies.clone()),
                None => Live::carbon(user, frame),
            };
            match d.mailbox.push(Outgoing::Chat(live)) {
                Ok(()) => taken = true,
                Err(refused) => {
                    for live in refused.undelivered() {
                        orphaned |= live.abandon();
                    }
                }
            }
        }
        taken && !orphaned
    }

    /// Queues a frame for every v2 device of `user` here but the one named `except` (pushes such as
    /// receipts, which v1 clients do not know).
    pub fn push_v2(&self, user: UserId, frame: &str, except: Option<&str>) {
        let users = self.users.read();
        for d in users.get(&user).into_iter().flatten() {
            if d.version == Version::V2 && Some(&*d.name) != except {
                let _ = d.mailbox.push(Outgoing::Push {
                    to: user,
                    frame: frame.to_owned(),
                });
            }
        }
    }

    /// Asks every device of `user` here to fetch what was recorded offline; `false` if none is here.
    pub fn nudge(&self, user: UserId) -> bool {
        let users = self.users.read();
        let Some(devices) = users.get(&user) else {
            return false;
        };
        devices.iter().fold(false, |any, d| {
            d.mailbox.push(Outgoing::Nudge(user)).is_ok() | any
        })
    }

    /// Users with a device here, and devices here.
    pub fn counts(&self) -> (usize, usize) {
        let users = self.users.read();
        (users.len(), users.values().map(Vec::len).sum())
    }

    /// How many devices `user` has here.
    pub fn devices(&self, user: UserId) -> usize {
        self.users.read().get(&user).map_or(0, Vec::len)
    }

    /// Whether `user` has a device here.
    pub fn contains(&self, user: UserId) -> bool {
        self.users.read().contains_key(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Sink;

    fn device(name: &str, version: Version) -> (Device, crossbeam_channel::Receiver<Outgoing>) {
        let (mailbox, rx) = Mailbox::new(4, || {});
        let device = Device {
            name: name.into(),
            version,
            mailbox,
        };
        (device, rx)
    }

    #[test]
    fn every_device_gets_its_shape_but_the_excepted_one() {
        let online = Online::default();
        let (phone, phone_rx) = device("phone", Version::V2);
        let (old, old_rx) = device("v1", Version::V1);
        let (laptop, laptop_rx) = device("laptop", Version::V2);
        assert_eq!(online.insert(1, phone.clone()), Some(true));
        assert_eq!(online.insert(1, old), Some(false));
        assert_eq!(online.insert(1, laptop), Some(false));
        let (again, _) = device("phone", Version::V2);
        assert_eq!(online.insert(1, again), None, "one device name once");
        let frames = Made {
            v1: Some("one".into()),
            v2: "two".into(),
        };
        assert!(online.deliver(1, &frames, None, Some("laptop")));
        let text = |rx: &crossbeam_channel::Receiver<Outgoing>| match rx.try_recv() {
            Ok(Outgoing::Chat(live)) => live.frame.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(text(&phone_rx), "two");
        assert_eq!(text(&old_rx), "one");
        assert!(laptop_rx.is_empty());
        let carbon = Made {
            v1: None,
            v2: "c".into(),
        };
        assert!(online.deliver(1, &carbon, None, None));
        assert!(old_rx.is_empty(), "no carbon for v1");
        assert!(!online.remove(1, &phone.mailbox));
        assert!(!online.deliver(2, &frames, None, None));
    }

    /// A sink whose connection is closing: each chat frame handed to it is given up unwritten at once,
    /// as a closing connection's leftovers are.
    struct GivesUp;

    impl Sink for GivesUp {
        fn try_direct(&self, item: Outgoing) -> Vec<Outgoing> {
            for live in item.undelivered() {
                assert!(live.pointer().is_none(), "not the last copy");
            }
            Vec::new()
        }
        fn start_writer(&self) -> bool {
            true
        }
        fn overflow(&self) {}
    }

    /// Two devices of a user closing at once: the first takes its copy and gives it up unwritten, the
    /// second refuses its own. No device wrote the message, so the caller must record it.
    #[test]
    fn copies_given_up_by_every_device_leave_the_message_to_the_caller() {
        let online = Online::default();
        let (mailbox, _rx) = Mailbox::with_sink(4, GivesUp);
        let closing = Device {
            name: "phone".into(),
            version: Version::V2,
            mailbox,
        };
        let (closed, _) = device("laptop", Version::V2);
        closed.mailbox.begin_close();
        closed.mailbox.finish_close(|_| {});
        assert_eq!(online.insert(1, closing), Some(true));
        assert_eq!(online.insert(1, closed), Some(false));
        let frames = Made {
            v1: None,
            v2: "m".into(),
        };
        let at = (crate::model::Conv::direct(1, 2), 1);
        assert!(!online.deliver(1, &frames, Some(at), None));
    }
}
