//! How frames travel on a connection: the one place that knows whether it is framed TCP (the
//! original's JSON objects followed by a separator) or WebSocket (one JSON frame per text message).
//!
//! The reader turns the bytes it read into [`Unit`]s through [`Inbound`]; the write side turns frames
//! into bytes through [`Framing`]. Everything else in the session, and everything above it, handles frames
//! and never bytes, so both transports get the same checks, limits and delivery.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tungstenite::protocol::frame::coding::CloseCode;

use super::End;
use crate::protocol::frame::{Decoded, FrameDecoder, Separator};
use crate::protocol::proxy::{self, Preamble};
use crate::protocol::websocket::{self, Message};

/// The transport a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The chat listener: JSON frames and a separator.
    Tcp,
    /// `/ws` on the HTTP listener, after the opening handshake.
    WebSocket,
}

impl Transport {
    /// The name used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket => "websocket",
        }
    }
}

/// One thing the client sent, as the read loop handles it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A request frame, or what stood in for one (malformed, too large).
    Frame(Decoded),
    /// Not a frame at all on this transport (a WebSocket binary message): errno 100 with these words.
    Refused(&'static str),
    /// Bytes to answer at once, framed already (a WebSocket pong).
    Answer(Vec<u8>),
    /// The client ends the connection (a WebSocket close, or a frame that breaks its protocol).
    End(End),
    /// A PROXY header ahead of the TCP stream named this address as the client's (believed only from a
    /// trusted proxy: [`proxy::TrustedProxies`]).
    Proxied(IpAddr),
}

/// The reading half of a transport.
pub(crate) enum Inbound {
    Tcp(TcpInbound),
    WebSocket(websocket::Decoder),
}

/// A TCP connection's reader: a PROXY header, perhaps, then frames.
pub(crate) struct TcpInbound {
    decoder: FrameDecoder,
    start: Start,
}

/// Where a TCP connection's reader is in the bytes that may come ahead of its first frame.
enum Start {
    /// The first bytes, until they say whether they begin with a PROXY header.
    Reading(Vec<u8>),
    /// A PROXY header named the client's address; [`Unit::Proxied`] says so next.
    Named(IpAddr),
    /// Frames only, from here on.
    Frames,
    /// A PROXY header that is not valid: the connection ends ([`End::Broken`]).
    Refused,
}

impl TcpInbound {
    fn feed(&mut self, bytes: &[u8]) {
        let Start::Reading(first) = &mut self.start else {
            return self.decoder.feed(bytes);
        };
        first.extend_from_slice(bytes);
        let (skip, next) = match proxy::preamble(first) {
            Preamble::Undecided => return,
            Preamble::Invalid => {
                self.start = refused();
                return;
            }
            Preamble::Absent => (0, Start::Frames),
            Preamble::Header { len, source: None } => (len, Start::Frames),
            Preamble::Header {
                len,
                source: Some(ip),
            } => (len, Start::Named(ip)),
        };
        self.decoder.feed(&first[skip..]);
        self.start = next;
    }

    fn next(&mut self) -> Option<Unit> {
        match self.start {
            Start::Reading(_) => None,
            Start::Named(ip) => {
                self.start = Start::Frames;
                Some(Unit::Proxied(ip))
            }
            Start::Frames => self.decoder.next_frame().map(Unit::Frame),
            Start::Refused => Some(Unit::End(End::Broken)),
        }
    }
}

/// What follows a PROXY header that is not valid: the connection ends. Said once in the log, since it
/// means a proxy set up wrong (another protocol, or a version 1 line cut short) and every connection
/// through it fails the same way.
fn refused() -> Start {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("a connection began with a PROXY header that is not valid: closed");
    }
    Start::Refused
}

impl Inbound {
    /// A decoder for `transport`, refusing frames over `max_frame` bytes.
    pub(crate) fn new(transport: Transport, max_frame: usize) -> Inbound {
        match transport {
            Transport::Tcp => Inbound::Tcp(TcpInbound {
                decoder: FrameDecoder::new(max_frame),
                start: Start::Reading(Vec::new()),
            }),
            Transport::WebSocket => Inbound::WebSocket(websocket::Decoder::new(max_frame)),
        }
    }

    /// Appends bytes read from the socket.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        match self {
            Inbound::Tcp(tcp) => tcp.feed(bytes),
            Inbound::WebSocket(decoder) => decoder.feed(bytes),
        }
    }

    /// The next unit, or `None` when more bytes are needed. A TCP client's first separator becomes the
    /// one written after every frame to it.
    pub(crate) fn next(&mut self, framing: &Framing) -> Option<Unit> {
        match self {
            Inbound::Tcp(tcp) => {
                let unit = tcp.next()?;
                if let (Some(sep), Framing::Tcp(byte)) = (tcp.decoder.separator(), framing) {
                    byte.store(sep.byte(), Ordering::Relaxed);
                }
                Some(unit)
            }
            Inbound::WebSocket(decoder) => Some(match decoder.next_message()? {
                Message::Text(bytes) => Unit::Frame(Decoded::Frame(bytes)),
                Message::TooLarge => Unit::Frame(Decoded::TooLarge),
                Message::Binary => {
                    Unit::Refused("malformed frame: send each JSON frame as a text message")
                }
                Message::Ping(payload) => Unit::Answer(websocket::pong(&payload)),
                Message::Close => Unit::End(End::ClientGone),
                Message::Broken(why) => {
                    tracing::debug!(why, "WebSocket protocol error");
                    Unit::End(End::Broken)
                }
            }),
        }
    }
}

/// The writing half of a transport: frames to bytes.
#[derive(Debug)]
pub(crate) enum Framing {
    /// Each frame followed by the separator byte (newline until the client has used one).
    Tcp(AtomicU8),
    /// Each frame in a text message of its own.
    WebSocket,
}

impl Framing {
    pub(crate) fn new(transport: Transport) -> Framing {
        match transport {
            Transport::Tcp => Framing::Tcp(AtomicU8::new(Separator::Newline.byte())),
            Transport::WebSocket => Framing::WebSocket,
        }
    }

    /// One frame as it goes on the wire, written in one call (the C++ client parses one per read).
    pub(crate) fn encode(&self, frame: &str) -> Vec<u8> {
        match self {
            Framing::Tcp(separator) => {
                let mut bytes = Vec::with_capacity(frame.len() + 1);
                bytes.extend_from_slice(frame.as_bytes());
                bytes.push(separator.load(Ordering::Relaxed));
                bytes
            }
            Framing::WebSocket => websocket::text(frame),
        }
    }

    /// Several frames as one write.
    pub(crate) fn encode_all(&self, frames: &[String]) -> Vec<u8> {
        frames.iter().flat_map(|f| self.encode(f)).collect()
    }

    /// What is written last, before the socket closes, for a connection that ended for `end`: a
    /// WebSocket close frame whose code says why; nothing on TCP.
    pub(crate) fn goodbye(&self, end: End) -> Option<Vec<u8>> {
        if matches!(self, Framing::Tcp(_)) {
            return None;
        }
        let (code, reason) = match end {
            End::ClientGone => (CloseCode::Normal, ""),
            End::Shutdown => (CloseCode::Away, "server shutting down"),
            End::Idle => (CloseCode::Policy, "no login in time"),
            End::TooLarge => (CloseCode::Size, "frame too large"),
            End::Panicked => (CloseCode::Error, "internal error"),
            End::Abuse => (CloseCode::Policy, "rate limited"),
            End::Broken => (CloseCode::Protocol, "WebSocket protocol error"),
            End::Refused => (CloseCode::Again, "server full"),
        };
        Some(websocket::close(code, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_frames_end_with_the_clients_separator() {
        let framing = Framing::new(Transport::Tcp);
        let mut inbound = Inbound::new(Transport::Tcp, 100);
        assert_eq!(framing.encode("{}"), b"{}\n");
        inbound.feed(b"{\"a\":1}\0");
        assert_eq!(
            inbound.next(&framing),
            Some(Unit::Frame(Decoded::Frame(b"{\"a\":1}".to_vec())))
        );
        assert_eq!(framing.encode_all(&["{}".into(), "[]".into()]), b"{}\0[]\0");
        assert_eq!(framing.goodbye(End::TooLarge), None);
    }

    /// A PROXY line ahead of the first frame is read (in whatever pieces it comes), named once, and
    /// not taken for a frame; without one, the first bytes are frames, however few come at a time.
    #[test]
    fn a_proxy_line_comes_before_the_frames() {
        let framing = Framing::new(Transport::Tcp);
        let frame = |bytes: &[u8]| Some(Unit::Frame(Decoded::Frame(bytes.to_vec())));
        let mut inbound = Inbound::new(Transport::Tcp, 100);
        inbound.feed(b"PROXY TCP4 192.0.2.7 ");
        assert_eq!(inbound.next(&framing), None);
        inbound.feed(b"10.0.0.1 51000 6000\r\n{\"a\":1}\n{\"b\"");
        assert_eq!(
            inbound.next(&framing),
            Some(Unit::Proxied("192.0.2.7".parse().unwrap()))
        );
        assert_eq!(inbound.next(&framing), frame(b"{\"a\":1}"));
        assert_eq!(inbound.next(&framing), None);
        inbound.feed(b":2}\nPROXY TCP4 192.0.2.8 10.0.0.1 1 2\r\n");
        assert_eq!(inbound.next(&framing), frame(b"{\"b\":2}"));
        assert_eq!(
            inbound.next(&framing),
            Some(Unit::Frame(Decoded::Malformed)),
            "a PROXY line later on is no frame"
        );

        let mut plain = Inbound::new(Transport::Tcp, 100);
        plain.feed(b"{");
        plain.feed(b"\"a\":1}\n");
        assert_eq!(plain.next(&framing), frame(b"{\"a\":1}"));
        let mut unknown = Inbound::new(Transport::Tcp, 100);
        unknown.feed(b"PROXY UNKNOWN\r\n{}\n");
        assert_eq!(unknown.next(&framing), frame(b"{}"), "nothing named");
    }

    /// A version 2 header is read the same way, in pieces; LOCAL names no one; a header that is not
    /// valid ends the connection before any frame, whichever version it claims.
    #[test]
    fn a_binary_proxy_header_comes_before_the_frames() {
        let framing = Framing::new(Transport::Tcp);
        let frame = |bytes: &[u8]| Some(Unit::Frame(Decoded::Frame(bytes.to_vec())));
        let header = |command: u8| {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            h.extend([
                0x20 | command,
                0x11,
                0,
                12,
                192,
                0,
                2,
                7,
                10,
                0,
                0,
                1,
                0xc7,
                0x38,
                0x17,
                0x70,
            ]);
            h
        };
        let mut inbound = Inbound::new(Transport::Tcp, 100);
        for byte in [header(1), b"{\"a\":1}\0".to_vec()].concat() {
            inbound.feed(&[byte]);
        }
        assert_eq!(
            inbound.next(&framing),
            Some(Unit::Proxied("192.0.2.7".parse().unwrap()))
        );
        assert_eq!(inbound.next(&framing), frame(b"{\"a\":1}"));
        let mut local = Inbound::new(Transport::Tcp, 100);
        local.feed(&[header(0), b"{}\n".to_vec()].concat());
        assert_eq!(local.next(&framing), frame(b"{}"), "LOCAL names no one");

        let mut bad_v2 = header(1);
        bad_v2[13] = 0x12;
        let bad_v1 = b"PROXY TCP4 192.0.2.7\r\n".to_vec();
        for bad in [bad_v2, bad_v1] {
            let mut inbound = Inbound::new(Transport::Tcp, 100);
            inbound.feed(&[bad, b"{}\n".to_vec()].concat());
            assert_eq!(inbound.next(&framing), Some(Unit::End(End::Broken)));
        }
    }

    #[test]
    fn websocket_frames_are_messages() {
        let framing = Framing::new(Transport::WebSocket);
        assert_eq!(framing.encode("{}"), websocket::text("{}"));
        assert_eq!(
            framing.encode_all(&["{}".into(), "{}".into()]).len(),
            8,
            "two messages"
        );
        let close = framing.goodbye(End::TooLarge).expect("a close frame");
        assert_eq!(&close[2..4], 1009u16.to_be_bytes());
    }
}
