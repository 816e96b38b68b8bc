//! Requests: the envelope every frame must have (`msgid`, optional `seq`) and the typed, validated fields of
//! each request. Validation follows the text rules and limits of PROTOCOL.md; a failure names the field.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Errno, Version, msgid};
use crate::model::{Conv, Page, Pos, Role};
use crate::model::{GroupId, UserId};

/// Length limits of client-supplied text; all configurable, defaults as PROTOCOL.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// User names, in characters.
    pub max_name_chars: usize,
    /// Passwords, in bytes (argon2 input).
    pub max_password_bytes: usize,
    /// Group names, in characters.
    pub max_group_name_chars: usize,
    /// Group descriptions, in characters.
    pub max_group_desc_chars: usize,
    /// Chat text, in characters; the `offlinemessage` column is sized for the default.
    pub max_text_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_name_chars: 50,
            max_password_bytes: 128,
            max_group_name_chars: 50,
            max_group_desc_chars: 200,
            max_text_chars: 16_384,
        }
    }
}

/// What every frame carries before its request-specific fields.
#[derive(Debug)]
pub struct Envelope {
    pub msgid: i64,
    /// Echoed unchanged in every reply the request causes (a number or a string).
    pub seq: Option<Value>,
    pub body: Map<String, Value>,
}

/// Why a frame has no usable envelope; answered with ERROR_MSG and `ref` null.
#[derive(Debug, PartialEq)]
pub enum EnvelopeError {
    /// Not JSON, not an object, or invalid UTF-8 (100).
    Malformed,
    /// `msgid` missing or not an integer (102); carries the `seq` to echo, if any.
    NoMsgid { seq: Option<Value> },
}

impl Envelope {
    /// Parses a frame's bytes into an envelope.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut body: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|_| EnvelopeError::Malformed)?;
        let seq = body
            .remove("seq")
            .filter(|s| s.is_number() || s.is_string());
        let msgid = match body.get("msgid") {
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            // An integer too large for i64 is still an integer: an unknown msgid, not a missing one.
            Some(Value::Number(n)) if n.is_u64() => Some(i64::MAX),
            _ => None,
        };
        match msgid {
            Some(msgid) => Ok(Envelope { msgid, seq, body }),
            None => Err(EnvelopeError::NoMsgid { seq }),
        }
    }
}

/// Whether a client may send this msgid at all (anything else is 101).
pub fn is_client_msgid(id: i64) -> bool {
    matches!(
        id,
        msgid::LOGIN
            | msgid::LOGOUT
            | msgid::REG
            | msgid::ONE_CHAT
            | msgid::ADD_FRIEND
            | msgid::CREATE_GROUP
            | msgid::ADD_GROUP
            | msgid::GROUP_CHAT
            | msgid::CONVERSATIONS
            | msgid::HISTORY
            | msgid::READ
            | msgid::FRIEND_REQUEST
            | msgid::FRIEND_ANSWER
            | msgid::FRIEND_REMOVE
            | msgid::BLOCK
            | msgid::FRIENDS
            | msgid::FIND_USER
            | msgid::GROUP_LEAVE
            | msgid::GROUP_KICK
            | msgid::GROUP_UNBAN
            | msgid::GROUP_ROLE
            | msgid::GROUP_UPDATE
            | msgid::GROUP_DISSOLVE
            | msgid::GROUP_INFO
            | msgid::TYPING
            | msgid::PASSWORD
    )
}

/// A conversation as a client names it: `"u<ID>"` (with user ID) or `"g<ID>"` (group ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvName {
    User(UserId),
    Group(GroupId),
}

impl ConvName {
    /// The conversation `viewer` means by this name.
    pub fn conv(self, viewer: UserId) -> Conv {
        match self {
            ConvName::User(peer) => Conv::direct(viewer, peer),
            ConvName::Group(group) => Conv::Group(group),
        }
    }

    fn parse(name: &str) -> Option<ConvName> {
        let (kind, digits) = name.split_at_checked(1)?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return None;
        }
        let id = digits.parse::<i32>().ok()?;
        match kind {
            "u" => Some(ConvName::User(id)),
            "g" => Some(ConvName::Group(id)),
            _ => None,
        }
    }
}

/// Messages a HISTORY page holds at most, and by default.
pub const HISTORY_MAX: usize = 200;
pub const HISTORY_DEFAULT: usize = 50;

/// Longest `cid` and device name, in characters.
const MAX_CID_CHARS: usize = 64;
const MAX_DEVICE_CHARS: usize = 64;

/// The device name of every v1 login; a v2 login may not take it.
pub const V1_DEVICE: &str = "v1";
/// The device name of a v2 login that names none.
pub const DEFAULT_DEVICE: &str = "default";

/// How a login proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Password(String),
    /// A resume token from an earlier v2 login ack (v2 only): no password hashing, so a crowd of clients
    /// reconnecting after a node loss gets back in quickly.
    Token(String),
}

/// Longest resume token accepted (ours are 64 hex digits).
const MAX_TOKEN_BYTES: usize = 128;

/// A validated request.
#[derive(Debug, PartialEq)]
pub enum Request {
    Login {
        account: Account,
        credential: Credential,
        version: Version,
        device: String,
    },
    Register {
        name: String,
        password: String,
    },
    Logout,
    Chat {
        to: UserId,
        text: String,
        time: Option<String>,
        cid: Option<String>,
    },
    AddFriend {
        friend: UserId,
    },
    CreateGroup {
        name: String,
        desc: String,
    },
    JoinGroup {
        group: GroupId,
    },
    GroupChat {
        group: GroupId,
        text: String,
        time: Option<String>,
        cid: Option<String>,
    },
    Conversations,
    History {
        conv: ConvName,
        page: Page,
        limit: usize,
    },
    Read {
        conv: ConvName,
        pos: Pos,
    },
    FriendRequest {
        friend: UserId,
        text: String,
    },
    FriendAnswer {
        friend: UserId,
        accept: bool,
    },
    FriendRemove {
        friend: UserId,
    },
    Block {
        user: UserId,
        block: bool,
    },
    Friends,
    FindUser {
        name: String,
    },
    GroupLeave {
        group: GroupId,
    },
    GroupKick {
        group: GroupId,
        member: UserId,
    },
    GroupUnban {
        group: GroupId,
        user: UserId,
    },
    GroupRole {
        group: GroupId,
        member: UserId,
        role: Role,
    },
    GroupUpdate {
        group: GroupId,
        name: Option<String>,
        desc: Option<String>,
    },
    GroupDissolve {
        group: GroupId,
    },
    GroupInfo {
        group: GroupId,
    },
    Typing {
        conv: ConvName,
    },
    Password {
        old: String,
        new: String,
    },
}

/// Longest text of a friend request, in characters.
pub const MAX_REQUEST_TEXT_CHARS: usize = 200;

/// A missing or invalid field, with words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub String);

impl FieldError {
    fn new(field: &str, why: &str) -> Self {
        FieldError(format!("invalid field '{field}': {why}"))
    }
}

/// Which control characters a text field tolerates.
#[derive(Clone, Copy)]
enum TextKind {
    /// Names: no control characters at all.
    Name,
    /// Chat text and descriptions: newline and tab allowed.
    Prose,
}

type Fields<'a> = &'a Map<String, Value>;

impl Request {
    /// Validates the fields of a request whose msgid [`is_client_msgid`].
    pub fn parse(env: &Envelope, limits: &Limits) -> Result<Request, FieldError> {
        let b = &env.body;
        Ok(match env.msgid {
            msgid::LOGIN => login(b, limits)?,
            msgid::REG => Request::Register {
                name: text_field(b, "name", TextKind::Name, 1, limits.max_name_chars)?,
                password: password_field(b, limits)?,
            },
            msgid::LOGOUT => Request::Logout,
            msgid::ONE_CHAT => Request::Chat {
                to: id_field(b, "toid")?,
                text: text_field(b, "msg", TextKind::Prose, 1, limits.max_text_chars)?,
                time: time_field(b)?,
                cid: cid_field(b)?,
            },
            msgid::ADD_FRIEND => Request::AddFriend {
                friend: id_field(b, "friendid")?,
            },
            msgid::CREATE_GROUP => Request::CreateGroup {
                name: group_name(b, limits)?,
                desc: group_desc(b, limits)?.unwrap_or_default(),
            },
            msgid::ADD_GROUP => Request::JoinGroup {
                group: id_field(b, "groupid")?,
            },
            msgid::GROUP_CHAT => Request::GroupChat {
                group: id_field(b, "groupid")?,
                text: text_field(b, "msg", TextKind::Prose, 1, limits.max_text_chars)?,
                time: time_field(b)?,
                cid: cid_field(b)?,
            },
            msgid::CONVERSATIONS => Request::Conversations,
            msgid::HISTORY => history(b)?,
            msgid::READ => Request::Read {
                conv: conv_field(b)?,
                pos: pos_field(b, "pos")?,
            },
            msgid::FRIEND_REQUEST => Request::FriendRequest {
                friend: id_field(b, "friendid")?,
                text: optional(b, "text", |b| {
                    text_field(b, "text", TextKind::Prose, 0, MAX_REQUEST_TEXT_CHARS)
                })?
                .unwrap_or_default(),
            },
            msgid::FRIEND_ANSWER => Request::FriendAnswer {
                friend: id_field(b, "friendid")?,
                accept: bool_field(b, "accept")?,
            },
            msgid::FRIEND_REMOVE => Request::FriendRemove {
                friend: id_field(b, "friendid")?,
            },
            msgid::BLOCK => Request::Block {
                user: id_field(b, "id")?,
                block: bool_field(b, "block")?,
            },
            msgid::FRIENDS => Request::Friends,
            msgid::FIND_USER => Request::FindUser {
                name: text_field(b, "name", TextKind::Name, 1, limits.max_name_chars)?,
            },
            msgid::GROUP_LEAVE => Request::GroupLeave {
                group: id_field(b, "groupid")?,
            },
            msgid::GROUP_KICK => Request::GroupKick {
                group: id_field(b, "groupid")?,
                member: id_field(b, "id")?,
            },
            msgid::GROUP_UNBAN => Request::GroupUnban {
                group: id_field(b, "groupid")?,
                user: id_field(b, "id")?,
            },
            msgid::GROUP_ROLE => Request::GroupRole {
                group: id_field(b, "groupid")?,
                member: id_field(b, "id")?,
                role: Role::parse(string_field(b, "role")?).ok_or_else(|| {
                    FieldError::new("role", "must be \"creator\", \"admin\" or \"normal\"")
                })?,
            },
            msgid::GROUP_UPDATE => group_update(b, limits)?,
            msgid::GROUP_DISSOLVE => Request::GroupDissolve {
                group: id_field(b, "groupid")?,
            },
            msgid::GROUP_INFO => Request::GroupInfo {
                group: id_field(b, "groupid")?,
            },
            msgid::TYPING => Request::Typing {
                conv: conv_field(b)?,
            },
            msgid::PASSWORD => Request::Password {
                old: password_named(b, "old", limits)?,
                new: password_named(b, "new", limits)?,
            },
            other => unreachable!("msgid {other} is not a client request"),
        })
    }
}

/// Whose account a login is for: the original's numeric id, or the name it was registered with (an
/// extension: people remember names, and the web client asks for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    Id(UserId),
    Name(String),
}

/// A login carries a password, or (v2) a resume token instead.
fn login(b: Fields, limits: &Limits) -> Result<Request, FieldError> {
    let account = match (b.contains_key("id"), b.contains_key("name")) {
        (false, true) => Account::Name(text_field(
            b,
            "name",
            TextKind::Name,
            1,
            limits.max_name_chars,
        )?),
        (true, true) => return Err(FieldError::new("name", "give id or name, not both")),
        _ => Account::Id(id_field(b, "id")?),
    };
    let version = version_field(b)?;
    let credential = match (b.contains_key("password"), version) {
        (false, Version::V2) if b.contains_key("token") => {
            let token = string_field(b, "token")?;
            if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
                return Err(FieldError::new(
                    "token",
                    "must be a token from a login reply",
                ));
            }
            Credential::Token(token.to_owned())
        }
        _ => Credential::Password(password_field(b, limits)?),
    };
    let device = match version {
        Version::V1 => V1_DEVICE.to_owned(),
        Version::V2 => match b.get("device") {
            None | Some(Value::Null) => DEFAULT_DEVICE.to_owned(),
            Some(_) => {
                let device = text_field(b, "device", TextKind::Name, 1, MAX_DEVICE_CHARS)?;
                if device == V1_DEVICE {
                    return Err(FieldError::new(
                        "device",
                        "\"v1\" is reserved for v1 logins",
                    ));
                }
                device
            }
        },
    };
    Ok(Request::Login {
        account,
        credential,
        version,
        device,
    })
}

/// A group's name, under CREATE_GROUP's rules.
fn group_name(b: Fields, limits: &Limits) -> Result<String, FieldError> {
    text_field(
        b,
        "groupname",
        TextKind::Name,
        1,
        limits.max_group_name_chars,
    )
}

/// A group's description, if given (null counts as not given).
fn group_desc(b: Fields, limits: &Limits) -> Result<Option<String>, FieldError> {
    optional(b, "groupdesc", |b| {
        text_field(
            b,
            "groupdesc",
            TextKind::Prose,
            0,
            limits.max_group_desc_chars,
        )
    })
}

/// GROUP_UPDATE: a new name, a new description, or both.
fn group_update(b: Fields, limits: &Limits) -> Result<Request, FieldError> {
    let group = id_field(b, "groupid")?;
    let name = optional(b, "groupname", |b| group_name(b, limits))?;
    let desc = group_desc(b, limits)?;
    if name.is_none() && desc.is_none() {
        return Err(FieldError::new(
            "groupname",
            "give a new 'groupname', a new 'groupdesc', or both",
        ));
    }
    Ok(Request::GroupUpdate { group, name, desc })
}

/// An optional field: absent or null is `None`, anything else must pass `parse`.
fn optional<T>(
    b: Fields,
    name: &str,
    parse: impl FnOnce(Fields) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    match b.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => parse(b).map(Some),
    }
}

/// A JSON boolean.
fn bool_field(b: Fields, name: &str) -> Result<bool, FieldError> {
    match b.get(name) {
        None => Err(FieldError::new(name, "missing")),
        Some(Value::Bool(v)) => Ok(*v),
        Some(_) => Err(FieldError::new(name, "must be true or false")),
    }
}

/// HISTORY: a conversation, at most one of `before` and `after`, and a `limit`.
fn history(b: Fields) -> Result<Request, FieldError> {
    let conv = conv_field(b)?;
    let page = match (b.contains_key("before"), b.contains_key("after")) {
        (true, true) => {
            return Err(FieldError::new(
                "after",
                "not allowed together with 'before'",
            ));
        }
        (true, false) => Page::Before(pos_field(b, "before")?),
        // `after: 0` reads from the first message on (positions start at 1).
        (false, true) => Page::After(match b.get("after") {
            Some(v) if v.as_i64() == Some(0) => 0,
            _ => pos_field(b, "after")?,
        }),
        (false, false) => Page::Latest,
    };
    let limit = match b.get("limit") {
        None => HISTORY_DEFAULT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=HISTORY_MAX as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                FieldError::new(
                    "limit",
                    &format!("must be an integer from 1 to {HISTORY_MAX}"),
                )
            })?,
    };
    Ok(Request::History { conv, page, limit })
}

/// `conv`: `"u<ID>"` or `"g<ID>"`.
fn conv_field(b: Fields) -> Result<ConvName, FieldError> {
    let name = string_field(b, "conv")?;
    ConvName::parse(name).ok_or_else(|| FieldError::new("conv", "must be \"u<id>\" or \"g<id>\""))
}

/// A position: a positive integer within `i64`.
fn pos_field(b: Fields, name: &str) -> Result<Pos, FieldError> {
    b.get(name)
        .ok_or_else(|| FieldError::new(name, "missing"))?
        .as_i64()
        .filter(|&v| v > 0)
        .ok_or_else(|| FieldError::new(name, "must be an integer from 1 to 9223372036854775807"))
}

/// `cid` is optional: 1 to 64 characters without control characters.
fn cid_field(b: Fields) -> Result<Option<String>, FieldError> {
    optional(b, "cid", |b| {
        text_field(b, "cid", TextKind::Name, 1, MAX_CID_CHARS)
    })
}

/// A positive integer within `i32`.
fn id_field(b: Fields, name: &str) -> Result<i32, FieldError> {
    let value = b
        .get(name)
        .ok_or_else(|| FieldError::new(name, "missing"))?;
    value
        .as_i64()
        .filter(|&v| v > 0)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| FieldError::new(name, "must be an integer from 1 to 2147483647"))
}

fn string_field<'a>(b: Fields<'a>, name: &str) -> Result<&'a str, FieldError> {
    match b.get(name) {
        None => Err(FieldError::new(name, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(name, "must be a string")),
    }
}

fn text_field(
    b: Fields,
    name: &str,
    kind: TextKind,
    min: usize,
    max: usize,
) -> Result<String, FieldError> {
    let s = string_field(b, name)?;
    let chars = s.chars().count();
    if chars < min || chars > max {
        return Err(FieldError::new(
            name,
            &format!("must be {min} to {max} characters"),
        ));
    }
    let allowed = |c: char| match kind {
        TextKind::Name => !c.is_control(),
        TextKind::Prose => !c.is_control() || c == '\n' || c == '\t',
    };
    if !s.chars().all(allowed) {
        let why = match kind {
            TextKind::Name => "control characters are not allowed",
            TextKind::Prose => "control characters other than newline and tab are not allowed",
        };
        return Err(FieldError::new(name, why));
    }
    Ok(s.to_owned())
}

fn password_field(b: Fields, limits: &Limits) -> Result<String, FieldError> {
    password_named(b, "password", limits)
}

/// A password in the field `name`: 1 to `max_password_bytes` bytes.
fn password_named(b: Fields, name: &str, limits: &Limits) -> Result<String, FieldError> {
    let s = string_field(b, name)?;
    if s.is_empty() || s.len() > limits.max_password_bytes {
        let why = format!("must be 1 to {} bytes", limits.max_password_bytes);
        return Err(FieldError::new(name, &why));
    }
    Ok(s.to_owned())
}

/// `time` is optional and opaque, but when present it must be a string.
fn time_field(b: Fields) -> Result<Option<String>, FieldError> {
    match b.get("time") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new("time", "must be a string")),
    }
}

/// `"v":2` asks for v2 replies; absent or 1 means v1.
fn version_field(b: Fields) -> Result<Version, FieldError> {
    match b.get("v").map(Value::as_i64) {
        None | Some(Some(1)) => Ok(Version::V1),
        Some(Some(2)) => Ok(Version::V2),
        Some(_) => Err(FieldError::new("v", "must be 1 or 2")),
    }
}

/// The errno for an envelope error.
impl EnvelopeError {
    pub fn errno(&self) -> Errno {
        match self {
            EnvelopeError::Malformed => Errno::Malformed,
            EnvelopeError::NoMsgid { .. } => Errno::InvalidField,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(v: Value) -> Envelope {
        Envelope::parse(v.to_string().as_bytes()).unwrap()
    }

    fn parse(v: Value) -> Result<Request, FieldError> {
        Request::parse(&env(v), &Limits::default())
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            Envelope::parse(b"{bad").unwrap_err(),
            EnvelopeError::Malformed
        );
        assert_eq!(
            Envelope::parse(b"{\"a\":\"\xff\"}").unwrap_err(),
            EnvelopeError::Malformed
        );
        assert_eq!(
            Envelope::parse(b"{\"msgid\":1.0,\"seq\":7}").unwrap_err(),
            EnvelopeError::NoMsgid {
                seq: Some(json!(7))
            }
        );
        assert_eq!(
            Envelope::parse(b"{\"msgid\":\"1\"}").unwrap_err(),
            EnvelopeError::NoMsgid { seq: None }
        );
        let huge = Envelope::parse(b"{\"msgid\":18446744073709551615}").unwrap();
        assert!(!is_client_msgid(huge.msgid));
    }

    #[test]
    fn seq_is_kept_only_when_number_or_string() {
        assert_eq!(env(json!({"msgid":3,"seq":"a"})).seq, Some(json!("a")));
        assert_eq!(env(json!({"msgid":3,"seq":[1]})).seq, None);
    }

    #[test]
    fn client_msgids() {
        for id in [1, 3, 4, 6, 7, 8, 9, 10, 17, 19, 21] {
            assert!(is_client_msgid(id));
        }
        for id in [0, -1, 2, 5, 11, 12, 13, 14, 15, 16, 18, 20, 22, 23, 1000] {
            assert!(!is_client_msgid(id));
        }
    }

    #[test]
    fn login_fields() {
        assert_eq!(
            parse(json!({"msgid":1,"id":5,"password":"pw","v":2})),
            Ok(Request::Login {
                account: Account::Id(5),
                credential: Credential::Password("pw".into()),
                version: Version::V2,
                device: DEFAULT_DEVICE.into(),
            })
        );
        assert_eq!(
            parse(json!({"msgid":1,"id":5,"token":"t0k","v":2})),
            Ok(Request::Login {
                account: Account::Id(5),
                credential: Credential::Token("t0k".into()),
                version: Version::V2,
                device: DEFAULT_DEVICE.into(),
            })
        );
        assert_eq!(
            parse(json!({"msgid":1,"id":5,"password":"pw","device":"phone"})),
            Ok(Request::Login {
                account: Account::Id(5),
                credential: Credential::Password("pw".into()),
                version: Version::V1,
                device: V1_DEVICE.into(),
            }),
            "a v1 login is the device \"v1\", whatever it says"
        );
        for bad in [
            json!({"msgid":1,"id":5,"password":"pw","v":2,"device":"v1"}),
            json!({"msgid":1,"id":5,"password":"pw","v":2,"device":""}),
            json!({"msgid":1,"id":5,"password":"pw","v":2,"device":"a\nb"}),
            json!({"msgid":1,"id":5,"password":"pw","v":2,"device":"x".repeat(65)}),
            json!({"msgid":1,"id":5,"password":"pw","v":2,"device":5}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            parse(json!({"msgid":1,"name":"alice","password":"pw","v":2})),
            Ok(Request::Login {
                account: Account::Name("alice".into()),
                credential: Credential::Password("pw".into()),
                version: Version::V2,
                device: DEFAULT_DEVICE.into(),
            }),
            "a login may name the account instead of giving its id"
        );
        for bad in [
            json!({"msgid":1,"id":5,"name":"alice","password":"pw"}),
            json!({"msgid":1,"name":"","password":"pw"}),
            json!({"msgid":1,"name":5,"password":"pw"}),
            json!({"msgid":1,"password":"pw"}),
            json!({"msgid":1,"id":-1,"password":"pw"}),
            json!({"msgid":1,"id":"5","password":"pw"}),
            json!({"msgid":1,"id":2147483648i64,"password":"pw"}),
            json!({"msgid":1,"id":5,"password":""}),
            json!({"msgid":1,"id":5,"password":5}),
            json!({"msgid":1,"id":5,"password":"pw","v":3}),
            json!({"msgid":1,"id":5,"token":"t0k"}),
            json!({"msgid":1,"id":5,"token":"","v":2}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_unicode_counted_and_refuse_control_characters() {
        let name = "é".repeat(50);
        assert!(parse(json!({"msgid":4,"name":name,"password":"p"})).is_ok());
        let name = "é".repeat(51);
        assert!(parse(json!({"msgid":4,"name":name,"password":"p"})).is_err());
        assert!(parse(json!({"msgid":4,"name":"a\tb","password":"p"})).is_err());
        assert!(parse(json!({"msgid":4,"name":"\"quoted\" 'x'","password":"p"})).is_ok());
        assert!(parse(json!({"msgid":4,"name":"","password":"p"})).is_err());
    }

    #[test]
    fn password_limit_counts_bytes() {
        let pw = "é".repeat(64);
        assert!(parse(json!({"msgid":4,"name":"a","password":pw})).is_ok());
        let pw = "é".repeat(65);
        assert!(parse(json!({"msgid":4,"name":"a","password":pw})).is_err());
    }

    #[test]
    fn chat_text_rules() {
        assert_eq!(
            parse(json!({"msgid":6,"toid":2,"msg":"a\nb\tc"})),
            Ok(Request::Chat {
                to: 2,
                text: "a\nb\tc".into(),
                time: None,
                cid: None,
            })
        );
        assert!(parse(json!({"msgid":6,"toid":2,"msg":"a\u{7}"})).is_err());
        assert!(parse(json!({"msgid":6,"toid":2,"msg":""})).is_err());
        assert!(parse(json!({"msgid":6,"toid":2,"msg":"x","time":5})).is_err());
        assert!(parse(json!({"msgid":6,"toid":2.5,"msg":"x"})).is_err());
        let long = "字".repeat(16_384);
        assert!(parse(json!({"msgid":6,"toid":2,"msg":long})).is_ok());
        let long = "字".repeat(16_385);
        assert!(parse(json!({"msgid":6,"toid":2,"msg":long})).is_err());
    }

    #[test]
    fn group_fields() {
        assert_eq!(
            parse(json!({"msgid":8,"groupname":"g"})),
            Ok(Request::CreateGroup {
                name: "g".into(),
                desc: String::new()
            })
        );
        assert!(parse(json!({"msgid":8,"groupname":"g","groupdesc":"x".repeat(201)})).is_err());
        assert!(parse(json!({"msgid":9})).is_err());
        assert_eq!(
            parse(json!({"msgid":10,"groupid":3,"msg":"hi","time":"t"})),
            Ok(Request::GroupChat {
                group: 3,
                text: "hi".into(),
                time: Some("t".into()),
                cid: None,
            })
        );
    }

    #[test]
    fn cid_and_log_requests() {
        assert!(matches!(
            parse(json!({"msgid":6,"toid":2,"msg":"x","cid":"c-1"})),
            Ok(Request::Chat { cid: Some(c), .. }) if c == "c-1"
        ));
        for bad in [json!(""), json!(5), json!("x".repeat(65)), json!("a\u{1}")] {
            assert!(parse(json!({"msgid":6,"toid":2,"msg":"x","cid":bad})).is_err());
        }
        assert_eq!(
            parse(json!({"msgid":19,"conv":"u5"})),
            Ok(Request::History {
                conv: ConvName::User(5),
                page: Page::Latest,
                limit: HISTORY_DEFAULT
            })
        );
        assert_eq!(
            parse(json!({"msgid":19,"conv":"g3","after":9,"limit":200})),
            Ok(Request::History {
                conv: ConvName::Group(3),
                page: Page::After(9),
                limit: 200
            })
        );
        for bad in [
            json!({"msgid":19,"conv":"u5","before":2,"after":1}),
            json!({"msgid":19,"conv":"u5","limit":0}),
            json!({"msgid":19,"conv":"u5","limit":201}),
            json!({"msgid":19,"conv":"u5","before":0}),
            json!({"msgid":19,"conv":"u5","after":-1}),
            json!({"msgid":19,"conv":"x5"}),
            json!({"msgid":19,"conv":"u05"}),
            json!({"msgid":19,"conv":"u"}),
            json!({"msgid":19,"conv":"u2147483648"}),
            json!({"msgid":21,"conv":"u5"}),
            json!({"msgid":21,"conv":"u5","pos":1.5}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert!(matches!(
            parse(json!({"msgid":19,"conv":"u5","after":0})),
            Ok(Request::History {
                page: Page::After(0),
                ..
            })
        ));
        assert_eq!(
            parse(json!({"msgid":21,"conv":"g3","pos":4})),
            Ok(Request::Read {
                conv: ConvName::Group(3),
                pos: 4
            })
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        let err = parse(json!({"msgid":7})).unwrap_err();
        assert_eq!(err.0, "invalid field 'friendid': missing");
    }
}
