//! A chunk: the messages of one commit (at most [`CHUNK_MAX`]) as one row of `chunk`, in the order they
//! were appended. Its `head` holds what the log's index needs of each message ([`Head`], 28 bytes:
//! conversation, position, sender, commit time), read for the whole log at start; its `body` the rest
//! (cid, time, text), read only to show messages. A deleted message (its group dissolved) stays as a
//! tombstone, conversation 0 and an empty body entry, so that the others keep their place in the row.

use crate::model::{Pos, UserId};
use crate::store::{Result, StoreError};

/// The most messages one row holds: a message is read by reading its whole row, so rows stay small
/// enough for a page of history that finds each message in another row.
pub(super) const CHUNK_MAX: usize = 256;

/// The length prefix of an absent cid.
const NONE: u32 = u32::MAX;

/// What the index needs of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// The conversation's key; 0 for a tombstone.
    pub conv: i64,
    pub pos: Pos,
    pub sender: UserId,
    pub ts: i64,
}

/// The rest of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Body {
    pub cid: Option<String>,
    pub time: String,
    pub text: String,
}

/// The rest of a message as [`encode`] takes it, borrowed from whatever holds it (an append's
/// [`crate::store::NewMessage`], or a [`Body`] read back), so an append copies its texts once, into the row.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyRef<'a> {
    pub cid: Option<&'a str>,
    pub time: &'a str,
    pub text: &'a str,
}

impl Body {
    pub fn as_ref(&self) -> BodyRef<'_> {
        BodyRef {
            cid: self.cid.as_deref(),
            time: &self.time,
            text: &self.text,
        }
    }
}

const HEAD_BYTES: usize = 28;

/// The `head` and `body` columns of a chunk of these messages.
pub(super) fn encode<'a>(
    messages: impl Iterator<Item = (Head, BodyRef<'a>)>,
) -> (Vec<u8>, Vec<u8>) {
    let (mut head, mut body) = (Vec::new(), Vec::new());
    for (h, b) in messages {
        head.extend_from_slice(&h.conv.to_le_bytes());
        head.extend_from_slice(&h.pos.to_le_bytes());
        head.extend_from_slice(&h.sender.to_le_bytes());
        head.extend_from_slice(&h.ts.to_le_bytes());
        match b.cid {
            Some(cid) => put(&mut body, cid),
            None => body.extend_from_slice(&NONE.to_le_bytes()),
        }
        put(&mut body, b.time);
        put(&mut body, b.text);
    }
    (head, body)
}

fn put(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn corrupt() -> StoreError {
    StoreError::Unavailable("a chunk of the log cannot be read".into())
}

/// The heads of a chunk, in order.
pub(super) fn heads(head: &[u8]) -> Result<Vec<Head>> {
    if !head.len().is_multiple_of(HEAD_BYTES) || head.len() / HEAD_BYTES > CHUNK_MAX {
        return Err(corrupt());
    }
    Ok(head
        .chunks_exact(HEAD_BYTES)
        .map(|h| Head {
            conv: i64::from_le_bytes(h[0..8].try_into().expect("8 bytes")),
            pos: i64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
            sender: i32::from_le_bytes(h[16..20].try_into().expect("4 bytes")),
            ts: i64::from_le_bytes(h[20..28].try_into().expect("8 bytes")),
        })
        .collect())
}

/// The bodies of a chunk whose heads are `heads`, in order: one each, or the chunk is damaged.
pub(super) fn bodies(heads: &[Head], body: &[u8]) -> Result<Vec<Body>> {
    let mut reader = Reader { rest: body };
    let mut out = Vec::with_capacity(heads.len());
    while !reader.rest.is_empty() {
        out.push(reader.body()?);
    }
    if out.len() != heads.len() {
        return Err(corrupt());
    }
    Ok(out)
}

/// The bodies at the places `wanted` (ascending, each once) of a chunk, in that order; the others are
/// stepped over unread (a page of history wants a message or two of each chunk it reads).
pub(super) fn bodies_at(body: &[u8], wanted: &[usize]) -> Result<Vec<Body>> {
    let mut reader = Reader { rest: body };
    let mut out = Vec::with_capacity(wanted.len());
    let mut n = 0;
    for &want in wanted {
        while n < want {
            reader.skip_body()?;
            n += 1;
        }
        out.push(reader.body()?);
        n += 1;
    }
    Ok(out)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn body(&mut self) -> Result<Body> {
        let cid = self.text()?;
        let time = self.text()?.ok_or_else(corrupt)?;
        let text = self.text()?.ok_or_else(corrupt)?;
        Ok(Body { cid, time, text })
    }

    fn skip_body(&mut self) -> Result<()> {
        for _ in 0..3 {
            let len = self.len()?;
            if len != NONE {
                let rest = self.rest.get(len as usize..).ok_or_else(corrupt)?;
                self.rest = rest;
            }
        }
        Ok(())
    }

    fn len(&mut self) -> Result<u32> {
        let (len, rest) = self.rest.split_at_checked(4).ok_or_else(corrupt)?;
        self.rest = rest;
        Ok(u32::from_le_bytes(len.try_into().expect("4 bytes")))
    }

    /// The next length-prefixed text; `None` for an absent one.
    fn text(&mut self) -> Result<Option<String>> {
        let len = self.len()?;
        if len == NONE {
            return Ok(None);
        }
        let (text, rest) = self
            .rest
            .split_at_checked(len as usize)
            .ok_or_else(corrupt)?;
        self.rest = rest;
        String::from_utf8(text.to_vec())
            .map(Some)
            .map_err(|_| corrupt())
    }
}

/// Where a message is: its chunk's seq and its place in the chunk, in one word (the index keeps one a
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Loc(u64);

impl Loc {
    pub fn new(seq: i64, n: usize) -> Loc {
        debug_assert!(n < CHUNK_MAX);
        Loc(((seq as u64) << 16) | n as u64)
    }

    pub fn seq(self) -> i64 {
        (self.0 >> 16) as i64
    }

    pub fn n(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_back_as_written() {
        let messages = [
            (
                Head {
                    conv: 2_147_483_650,
                    pos: 7,
                    sender: 1,
                    ts: 1_700_000_000_000,
                },
                Body {
                    cid: Some("c1".into()),
                    time: "t".into(),
                    text: "héllo".into(),
                },
            ),
            (
                Head {
                    conv: -3,
                    pos: 1,
                    sender: 2,
                    ts: 5,
                },
                Body::default(),
            ),
        ];
        let (head, body) = encode(messages.iter().map(|(h, b)| (*h, b.as_ref())));
        assert_eq!(head.len(), 2 * HEAD_BYTES);
        let hs = heads(&head).unwrap();
        let back: Vec<(Head, Body)> = hs
            .iter()
            .copied()
            .zip(bodies(&hs, &body).unwrap())
            .collect();
        assert_eq!(back, messages);
        assert_eq!(bodies_at(&body, &[1]).unwrap(), vec![Body::default()]);
        assert_eq!(
            bodies_at(&body, &[0, 1]).unwrap(),
            vec![messages[0].1.clone(), Body::default()]
        );
        assert!(bodies_at(&body, &[2]).is_err());
        assert!(bodies(&hs, &body[..body.len() - 1]).is_err());
        assert!(bodies(&hs[..1], &body).is_err(), "a body for every head");
        assert!(heads(&head[1..]).is_err());
        let loc = Loc::new(123_456_789, 255);
        assert_eq!((loc.seq(), loc.n()), (123_456_789, 255));
    }
}
