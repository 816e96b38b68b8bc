//! Who may do what to friendships and groups: one function per rule, over what the store says about the
//! people involved, so that every node decides alike and the rules can be tested without a server. A
//! refusal is the [`Failure`] the client gets (105 with the reason, or 104 for someone who is not there).

use super::Failure;
use crate::model::{Members, Relation, Role, UserId};
use crate::protocol::Errno;

fn denied(why: &'static str) -> Failure {
    Failure::new(Errno::NotAllowed, why)
}

/// Another user, not oneself.
pub fn not_self(me: UserId, other: UserId, why: &'static str) -> Result<(), Failure> {
    if me == other {
        return Err(denied(why));
    }
    Ok(())
}

/// Asking `other` for friendship, or befriending them at once (ADD_FRIEND): neither may block the other.
pub fn may_befriend(me: UserId, other: UserId, relation: &Relation) -> Result<(), Failure> {
    not_self(me, other, "you cannot befriend yourself")?;
    if relation.they_block {
        return Err(denied("this user does not accept requests from you"));
    }
    if relation.i_block {
        return Err(denied("you block this user; unblock them first"));
    }
    Ok(())
}

/// The caller's role in a group: only members may act in it or read it.
pub fn member(members: &Members, me: UserId) -> Result<Role, Failure> {
    members.role_of(me).ok_or_else(not_a_member)
}

/// The refusal of a caller who is not a member of the group.
pub fn not_a_member() -> Failure {
    denied("you are not a member of this group")
}

/// The refusal of a target who is not a member of the group (104).
pub fn no_such_member() -> Failure {
    Failure::new(Errno::NotFound, "no such member in this group")
}

/// What leaving a group does.
#[derive(Debug, PartialEq, Eq)]
pub enum Leaving {
    /// The member leaves; the group goes on.
    Leave,
    /// The last member (the creator) leaves: the group is dissolved, since no one could run it.
    Dissolve,
}

/// Leaving: any member but a creator who still has others in the group.
pub fn may_leave(members: &Members, me: UserId) -> Result<Leaving, Failure> {
    match member(members, me)? {
        Role::Creator if members.list.len() > 1 => {
            Err(denied("hand the group over or dissolve it first"))
        }
        Role::Creator => Ok(Leaving::Dissolve),
        _ => Ok(Leaving::Leave),
    }
}

/// The target's role, which must be a member's: 104 otherwise.
fn target(members: &Members, who: UserId) -> Result<Role, Failure> {
    members.role_of(who).ok_or_else(no_such_member)
}

/// Kicking: the creator may remove anyone else, an admin only normal members.
pub fn may_kick(members: &Members, me: UserId, who: UserId) -> Result<(), Failure> {
    let mine = member(members, me)?;
    not_self(me, who, "you cannot kick yourself: leave the group instead")?;
    let theirs = target(members, who)?;
    match (mine, theirs) {
        (Role::Creator, _) | (Role::Admin, Role::Normal) => Ok(()),
        (Role::Admin, _) => Err(denied("an admin may only remove normal members")),
        (Role::Normal, _) => Err(denied("only the creator and admins may remove members")),
    }
}

/// Letting a kicked user back: the creator and admins, as kicking.
pub fn may_unban(members: &Members, me: UserId) -> Result<(), Failure> {
    match member(members, me)? {
        Role::Creator | Role::Admin => Ok(()),
        Role::Normal => Err(denied("only the creator and admins may let users back")),
    }
}

/// The roles a role change sets, in the order their events go out; empty when nothing changes.
pub fn role_change(
    members: &Members,
    me: UserId,
    who: UserId,
    role: Role,
) -> Result<Vec<(UserId, Role)>, Failure> {
    if member(members, me)? != Role::Creator {
        return Err(denied("only the creator may change roles"));
    }
    not_self(
        me,
        who,
        "you are the creator: hand the group over to someone else",
    )?;
    let theirs = target(members, who)?;
    Ok(match role {
        _ if role == theirs => Vec::new(),
        // A hand-over: the old creator stays on as an admin.
        Role::Creator => vec![(who, Role::Creator), (me, Role::Admin)],
        _ => vec![(who, role)],
    })
}

/// Renaming or describing a group: the creator and admins.
pub fn may_update(members: &Members, me: UserId) -> Result<(), Failure> {
    match member(members, me)? {
        Role::Creator | Role::Admin => Ok(()),
        Role::Normal => Err(denied(
            "only the creator and admins may change the group's name or description",
        )),
    }
}

/// Dissolving a group: the creator only.
pub fn may_dissolve(members: &Members, me: UserId) -> Result<(), Failure> {
    match member(members, me)? {
        Role::Creator => Ok(()),
        _ => Err(denied("only the creator may dissolve the group")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATOR: UserId = 1;
    const ADMIN: UserId = 2;
    const NORMAL: UserId = 3;
    const OTHER_NORMAL: UserId = 4;
    const STRANGER: UserId = 9;

    fn group() -> Members {
        Members {
            version: 1,
            list: vec![
                (CREATOR, Role::Creator),
                (ADMIN, Role::Admin),
                (NORMAL, Role::Normal),
                (OTHER_NORMAL, Role::Normal),
            ],
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, Failure>) -> i64 {
        r.expect_err("refused").code
    }

    #[test]
    fn befriending_needs_no_block_either_way() {
        let none = Relation::default();
        assert!(may_befriend(1, 2, &none).is_ok());
        assert_eq!(code(may_befriend(1, 1, &none)), 105);
        let they = Relation {
            they_block: true,
            ..none
        };
        assert_eq!(code(may_befriend(1, 2, &they)), 105);
        let i = Relation {
            i_block: true,
            ..none
        };
        assert_eq!(code(may_befriend(1, 2, &i)), 105);
    }

    #[test]
    fn each_role_kicks_whom_it_may() {
        let g = group();
        assert!(may_kick(&g, CREATOR, ADMIN).is_ok());
        assert!(may_kick(&g, CREATOR, NORMAL).is_ok());
        assert!(may_kick(&g, ADMIN, NORMAL).is_ok());
        assert_eq!(code(may_kick(&g, ADMIN, CREATOR)), 105);
        assert_eq!(code(may_kick(&g, NORMAL, OTHER_NORMAL)), 105);
        assert_eq!(code(may_kick(&g, NORMAL, ADMIN)), 105);
        assert_eq!(code(may_kick(&g, CREATOR, CREATOR)), 105);
        assert_eq!(code(may_kick(&g, STRANGER, NORMAL)), 105);
        assert_eq!(code(may_kick(&g, CREATOR, STRANGER)), 104);
    }

    #[test]
    fn those_who_may_kick_may_let_back() {
        let g = group();
        assert!(may_unban(&g, CREATOR).is_ok());
        assert!(may_unban(&g, ADMIN).is_ok());
        assert_eq!(code(may_unban(&g, NORMAL)), 105);
        assert_eq!(code(may_unban(&g, STRANGER)), 105);
    }

    #[test]
    fn only_the_creator_changes_roles_and_a_hand_over_changes_two() {
        let g = group();
        assert_eq!(
            role_change(&g, CREATOR, NORMAL, Role::Admin).unwrap(),
            vec![(NORMAL, Role::Admin)]
        );
        assert_eq!(
            role_change(&g, CREATOR, ADMIN, Role::Creator).unwrap(),
            vec![(ADMIN, Role::Creator), (CREATOR, Role::Admin)]
        );
        assert!(
            role_change(&g, CREATOR, ADMIN, Role::Admin)
                .unwrap()
                .is_empty()
        );
        assert_eq!(code(role_change(&g, ADMIN, NORMAL, Role::Admin)), 105);
        assert_eq!(code(role_change(&g, NORMAL, NORMAL, Role::Admin)), 105);
        assert_eq!(code(role_change(&g, CREATOR, CREATOR, Role::Admin)), 105);
        assert_eq!(code(role_change(&g, CREATOR, STRANGER, Role::Admin)), 104);
        assert_eq!(code(role_change(&g, STRANGER, NORMAL, Role::Admin)), 105);
    }

    #[test]
    fn updating_and_dissolving() {
        let g = group();
        assert!(may_update(&g, CREATOR).is_ok());
        assert!(may_update(&g, ADMIN).is_ok());
        assert_eq!(code(may_update(&g, NORMAL)), 105);
        assert_eq!(code(may_update(&g, STRANGER)), 105);
        assert!(may_dissolve(&g, CREATOR).is_ok());
        assert_eq!(code(may_dissolve(&g, ADMIN)), 105);
        assert_eq!(code(may_dissolve(&g, NORMAL)), 105);
    }

    #[test]
    fn the_creator_leaves_only_as_the_last_member() {
        let g = group();
        assert_eq!(may_leave(&g, NORMAL).unwrap(), Leaving::Leave);
        assert_eq!(may_leave(&g, ADMIN).unwrap(), Leaving::Leave);
        assert_eq!(code(may_leave(&g, CREATOR)), 105);
        assert_eq!(code(may_leave(&g, STRANGER)), 105);
        let alone = Members {
            version: 1,
            list: vec![(CREATOR, Role::Creator)],
        };
        assert_eq!(may_leave(&alone, CREATOR).unwrap(), Leaving::Dissolve);
    }
}
