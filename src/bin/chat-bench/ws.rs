//! The WebSocket transport (`--transport ws`): the same JSON frames, one per text message, on a node's
//! `/ws` (its `--http` listener) instead of NUL-terminated on its chat port. The tool stays on its
//! nonblocking sockets and its own threads, so it speaks the protocol at the byte level: a hand-written
//! upgrade request (its accept key checked with tungstenite's `derive_accept_key`), frames encoded
//! with tungstenite's [`FrameHeader`] and masked as RFC 6455 requires of clients, and the server's frames
//! cut by [`Inbound`], which hands each text message to the same [`FrameDecoder`] as TCP replies go to.

use std::io::{self, Cursor, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use clusterchat::protocol::frame::{Decoded, FrameDecoder};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// How a bench connection reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// The chat port: NUL-terminated frames, as the C++ client sends them.
    Tcp,
    /// `/ws` on the node's HTTP listener: one frame per masked text message.
    Ws,
}

impl Transport {
    /// Its name in reports, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
        }
    }
}

/// Longest handshake answer read.
const MAX_HEAD: usize = 8 * 1024;

/// Opens `/ws` on `stream` (connected to `addr`); returns what the server sent after its answer's head
/// (frames may follow it at once).
pub fn handshake(
    stream: &mut TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let key = tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let deadline = Instant::now() + timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(invalid("handshake answer too long"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "no handshake answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    };
    check_answer(&head[..end], &key)?;
    Ok(head.split_off(end))
}

/// Checks the server's answer to the upgrade: 101 with the accept key derived from ours.
fn check_answer(head: &[u8], key: &str) -> io::Result<()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(invalid("unreadable handshake answer")),
    }
    if response.code != Some(101) {
        return Err(invalid(&format!(
            "upgrade refused: {} {}",
            response.code.unwrap_or(0),
            response.reason.unwrap_or("")
        )));
    }
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(invalid("wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, why.to_owned())
}

/// Appends to `out` one final text frame carrying `payload`, masked with `mask`.
pub fn encode_text(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        mask: Some(mask),
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, byte) in out[start..].iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Masking keys for one connection's frames: xorshift, seeded per connection. RFC 6455 wants them
/// unpredictable to keep proxies' caches from being poisoned by script in a browser; on loopback against
/// our own server, cheap and varied is enough.
pub struct Masks(u64);

impl Masks {
    pub fn new(seed: u64) -> Masks {
        Masks(seed | 1)
    }

    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x as u32).to_le_bytes()
    }
}

/// What a connection's bytes are cut into frames with: the TCP frame decoder, behind a WebSocket
/// deframer for `--transport ws`. Server frames are unmasked; each text message is one JSON frame.
pub struct Inbound {
    frames: FrameDecoder,
    /// WebSocket bytes not yet cut into frames; `None` on TCP.
    ws: Option<Vec<u8>>,
    /// A text message in fragments.
    partial: Vec<u8>,
    /// The server sent a close frame (or broke the protocol): the connection counts as closed.
    closed: bool,
}

impl Inbound {
    pub fn new(transport: Transport, max_frame: usize) -> Inbound {
        Inbound {
            frames: FrameDecoder::new(max_frame),
            ws: (transport == Transport::Ws).then(Vec::new),
            partial: Vec::new(),
            closed: false,
        }
    }

    /// Takes bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(buf) = self.ws.as_mut() else {
            self.frames.feed(bytes);
            return;
        };
        buf.extend_from_slice(bytes);
        let mut used = 0;
        while !self.closed {
            let mut cursor = Cursor::new(&buf[used..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            };
            let body = used + cursor.position() as usize;
            let Some(end) = usize::try_from(len).ok().and_then(|l| body.checked_add(l)) else {
                self.closed = true;
                break;
            };
            if buf.len() < end {
                break;
            }
            used = end;
            match header.opcode {
                OpCode::Data(Data::Text | Data::Continue) => {
                    self.partial.extend_from_slice(&buf[body..end]);
                    if header.is_final {
                        // One message, one frame: the separator the TCP decoder cuts on.
                        self.partial.push(0);
                        self.frames.feed(&self.partial);
                        self.partial.clear();
                    }
                }
                OpCode::Control(Control::Close) => self.closed = true,
                // Pings are not answered (the server sends none); binary frames carry no JSON.
                _ => {}
            }
        }
        buf.drain(..used);
    }

    /// The next frame cut, as [`FrameDecoder::next_frame`].
    pub fn next_frame(&mut self) -> Option<Decoded> {
        self.frames.next_frame()
    }

    /// Whether the server closed the WebSocket (a close frame, or frames that cannot be read).
    pub fn closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tungstenite::protocol::frame::Frame;

    #[test]
    fn text_frames_are_masked_as_tungstenite_masks_them() {
        let mut out = Vec::new();
        encode_text(br#"{"msgid":99}"#, [1, 2, 3, 4], &mut out);
        let mut frame = Frame::message(br#"{"msgid":99}"#.to_vec(), OpCode::Data(Data::Text), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        let mut expected = Vec::new();
        frame.format(&mut expected).unwrap();
        assert_eq!(out, expected);
        assert_eq!(out[1] & 0x80, 0x80, "the mask bit is set");
    }

    #[test]
    fn server_frames_become_frames_whatever_the_cuts() {
        let mut wire = Vec::new();
        for payload in [&br#"{"a":1}"#[..], br#"{"b":2}"#] {
            Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true)
                .format(&mut wire)
                .unwrap();
        }
        Frame::ping(b"x".to_vec()).format(&mut wire).unwrap();
        // A fragmented message: "{\"c\"" then ":3}".
        Frame::message(br#"{"c""#.to_vec(), OpCode::Data(Data::Text), false)
            .format(&mut wire)
            .unwrap();
        Frame::message(b":3}".to_vec(), OpCode::Data(Data::Continue), true)
            .format(&mut wire)
            .unwrap();
        for cut in 1..wire.len() {
            let mut inbound = Inbound::new(Transport::Ws, 1024);
            inbound.feed(&wire[..cut]);
            inbound.feed(&wire[cut..]);
            let mut got = Vec::new();
            while let Some(Decoded::Frame(bytes)) = inbound.next_frame() {
                got.push(String::from_utf8(bytes.to_vec()).unwrap());
            }
            assert_eq!(
                got,
                [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#],
                "cut at {cut}"
            );
            assert!(!inbound.closed());
        }
    }

    #[test]
    fn a_close_frame_closes() {
        let mut wire = Vec::new();
        Frame::close(None).format(&mut wire).unwrap();
        let mut inbound = Inbound::new(Transport::Ws, 1024);
        inbound.feed(&wire);
        assert!(inbound.closed());
        assert!(inbound.next_frame().is_none());
    }

    #[test]
    fn tcp_bytes_go_straight_to_the_frame_decoder() {
        let mut inbound = Inbound::new(Transport::Tcp, 1024);
        inbound.feed(b"{\"a\":1}\0");
        assert!(matches!(inbound.next_frame(), Some(Decoded::Frame(_))));
    }

    #[test]
    fn masks_vary() {
        let mut masks = Masks::new(7);
        let (a, b) = (masks.next_mask(), masks.next_mask());
        assert_ne!(a, b);
    }
}
