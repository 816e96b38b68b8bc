//! Encoding of server frames. Every function returns the frame's JSON text without its separator (the
//! connection's writer appends that). `seq`, when the request carried one, is echoed in every ack and error.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Version, msgid};
use crate::model::{Contact, Group};
use crate::model::{GroupId, UserId};

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

/// A one-to-one chat frame as the recipient receives it (and as it is stored offline).
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
}

/// Where a chat message goes: one user, or a group.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    User(UserId),
    Group(GroupId),
}

/// The forwarded frame of a chat message, encoded once however many recipients it has.
pub fn chat(sender: UserId, sender_name: &str, target: Target, text: &str, time: &str) -> String {
    let (msgid, toid, groupid) = match target {
        Target::User(to) => (msgid::ONE_CHAT, Some(to), None),
        Target::Group(group) => (msgid::GROUP_CHAT, None, Some(group)),
    };
    let frame = ChatFrame {
        msgid,
        id: sender,
        name: sender_name,
        toid,
        groupid,
        msg: text,
        time,
    };
    serde_json::to_string(&frame).expect("a chat frame always serializes")
}

/// Everything a successful login reply shows.
pub struct LoginView<'a> {
    pub id: UserId,
    pub name: &'a str,
    pub friends: &'a [Contact],
    pub groups: &'a [Group],
    /// Stored chat frames, oldest first.
    pub offline: &'a [String],
    /// The resume token (v2 only).
    pub token: Option<&'a str>,
}

/// The successful LOGIN_MSG_ACK, in the connection's version's shape.
pub fn login_ack(view: &LoginView, version: Version, seq: Option<&Value>) -> String {
    let mut ack = Map::new();
    ack.insert("msgid".into(), json!(msgid::LOGIN_ACK));
    ack.insert("errno".into(), json!(0));
    ack.insert("id".into(), json!(view.id));
    ack.insert("name".into(), json!(view.name));
    if let (Version::V2, Some(token)) = (version, view.token) {
        ack.insert("token".into(), json!(token));
    }
    let friends: Vec<Value> = view.friends.iter().map(contact).collect();
    let groups: Vec<Value> = view.groups.iter().map(|g| group(g, version)).collect();
    let lists = match version {
        // Stored frames are already encoded: in v1 they go as they are, one string each.
        Version::V1 => [
            double_encode(friends),
            double_encode(groups),
            view.offline.iter().map(|s| json!(s)).collect(),
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
    json!({"id": c.id, "name": c.name, "state": if c.online { "online" } else { "offline" }})
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

/// A stored frame as a plain object; a row that is somehow not JSON is passed on as a string.
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
        offline: &'a [String],
    ) -> LoginView<'a> {
        LoginView {
            id: 1,
            name: "ann",
            friends,
            groups,
            offline,
            token: None,
        }
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
        let offline = [chat(2, "bob", Target::User(1), "hi", "t")];
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
        let offline = [chat(2, "bob", Target::Group(9), "hi", "t")];
        let text = login_ack(&sample(&[], &groups, &offline), Version::V2, None);
        let ack: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ack["friends"], json!([]));
        assert_eq!(ack["groups"][0]["users"][0]["role"], json!("creator"));
        assert_eq!(
            ack["offlinemsg"][0],
            json!({"msgid":10,"id":2,"name":"bob","groupid":9,"msg":"hi","time":"t"})
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
