//! The WebSocket codec (RFC 6455) for connections that came in on `/ws`: one JSON frame per text message.
//!
//! tungstenite parses and formats frame headers, names opcodes and close codes, and derives the
//! handshake's accept key; this module keeps only what its blocking `WebSocket` type cannot give a
//! connection whose socket is shared: that type owns its stream and needs `&mut` for reads and writes
//! alike, while here one thread reads and any thread may write (see `session`). So the reader decodes
//! messages from the bytes it read ([`Decoder`]), and the writers encode frames into bytes ([`text`],
//! [`close`], [`pong`]) that go out through the same write path as TCP frames.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use super::unread::Unread;

/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// One thing a client sent, as the session handles it.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A whole text message's payload (not checked for UTF-8 here: the request parser refuses invalid
    /// UTF-8 with errno 100, as on TCP).
    Text(Vec<u8>),
    /// A whole binary message: JSON frames travel as text, so it is refused (errno 100).
    Binary,
    /// A message (or a frame header announcing one) over the size limit; the connection is closed.
    TooLarge,
    /// A ping to answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// The client starts the closing handshake.
    Close,
    /// A frame that breaks the protocol (unmasked, reserved bits or opcodes, a fragmented or long
    /// control frame, a continuation out of place): the connection is closed with 1002.
    Broken(&'static str),
}

/// The fragments of a message in progress.
#[derive(Debug)]
struct Partial {
    text: bool,
    payload: Vec<u8>,
}

/// Incremental decoder of client frames; feed it what `read` returned, then drain it with
/// [`Decoder::next_message`].
#[derive(Debug)]
pub struct Decoder {
    input: Unread,
    max_message: usize,
    partial: Option<Partial>,
    /// A message was too large or a frame broke the protocol: nothing more is decoded.
    failed: bool,
}

impl Decoder {
    /// A decoder that refuses messages longer than `max_message` bytes of payload.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            input: Unread::default(),
            max_message,
            partial: None,
            failed: false,
        }
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// The next whole message or control frame, or `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Message> {
        loop {
            if self.failed {
                return None;
            }
            let unread = self.input.bytes();
            let mut cursor = Cursor::new(unread);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return None,
                Err(_) => {
                    let why = "reserved opcode or unreadable frame header";
                    return Some(self.fail(Message::Broken(why)));
                }
            };
            if let Err(why) = check(&header, len) {
                return Some(self.fail(why));
            }
            // The limit is on messages (all their fragments); control frames have their own (125 bytes).
            if matches!(header.opcode, OpCode::Data(_)) {
                let in_progress = self.partial.as_ref().map_or(0, |p| p.payload.len());
                // Saturating: a header may announce up to 2^64 - 1 bytes.
                if len.saturating_add(in_progress as u64) > self.max_message as u64 {
                    return Some(self.fail(Message::TooLarge));
                }
            }
            let body = cursor.position() as usize;
            let end = body + len as usize;
            if unread.len() < end {
                return None;
            }
            let mut payload = unread[body..end].to_vec();
            self.input.consume(end);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            if let Some(message) = self.take(&header, payload) {
                return Some(message);
            }
        }
    }

    /// What one well-formed frame completes, if anything: a control frame, or the last fragment of a
    /// message.
    fn take(&mut self, header: &FrameHeader, payload: Vec<u8>) -> Option<Message> {
        let (text, continuing) = match header.opcode {
            OpCode::Control(Control::Ping) => return Some(Message::Ping(payload)),
            OpCode::Control(Control::Close) => return Some(Message::Close),
            OpCode::Control(_) => return None,
            OpCode::Data(Data::Text) => (true, false),
            OpCode::Data(Data::Binary) => (false, false),
            OpCode::Data(_) => (false, true),
        };
        match (&mut self.partial, continuing) {
            (Some(partial), true) => partial.payload.extend_from_slice(&payload),
            (None, false) => self.partial = Some(Partial { text, payload }),
            (None, true) => {
                return Some(self.fail(Message::Broken("continuation without a message")));
            }
            (Some(_), false) => {
                return Some(self.fail(Message::Broken("new message inside a fragmented one")));
            }
        }
        if !header.is_final {
            return None;
        }
        let whole = self.partial.take().expect("set above");
        Some(if whole.text {
            Message::Text(whole.payload)
        } else {
            Message::Binary
        })
    }

    fn fail(&mut self, why: Message) -> Message {
        self.failed = true;
        self.partial = None;
        why
    }
}

/// The frame rules a server checks on every client frame (RFC 6455 §5.1–5.5).
fn check(header: &FrameHeader, len: u64) -> Result<(), Message> {
    if header.mask.is_none() {
        return Err(Message::Broken("client frames must be masked"));
    }
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(Message::Broken(
            "reserved bits set (no extension was agreed)",
        ));
    }
    match header.opcode {
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            Err(Message::Broken("reserved opcode"))
        }
        OpCode::Control(_) if !header.is_final || len > MAX_CONTROL => {
            Err(Message::Broken("control frames must be whole and short"))
        }
        _ => Ok(()),
    }
}

/// Removes a client's masking (XOR with the 4-byte key, RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// One unfragmented, unmasked server frame.
fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut bytes = Vec::with_capacity(header.len(len) + payload.len());
    header
        .format(len, &mut bytes)
        .expect("writing to a Vec cannot fail");
    bytes.extend_from_slice(payload);
    bytes
}

/// A text message carrying one JSON frame.
pub fn text(frame_text: &str) -> Vec<u8> {
    frame(OpCode::Data(Data::Text), frame_text.as_bytes())
}

/// The answer to a ping.
pub fn pong(payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Control(Control::Pong), payload)
}

/// A close frame with its code and a short reason.
pub fn close(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut payload = u16::from(code).to_be_bytes().to_vec();
    let room = MAX_CONTROL as usize - payload.len();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(room)]);
    frame(OpCode::Control(Control::Close), &payload)
}

/// Why a handshake request is refused: the HTTP status and a line for the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub reason: &'static str,
    pub why: &'static str,
}

/// The `101 Switching Protocols` answer to a client's opening handshake (RFC 6455 §4.2), given the
/// value of a request header by (case-insensitive) name.
pub fn accept<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<String, Refused> {
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Refused {
            status: 426,
            reason: "Upgrade Required",
            why: "this path speaks WebSocket only",
        });
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refused {
            status: 426,
            reason: "Upgrade Required",
            why: "WebSocket version 13 only",
        });
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| k.len() == 24)
        .ok_or(Refused {
            status: 400,
            reason: "Bad Request",
            why: "missing or invalid Sec-WebSocket-Key",
        })?;
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut bytes = vec![first];
        match payload.len() {
            n if n < 126 => bytes.push(0x80 | n as u8),
            n => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        bytes.extend(body);
        bytes
    }

    fn all(decoder: &mut Decoder) -> Vec<Message> {
        std::iter::from_fn(|| decoder.next_message()).collect()
    }

    #[test]
    fn messages_split_anywhere_and_fragmented_come_out_whole() {
        let mut stream = client(0x81, br#"{"msgid":1}"#);
        stream.extend(client(0x01, b"{\"a\":"));
        stream.extend(client(0x89, b"hi"));
        stream.extend(client(0x80, b"2}"));
        stream.extend(client(0x82, b"\x00\x01"));
        stream.extend(client(0x88, &1000u16.to_be_bytes()));
        let mut decoder = Decoder::new(1024);
        let mut got = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte));
            got.extend(all(&mut decoder));
        }
        assert_eq!(
            got,
            [
                Message::Text(br#"{"msgid":1}"#.to_vec()),
                Message::Ping(b"hi".to_vec()),
                Message::Text(br#"{"a":2}"#.to_vec()),
                Message::Binary,
                Message::Close,
            ]
        );
    }

    #[test]
    fn oversize_and_broken_frames_end_decoding() {
        let mut decoder = Decoder::new(10);
        decoder.feed(&client(0x81, &[b'x'; 11]));
        assert_eq!(all(&mut decoder), [Message::TooLarge]);
        let mut decoder = Decoder::new(10);
        decoder.feed(&client(0x01, b"123456"));
        decoder.feed(&client(0x80, b"123456"));
        assert_eq!(
            all(&mut decoder),
            [Message::TooLarge],
            "counted over fragments"
        );
        let mut decoder = Decoder::new(10);
        decoder.feed(&client(0x01, b"123456789"));
        decoder.feed(&client(0x89, b"ping"));
        decoder.feed(&client(0x80, b"0"));
        assert_eq!(
            all(&mut decoder),
            [
                Message::Ping(b"ping".to_vec()),
                Message::Text(b"1234567890".to_vec())
            ],
            "a ping between fragments does not count toward the message"
        );
        // A fragment announcing 2^64 - 1 bytes after a first one: refused, without overflow.
        let mut decoder = Decoder::new(10);
        decoder.feed(&client(0x01, b"12345"));
        decoder.feed(&[
            0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ]);
        assert_eq!(all(&mut decoder), [Message::TooLarge]);
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![0x81, 0x01, b'x'], "masked"),
            (client(0xC1, b"x"), "reserved bits"),
            (client(0x83, b"x"), "reserved opcode"),
            (client(0x09, b"x"), "control frames"),
            (client(0x80, b"x"), "continuation"),
        ];
        for (bytes, why) in cases {
            let mut decoder = Decoder::new(10);
            decoder.feed(&bytes);
            match all(&mut decoder).as_slice() {
                [Message::Broken(said)] => assert!(said.contains(why), "{said} / {why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn server_frames_are_unmasked_with_the_right_length() {
        assert_eq!(text("{}"), [0x81, 2, b'{', b'}']);
        let long = text(&"x".repeat(300));
        assert_eq!(&long[..4], [0x81, 126, 1, 44]);
        assert_eq!(pong(b"p"), [0x8A, 1, b'p']);
        assert_eq!(close(CloseCode::Size, "big")[..4], [0x88, 5, 0x03, 0xF1]);
    }

    #[test]
    fn the_handshake_needs_upgrade_version_and_key() {
        let good = |name: &str| match name {
            "upgrade" => Some("websocket"),
            "connection" => Some("keep-alive, Upgrade"),
            "sec-websocket-version" => Some("13"),
            "sec-websocket-key" => Some("dGhlIHNhbXBsZSBub25jZQ=="),
            _ => None,
        };
        let answer = accept(good).unwrap();
        assert!(answer.starts_with("HTTP/1.1 101 "));
        // The example of RFC 6455 §1.3.
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert_eq!(accept(|_| None).unwrap_err().status, 426);
        let old = |name: &str| match name {
            "sec-websocket-version" => Some("8"),
            other => good(other),
        };
        assert_eq!(accept(old).unwrap_err().why, "WebSocket version 13 only");
        let keyless = |name: &str| match name {
            "sec-websocket-key" => None,
            other => good(other),
        };
        assert_eq!(accept(keyless).unwrap_err().status, 400);
    }
}
