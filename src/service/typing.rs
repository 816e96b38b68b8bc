//! Typing notices: relayed to the other participants' v2 devices, never stored, at most one per sender
//! and conversation every [`EVERY`] (counted on each node), and never between two users of whom one
//! blocks the other (the sender gets no answer either way, so that a block stays unseen).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Caller, Context, Failure, chat};
use crate::model::{Conv, UserId};
use crate::protocol::request::ConvName;
use crate::protocol::{Errno, reply};

/// How often a sender's typing in one conversation is relayed at most.
pub const EVERY: Duration = Duration::from_secs(2);
/// Entries at which the throttle forgets those older than [`EVERY`], bounding its memory.
const PRUNE_AT: usize = 16 * 1024;

/// When each sender's typing in each conversation was last relayed.
#[derive(Default)]
pub struct Throttle {
    last: Mutex<HashMap<(UserId, Conv), Instant>>,
}

impl Throttle {
    /// Whether a notice of `sender` in `conv` may be relayed now (and if so, counts it).
    fn allows(&self, sender: UserId, conv: Conv) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.len() >= PRUNE_AT {
            last.retain(|_, at| now.duration_since(*at) < EVERY);
        }
        match last.get(&(sender, conv)) {
            Some(at) if now.duration_since(*at) < EVERY => false,
            _ => {
                last.insert((sender, conv), now);
                true
            }
        }
    }
}

/// TYPING: relays the caller's notice to the conversation's other participants.
pub fn typing(ctx: &Context, caller: &Caller, name: ConvName) -> Result<(), Failure> {
    let me = caller.me().id;
    let recipients: Vec<UserId> = match name {
        ConvName::User(peer) => {
            if ctx.users.name(ctx.store.as_ref(), peer)?.is_none() {
                return Err(Failure::new(
                    Errno::NotFound,
                    format!("no such user: {peer}"),
                ));
            }
            vec![peer]
        }
        ConvName::Group(group) => chat::member_list(ctx, group, me)?.ids().collect(),
    };
    let conv = name.conv(me);
    let others: Vec<UserId> = recipients.into_iter().filter(|&r| r != me).collect();
    if others.is_empty() || !ctx.typing.allows(me, conv) {
        return Ok(());
    }
    let blockers = ctx.store.blockers_of(me)?;
    let blocked = ctx.store.blocked(me)?;
    let cut = |r: &UserId| blockers.contains(r) || blocked.iter().any(|(b, _)| b == r);
    for to in others.into_iter().filter(|r| !cut(r)) {
        chat::push_v2(ctx, to, reply::typing(conv, to, me), None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_sender_and_conversation_per_period() {
        let throttle = Throttle::default();
        let (a, b) = (Conv::direct(1, 2), Conv::Group(7));
        assert!(throttle.allows(1, a));
        assert!(!throttle.allows(1, a), "the second within the period");
        assert!(throttle.allows(1, b), "another conversation");
        assert!(throttle.allows(2, a), "another sender");
    }
}
