//! One bench connection, speaking as the original C++ client does: NUL-terminated frames, each frame and
//! its NUL in one `write()` call, TCP_NODELAY. Replies are cut with the server's own [`FrameDecoder`], so
//! they may end with NUL, newline or nothing. With `--transport ws` the same frames travel as masked
//! WebSocket text messages on the node's `/ws` (see `ws`). Blocking calls for setup; during load the
//! socket is split into a nonblocking writer (the sender thread's) and a reader (the receiver thread's).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Decoded;
use serde_json::Value;

use crate::ws::{self, Inbound, Masks, Transport};

/// Largest reply frame accepted: a v1 login ack in a big group is long, but not this long.
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

/// ERROR_MSG, what the server answers failed requests with.
pub const ERROR_MSG: i64 = 15;

/// A connection during setup (blocking, with timeouts).
pub struct Conn {
    pub stream: TcpStream,
    pub decoder: Inbound,
    pub transport: Transport,
    /// Masking keys of WebSocket frames (unused on TCP).
    pub masks: Masks,
}

impl Conn {
    /// Connects to a chat port within `timeout`, with TCP_NODELAY as the C++ client sets it.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        Conn::connect_with(addr, timeout, Transport::Tcp)
    }

    /// Connects over `transport`: to a chat port, or to `/ws` on an HTTP listener (the upgrade done).
    pub fn connect_with(
        addr: SocketAddr,
        timeout: Duration,
        transport: Transport,
    ) -> io::Result<Conn> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let mut decoder = Inbound::new(transport, MAX_REPLY);
        if transport == Transport::Ws {
            let after = ws::handshake(&mut stream, addr, timeout)?;
            decoder.feed(&after);
        }
        let seed = stream
            .local_addr()
            .map_or(1, |a| u64::from(a.port()) << 17 | 1);
        Ok(Conn {
            stream,
            decoder,
            transport,
            masks: Masks::new(seed),
        })
    }

    /// Sends one frame: with its NUL in one write, or as one text message.
    pub fn send(&mut self, frame: &Value) -> io::Result<()> {
        let mut bytes = frame.to_string().into_bytes();
        bytes.push(0);
        let mut out = Vec::new();
        let bytes = wire(self.transport, &mut self.masks, &bytes, &mut out);
        self.stream.write_all(bytes)
    }

    /// The next frame within `timeout`; `UnexpectedEof` when the server closed the connection.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            while let Some(unit) = self.decoder.next_frame() {
                match unit {
                    Decoded::Frame(bytes) => {
                        return serde_json::from_slice(&bytes)
                            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e));
                    }
                    Decoded::Malformed => continue,
                    Decoded::TooLarge => {
                        return Err(io::Error::new(ErrorKind::InvalidData, "reply too large"));
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "no reply in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            let n = self.stream.read(&mut buf)?;
            if n == 0 || self.decoder.closed() {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Sends `frame` and returns the first reply whose msgid is `want` or ERROR_MSG; other frames (a chat
    /// that happens to arrive meanwhile) are skipped.
    pub fn request(&mut self, frame: &Value, want: i64, timeout: Duration) -> io::Result<Value> {
        self.send(frame)?;
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            let msgid = reply["msgid"].as_i64();
            if msgid == Some(want) || msgid == Some(ERROR_MSG) {
                return Ok(reply);
            }
        }
    }
}

/// The bytes that carry `frame` (one JSON frame and its NUL) over `transport`: the frame itself on TCP,
/// or a masked text message without the NUL, built in `out`.
pub fn wire<'a>(
    transport: Transport,
    masks: &mut Masks,
    frame: &'a [u8],
    out: &'a mut Vec<u8>,
) -> &'a [u8] {
    match transport {
        Transport::Tcp => frame,
        Transport::Ws => {
            out.clear();
            let json = frame.strip_suffix(&[0]).unwrap_or(frame);
            ws::encode_text(json, masks.next_mask(), out);
            out
        }
    }
}

/// Why a frame could not be written during load.
#[derive(Debug)]
pub enum WriteError {
    /// The socket stayed full past the stall limit: the server stopped reading this connection.
    Stalled,
    /// The connection failed (reset, closed, or another socket error).
    Failed,
}

/// Writes `bytes` (one frame and its NUL) on a nonblocking socket: one `write()` call unless the socket
/// buffer is full, then the rest as room appears, for at most `stall_limit`. Returns whether the write had
/// to be split (the server was not keeping up with this connection).
pub fn write_frame(
    stream: &mut TcpStream,
    bytes: &[u8],
    stall_limit: Duration,
) -> Result<bool, WriteError> {
    let mut done = 0;
    let mut split = false;
    let mut deadline = None;
    while done < bytes.len() {
        match stream.write(&bytes[done..]) {
            Ok(0) => return Err(WriteError::Failed),
            Ok(n) => {
                done += n;
                if done < bytes.len() {
                    split = true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                split = true;
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + stall_limit);
                if Instant::now() > deadline {
                    return Err(WriteError::Stalled);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(WriteError::Failed),
        }
    }
    Ok(split)
}
