//! Encoding of server frames. Every function returns the frame's JSON text without its separator (the
//! connection's writer appends that). `seq`, when the request carried one, is echoed in every ack and error.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Version, msgid};
use crate::model::{Contact, Conv, Group, LogMessage, Pos, Request, Requests, Summary};
use crate::model::{GroupId, UserId};
use std::sync::Arc;

/// Encodes a JSON object, adding the request's `seq` when it had one.
pub fn encode(mut object: Value, seq: Option<&Value>) -> String {
    if let (Some(seq), Value::Object(map)) = (seq, &mut object) {
        map.insert("seq".into(), seq.clone());
    }
    object.to_string()
}

/// ERROR_MSG; `reference` is the request's msgid when it was an integer.
pub fn error(errno: i64, errmsg: &str, reference: Option<&Value>, seq: Option<&Value>) -> String {
    encode(
        json!({"msgid": msgid::ERROR, "errno": errno, "errmsg": errmsg, "ref": reference}),
        seq,
    )
}

/// A failed LOGIN_MSG_ACK or REG_MSG_ACK: the C++ client waits for that ack, never for ERROR_MSG.
pub fn failed_ack(ack: i64, errno: i64, errmsg: &str, seq: Option<&Value>) -> String {
    encode(json!({"msgid": ack, "errno": errno, "errmsg": errmsg}), seq)
}

/// A chat frame: the fields of the original (v1), and in v2 the message's place in the log.
#[derive(Serialize)]
struct ChatFrame<'a> {
    msgid: i64,
    id: UserId,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    toid: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groupid: Option<GroupId>,
    msg: &'a str,
    time: &'a str,
    #[serde(flatten)]
    log: Option<LogFields<'a>>,
}

/// What a v2 chat frame adds: the conversation as its reader names it, position, commit time, cid.
#[derive(Serialize)]
struct LogFields<'a> {
    conv: String,
    pos: Pos,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
}

/// A logged message as a chat frame: in v1 exactly the original's (as forwarded and as stored offline),
/// in v2 with `conv` named as `viewer` names it, `pos`, `ts` and `cid`.
pub fn chat(m: &LogMessage, version: Version, viewer: UserId) -> String {
    let (msgid, toid, groupid) = match m.conv {
        Conv::Group(group) => (msgid::GROUP_CHAT, None, Some(group)),
        direct => (msgid::ONE_CHAT, direct.peer_of(m.sender), None),
    };
    let log = (version == Version::V2).then(|| LogFields {
        conv: m.conv.name_for(viewer),
        pos: m.pos,
        ts: m.ts,
        cid: m.cid.as_deref(),
    });
    let frame = ChatFrame {
        msgid,
        id: m.sender,
        name: &m.sender_name,
        toid,
        groupid,
        msg: &m.text,
        time: &m.time,
        log,
    };
    serde_json::to_string(&frame).expect("a chat frame always serializes")
}

/// CHAT_MSG_ACK (v2): the message is in the log, at `pos` of `conv` (as the sender names it). Written
/// from a struct, not built as a `Value`, since every acknowledged send makes one; its fields in the
/// order `encode` gives the others (by name), so that every reply reads alike.
pub fn chat_ack(
    conv: Conv,
    pos: Pos,
    ts: i64,
    sender: UserId,
    cid: Option<&str>,
    seq: Option<&Value>,
) -> String {
    let ack = ChatAck {
        cid,
        conv: conv.name_for(sender),
        errno: 0,
        msgid: msgid::CHAT_ACK,
        pos,
        seq,
        ts,
    };
    serde_json::to_string(&ack).expect("an ack always serializes")
}

/// CHAT_MSG_ACK's fields, by name.
#[derive(Serialize)]
struct ChatAck<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    conv: String,
    errno: i64,
    msgid: i64,
    pos: Pos,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<&'a Value>,
    ts: i64,
}

/// One conversation as CONVERSATIONS and the v2 login ack list it.
pub fn conversation(s: &Summary, viewer: UserId) -> Value {
    let mut entry = json!({
        "conv": s.conv.name_for(viewer),
        "name": s.name,
        "last": s.last,
        "read": s.read,
        "unread": (s.last - s.read).max(0),
    });
    if let Some(peer_read) = s.peer_read {
        entry["peerread"] = json!(peer_read);
    }
    entry
}

/// RECEIPT: `reader` has read `conv` (as `viewer` names it) up to `read`.
pub fn receipt(conv: Conv, viewer: UserId, reader: UserId, read: Pos) -> String {
    encode(
        json!({"msgid": msgid::RECEIPT, "conv": conv.name_for(viewer), "id": reader, "read": read}),
        None,
    )
}

/// Everything a successful login reply shows.
pub struct LoginView<'a> {
    pub id: UserId,
    pub name: &'a str,
    pub friends: &'a [Contact],
    pub groups: &'a [Group],
    /// Offline messages, already encoded as this connection's chat frames, oldest first.
    pub offline: &'a [Arc<str>],
    /// The resume token (v2 only).
    pub token: Option<&'a str>,
    /// The device logged in, the user's conversations and the friend requests waiting on them (v2 only).
    pub device: &'a str,
    pub conversations: &'a [Summary],
    pub requests: &'a [Request],
}

/// The successful LOGIN_MSG_ACK, in the connection's version's shape.
pub fn login_ack(view: &LoginView, version: Version, seq: Option<&Value>) -> String {
    let mut ack = Map::new();
    ack.insert("msgid".into(), json!(msgid::LOGIN_ACK));
    ack.insert("errno".into(), json!(0));
    ack.insert("id".into(), json!(view.id));
    ack.insert("name".into(), json!(view.name));
    if version == Version::V2 {
        if let Some(token) = view.token {
            ack.insert("token".into(), json!(token));
        }
        ack.insert("device".into(), json!(view.device));
        let conversations = view
            .conversations
            .iter()
            .map(|c| conversation(c, view.id))
            .collect();
        ack.insert("conversations".into(), Value::Array(conversations));
        ack.insert("requests".into(), requests(view.requests));
    }
    let friends: Vec<Value> = view.friends.iter().map(contact).collect();
    let groups: Vec<Value> = view.groups.iter().map(|g| group(g, version)).collect();
    let lists = match version {
        // Chat frames are already encoded: in v1 they go as they are, one string each.
        Version::V1 => [
            double_encode(friends),
            double_encode(groups),
            view.offline.iter().map(|s| json!(&**s)).collect(),
        ],
        Version::V2 => [
            friends,
            groups,
            view.offline.iter().map(|s| stored_frame(s)).collect(),
        ],
    };
    for (key, list) in ["friends", "groups", "offlinemsg"].into_iter().zip(lists) {
        if version == Version::V2 || !list.is_empty() {
            ack.insert(key.into(), Value::Array(list));
        }
    }
    encode(Value::Object(ack), seq)
}

fn contact(c: &Contact) -> Value {
    json!({"id": c.id, "name": c.name, "state": state(c.online)})
}

fn state(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

/// Friend requests as FRIENDS and the v2 login ack list them.
fn requests(list: &[Request]) -> Value {
    list.iter()
        .map(|r| json!({"id": r.id, "name": r.name, "text": r.text}))
        .collect()
}

/// FRIENDS_ACK: friends with presence, requests both ways, and the users blocked.
pub fn friends_ack(
    friends: &[Contact],
    pending: &Requests,
    blocked: &[(UserId, String)],
    seq: Option<&Value>,
) -> String {
    let blocked: Vec<Value> = blocked
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    encode(
        json!({
            "msgid": msgid::FRIENDS_ACK,
            "errno": 0,
            "friends": friends.iter().map(contact).collect::<Vec<_>>(),
            "incoming": requests(&pending.incoming),
            "outgoing": requests(&pending.outgoing),
            "blocked": blocked,
        }),
        seq,
    )
}

/// GROUP_INFO_ACK: one group as the v2 login ack lists it, with `banned` when the caller may see it.
pub fn group_info_ack(
    g: &Group,
    banned: Option<&[(UserId, String)]>,
    seq: Option<&Value>,
) -> String {
    let mut group = group(g, Version::V2);
    if let Some(banned) = banned {
        group["banned"] = banned
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
    }
    encode(
        json!({"msgid": msgid::GROUP_INFO_ACK, "errno": 0, "group": group}),
        seq,
    )
}

/// FRIEND_EVENT: what `id` (named `name`) did about a friendship with the receiver.
pub fn friend_event(event: &str, id: UserId, name: &str, text: Option<&str>) -> String {
    let mut frame = json!({"msgid": msgid::FRIEND_EVENT, "event": event, "id": id, "name": name});
    if let Some(text) = text {
        frame["text"] = json!(text);
    }
    encode(frame, None)
}

/// GROUP_EVENT: `event` happened to `id` in `group`, done by `by`; `extra` fields as the event has them.
pub fn group_event(group: GroupId, event: &str, id: UserId, by: UserId, extra: Value) -> String {
    let mut frame =
        json!({"msgid": msgid::GROUP_EVENT, "groupid": group, "event": event, "id": id, "by": by});
    if let (Value::Object(frame), Value::Object(extra)) = (&mut frame, extra) {
        frame.extend(extra);
    }
    encode(frame, None)
}

/// PRESENCE: `id` came online or went offline.
pub fn presence(id: UserId, online: bool) -> String {
    encode(
        json!({"msgid": msgid::PRESENCE, "id": id, "state": state(online)}),
        None,
    )
}

/// TYPING as relayed: `sender` is typing in `conv` (as `viewer` names it).
pub fn typing(conv: Conv, viewer: UserId, sender: UserId) -> String {
    encode(
        json!({"msgid": msgid::TYPING, "conv": conv.name_for(viewer), "id": sender}),
        None,
    )
}

fn group(g: &Group, version: Version) -> Value {
    let users: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let mut user = contact(&m.contact);
            user["role"] = json!(m.role.as_str());
            user
        })
        .collect();
    let users = match version {
        Version::V1 => double_encode(users),
        Version::V2 => users,
    };
    json!({"id": g.id, "groupname": g.name, "groupdesc": g.desc, "users": users})
}

/// v1 lists hold each element as a JSON string containing the encoded object, as the C++ server sends.
fn double_encode(list: Vec<Value>) -> Vec<Value> {
    list.into_iter()
        .map(|v| Value::String(v.to_string()))
        .collect()
}

/// An encoded chat frame as a plain object (it always is JSON; a string otherwise, never lost).
fn stored_frame(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| json!(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Member, Role};
    use crate::protocol::Errno;

    fn sample<'a>(
        friends: &'a [Contact],
        groups: &'a [Group],
        offline: &'a [Arc<str>],
    ) -> LoginView<'a> {
        LoginView {
            id: 1,
            name: "ann",
            friends,
            groups,
            offline,
            token: None,
            device: "phone",
            conversations: &[],
            requests: &[],
        }
    }

    fn message(conv: Conv) -> LogMessage {
        LogMessage {
            conv,
            pos: 7,
            ts: 1_000,
            sender: 2,
            sender_name: "bob".into(),
            cid: Some("c-1".into()),
            time: "t".into(),
            text: "hi".into(),
        }
    }

    #[test]
    fn v2_chat_frames_name_the_conversation_as_the_reader_does() {
        let m = message(Conv::direct(1, 2));
        let v1: Value = serde_json::from_str(&chat(&m, Version::V1, 1)).unwrap();
        assert_eq!(
            v1,
            json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":"hi","time":"t"})
        );
        let to_ann: Value = serde_json::from_str(&chat(&m, Version::V2, 1)).unwrap();
        assert_eq!(
            to_ann,
            json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":"hi","time":"t",
                   "conv":"u2","pos":7,"ts":1000,"cid":"c-1"})
        );
        let carbon: Value = serde_json::from_str(&chat(&m, Version::V2, 2)).unwrap();
        assert_eq!(carbon["conv"], "u1");
        let ack: Value =
            serde_json::from_str(&chat_ack(m.conv, 7, 1000, 2, None, Some(&json!("s")))).unwrap();
        assert_eq!(
            ack,
            json!({"msgid":16,"errno":0,"conv":"u1","pos":7,"ts":1000,"seq":"s"})
        );
        assert_eq!(
            chat_ack(m.conv, 7, 1000, 2, Some("k"), Some(&json!(3))),
            r#"{"cid":"k","conv":"u1","errno":0,"msgid":16,"pos":7,"seq":3,"ts":1000}"#,
            "the fields in the order of every other reply"
        );
        let mut built = json!({"msgid": 16, "errno": 0, "conv": "u1", "pos": 7, "ts": 1000});
        built["cid"] = json!("k");
        assert_eq!(
            chat_ack(m.conv, 7, 1000, 2, Some("k"), Some(&json!(3))),
            encode(built, Some(&json!(3))),
            "as a reply built as a Value reads"
        );
    }

    fn ann_group() -> Group {
        Group {
            id: 9,
            name: "g".into(),
            desc: "d".into(),
            members: vec![Member {
                contact: Contact {
                    id: 1,
                    name: "ann".into(),
                    online: true,
                },
                role: Role::Creator,
            }],
        }
    }

    #[test]
    fn v1_login_ack_omits_empty_lists() {
        let ack: Value =
            serde_json::from_str(&login_ack(&sample(&[], &[], &[]), Version::V1, None)).unwrap();
        assert_eq!(ack, json!({"msgid":2,"errno":0,"id":1,"name":"ann"}));
    }

    #[test]
    fn v1_login_ack_double_encodes() {
        let friends = [Contact {
            id: 2,
            name: "bob".into(),
            online: false,
        }];
        let groups = [ann_group()];
        let mut m = message(Conv::direct(1, 2));
        m.cid = None;
        let offline: [Arc<str>; 1] = [chat(&m, Version::V1, 1).into()];
        let text = login_ack(
            &sample(&friends, &groups, &offline),
            Version::V1,
            Some(&json!(4)),
        );
        let ack: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ack["seq"], json!(4));
        let friend: Value = serde_json::from_str(ack["friends"][0].as_str().unwrap()).unwrap();
        assert_eq!(friend, json!({"id":2,"name":"bob","state":"offline"}));
        let group: Value = serde_json::from_str(ack["groups"][0].as_str().unwrap()).unwrap();
        let user: Value = serde_json::from_str(group["users"][0].as_str().unwrap()).unwrap();
        assert_eq!(
            user,
            json!({"id":1,"name":"ann","state":"online","role":"creator"})
        );
        let msg: Value = serde_json::from_str(ack["offlinemsg"][0].as_str().unwrap()).unwrap();
        assert_eq!(
            msg,
            json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":"hi","time":"t"})
        );
    }

    #[test]
    fn v2_login_ack_is_plain_and_complete() {
        let groups = [ann_group()];
        let mut m = message(Conv::Group(9));
        m.cid = None;
        let offline: [Arc<str>; 1] = [chat(&m, Version::V2, 1).into()];
        let text = login_ack(&sample(&[], &groups, &offline), Version::V2, None);
        let ack: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ack["friends"], json!([]));
        assert_eq!(ack["device"], json!("phone"));
        assert_eq!(ack["conversations"], json!([]));
        assert_eq!(ack["groups"][0]["users"][0]["role"], json!("creator"));
        assert_eq!(
            ack["offlinemsg"][0],
            json!({"msgid":10,"id":2,"name":"bob","groupid":9,"msg":"hi","time":"t",
                   "conv":"g9","pos":7,"ts":1000})
        );
    }

    #[test]
    fn error_frame_shape() {
        let text = error(
            Errno::NotFound.code(),
            "no such user",
            Some(&json!(6)),
            Some(&json!("x")),
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"msgid":15,"errno":104,"errmsg":"no such user","ref":6,"seq":"x"})
        );
        let v: Value =
            serde_json::from_str(&error(Errno::Malformed.code(), "bad", None, None)).unwrap();
        assert_eq!(v["ref"], Value::Null);
    }
}
