//! The wire protocol of `docs/PROTOCOL.md`: message numbers, error numbers, the frame codec, request
//! parsing and reply encoding. Nothing here does I/O or knows about storage.

pub mod frame;
pub mod proxy;
pub mod reply;
pub mod request;
mod unread;
pub mod websocket;

/// Message numbers (`msgid`), as the original C++ project numbers them.
pub mod msgid {
    pub const LOGIN: i64 = 1;
    pub const LOGIN_ACK: i64 = 2;
    pub const LOGOUT: i64 = 3;
    pub const REG: i64 = 4;
    pub const REG_ACK: i64 = 5;
    pub const ONE_CHAT: i64 = 6;
    pub const ADD_FRIEND: i64 = 7;
    pub const CREATE_GROUP: i64 = 8;
    pub const ADD_GROUP: i64 = 9;
    pub const GROUP_CHAT: i64 = 10;
    pub const LOGOUT_ACK: i64 = 11;
    pub const ADD_FRIEND_ACK: i64 = 12;
    pub const CREATE_GROUP_ACK: i64 = 13;
    pub const ADD_GROUP_ACK: i64 = 14;
    pub const ERROR: i64 = 15;
    pub const CHAT_ACK: i64 = 16;
    pub const CONVERSATIONS: i64 = 17;
    pub const CONVERSATIONS_ACK: i64 = 18;
    pub const HISTORY: i64 = 19;
    pub const HISTORY_ACK: i64 = 20;
    pub const READ: i64 = 21;
    pub const READ_ACK: i64 = 22;
    pub const RECEIPT: i64 = 23;
    pub const FRIEND_REQUEST: i64 = 24;
    pub const FRIEND_REQUEST_ACK: i64 = 25;
    pub const FRIEND_EVENT: i64 = 26;
    pub const FRIEND_ANSWER: i64 = 27;
    pub const FRIEND_ANSWER_ACK: i64 = 28;
    pub const FRIEND_REMOVE: i64 = 29;
    pub const FRIEND_REMOVE_ACK: i64 = 30;
    pub const BLOCK: i64 = 31;
    pub const BLOCK_ACK: i64 = 32;
    pub const FRIENDS: i64 = 33;
    pub const FRIENDS_ACK: i64 = 34;
    pub const FIND_USER: i64 = 35;
    pub const FIND_USER_ACK: i64 = 36;
    pub const GROUP_LEAVE: i64 = 37;
    pub const GROUP_LEAVE_ACK: i64 = 38;
    pub const GROUP_KICK: i64 = 39;
    pub const GROUP_KICK_ACK: i64 = 40;
    pub const GROUP_ROLE: i64 = 41;
    pub const GROUP_ROLE_ACK: i64 = 42;
    pub const GROUP_UPDATE: i64 = 43;
    pub const GROUP_UPDATE_ACK: i64 = 44;
    pub const GROUP_DISSOLVE: i64 = 45;
    pub const GROUP_DISSOLVE_ACK: i64 = 46;
    pub const GROUP_INFO: i64 = 47;
    pub const GROUP_INFO_ACK: i64 = 48;
    pub const GROUP_EVENT: i64 = 49;
    pub const PRESENCE: i64 = 50;
    pub const TYPING: i64 = 51;
    pub const PASSWORD: i64 = 52;
    pub const PASSWORD_ACK: i64 = 53;
    pub const GROUP_UNBAN: i64 = 54;
    pub const GROUP_UNBAN_ACK: i64 = 55;
}

/// The error numbers of ERROR_MSG (and 107/109 inside login and register acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Errno {
    /// Not JSON, not an object, or invalid UTF-8.
    Malformed = 100,
    /// A msgid the server does not accept from clients.
    UnknownMsgid = 101,
    /// A field is missing or has the wrong type or range.
    InvalidField = 102,
    /// The request needs a logged-in connection.
    NotLoggedIn = 103,
    /// The user or group named does not exist.
    NotFound = 104,
    /// Not a member, oneself, or a name already taken.
    NotAllowed = 105,
    /// The frame exceeded the size limit; the connection is closed after this.
    TooLarge = 106,
    /// Too many requests or failed logins.
    RateLimited = 107,
    /// The server is at its connection limit; the connection is closed after this.
    ServerFull = 108,
    /// Storage or bus unavailable; the request was not carried out.
    Unavailable = 109,
}

impl Errno {
    /// The number on the wire.
    pub fn code(self) -> i64 {
        self as i64
    }
}

/// Which flavour of replies a logged-in connection gets (chosen by `"v"` at login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The C++ project's replies: no acks for most requests, login lists double-encoded.
    V1,
    /// Acknowledgements for every request and plain nested JSON.
    V2,
}
