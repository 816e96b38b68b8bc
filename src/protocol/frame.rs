//! The frame codec: splits a client's byte stream into JSON-object frames.
//!
//! A frame is one JSON object that ends at its top-level closing brace. Between frames, NUL bytes (what the
//! original C++ client sends after each frame) and whitespace are skipped. The decoder never parses JSON: it
//! only tracks string and brace nesting to find where an object ends, so that a frame split across reads
//! and several frames in one read both work, and so that garbage can be skipped up to the next NUL or newline
//! without losing the frames after it.

use super::unread::Unread;

/// The byte written after every server frame; sticky per connection, chosen by the client's first separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// `\0`, as the C++ client (`strlen + 1`) expects.
    Nul,
    /// `\n`, the default until the client has used a separator, and what `nc` users send.
    Newline,
}

impl Separator {
    /// The byte itself.
    pub fn byte(self) -> u8 {
        match self {
            Separator::Nul => 0,
            Separator::Newline => b'\n',
        }
    }
}

/// One unit the decoder yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The bytes of one complete object, from `{` to the matching `}`.
    Frame(Vec<u8>),
    /// Bytes that cannot start or continue a frame; the decoder has resynchronised after them.
    Malformed,
    /// The frame in progress grew past the limit; the connection must be closed.
    TooLarge,
}

/// Where the scan of the frame in progress stands, so a split frame is not rescanned from its start.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Bytes of the current frame already scanned.
    len: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

/// Incremental decoder over a byte stream; feed it what `read` returned, then drain it with `next`.
#[derive(Debug)]
pub struct FrameDecoder {
    input: Unread,
    scan: Scan,
    /// Discarding bytes up to the next NUL or newline after reporting `Malformed`.
    skipping: bool,
    max_frame: usize,
    separator: Option<Separator>,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_frame` bytes (separator not counted).
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            input: Unread::default(),
            scan: Scan::default(),
            skipping: false,
            max_frame,
            separator: None,
        }
    }

    /// The first separator the client used, if any yet.
    pub fn separator(&self) -> Option<Separator> {
        self.separator
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// The next complete unit, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Decoded> {
        if self.skipping && !self.skip_garbage() {
            return None;
        }
        self.skip_separators();
        let first = *self.input.bytes().first()?;
        if first != b'{' {
            self.skipping = true;
            self.skip_garbage();
            return Some(Decoded::Malformed);
        }
        self.scan_frame()
    }

    /// Scans the object starting at `start`, resuming where the last call stopped.
    fn scan_frame(&mut self) -> Option<Decoded> {
        let frame = self.input.bytes();
        let mut scan = self.scan;
        while scan.len < frame.len() {
            let byte = frame[scan.len];
            scan.len += 1;
            if scan.len > self.max_frame {
                self.scan = Scan::default();
                self.input.consume_all();
                return Some(Decoded::TooLarge);
            }
            match (scan.in_string, scan.escaped, byte) {
                // Raw NUL never occurs in JSON, and a raw newline never inside a string: both mean the
                // frame is broken, so resynchronise right after that byte.
                (_, _, 0) | (true, _, b'\n') => {
                    self.note_separator(byte);
                    self.input.consume(scan.len);
                    self.scan = Scan::default();
                    return Some(Decoded::Malformed);
                }
                (true, true, _) => scan.escaped = false,
                (true, false, b'\\') => scan.escaped = true,
                (true, false, b'"') => scan.in_string = false,
                (true, false, _) => {}
                (false, _, b'"') => scan.in_string = true,
                (false, _, b'{' | b'[') => scan.depth += 1,
                (false, _, b'}' | b']') => {
                    scan.depth = scan.depth.saturating_sub(1);
                    if scan.depth == 0 && byte == b'}' {
                        let bytes = frame[..scan.len].to_vec();
                        self.input.consume(scan.len);
                        self.scan = Scan::default();
                        self.skip_separators();
                        return Some(Decoded::Frame(bytes));
                    }
                }
                (false, _, _) => {}
            }
        }
        self.scan = scan;
        None
    }

    /// Consumes NULs and whitespace, noting the first NUL or newline as the connection's separator.
    fn skip_separators(&mut self) {
        while let Some(&byte) = self.input.bytes().first() {
            if byte != 0 && !byte.is_ascii_whitespace() {
                break;
            }
            self.note_separator(byte);
            self.input.consume(1);
        }
    }

    /// Discards bytes through the next NUL or newline; `true` once past it.
    fn skip_garbage(&mut self) -> bool {
        let rest = self.input.bytes();
        match rest.iter().position(|&b| b == 0 || b == b'\n') {
            Some(at) => {
                self.note_separator(rest[at]);
                self.input.consume(at + 1);
                self.skipping = false;
                true
            }
            None => {
                self.input.consume_all();
                false
            }
        }
    }

    fn note_separator(&mut self, byte: u8) {
        if self.separator.is_none() {
            self.separator = match byte {
                0 => Some(Separator::Nul),
                b'\n' => Some(Separator::Newline),
                _ => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut FrameDecoder) -> Vec<Decoded> {
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    fn frame(s: &str) -> Decoded {
        Decoded::Frame(s.as_bytes().to_vec())
    }

    #[test]
    fn nul_separated_frames_and_separator() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"msgid\":1}\0{\"msgid\":3}\0");
        assert_eq!(
            decode_all(&mut d),
            vec![frame("{\"msgid\":1}"), frame("{\"msgid\":3}")]
        );
        assert_eq!(d.separator(), Some(Separator::Nul));
    }

    #[test]
    fn newline_and_unseparated_frames() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"a\":1}{\"b\":2}\r\n{\"c\":3}\n");
        assert_eq!(
            decode_all(&mut d),
            vec![frame("{\"a\":1}"), frame("{\"b\":2}"), frame("{\"c\":3}")]
        );
        assert_eq!(d.separator(), Some(Separator::Newline));
    }

    #[test]
    fn separator_is_unknown_until_used() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"a\":1}");
        assert_eq!(decode_all(&mut d), vec![frame("{\"a\":1}")]);
        assert_eq!(d.separator(), None);
        d.feed(b"\0");
        assert_eq!(decode_all(&mut d), vec![]);
        assert_eq!(d.separator(), Some(Separator::Nul));
    }

    #[test]
    fn split_frame_byte_by_byte() {
        let input = b"{\"msg\":\"a } { \\\" b\",\"n\":{\"x\":[1,{}]}}\0";
        let mut d = FrameDecoder::new(1024);
        let mut out = Vec::new();
        for b in input {
            d.feed(&[*b]);
            out.extend(decode_all(&mut d));
        }
        assert_eq!(
            out,
            vec![frame("{\"msg\":\"a } { \\\" b\",\"n\":{\"x\":[1,{}]}}")]
        );
    }

    #[test]
    fn newlines_inside_a_frame_between_tokens() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\n\"a\":\n1\n}\n");
        assert_eq!(decode_all(&mut d), vec![frame("{\n\"a\":\n1\n}")]);
    }

    #[test]
    fn garbage_is_skipped_to_the_next_separator() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"hello world\n{\"a\":1}\0[1,2]\0{\"b\":2}");
        assert_eq!(
            decode_all(&mut d),
            vec![
                Decoded::Malformed,
                frame("{\"a\":1}"),
                Decoded::Malformed,
                frame("{\"b\":2}")
            ]
        );
    }

    #[test]
    fn garbage_without_separator_waits_then_resyncs() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"xyz");
        assert_eq!(decode_all(&mut d), vec![Decoded::Malformed]);
        d.feed(b"more garbage");
        assert_eq!(decode_all(&mut d), vec![]);
        d.feed(b"\n{\"a\":1}");
        assert_eq!(decode_all(&mut d), vec![frame("{\"a\":1}")]);
    }

    #[test]
    fn trailing_bytes_after_a_frame_are_malformed() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"a\":1}oops\0{\"b\":2}\0");
        assert_eq!(
            decode_all(&mut d),
            vec![frame("{\"a\":1}"), Decoded::Malformed, frame("{\"b\":2}")]
        );
    }

    #[test]
    fn nul_inside_a_frame_resyncs() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"a\":\0{\"b\":2}\0");
        assert_eq!(
            decode_all(&mut d),
            vec![Decoded::Malformed, frame("{\"b\":2}")]
        );
    }

    #[test]
    fn raw_newline_inside_a_string_resyncs() {
        let mut d = FrameDecoder::new(1024);
        d.feed(b"{\"a\":\"unterminated\n{\"b\":2}\n");
        assert_eq!(
            decode_all(&mut d),
            vec![Decoded::Malformed, frame("{\"b\":2}")]
        );
    }

    #[test]
    fn oversize_frame_is_refused_but_exact_limit_passes() {
        let exact = format!("{{\"m\":\"{}\"}}", "x".repeat(10));
        let mut d = FrameDecoder::new(exact.len());
        d.feed(exact.as_bytes());
        d.feed(b"\0");
        assert_eq!(decode_all(&mut d), vec![frame(&exact)]);

        let mut d = FrameDecoder::new(exact.len() - 1);
        d.feed(exact.as_bytes());
        assert_eq!(decode_all(&mut d), vec![Decoded::TooLarge]);
    }

    #[test]
    fn oversize_is_detected_before_the_frame_ends() {
        let mut d = FrameDecoder::new(16);
        d.feed(b"{\"m\":\"");
        assert_eq!(decode_all(&mut d), vec![]);
        d.feed(&[b'x'; 20]);
        assert_eq!(decode_all(&mut d), vec![Decoded::TooLarge]);
    }

    #[test]
    fn invalid_utf8_is_passed_through_for_the_parser_to_refuse() {
        let mut d = FrameDecoder::new(64);
        d.feed(b"{\"a\":\"\xff\xfe\"}\0");
        assert_eq!(
            decode_all(&mut d),
            vec![Decoded::Frame(b"{\"a\":\"\xff\xfe\"}".to_vec())]
        );
    }

    #[test]
    fn long_streams_compact_their_buffer() {
        let mut d = FrameDecoder::new(1024);
        for i in 0..10_000 {
            d.feed(format!("{{\"i\":{i}}}\0").as_bytes());
            assert_eq!(decode_all(&mut d).len(), 1);
        }
        assert!(d.input.held() < 16 * 1024);
    }
}
