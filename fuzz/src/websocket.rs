//! The `websocket_decoder` target: bytes into the WebSocket codec ([`Decoder`]), whole and in pieces.
//!
//! Input layout: as the `frame_decoder` target's (byte 0 the message limit, byte 1 and what follows the
//! piece lengths; see [`crate::frame::Input`]), then the stream, read one of two ways by its first byte:
//! - even: raw bytes, as a client might send anything;
//! - odd: a list of messages the harness encodes itself, masked, with tungstenite's frame writer, each
//!   `[kind, len, payload…]`: with `k = kind & 0x7f`, `k % 3` is text, binary or ping (its payload cut
//!   to 125 bytes), `(k / 3) % 4 + 1` the number of fragments of a data message; `kind & 0x80` puts a
//!   ping between the first two fragments.
//!
//! Checked, beyond "never panics":
//! - the same stream yields the same messages whether fed whole or in pieces (drained after every
//!   piece, as the session does, or only at the end), and never more messages than bytes;
//! - nothing comes after `TooLarge` or `Broken`, and no text is longer than the limit;
//! - a list of well-formed messages comes out exactly as it went in, up to the first one over the limit,
//!   which is `TooLarge`.

use clusterchat::protocol::websocket::{Decoder, Message};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::frame::{Input, LIMITS};

fn drain(decoder: &mut Decoder, out: &mut Vec<Message>, fed: usize) {
    while let Some(message) = decoder.next_message() {
        out.push(message);
        assert!(out.len() <= fed, "{} messages from {fed} bytes", out.len());
    }
}

fn decode(input: &Input, stream: &[u8], mode: Option<bool>) -> Vec<Message> {
    let mut decoder = Decoder::new(input.max_frame);
    let mut out = Vec::new();
    match mode {
        None => {
            decoder.feed(stream);
            drain(&mut decoder, &mut out, stream.len());
        }
        Some(drain_each) => {
            let pieces = Input {
                max_frame: input.max_frame,
                pieces: input.pieces.clone(),
                stream,
            };
            let mut fed = 0;
            for chunk in pieces.chunks() {
                decoder.feed(chunk);
                fed += chunk.len();
                if drain_each {
                    drain(&mut decoder, &mut out, fed);
                }
            }
            drain(&mut decoder, &mut out, fed);
        }
    }
    out
}

fn check(messages: &[Message], limit: usize) {
    for (i, message) in messages.iter().enumerate() {
        match message {
            Message::TooLarge | Message::Broken(_) => {
                assert_eq!(i + 1, messages.len(), "messages after {message:?}")
            }
            Message::Text(text) => assert!(text.len() <= limit, "text over {limit}"),
            _ => {}
        }
    }
}

/// One masked frame as a client writes it.
fn client_frame(opcode: OpCode, payload: &[u8], fin: bool, out: &mut Vec<u8>) {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), fin);
    frame.header_mut().opcode = opcode;
    frame.header_mut().mask = Some([0xa5, 0x5a, 0x0f, 0xf0]);
    frame.format(out).expect("writing to a Vec cannot fail");
}

/// The stream of a list of messages (see the module doc), and what the decoder must make of it.
fn encode(spec: &[u8], limit: usize) -> (Vec<u8>, Vec<Message>) {
    let (mut stream, mut expected) = (Vec::new(), Vec::new());
    let mut rest = spec;
    while let [kind, len, tail @ ..] = rest {
        let (ping_between, kind) = (kind & 0x80 != 0, kind & 0x7f);
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        if kind % 3 == 2 {
            // Control frames carry at most 125 bytes.
            let payload = &payload[..payload.len().min(125)];
            client_frame(OpCode::Control(Control::Ping), payload, true, &mut stream);
            expected.push(Message::Ping(payload.to_vec()));
            continue;
        }
        let text = kind % 3 == 0;
        let fragments = usize::from(kind / 3 % 4 + 1).min(payload.len().max(1));
        let size = payload.len().div_ceil(fragments).max(1);
        let parts: Vec<&[u8]> = if payload.is_empty() {
            vec![payload]
        } else {
            payload.chunks(size).collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let opcode = match (i, text) {
                (0, true) => OpCode::Data(Data::Text),
                (0, false) => OpCode::Data(Data::Binary),
                _ => OpCode::Data(Data::Continue),
            };
            client_frame(opcode, part, i + 1 == parts.len(), &mut stream);
            if i == 0 && parts.len() > 1 && ping_between {
                client_frame(OpCode::Control(Control::Ping), b"", true, &mut stream);
                expected.push(Message::Ping(Vec::new()));
            }
        }
        if payload.len() > limit {
            // The decoder stops at the fragment that passes the limit, before any ping after it.
            if ping_between && parts.len() > 1 && parts[0].len() > limit {
                expected.pop();
            }
            expected.push(Message::TooLarge);
            return (stream, expected);
        }
        expected.push(if text {
            Message::Text(payload.to_vec())
        } else {
            Message::Binary
        });
    }
    (stream, expected)
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let input = Input::parse(data);
    debug_assert!(LIMITS.contains(&input.max_frame));
    let (stream, expected) = match input.stream.split_first() {
        Some((mode, spec)) if mode % 2 == 1 => {
            let (stream, expected) = encode(spec, input.max_frame);
            (stream, Some(expected))
        }
        _ => (input.stream.to_vec(), None),
    };
    let reference = decode(&input, &stream, None);
    check(&reference, input.max_frame);
    for drain_each in [true, false] {
        let got = decode(&input, &stream, Some(drain_each));
        assert_eq!(
            got, reference,
            "split feeding (drain after each piece: {drain_each}) differs"
        );
    }
    if let Some(expected) = expected {
        assert_eq!(
            reference, expected,
            "well-formed messages do not come out as sent"
        );
    }
}
