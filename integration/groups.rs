//! Groups (PROTOCOL-2 section 6, as decided in notes/decisions-11.md): roles and what each may do,
//! hand-over, GROUP_UPDATE, kick and leave (at once, on every node), dissolve, GROUP_INFO, GROUP_EVENT to
//! every v2 device of the members and of the user affected, and what v1 connections see of it.

use std::time::Duration;

use clusterchat::model::{Conv, Role};
use clusterchat::protocol::frame::Separator;
use clusterchat::store::{Joined, NewMessage, Removal, Require, Store};
use serde_json::{Value, json};

use crate::support::{
    Backend, Conn, Db, Nodes, Server, acked_as, assert_nothing_queued, device, expect_all_silent,
    group_event, group_info, make_group, recv_around, refused_with, register_all, v1_login,
};

const QUIET: Duration = Duration::from_millis(300);

fn gchat(group: i64, text: &str) -> Value {
    json!({"msgid": 10, "groupid": group, "msg": text})
}

fn join_req(group: i64) -> Value {
    json!({"msgid": 9, "groupid": group})
}

fn leave(group: i64) -> Value {
    json!({"msgid": 37, "groupid": group})
}

fn kick(group: i64, id: i64) -> Value {
    json!({"msgid": 39, "groupid": group, "id": id})
}

fn unban(group: i64, id: i64) -> Value {
    json!({"msgid": 54, "groupid": group, "id": id})
}

fn role(group: i64, id: i64, role: &str) -> Value {
    json!({"msgid": 41, "groupid": group, "id": id, "role": role})
}

fn dissolve(group: i64) -> Value {
    json!({"msgid": 45, "groupid": group})
}

fn role_event(group: i64, id: i64, by: i64, role: &str) -> Value {
    let mut e = group_event(group, "role", id, by);
    e["role"] = json!(role);
    e
}

fn updated_event(group: i64, by: i64, name: &str, desc: &str) -> Value {
    let mut e = group_event(group, "updated", by, by);
    e["groupname"] = json!(name);
    e["groupdesc"] = json!(desc);
    e
}

fn member(id: i64, name: &str, state: &str, role: &str) -> Value {
    json!({"id": id, "name": name, "state": state, "role": role})
}

/// v2 connections of the users `ids`, one each (device "default"), in order.
fn connect_all(server: &Server, ids: &[i64]) -> Vec<Conn> {
    ids.iter()
        .map(|&id| device(server, id, "default").0)
        .collect()
}

/// `conns[actor]` sends `request`: its ack (msgid `ack`, errno 0) comes alone (the acting connection gets
/// no event of its own action), and each of `conns[others]` gets `events`, in order. Returns the ack.
fn act(
    conns: &mut [Conn],
    actor: usize,
    request: Value,
    ack: i64,
    events: &[Value],
    others: &[usize],
) -> Value {
    let reply = acked_as(&mut conns[actor], request, ack);
    for &i in others {
        for e in events {
            assert_eq!(conns[i].recv(), *e, "connection {i}");
        }
    }
    reply
}

/// `conns[joiner]` (user `id`) joins `group`: `joined` to it and to each of `conns[members]`.
fn join(conns: &mut [Conn], joiner: usize, id: i64, group: i64, members: &[usize]) {
    let event = group_event(group, "joined", id, id);
    let ack = act(conns, joiner, join_req(group), 14, &[event], members);
    assert_eq!(ack, json!({"msgid": 14, "errno": 0, "groupid": group}));
}

/// Asserts silence on every connection of `conns`.
fn all_silent(conns: &mut [Conn]) {
    let mut refs: Vec<&mut Conn> = conns.iter_mut().collect();
    expect_all_silent(&mut refs, QUIET);
}

/// The indices in `members` but `actor`.
fn but(members: &[usize], actor: usize) -> Vec<usize> {
    members.iter().copied().filter(|&i| i != actor).collect()
}

/// A v2 login ack of someone in no group any more: no offline message, no group, no conversation.
fn assert_outside_every_group(ack: &Value) {
    assert_eq!(offline(ack), Vec::<Value>::new(), "{ack}");
    assert_eq!(
        (ack["groups"].clone(), ack["conversations"].clone()),
        (json!([]), json!([])),
        "{ack}"
    );
}

/// The message texts of a v2 login ack's `offlinemsg`.
fn offline(ack: &Value) -> Vec<Value> {
    ack["offlinemsg"]
        .as_array()
        .expect("offlinemsg")
        .iter()
        .map(|m| m["msg"].clone())
        .collect()
}

/// The group requests' refusals: 102 for invalid fields (GROUP_UPDATE with neither field among them),
/// 104 for an unknown group and for a kick or role target who is not a member, 105 for a caller who is
/// not a member and for kicking or re-roling oneself. Nothing changes, nothing is pushed.
fn group_request_refusals(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "max", "out"]);
    let (kay, max, out) = (ids[0], ids[1], ids[2]);
    let mut conns = connect_all(&server, &ids);
    let gid = make_group(&mut conns[0], "base");
    join(&mut conns, 1, max, gid, &[0]);
    for bad in [
        json!({"msgid": 37}),
        json!({"msgid": 37, "groupid": gid.to_string()}),
        json!({"msgid": 37, "groupid": 0}),
        json!({"msgid": 39, "groupid": gid}),
        json!({"msgid": 39, "id": max}),
        json!({"msgid": 39, "groupid": gid, "id": "x"}),
        json!({"msgid": 39, "groupid": gid, "id": -1}),
        json!({"msgid": 41, "groupid": gid, "id": max}),
        json!({"msgid": 41, "groupid": gid, "role": "admin"}),
        json!({"msgid": 41, "groupid": gid, "id": max, "role": "owner"}),
        json!({"msgid": 41, "groupid": gid, "id": max, "role": "Admin"}),
        json!({"msgid": 41, "groupid": gid, "id": max, "role": ""}),
        json!({"msgid": 41, "groupid": gid, "id": max, "role": 5, "seq": 1}),
        json!({"msgid": 43, "groupid": gid}),
        json!({"msgid": 43, "groupname": "x"}),
        json!({"msgid": 43, "groupid": gid, "groupname": ""}),
        json!({"msgid": 43, "groupid": gid, "groupname": "x".repeat(51)}),
        json!({"msgid": 43, "groupid": gid, "groupname": "a\u{1}b"}),
        json!({"msgid": 43, "groupid": gid, "groupname": 5}),
        json!({"msgid": 43, "groupid": gid, "groupdesc": "x".repeat(201)}),
        json!({"msgid": 43, "groupid": gid, "groupdesc": 5}),
        json!({"msgid": 45}),
        json!({"msgid": 45, "groupid": -1}),
        json!({"msgid": 47}),
        json!({"msgid": 47, "groupid": 1.5}),
    ] {
        refused_with(&mut conns[0], bad, 102);
    }
    let unknown = 999_999;
    for request in [
        leave(unknown),
        kick(unknown, max),
        role(unknown, max, "admin"),
        json!({"msgid": 43, "groupid": unknown, "groupdesc": "x"}),
        dissolve(unknown),
        json!({"msgid": 47, "groupid": unknown, "seq": "u"}),
    ] {
        refused_with(&mut conns[0], request.clone(), 104);
        refused_with(&mut conns[2], request, 104);
    }
    // Not a member.
    for request in [
        leave(gid),
        kick(gid, max),
        role(gid, max, "admin"),
        json!({"msgid": 43, "groupid": gid, "groupdesc": "mine"}),
        dissolve(gid),
        json!({"msgid": 47, "groupid": gid}),
    ] {
        refused_with(&mut conns[2], request, 105);
    }
    // Targets: a non-member or unknown user is 104, oneself 105.
    refused_with(&mut conns[0], kick(gid, out), 104);
    refused_with(&mut conns[0], kick(gid, unknown), 104);
    refused_with(&mut conns[0], role(gid, out, "admin"), 104);
    refused_with(&mut conns[0], role(gid, unknown, "admin"), 104);
    refused_with(&mut conns[0], kick(gid, kay), 105);
    refused_with(&mut conns[0], role(gid, kay, "admin"), 105);
    refused_with(&mut conns[1], kick(gid, max), 105);
    all_silent(&mut conns);
    assert_eq!(
        group_info(&mut conns[1], gid),
        json!({"id": gid, "groupname": "base", "groupdesc": "", "users": [
            member(kay, "kay", "online", "creator"),
            member(max, "max", "online", "normal"),
        ]})
    );
}

/// Each role tries each action: a normal member may kick nobody, change no role, update nothing,
/// dissolve nothing; an admin may kick normal members (not admins nor the creator) and update the group,
/// but not change roles or dissolve; the creator may do all of it. Every success sends its event to the
/// members (the kicked one included), every refusal is 105 and changes nothing.
fn roles_are_enforced(backend: Backend) {
    const KAY: usize = 0; // creator
    const ADA: usize = 1; // admin
    const ABE: usize = 2; // admin
    const NIA: usize = 3;
    const NED: usize = 4;
    const NOA: usize = 5;
    const NAT: usize = 6;
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let names = ["kay", "ada", "abe", "nia", "ned", "noa", "nat"];
    let ids = register_all(&server, &names);
    let mut conns = connect_all(&server, &ids);
    let gid = make_group(&mut conns[KAY], "roles");
    let mut members = vec![KAY];
    for (i, &id) in ids.iter().enumerate().skip(1) {
        join(&mut conns, i, id, gid, &members);
        members.push(i);
    }
    for admin in [ADA, ABE] {
        let ack = act(
            &mut conns,
            KAY,
            role(gid, ids[admin], "admin"),
            42,
            &[role_event(gid, ids[admin], ids[KAY], "admin")],
            &but(&members, KAY),
        );
        assert_eq!(
            ack,
            json!({"msgid": 42, "errno": 0, "groupid": gid, "id": ids[admin], "role": "admin"})
        );
    }
    let update = |name: &str| json!({"msgid": 43, "groupid": gid, "groupname": name});
    // A normal member: nothing.
    for request in [
        kick(gid, ids[NED]),
        kick(gid, ids[ADA]),
        kick(gid, ids[KAY]),
        role(gid, ids[NED], "admin"),
        role(gid, ids[NIA], "admin"),
        update("mine"),
        json!({"msgid": 43, "groupid": gid, "groupdesc": "mine"}),
        dissolve(gid),
    ] {
        refused_with(&mut conns[NIA], request, 105);
    }
    // An admin: no admins, no creator, no roles, no dissolving.
    for request in [
        kick(gid, ids[ABE]),
        kick(gid, ids[KAY]),
        role(gid, ids[NED], "admin"),
        role(gid, ids[ABE], "normal"),
        role(gid, ids[ADA], "creator"),
        dissolve(gid),
    ] {
        refused_with(&mut conns[ADA], request, 105);
    }
    all_silent(&mut conns);
    let users = |roles: &[(usize, &str)]| -> Value {
        roles
            .iter()
            .map(|&(i, r)| member(ids[i], names[i], "online", r))
            .collect()
    };
    assert_eq!(
        group_info(&mut conns[NIA], gid),
        json!({"id": gid, "groupname": "roles", "groupdesc": "", "users": users(&[
            (KAY, "creator"), (ADA, "admin"), (ABE, "admin"), (NIA, "normal"),
            (NED, "normal"), (NOA, "normal"), (NAT, "normal"),
        ])}),
        "the refusals changed nothing"
    );
    // An admin kicks a normal member and updates the group.
    let ack = act(
        &mut conns,
        ADA,
        kick(gid, ids[NED]),
        40,
        &[group_event(gid, "kicked", ids[NED], ids[ADA])],
        &but(&members, ADA),
    );
    assert_eq!(
        ack,
        json!({"msgid": 40, "errno": 0, "groupid": gid, "id": ids[NED]})
    );
    members.retain(|&i| i != NED);
    act(
        &mut conns,
        ADA,
        json!({"msgid": 43, "groupid": gid, "groupdesc": "by an admin"}),
        44,
        &[updated_event(gid, ids[ADA], "roles", "by an admin")],
        &but(&members, ADA),
    );
    // The creator kicks a normal member and an admin, changes roles, updates.
    for target in [NOA, ABE] {
        act(
            &mut conns,
            KAY,
            kick(gid, ids[target]),
            40,
            &[group_event(gid, "kicked", ids[target], ids[KAY])],
            &but(&members, KAY),
        );
        members.retain(|&i| i != target);
    }
    act(
        &mut conns,
        KAY,
        role(gid, ids[NIA], "admin"),
        42,
        &[role_event(gid, ids[NIA], ids[KAY], "admin")],
        &but(&members, KAY),
    );
    // nia, an admin now, may update; demoted again, she may not.
    act(
        &mut conns,
        NIA,
        update("roles2"),
        44,
        &[updated_event(gid, ids[NIA], "roles2", "by an admin")],
        &but(&members, NIA),
    );
    act(
        &mut conns,
        KAY,
        role(gid, ids[NIA], "normal"),
        42,
        &[role_event(gid, ids[NIA], ids[KAY], "normal")],
        &but(&members, KAY),
    );
    refused_with(&mut conns[NIA], update("roles3"), 105);
    act(
        &mut conns,
        KAY,
        json!({"msgid": 43, "groupid": gid, "groupdesc": "by the creator"}),
        44,
        &[updated_event(gid, ids[KAY], "roles2", "by the creator")],
        &but(&members, KAY),
    );
    assert_eq!(
        group_info(&mut conns[NAT], gid),
        json!({"id": gid, "groupname": "roles2", "groupdesc": "by the creator", "users": users(&[
            (KAY, "creator"), (ADA, "admin"), (NIA, "normal"), (NAT, "normal"),
        ])})
    );
    for kicked in [NED, NOA, ABE] {
        refused_with(
            &mut conns[kicked],
            json!({"msgid": 47, "groupid": gid}),
            105,
        );
    }
    // The creator dissolves it.
    let ack = act(
        &mut conns,
        KAY,
        dissolve(gid),
        46,
        &[group_event(gid, "dissolved", ids[KAY], ids[KAY])],
        &but(&members, KAY),
    );
    assert_eq!(ack, json!({"msgid": 46, "errno": 0, "groupid": gid}));
    all_silent(&mut conns);
}

/// The creator may not leave while others remain; GROUP_ROLE "creator" hands the group over (two role
/// events: the new creator first, then the old one, now admin), after which the old creator is an admin
/// and may leave; the creator as the last member leaving dissolves the group. The same role again is an
/// ack without events.
fn hand_over_then_leave(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "max", "ned"]);
    let (kay, max, ned) = (ids[0], ids[1], ids[2]);
    let mut conns = connect_all(&server, &ids);
    let gid = make_group(&mut conns[0], "handover");
    join(&mut conns, 1, max, gid, &[0]);
    join(&mut conns, 2, ned, gid, &[0, 1]);
    let no = refused_with(&mut conns[0], leave(gid), 105);
    assert_eq!(no["errmsg"], "hand the group over or dissolve it first");
    assert_eq!(
        acked_as(&mut conns[0], role(gid, ned, "normal"), 42),
        json!({"msgid": 42, "errno": 0, "groupid": gid, "id": ned, "role": "normal"})
    );
    all_silent(&mut conns);
    let mut hand_over = role(gid, max, "creator");
    hand_over["seq"] = json!(5);
    let ack = act(
        &mut conns,
        0,
        hand_over,
        42,
        &[
            role_event(gid, max, kay, "creator"),
            role_event(gid, kay, kay, "admin"),
        ],
        &[1, 2],
    );
    assert_eq!(
        ack,
        json!({"msgid": 42, "errno": 0, "groupid": gid, "id": max, "role": "creator", "seq": 5})
    );
    assert_eq!(
        group_info(&mut conns[2], gid)["users"],
        json!([
            member(kay, "kay", "online", "admin"),
            member(max, "max", "online", "creator"),
            member(ned, "ned", "online", "normal"),
        ])
    );
    // The old creator is an admin: no roles, no dissolving; but leaving is fine now.
    refused_with(&mut conns[0], role(gid, ned, "admin"), 105);
    refused_with(&mut conns[0], dissolve(gid), 105);
    let ack = act(
        &mut conns,
        0,
        leave(gid),
        38,
        &[group_event(gid, "left", kay, kay)],
        &[1, 2],
    );
    assert_eq!(ack, json!({"msgid": 38, "errno": 0, "groupid": gid}));
    refused_with(&mut conns[0], json!({"msgid": 47, "groupid": gid}), 105);
    refused_with(&mut conns[0], gchat(gid, "still in?"), 105);
    // The new creator is bound by the same rule.
    refused_with(&mut conns[1], leave(gid), 105);
    act(
        &mut conns,
        2,
        leave(gid),
        38,
        &[group_event(gid, "left", ned, ned)],
        &[1],
    );
    // The last member, the creator, leaves: the group is dissolved.
    act(
        &mut conns,
        1,
        leave(gid),
        38,
        &[group_event(gid, "dissolved", max, max)],
        &[],
    );
    refused_with(&mut conns[1], json!({"msgid": 47, "groupid": gid}), 104);
    assert_ne!(make_group(&mut conns[1], "handover"), gid);
    all_silent(&mut conns);
}

/// GROUP_UPDATE by the creator or an admin, either field or both: the `updated` event carries both values
/// now in force; a name another group has is 105, a normal member 105; the login ack and CONVERSATIONS
/// show the new name.
fn group_update(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "ada", "nia"]);
    let (kay, ada) = (ids[0], ids[1]);
    let mut conns = connect_all(&server, &ids);
    let created = acked_as(
        &mut conns[0],
        json!({"msgid": 8, "groupname": "before", "groupdesc": "first desc"}),
        13,
    );
    let gid = created["groupid"].as_i64().expect("groupid");
    join(&mut conns, 1, ada, gid, &[0]);
    join(&mut conns, 2, ids[2], gid, &[0, 1]);
    act(
        &mut conns,
        0,
        role(gid, ada, "admin"),
        42,
        &[role_event(gid, ada, kay, "admin")],
        &[1, 2],
    );
    make_group(&mut conns[2], "taken");
    let ack = act(
        &mut conns,
        0,
        json!({"msgid": 43, "groupid": gid, "groupname": "after", "seq": "u"}),
        44,
        &[updated_event(gid, kay, "after", "first desc")],
        &[1, 2],
    );
    assert_eq!(
        ack,
        json!({"msgid": 44, "errno": 0, "groupid": gid, "seq": "u"})
    );
    act(
        &mut conns,
        1,
        json!({"msgid": 43, "groupid": gid, "groupdesc": "second desc"}),
        44,
        &[updated_event(gid, ada, "after", "second desc")],
        &[0, 2],
    );
    act(
        &mut conns,
        0,
        json!({"msgid": 43, "groupid": gid, "groupname": "both", "groupdesc": ""}),
        44,
        &[updated_event(gid, kay, "both", "")],
        &[1, 2],
    );
    refused_with(
        &mut conns[0],
        json!({"msgid": 43, "groupid": gid, "groupname": "taken"}),
        105,
    );
    refused_with(
        &mut conns[1],
        json!({"msgid": 43, "groupid": gid, "groupname": "taken", "groupdesc": "x"}),
        105,
    );
    refused_with(
        &mut conns[2],
        json!({"msgid": 43, "groupid": gid, "groupdesc": "x"}),
        105,
    );
    all_silent(&mut conns);
    let info = group_info(&mut conns[2], gid);
    assert_eq!(
        (info["groupname"].clone(), info["groupdesc"].clone()),
        (json!("both"), json!(""))
    );
    let (_tablet, ack) = device(&server, kay, "tablet");
    assert_eq!(ack["groups"], json!([info]));
    assert_eq!(
        ack["conversations"],
        json!([{"conv": format!("g{gid}"), "name": "both", "last": 0, "read": 0, "unread": 0}])
    );
}

/// Leaving, at the ack: the leaver's devices and the members get `left`; the leaver may no longer send,
/// read history, read, type or ask for GROUP_INFO (105), and nothing committed afterwards reaches them,
/// live or offline.
fn leaving_stops_delivery(backend: Backend) {
    const KAY: usize = 0;
    const PHONE: usize = 1;
    const LAPTOP: usize = 2;
    const NED: usize = 3;
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "max", "ned"]);
    let (kay, max, ned) = (ids[0], ids[1], ids[2]);
    let mut conns = vec![
        device(&server, kay, "default").0,
        device(&server, max, "phone").0,
        device(&server, max, "laptop").0,
        device(&server, ned, "default").0,
    ];
    let gid = make_group(&mut conns[KAY], "leavers");
    let g = format!("g{gid}");
    join(&mut conns, PHONE, max, gid, &[KAY, LAPTOP]);
    join(&mut conns, NED, ned, gid, &[KAY, PHONE, LAPTOP]);
    acked_as(&mut conns[KAY], gchat(gid, "before"), 16);
    for i in [PHONE, LAPTOP, NED] {
        assert_eq!(conns[i].recv()["msg"], "before");
    }
    let ack = act(
        &mut conns,
        PHONE,
        json!({"msgid": 37, "groupid": gid, "seq": 3}),
        38,
        &[group_event(gid, "left", max, max)],
        &[KAY, LAPTOP, NED],
    );
    assert_eq!(
        ack,
        json!({"msgid": 38, "errno": 0, "groupid": gid, "seq": 3})
    );
    for request in [
        gchat(gid, "am I out?"),
        json!({"msgid": 19, "conv": g}),
        json!({"msgid": 21, "conv": g, "pos": 1}),
        json!({"msgid": 47, "groupid": gid}),
        json!({"msgid": 51, "conv": g}),
        leave(gid),
        kick(gid, ned),
    ] {
        refused_with(&mut conns[LAPTOP], request, 105);
    }
    acked_as(&mut conns[KAY], gchat(gid, "after"), 16);
    assert_eq!(conns[NED].recv()["msg"], "after");
    conns[NED].send(json!({"msgid": 51, "conv": g}));
    assert_eq!(
        conns[KAY].recv(),
        json!({"msgid": 51, "conv": g, "id": ned})
    );
    all_silent(&mut conns);
    // Away: nothing waits for max either.
    acked_as(&mut conns[PHONE], json!({"msgid": 3}), 11);
    acked_as(&mut conns[LAPTOP], json!({"msgid": 3}), 11);
    acked_as(&mut conns[KAY], gchat(gid, "while away"), 16);
    assert_eq!(conns[NED].recv()["msg"], "while away");
    let ack = conns[PHONE].login(max, "pw", 2);
    assert_outside_every_group(&ack);
    all_silent(&mut conns);
}

/// Dissolving: the members get `dissolved`; every later request naming the group is 104 (for members
/// and others alike); its name is free for a new group with a new id; its offline messages are gone.
fn dissolving_frees_the_name(backend: Backend) {
    const KAY: usize = 0;
    const MAX: usize = 1;
    const NED: usize = 2;
    const OUT: usize = 3;
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "max", "ned", "out"]);
    let (kay, max, ned) = (ids[0], ids[1], ids[2]);
    let mut conns = connect_all(&server, &ids);
    let gid = make_group(&mut conns[KAY], "short-lived");
    let g = format!("g{gid}");
    join(&mut conns, MAX, max, gid, &[KAY]);
    join(&mut conns, NED, ned, gid, &[KAY, MAX]);
    // ned goes away; two messages wait for him.
    acked_as(&mut conns[NED], json!({"msgid": 3}), 11);
    acked_as(&mut conns[KAY], gchat(gid, "one"), 16);
    assert_eq!(conns[MAX].recv()["msg"], "one");
    acked_as(&mut conns[MAX], gchat(gid, "two"), 16);
    assert_eq!(conns[KAY].recv()["msg"], "two");
    let ack = act(
        &mut conns,
        KAY,
        json!({"msgid": 45, "groupid": gid, "seq": 9}),
        46,
        &[group_event(gid, "dissolved", kay, kay)],
        &[MAX],
    );
    assert_eq!(
        ack,
        json!({"msgid": 46, "errno": 0, "groupid": gid, "seq": 9})
    );
    for request in [
        gchat(gid, "anyone?"),
        json!({"msgid": 19, "conv": g}),
        json!({"msgid": 21, "conv": g, "pos": 1}),
        join_req(gid),
        json!({"msgid": 47, "groupid": gid}),
        leave(gid),
        kick(gid, max),
        role(gid, max, "admin"),
        json!({"msgid": 43, "groupid": gid, "groupdesc": "x"}),
        dissolve(gid),
        json!({"msgid": 51, "conv": g}),
    ] {
        refused_with(&mut conns[KAY], request.clone(), 104);
        refused_with(&mut conns[MAX], request.clone(), 104);
        refused_with(&mut conns[OUT], request, 104);
    }
    let again = make_group(&mut conns[KAY], "short-lived");
    assert_ne!(again, gid, "group ids are never reused");
    assert_eq!(
        acked_as(&mut conns[KAY], json!({"msgid": 17}), 18)["conversations"],
        json!([{"conv": format!("g{again}"), "name": "short-lived", "last": 0, "read": 0, "unread": 0}])
    );
    let ack = conns[NED].login(ned, "pw", 2);
    assert_outside_every_group(&ack);
    all_silent(&mut conns);
}

/// GROUP_EVENT reaches every v2 device of every member and of the user affected but the acting
/// connection (which has its ack), never a v1 connection; joining a group one is in already sends nothing.
fn group_events_reach_every_v2_device(backend: Backend) {
    const KAY1: usize = 0;
    const KAY2: usize = 1;
    const MAX1: usize = 2;
    const MAX2: usize = 3;
    const NED: usize = 4;
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "max", "ned"]);
    let (kay, max, ned) = (ids[0], ids[1], ids[2]);
    let mut conns = vec![
        device(&server, kay, "phone").0,
        device(&server, kay, "laptop").0,
        device(&server, max, "phone").0,
        device(&server, max, "laptop").0,
        device(&server, ned, "default").0,
    ];
    let mut old = v1_login(&server, kay);
    let gid = make_group(&mut conns[KAY1], "devices");
    join(&mut conns, MAX1, max, gid, &[KAY1, KAY2, MAX2]);
    assert_nothing_queued(&mut old);
    acked_as(&mut conns[MAX2], join_req(gid), 14);
    all_silent(&mut conns);
    join(&mut conns, NED, ned, gid, &[KAY1, KAY2, MAX1, MAX2]);
    act(
        &mut conns,
        KAY1,
        kick(gid, ned),
        40,
        &[group_event(gid, "kicked", ned, kay)],
        &[KAY2, MAX1, MAX2, NED],
    );
    act(
        &mut conns,
        KAY2,
        role(gid, max, "admin"),
        42,
        &[role_event(gid, max, kay, "admin")],
        &[KAY1, MAX1, MAX2],
    );
    act(
        &mut conns,
        MAX2,
        json!({"msgid": 43, "groupid": gid, "groupdesc": "from the laptop"}),
        44,
        &[updated_event(gid, max, "devices", "from the laptop")],
        &[KAY1, KAY2, MAX1],
    );
    act(
        &mut conns,
        MAX2,
        leave(gid),
        38,
        &[group_event(gid, "left", max, max)],
        &[KAY1, KAY2, MAX1],
    );
    all_silent(&mut conns);
    assert_nothing_queued(&mut old);
}

/// GROUP_INFO: the group with its members ordered by id, each with state and role, `seq` echoed; the same
/// object as in a v2 login ack.
fn group_info_lists_members(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "ada", "nia"]);
    let (kay, ada, nia) = (ids[0], ids[1], ids[2]);
    let mut conns = connect_all(&server, &ids);
    let created = acked_as(
        &mut conns[0],
        json!({"msgid": 8, "groupname": "info", "groupdesc": "about us"}),
        13,
    );
    let gid = created["groupid"].as_i64().expect("groupid");
    join(&mut conns, 2, nia, gid, &[0]);
    join(&mut conns, 1, ada, gid, &[0, 2]);
    act(
        &mut conns,
        0,
        role(gid, ada, "admin"),
        42,
        &[role_event(gid, ada, kay, "admin")],
        &[1, 2],
    );
    acked_as(&mut conns[1], json!({"msgid": 3}), 11);
    let reply = acked_as(
        &mut conns[2],
        json!({"msgid": 47, "groupid": gid, "seq": "i"}),
        48,
    );
    assert_eq!(
        reply,
        json!({"msgid": 48, "errno": 0, "seq": "i", "group": {
        "id": gid, "groupname": "info", "groupdesc": "about us", "users": [
            member(kay, "kay", "online", "creator"),
            member(ada, "ada", "offline", "admin"),
            member(nia, "nia", "online", "normal"),
        ]}})
    );
    let (_tablet, ack) = device(&server, nia, "tablet");
    assert_eq!(ack["groups"], json!([reply["group"]]));
    all_silent(&mut conns);
}

/// A v1 connection's group requests: successes silent but carried out (join, update, kick as an admin,
/// leave), failures ERROR_MSG; it gets no GROUP_EVENT, while the v2 members get the events it causes;
/// its login ack lists roles, "admin" included.
fn v1_group_requests_are_silent(backend: Backend) {
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["vee", "ann", "ben"]);
    let (vee, ann, ben) = (ids[0], ids[1], ids[2]);
    let mut old = v1_login(&server, vee);
    let mut conns = vec![
        device(&server, ann, "default").0,
        device(&server, ben, "default").0,
    ];
    let gid = make_group(&mut conns[0], "mixed");
    join(&mut conns, 1, ben, gid, &[0]);
    old.send(join_req(gid));
    for c in conns.iter_mut() {
        assert_eq!(c.recv(), group_event(gid, "joined", vee, vee));
    }
    assert_nothing_queued(&mut old);
    act(
        &mut conns,
        0,
        role(gid, vee, "admin"),
        42,
        &[role_event(gid, vee, ann, "admin")],
        &[1],
    );
    old.send(json!({"msgid": 47, "groupid": gid}));
    old.send(json!({"msgid": 43, "groupid": gid, "groupdesc": "set by v1"}));
    for c in conns.iter_mut() {
        assert_eq!(c.recv(), updated_event(gid, vee, "mixed", "set by v1"));
    }
    old.send(kick(gid, ben));
    for c in conns.iter_mut() {
        assert_eq!(c.recv(), group_event(gid, "kicked", ben, vee));
    }
    assert_nothing_queued(&mut old);
    refused_with(&mut old, kick(gid, ann), 105);
    refused_with(&mut old, role(gid, ann, "normal"), 105);
    refused_with(&mut old, dissolve(gid), 105);
    refused_with(&mut old, leave(999_999), 104);
    refused_with(&mut old, json!({"msgid": 47, "groupid": 999_999}), 104);
    refused_with(&mut old, json!({"msgid": 43, "groupid": gid}), 102);
    refused_with(&mut old, role(gid, ann, "boss"), 102);
    // Typing from v1 reaches the v2 member; the v2 member's typing does not reach v1.
    let g = format!("g{gid}");
    old.send(json!({"msgid": 51, "conv": g}));
    assert_eq!(conns[0].recv(), json!({"msgid": 51, "conv": g, "id": vee}));
    conns[0].send(json!({"msgid": 51, "conv": g}));
    assert_nothing_queued(&mut old);
    // The v1 login ack's member list names the roles.
    old.send(json!({"msgid": 3}));
    let ack = old.login(vee, "pw", 1);
    let decode = |s: &Value| -> Value {
        serde_json::from_str(s.as_str().expect("a v1 list element is a string")).expect("JSON")
    };
    let group = decode(&ack["groups"][0]);
    let mut users: Vec<Value> = group["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(decode)
        .collect();
    users.sort_by_key(|u| u["id"].as_i64());
    assert_eq!(
        users,
        vec![
            member(vee, "vee", "online", "admin"),
            member(ann, "ann", "online", "creator"),
        ]
    );
    assert_eq!(group["groupdesc"], "set by v1");
    old.send(leave(gid));
    assert_eq!(conns[0].recv(), group_event(gid, "left", vee, vee));
    assert_nothing_queued(&mut old);
    all_silent(&mut conns);
}

/// Users ann, ben and cat in the group ann created, straight in `store`.
fn trio(store: &dyn Store) -> (i32, [i32; 3]) {
    let users = ["ann", "ben", "cat"].map(|n| store.create_user(n, "h").unwrap());
    let g = store.create_group(users[0], "g", "").unwrap();
    for &user in &users[1..] {
        store.join_group(g, user).unwrap();
    }
    (g, users)
}

/// A group message's offline recipients are worked out before its commit (a single node knows who is
/// away); one removed from the group in between gets nothing committed after their removal, the other
/// members still get it: the store checks membership in the commit's own transaction.
fn offline_records_only_for_members_at_the_commit(backend: Backend) {
    let db = Db::fresh(backend);
    let store = db.store();
    let (g, [ann, ben, cat]) = trio(store.as_ref());
    let message = NewMessage {
        conv: Conv::Group(g),
        sender: ann,
        cid: None,
        time: "t".to_owned(),
        text: "after the kick".to_owned(),
        offline: vec![ben, cat],
        require: Require::Member,
    };
    assert!(store.remove_member(g, ben, Removal::Left).unwrap());
    assert!(store.append(&[&message]).unwrap()[0].is_ok());
    let texts = |user| -> Vec<String> {
        let taken = store.take_offline(user, 10).unwrap();
        taken.into_iter().map(|m| m.text).collect()
    };
    assert_eq!(
        texts(ben),
        Vec::<String>::new(),
        "removed before the commit"
    );
    assert_eq!(texts(cat), vec!["after the kick"]);
}

/// Roles are written only on the member list they were decided on: a hand-over decided before the new
/// creator left, or a second hand-over decided before the first was written, changes nothing (the
/// handler then decides again), so a group never ends with no creator or two.
fn roles_are_written_only_on_the_list_they_were_decided_on(backend: Backend) {
    let db = Db::fresh(backend);
    let store = db.store();
    let (g, [ann, ben, cat]) = trio(store.as_ref());
    let creators = || -> Vec<i32> {
        let members = store.group_members(g).unwrap().unwrap();
        let creators = members.list.iter().filter(|(_, r)| *r == Role::Creator);
        creators.map(|&(u, _)| u).collect()
    };
    let decided = store.group_members(g).unwrap().unwrap().version;
    let to = |user| [(user, Role::Creator), (ann, Role::Admin)];
    // Two hand-overs decided at once: the first written wins, the second changes nothing.
    assert!(store.set_roles(g, decided, &to(ben)).unwrap());
    assert!(!store.set_roles(g, decided, &to(cat)).unwrap());
    assert_eq!(creators(), vec![ben]);
    // A hand-over decided before its new creator left changes nothing either.
    let decided = store.group_members(g).unwrap().unwrap().version;
    assert!(store.remove_member(g, cat, Removal::Kicked).unwrap());
    assert!(
        !store
            .set_roles(g, decided, &[(cat, Role::Creator), (ben, Role::Admin)])
            .unwrap()
    );
    assert_eq!(creators(), vec![ben]);
}

/// A kick bans: the kicked user's ADD_GROUP is 105, over v1 as over v2, until the creator or an admin
/// lets them back with GROUP_UNBAN (nobody else may; 104 for a user not banned or a group that is not
/// there; no event); then they join as anyone would. GROUP_INFO lists the banned to the creator and
/// admins only. Leaving by oneself bans nothing, and a dissolved group's bans go with it.
fn kicked_users_stay_out_until_let_back(backend: Backend) {
    const KAY: usize = 0;
    const AMY: usize = 1;
    const NED: usize = 2;
    let db = Db::fresh(backend);
    let server = Server::start(&db, &[]);
    let ids = register_all(&server, &["kay", "amy", "ned"]);
    let (kay, amy, ned) = (ids[0], ids[1], ids[2]);
    let mut conns = connect_all(&server, &ids);
    let gid = make_group(&mut conns[KAY], "guarded");
    join(&mut conns, AMY, amy, gid, &[KAY]);
    join(&mut conns, NED, ned, gid, &[KAY, AMY]);
    act(
        &mut conns,
        KAY,
        role(gid, amy, "admin"),
        42,
        &[role_event(gid, amy, kay, "admin")],
        &[AMY, NED],
    );
    let kicked = group_event(gid, "kicked", ned, amy);
    act(&mut conns, AMY, kick(gid, ned), 40, &[kicked], &[KAY, NED]);
    let refusal = refused_with(&mut conns[NED], join_req(gid), 105);
    assert!(
        refusal["errmsg"].as_str().unwrap().contains("removed"),
        "{refusal}"
    );
    let mut old = v1_login(&server, ned);
    refused_with(&mut old, join_req(gid), 105);
    let banned = |c: &mut Conn| group_info(c, gid).get("banned").cloned();
    let ned_banned = json!([{"id": ned, "name": "ned"}]);
    assert_eq!(banned(&mut conns[KAY]), Some(ned_banned.clone()));
    assert_eq!(banned(&mut conns[AMY]), Some(ned_banned));
    refused_with(&mut conns[NED], unban(gid, ned), 105);
    refused_with(&mut conns[KAY], unban(gid, amy), 104);
    refused_with(&mut conns[KAY], unban(gid + 100, ned), 104);
    all_silent(&mut conns);
    let ack = acked_as(&mut conns[AMY], unban(gid, ned), 55);
    assert_eq!(
        ack,
        json!({"msgid": 55, "errno": 0, "groupid": gid, "id": ned})
    );
    all_silent(&mut conns);
    refused_with(&mut conns[AMY], unban(gid, ned), 104);
    assert_eq!(banned(&mut conns[AMY]), Some(json!([])));
    join(&mut conns, NED, ned, gid, &[KAY, AMY]);
    assert_eq!(
        banned(&mut conns[NED]),
        None,
        "a normal member sees no bans"
    );
    // Leaving bans nothing.
    let left = group_event(gid, "left", ned, ned);
    act(&mut conns, NED, leave(gid), 38, &[left], &[KAY, AMY]);
    join(&mut conns, NED, ned, gid, &[KAY, AMY]);
    // From a v1 connection the creator lets back in silence.
    let kicked = group_event(gid, "kicked", ned, kay);
    act(
        &mut conns,
        KAY,
        kick(gid, ned),
        40,
        std::slice::from_ref(&kicked),
        &[AMY, NED],
    );
    let mut kay_v1 = v1_login(&server, kay);
    kay_v1.send(unban(gid, ned));
    assert_nothing_queued(&mut kay_v1);
    join(&mut conns, NED, ned, gid, &[KAY, AMY]);
    // A dissolved group takes its bans along: nothing is left to lift.
    act(&mut conns, KAY, kick(gid, ned), 40, &[kicked], &[AMY, NED]);
    let dissolved = group_event(gid, "dissolved", kay, kay);
    act(&mut conns, KAY, dissolve(gid), 46, &[dissolved], &[AMY]);
    assert_eq!(db.count("SELECT COUNT(*) FROM groupban"), 0);
    all_silent(&mut conns);
    assert_nothing_queued(&mut old);
}

/// The store's side of a kick decided on a member list that moved on: removing someone who is no longer
/// a member (they left a moment ago) removes nothing and bans nobody, so the kick is refused (104) rather
/// than acknowledged with a ban that is not there; they may join again as anyone who left.
fn a_kick_that_finds_nobody_bans_nobody(backend: Backend) {
    let db = Db::fresh(backend);
    let store = db.store();
    let (g, [_, ben, _]) = trio(store.as_ref());
    assert!(store.remove_member(g, ben, Removal::Left).unwrap());
    assert!(!store.remove_member(g, ben, Removal::Kicked).unwrap());
    assert_eq!(store.bans(g).unwrap(), vec![]);
    assert_eq!(store.join_group(g, ben).unwrap(), Joined::Now);
    assert!(store.remove_member(g, ben, Removal::Kicked).unwrap());
    assert_eq!(store.bans(g).unwrap(), vec![(ben, "ben".to_owned())]);
    assert_eq!(store.join_group(g, ben).unwrap(), Joined::Banned);
    assert!(!store.unban(g + 1, ben).unwrap());
    assert!(store.unban(g, ben).unwrap());
    assert!(!store.unban(g, ben).unwrap());
    assert_eq!(store.join_group(g, ben).unwrap(), Joined::Now);
    assert_eq!(store.join_group(g, ben).unwrap(), Joined::Already);
}

crate::on_both_backends!(
    roles_are_written_only_on_the_list_they_were_decided_on,
    offline_records_only_for_members_at_the_commit,
    group_request_refusals,
    roles_are_enforced,
    hand_over_then_leave,
    group_update,
    leaving_stops_delivery,
    dissolving_frees_the_name,
    group_events_reach_every_v2_device,
    group_info_lists_members,
    v1_group_requests_are_silent,
    kicked_users_stay_out_until_let_back,
    a_kick_that_finds_nobody_bans_nobody,
);

/// A kick on node 0 takes effect on node 1 at the ack: the kicked member's GROUP_CHAT sent right after
/// it is 105, a message another member on node 1 sends right after it does not reach them (live or
/// offline), and its history is closed to them; the events cross nodes.
#[test]
fn kick_on_one_node_takes_effect_on_the_other_at_once() {
    const KAY: usize = 0; // node 0
    const XAN: usize = 1; // node 1, kicked
    const YUL: usize = 2; // node 1
    const ZED: usize = 3; // node 0
    let c = Nodes::start(2, &[]);
    let ids = register_all(&c.nodes[0], &["kay", "xan", "yul", "zed"]);
    let (kay, xan) = (ids[KAY], ids[XAN]);
    let mut conns = vec![
        device(&c.nodes[0], kay, "default").0,
        device(&c.nodes[1], xan, "default").0,
        device(&c.nodes[1], ids[YUL], "default").0,
        device(&c.nodes[0], ids[ZED], "default").0,
    ];
    let gid = make_group(&mut conns[KAY], "split");
    let g = format!("g{gid}");
    join(&mut conns, XAN, xan, gid, &[KAY]);
    join(&mut conns, YUL, ids[YUL], gid, &[KAY, XAN]);
    join(&mut conns, ZED, ids[ZED], gid, &[KAY, XAN, YUL]);
    acked_as(&mut conns[YUL], gchat(gid, "before"), 16);
    for i in [KAY, XAN, ZED] {
        assert_eq!(conns[i].recv()["msg"], "before");
    }
    let kicked = group_event(gid, "kicked", xan, kay);
    acked_as(&mut conns[KAY], kick(gid, xan), 40);
    // Right after the ack, on the other node.
    conns[XAN].send(gchat(gid, "still in?"));
    let no = recv_around(&mut conns[XAN], 15, &kicked);
    assert_eq!(
        (no["errno"].clone(), no["ref"].clone()),
        (json!(105), json!(10)),
        "{no}"
    );
    conns[YUL].send(gchat(gid, "after the kick"));
    let ack = recv_around(&mut conns[YUL], 16, &kicked);
    assert_eq!(ack["errno"], 0, "{ack}");
    assert_eq!(conns[KAY].recv()["msg"], "after the kick");
    assert_eq!(
        recv_around(&mut conns[ZED], 10, &kicked)["msg"],
        "after the kick"
    );
    conns[XAN].expect_silence(QUIET);
    for request in [
        json!({"msgid": 19, "conv": g}),
        json!({"msgid": 21, "conv": g, "pos": 1}),
        json!({"msgid": 47, "groupid": gid}),
        json!({"msgid": 51, "conv": g}),
    ] {
        refused_with(&mut conns[XAN], request, 105);
    }
    // Nor offline.
    acked_as(&mut conns[XAN], json!({"msgid": 3}), 11);
    acked_as(&mut conns[YUL], gchat(gid, "while away"), 16);
    for i in [KAY, ZED] {
        assert_eq!(conns[i].recv()["msg"], "while away");
    }
    let ack = conns[XAN].login(xan, "pw", 2);
    assert_eq!(offline(&ack), Vec::<Value>::new(), "{ack}");
    assert_eq!(ack["groups"], json!([]), "{ack}");
    all_silent(&mut conns);
}

/// GROUP_EVENT crosses nodes to v2 devices only: the creator's v2 device on node 0 gets the events of a
/// member on node 1, the creator's v1 connection on node 1 gets none.
#[test]
fn group_events_cross_nodes_to_v2_devices_only() {
    let c = Nodes::start(2, &[]);
    let ids = register_all(&c.nodes[0], &["kay", "max"]);
    let (kay, max) = (ids[0], ids[1]);
    let mut conns = vec![
        device(&c.nodes[0], kay, "phone").0,
        device(&c.nodes[1], max, "default").0,
    ];
    let mut old = c.nodes[1].connect(Separator::Nul);
    old.login(kay, "pw", 1);
    let gid = make_group(&mut conns[0], "across");
    join(&mut conns, 1, max, gid, &[0]);
    act(
        &mut conns,
        0,
        role(gid, max, "admin"),
        42,
        &[role_event(gid, max, kay, "admin")],
        &[1],
    );
    act(
        &mut conns,
        1,
        leave(gid),
        38,
        &[group_event(gid, "left", max, max)],
        &[0],
    );
    assert_nothing_queued(&mut old);
    all_silent(&mut conns);
}
