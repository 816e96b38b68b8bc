//! A blocking client connection speaking the wire protocol: what the `chat` client, the bench tool and the
//! integration tests use to talk to a server.
//!
//! Reads are robust to any separator (NUL, newline or none) because they go through the same
//! [`FrameDecoder`] as the server's. A [`Client`] can be split into its writing and reading halves, for a
//! program that reads on one thread and writes on another.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::protocol::frame::{Decoded, FrameDecoder, Separator};

/// Largest frame a client accepts from a server (a login ack with many groups can be large).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// The writing half: sends frames, each with its separator, in one write.
pub struct FrameWriter {
    stream: TcpStream,
    separator: Separator,
}

impl FrameWriter {
    /// Sends one JSON value as a frame.
    pub fn send(&mut self, frame: &Value) -> io::Result<()> {
        self.send_raw(frame.to_string().as_bytes())
    }

    /// Sends raw bytes followed by the separator.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.extend_from_slice(bytes);
        out.push(self.separator.byte());
        self.stream.write_all(&out)
    }
}

/// The reading half: yields the server's frames as JSON values.
pub struct FrameReader {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Waits for the next frame, at most `timeout` (`None`: forever). `Ok(None)` when the server closed
    /// the connection; a `TimedOut` or `WouldBlock` error when the time ran out.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<Value>> {
        self.stream.set_read_timeout(timeout)?;
        loop {
            while let Some(unit) = self.decoder.next_frame() {
                if let Decoded::Frame(bytes) = unit {
                    return serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// The separator the server used, once it has sent a frame followed by one.
    pub fn separator(&self) -> Option<Separator> {
        self.decoder.separator()
    }
}

/// A connection to a clusterchat server.
pub struct Client {
    pub writer: FrameWriter,
    pub reader: FrameReader,
}

impl Client {
    /// Connects with TCP_NODELAY, writing `separator` after each frame.
    pub fn connect(addr: impl ToSocketAddrs, separator: Separator) -> io::Result<Client> {
        Client::over(TcpStream::connect(addr)?, separator)
    }

    /// Like [`Client::connect`], giving up on connecting after `timeout` (an unreachable host can
    /// otherwise hold a connect for minutes).
    pub fn connect_timeout(
        addr: &SocketAddr,
        separator: Separator,
        timeout: Duration,
    ) -> io::Result<Client> {
        Client::over(TcpStream::connect_timeout(addr, timeout)?, separator)
    }

    /// A client on a stream connected already (from a chosen local address, say).
    pub fn over(stream: TcpStream, separator: Separator) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        let reader = FrameReader {
            stream: stream.try_clone()?,
            decoder: FrameDecoder::new(MAX_REPLY),
            buf: vec![0; 64 * 1024],
        };
        Ok(Client {
            writer: FrameWriter { stream, separator },
            reader,
        })
    }

    /// The socket (for shutdown or timeouts).
    pub fn stream(&self) -> &TcpStream {
        &self.writer.stream
    }

    /// Sends one JSON value as a frame.
    pub fn send(&mut self, frame: &Value) -> io::Result<()> {
        self.writer.send(frame)
    }

    /// Sends raw bytes followed by the separator.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.send_raw(bytes)
    }

    /// Waits for the next frame; see [`FrameReader::recv`].
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<Value>> {
        self.reader.recv(timeout)
    }
}
