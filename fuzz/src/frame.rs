//! The `frame_decoder` target: arbitrary bytes, fed whole and in pieces, into [`FrameDecoder`].
//!
//! Input layout: byte 0 picks the frame limit ([`LIMITS`]); byte 1, modulo 8, is how many of the
//! following bytes give the lengths of the pieces (cycled; 0 of them means one byte at a time); the rest is
//! the stream. So `"\x07\x00" + stream` is the stream with the default 64 KiB limit, fed byte by byte.
//!
//! Checked, beyond "never panics":
//! - every `Frame` starts with `{`, ends with `}`, holds no NUL byte and is at most the limit long;
//! - the decoder makes progress: it never yields more units than it was given bytes;
//! - the same stream yields the same units whether fed whole or in pieces (drained after every piece,
//!   as the session does, or only at the end), up to and including the first `TooLarge`, after which
//!   the session closes the connection; and when no `TooLarge` came, the same separator;
//! - when the stream is a well-formed sequence of JSON objects separated by whitespace and NULs (serde_json
//!   is the oracle), the frames are exactly those objects' bytes, with no `Malformed` and, when every
//!   object fits the limit, no `TooLarge`; and the separator is the first NUL or newline between them.
//!
//! The same stream is also what a TCP connection's first bytes may be, so it goes through
//! [`proxy::preamble`], the PROXY header reader in front of the codec: a header it finds lies within the
//! bytes, and its answer on a prefix, once decided (a header or none), is its answer on the whole stream,
//! since the connection's reader acts on the first decided answer as the bytes trickle in.

use clusterchat::protocol::frame::{Decoded, FrameDecoder, Separator};
use clusterchat::protocol::proxy::{self, Preamble};

/// Frame limits to pick from: tiny ones reach `TooLarge` with small inputs; the last is the default.
pub const LIMITS: [usize; 8] = [1, 2, 3, 8, 16, 64, 1024, 65536];

/// One fuzz input, split into its parts.
pub struct Input<'a> {
    pub max_frame: usize,
    pub pieces: Vec<usize>,
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads the header described in the module doc.
    pub fn parse(data: &'a [u8]) -> Input<'a> {
        let max_frame = LIMITS[usize::from(data.first().copied().unwrap_or(7)) % LIMITS.len()];
        let rest = data.get(1..).unwrap_or_default();
        let n = usize::from(rest.first().copied().unwrap_or(0) % 8);
        let rest = rest.get(1..).unwrap_or_default();
        let n = n.min(rest.len());
        let pieces: Vec<usize> = rest[..n].iter().map(|&b| usize::from(b)).collect();
        Input {
            max_frame,
            pieces,
            stream: &rest[n..],
        }
    }

    /// The stream cut into pieces (empty pieces included: feeding nothing must change nothing).
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut lengths = self.pieces.iter().copied().cycle();
        let all_empty = self.pieces.iter().all(|&l| l == 0);
        while at < self.stream.len() {
            let len = if self.pieces.is_empty() || all_empty {
                1
            } else {
                lengths.next().expect("cycled")
            };
            let end = (at + len).min(self.stream.len());
            out.push(&self.stream[at..end]);
            at = end;
            if len == 0 {
                out.push(&[]);
            }
        }
        out
    }
}

/// What one way of feeding the stream produced.
#[derive(Debug, PartialEq)]
struct Run {
    units: Vec<Decoded>,
    separator: Option<Separator>,
}

fn drain(decoder: &mut FrameDecoder, units: &mut Vec<Decoded>, fed: usize) {
    while let Some(unit) = decoder.next_frame() {
        units.push(unit);
        assert!(
            units.len() <= fed,
            "{} units from {fed} bytes: the decoder does not make progress",
            units.len()
        );
    }
}

fn whole(input: &Input) -> Run {
    let mut d = FrameDecoder::new(input.max_frame);
    let mut units = Vec::new();
    d.feed(input.stream);
    drain(&mut d, &mut units, input.stream.len());
    Run {
        units,
        separator: d.separator(),
    }
}

fn pieces(input: &Input, drain_each: bool) -> Run {
    let mut d = FrameDecoder::new(input.max_frame);
    let mut units = Vec::new();
    let mut fed = 0;
    for chunk in input.chunks() {
        d.feed(chunk);
        fed += chunk.len();
        if drain_each {
            drain(&mut d, &mut units, fed);
        }
    }
    drain(&mut d, &mut units, fed);
    Run {
        units,
        separator: d.separator(),
    }
}

/// The units a session acts on: everything up to and including the first `TooLarge`.
fn until_too_large(run: &Run) -> (&[Decoded], bool) {
    match run.units.iter().position(|u| *u == Decoded::TooLarge) {
        Some(at) => (&run.units[..=at], true),
        None => (&run.units[..], false),
    }
}

fn check_units(run: &Run, max_frame: usize) {
    for unit in &run.units {
        if let Decoded::Frame(bytes) = unit {
            assert_eq!(bytes.first(), Some(&b'{'), "frame {bytes:?}");
            assert_eq!(bytes.last(), Some(&b'}'), "frame {bytes:?}");
            assert!(
                bytes.len() <= max_frame,
                "frame over {max_frame}: {bytes:?}"
            );
            assert!(!bytes.contains(&0), "NUL inside frame {bytes:?}");
        }
    }
}

/// The frames and separator a well-formed stream must give, or `None` when the stream is not one.
fn oracle(stream: &[u8]) -> Option<(Vec<&[u8]>, Option<Separator>)> {
    let mut frames = Vec::new();
    let mut separator = None;
    let mut at = 0;
    let note = |b: u8, separator: &mut Option<Separator>| {
        if separator.is_none() {
            *separator = match b {
                0 => Some(Separator::Nul),
                b'\n' => Some(Separator::Newline),
                _ => None,
            };
        }
    };
    loop {
        // What serde_json and the decoder both skip between objects, and NUL, which only the decoder does.
        while let Some(&b) = stream.get(at) {
            if !matches!(b, 0 | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            note(b, &mut separator);
            at += 1;
        }
        if at == stream.len() {
            return Some((frames, separator));
        }
        if stream[at] != b'{' {
            return None;
        }
        let mut objects =
            serde_json::Deserializer::from_slice(&stream[at..]).into_iter::<serde_json::Value>();
        match objects.next() {
            Some(Ok(serde_json::Value::Object(_))) => {}
            _ => return None,
        }
        let end = at + objects.byte_offset();
        frames.push(&stream[at..end]);
        at = end;
    }
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let input = Input::parse(data);
    check_preamble(input.stream);
    let reference = whole(&input);
    check_units(&reference, input.max_frame);
    let (expected, closed) = until_too_large(&reference);
    for drain_each in [true, false] {
        let run = pieces(&input, drain_each);
        check_units(&run, input.max_frame);
        let (got, got_closed) = until_too_large(&run);
        assert_eq!(
            got, expected,
            "split feeding (drain after each piece: {drain_each}, pieces {:?}) differs",
            input.pieces
        );
        if !closed {
            assert!(!got_closed);
            assert_eq!(run.separator, reference.separator, "separator differs");
        }
    }
    if let Some((frames, separator)) = oracle(input.stream) {
        let fits = frames.iter().all(|f| f.len() <= input.max_frame);
        if fits {
            let want: Vec<Decoded> = frames.iter().map(|f| Decoded::Frame(f.to_vec())).collect();
            assert_eq!(reference.units, want, "well-formed stream decoded wrongly");
            assert_eq!(
                reference.separator, separator,
                "separator of a well-formed stream"
            );
        } else {
            // Frames up to the first one too long, then TooLarge.
            let first_big = frames
                .iter()
                .position(|f| f.len() > input.max_frame)
                .expect("one is too long");
            let mut want: Vec<Decoded> = frames[..first_big]
                .iter()
                .map(|f| Decoded::Frame(f.to_vec()))
                .collect();
            want.push(Decoded::TooLarge);
            assert_eq!(expected, &want[..], "well-formed stream with a long frame");
        }
    }
}

/// The PROXY header reader on `stream` and on each of its prefixes, as described in the module doc.
fn check_preamble(stream: &[u8]) {
    let whole = proxy::preamble(stream);
    if let Preamble::Header { len, .. } = whole {
        assert!(
            (1..=stream.len()).contains(&len),
            "a header of {len} bytes in {}",
            stream.len()
        );
    }
    for end in 0..=stream.len().min(proxy::MAX_PREAMBLE) {
        let early = proxy::preamble(&stream[..end]);
        assert!(
            early == Preamble::Undecided || early == whole,
            "{end} bytes say {early:?}, the whole stream {whole:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let i = Input::parse(b"\x07\x02\x03\x01{\"a\":1}");
        assert_eq!(i.max_frame, 65536);
        assert_eq!(i.pieces, [3, 1]);
        assert_eq!(i.stream, b"{\"a\":1}");
        assert_eq!(i.chunks(), [&b"{\"a"[..], b"\"", b":1}"]);
        run(b"\x07\x02\x03\x01{\"a\":1}\0{\"b\":[1,{}]}\n");
        run(b"\x00\x00{}");
        run(b"");
    }

    /// The one place where pieces and whole differ: after `TooLarge`, which closes the connection. Fed
    /// whole, the decoder drops everything it was given; fed in pieces, it decodes what comes after.
    #[test]
    fn after_too_large_pieces_and_whole_differ() {
        let input = Input::parse(b"\x03\x00{\"a\":\"xxxxxxxx\"}\n{\"b\":1}\n");
        assert_eq!(input.max_frame, 8);
        let whole = whole(&input);
        let pieces = pieces(&input, true);
        assert_eq!(whole.units, [Decoded::TooLarge]);
        assert_eq!(pieces.units[0], Decoded::TooLarge);
        assert_ne!(whole.units, pieces.units);
        assert_eq!(until_too_large(&whole), until_too_large(&pieces));
    }

    #[test]
    fn oracle_reads_well_formed_streams() {
        let (frames, sep) = oracle(b" {\"a\":1}\0{\"b\":\"}\"}\n").unwrap();
        assert_eq!(frames, [&b"{\"a\":1}"[..], b"{\"b\":\"}\"}"]);
        assert_eq!(sep, Some(Separator::Nul));
        assert!(oracle(b"{\"a\":1,}").is_none());
        assert!(oracle(b"[1]").is_none());
    }
}
