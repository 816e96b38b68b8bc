//! The text of each bench message: `"<step>:<seq>:<send_ns>:"` followed by padding. The receiver reads back
//! which load step and message it is and when it was due, so it can compute end-to-end latency and count
//! each delivery against its message without any other channel between sender and receiver.

use std::fmt::Write as _;

/// Shortest text: room for the largest step, sequence number and timestamp.
pub const MIN_BYTES: usize = 56;

/// What a message carries about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The load step (one per rate of a sweep), so late deliveries of an earlier step are not counted.
    pub step: u32,
    /// The message's number within its step, from 0.
    pub seq: u64,
    /// When the message was due, in nanoseconds since the bench's clock started. The due time, not the
    /// time the write happened: if the tool falls behind schedule, that delay counts as latency too, as
    /// it would for a real user (no coordinated omission).
    pub due_ns: u64,
}

/// Appends the text for `stamp` to `out`, padded with `x` to `len` bytes (or longer if `len` is too short).
pub fn encode(stamp: Stamp, len: usize, out: &mut String) {
    let start = out.len();
    // Writing to a String cannot fail.
    let _ = write!(out, "{}:{}:{}:", stamp.step, stamp.seq, stamp.due_ns);
    let written = out.len() - start;
    out.extend(std::iter::repeat_n('x', len.saturating_sub(written)));
}

/// Reads the stamp back; `None` for text that is not a bench message.
pub fn decode(text: &str) -> Option<Stamp> {
    let mut parts = text.splitn(4, ':');
    let step = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let due_ns = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(Stamp { step, seq, due_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let stamp = Stamp {
            step: 3,
            seq: 123_456,
            due_ns: 9_876_543_210,
        };
        let mut text = String::new();
        encode(stamp, 64, &mut text);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("3:123456:9876543210:xxx"));
        assert_eq!(decode(&text), Some(stamp));
    }

    #[test]
    fn largest_stamp_fits_the_minimum() {
        let stamp = Stamp {
            step: u32::MAX,
            seq: u64::MAX,
            due_ns: u64::MAX,
        };
        let mut text = String::new();
        encode(stamp, MIN_BYTES, &mut text);
        assert!(text.len() <= MIN_BYTES);
        assert_eq!(decode(&text), Some(stamp));
    }

    #[test]
    fn short_length_is_never_truncated() {
        let mut text = String::new();
        encode(
            Stamp {
                step: 1,
                seq: 2,
                due_ns: 3,
            },
            0,
            &mut text,
        );
        assert_eq!(text, "1:2:3:");
        assert!(decode(&text).is_some());
    }

    #[test]
    fn foreign_text_is_not_a_stamp() {
        for text in ["", "hello", "1:2:3", "a:2:3:x", "1:-2:3:x", "1:2:3.5:x"] {
            assert_eq!(decode(text), None, "{text:?}");
        }
    }
}
