//! The bytes a connection has read that its decoder has not consumed yet, shared by both transports'
//! decoders.

/// A read buffer consumed from the front.
#[derive(Debug, Default)]
pub struct Unread {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
}

impl Unread {
    /// Appends bytes read from the socket. What was consumed is dropped first when that is all of it, or
    /// most of a buffer past 4 KiB, so that a long stream of small frames neither grows the buffer nor
    /// moves the unconsumed bytes on every read.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Consumes the first `n` unconsumed bytes.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Consumes everything.
    pub fn consume_all(&mut self) {
        self.start = self.buf.len();
    }

    /// Bytes held, consumed or not (for tests of the compaction).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_bytes_are_dropped_when_they_are_most_of_the_buffer() {
        let mut unread = Unread::default();
        unread.feed(b"abc");
        unread.consume(2);
        assert_eq!(unread.bytes(), b"c");
        unread.feed(b"d");
        assert_eq!(unread.bytes(), b"cd");
        unread.consume_all();
        unread.feed(b"e");
        assert_eq!((unread.bytes(), unread.held()), (&b"e"[..], 1));
        unread.feed(&[b'x'; 10_000]);
        unread.consume(9_000);
        unread.feed(b"y");
        assert_eq!(unread.held(), 1_002, "compacted");
    }
}
