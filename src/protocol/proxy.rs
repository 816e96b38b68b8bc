//! The client's address when a proxy stands between it and the node: the PROXY protocol's header ahead
//! of a TCP stream (version 1, the text line nginx's `proxy_protocol on;` sends, or version 2, the binary
//! form HAProxy's `send-proxy-v2` and cloud load balancers send) and the `X-Forwarded-For` header (what
//! nginx's HTTP proxy sets on the WebSocket's upgrade request). Behind a proxy every client otherwise
//! comes from the proxy's address, and the failed-login throttle's per-address count would hold them all
//! together. Either is believed only from a proxy the node trusts ([`TrustedProxies`]): anyone else could
//! name any address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The longest PROXY version 1 line, CRLF included (the specification's bound).
const MAX_LINE: usize = 107;
const SIGNATURE: &[u8] = b"PROXY ";
/// Version 2's signature: no text protocol begins with it.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2's fixed part: the signature, version and command, family and transport, and the length
/// of what follows.
const V2_FIXED: usize = 16;
/// The most a version 2 header may carry after its fixed part (addresses and TLVs): the specification
/// allows 65,535 bytes, proxies send a few dozen; the bound keeps what a connection buffers before its
/// first frame small.
const V2_MAX_REST: usize = 1024;
/// The most bytes [`preamble`] needs to decide: past this many, a longer prefix never changes its answer.
pub const MAX_PREAMBLE: usize = V2_FIXED + V2_MAX_REST;

/// What the first bytes of a TCP connection say about a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// Too few bytes to tell.
    Undecided,
    /// No PROXY header: the bytes are the client's, to be read as frames.
    Absent,
    /// A PROXY header's signature followed by what is not a valid header: a proxy set up wrong, whose
    /// bytes are no frames either (read as frames, they would even set the client's separator).
    Invalid,
    /// A PROXY header of `len` bytes naming the client's address (`None`: the proxy does not know it,
    /// or the connection is the proxy's own, such as a health check).
    Header { len: usize, source: Option<IpAddr> },
}

/// Reads a PROXY header, either version, at the start of `bytes`. No chat frame begins with either
/// signature, so a client that does not speak the PROXY protocol is never mistaken for one that does.
pub fn preamble(bytes: &[u8]) -> Preamble {
    if begins_like(bytes, V2_SIGNATURE) {
        binary(bytes)
    } else if begins_like(bytes, SIGNATURE) {
        text(bytes)
    } else {
        Preamble::Absent
    }
}

/// Whether `bytes` and `signature` agree as far as both go.
fn begins_like(bytes: &[u8], signature: &[u8]) -> bool {
    let n = bytes.len().min(signature.len());
    bytes[..n] == signature[..n]
}

/// A version 1 line: `PROXY TCP4 SRC DST SPORT DPORT\r\n` and the like.
fn text(bytes: &[u8]) -> Preamble {
    let searched = &bytes[..bytes.len().min(MAX_LINE)];
    let Some(end) = searched.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= MAX_LINE {
            Preamble::Invalid
        } else {
            Preamble::Undecided
        };
    };
    match line(&bytes[SIGNATURE.len().min(end)..end]) {
        Some(source) => Preamble::Header {
            len: end + 2,
            source,
        },
        None => Preamble::Invalid,
    }
}

/// The source address of a line's fields after `PROXY `: `TCP4 SRC DST SPORT DPORT`, the same with
/// `TCP6`, or `UNKNOWN …` (`Some(None)`); `None` when the line is not valid.
fn line(fields: &[u8]) -> Option<Option<IpAddr>> {
    let mut words = std::str::from_utf8(fields).ok()?.split(' ');
    let family = words.next()?;
    if family == "UNKNOWN" {
        return Some(None);
    }
    let v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => return None,
    };
    let source: IpAddr = words.next()?.parse().ok()?;
    let destination: IpAddr = words.next()?.parse().ok()?;
    for _port in 0..2 {
        words.next()?.parse::<u16>().ok()?;
    }
    let families_match = source.is_ipv4() == v4 && destination.is_ipv4() == v4;
    (words.next().is_none() && families_match).then_some(Some(source))
}

/// A version 2 header: the fixed part, then the addresses and any TLVs (skipped).
fn binary(bytes: &[u8]) -> Preamble {
    if bytes.len() < V2_FIXED {
        return Preamble::Undecided;
    }
    let rest = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if bytes[12] >> 4 != 2 || rest > V2_MAX_REST {
        return Preamble::Invalid;
    }
    let len = V2_FIXED + rest;
    let Some(addresses) = bytes.get(V2_FIXED..len) else {
        return Preamble::Undecided;
    };
    let source = match bytes[12] & 0x0f {
        0 => Some(None), // LOCAL: the proxy's own connection; the peer is the proxy.
        1 => binary_source(bytes[13], addresses),
        _ => None,
    };
    match source {
        Some(source) => Preamble::Header { len, source },
        None => Preamble::Invalid,
    }
}

/// The source address of a version 2 PROXY command's address block, by its family and transport byte:
/// TCP over IPv4 (`0x11`) and over IPv6 (`0x21`) carry it first; UNSPEC (`0x00`) and a UNIX stream
/// socket (`0x31`) name no IP address (`Some(None)`). `None` for any other byte (datagrams included:
/// chat runs over streams) or a block too short for its family.
fn binary_source(family: u8, addresses: &[u8]) -> Option<Option<IpAddr>> {
    match family {
        0x00 => Some(None),
        0x11 => {
            let a = addresses.get(..12)?;
            Some(Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()))
        }
        0x21 => {
            let octets: [u8; 16] = addresses.get(..36)?[..16].try_into().ok()?;
            Some(Some(Ipv6Addr::from(octets).into()))
        }
        0x31 => addresses.get(..216).map(|_| None),
        _ => None,
    }
}

/// The address the last proxy saw the request come from: the rightmost entry of `X-Forwarded-For`
/// (nginx's `$proxy_add_x_forwarded_for` appends it to whatever the client sent, which the client
/// could have made up).
pub fn forwarded_for(value: &str) -> Option<IpAddr> {
    value.rsplit(',').next()?.trim().parse().ok()
}

/// One entry of `trusted_proxies`: an address (`10.0.0.7`) or a range of them in CIDR notation
/// (`10.0.0.0/8`, `fd00::/8`), because in a container network or behind a pool of balancers the proxy's
/// address is known only up to its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange(IpNet);

/// A `trusted_proxies` entry that is neither an address nor a range.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a range like 10.0.0.0/8")]
pub struct NotAProxyRange(String);

impl std::str::FromStr for ProxyRange {
    type Err = NotAProxyRange;

    fn from_str(s: &str) -> Result<ProxyRange, NotAProxyRange> {
        let net = match s.parse::<IpAddr>() {
            Ok(address) => IpNet::from(address),
            Err(_) => s
                .parse::<IpNet>()
                .map_err(|_| NotAProxyRange(s.to_owned()))?,
        };
        Ok(ProxyRange(net.trunc()))
    }
}

impl<'de> serde::Deserialize<'de> for ProxyRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ProxyRange, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for ProxyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The proxies whose word on a client's address the node takes (`trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(ranges: Vec<ProxyRange>) -> TrustedProxies {
        TrustedProxies(ranges.into_iter().map(|r| r.0).collect())
    }

    /// Whether a connection from `peer` comes from a trusted proxy. An IPv4 peer and its IPv4-mapped
    /// IPv6 form (how a dual-stack socket names it) are one peer, matched by IPv4 and IPv6 ranges alike.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let forms = match peer.to_canonical() {
            IpAddr::V4(v4) => [IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())],
            v6 => [v6, v6],
        };
        self.0
            .iter()
            .any(|net| forms.iter().any(|form| net.contains(form)))
    }

    /// The client's address on a connection from `peer` on which `named` was said to be it: `named` if
    /// `peer` is trusted, else `peer` itself.
    pub fn client(&self, peer: IpAddr, named: IpAddr) -> IpAddr {
        if self.trusts(peer) { named } else { peer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proxy_lines_name_the_source() {
        let v4 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 6000\r\n{\"msgid\":1}";
        assert_eq!(
            preamble(v4),
            Preamble::Header {
                len: 42,
                source: Some(ip("192.0.2.7"))
            }
        );
        assert_eq!(&v4[42..], b"{\"msgid\":1}");
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 6000\r\n";
        assert_eq!(
            preamble(v6),
            Preamble::Header {
                len: v6.len(),
                source: Some(ip("2001:db8::7"))
            }
        );
        assert_eq!(
            preamble(b"PROXY UNKNOWN\r\n"),
            Preamble::Header {
                len: 15,
                source: None
            }
        );
    }

    #[test]
    fn a_line_arrives_in_pieces_and_frames_are_no_line() {
        let whole = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 6000\r\n";
        for cut in 0..whole.len() {
            assert_eq!(preamble(&whole[..cut]), Preamble::Undecided, "{cut} bytes");
        }
        assert_eq!(preamble(b"{\"msgid\":1}\n"), Preamble::Absent);
        assert_eq!(preamble(b"PRO{"), Preamble::Absent);
        assert_eq!(preamble(b"P"), Preamble::Undecided);
    }

    #[test]
    fn invalid_lines_are_refused() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 51000\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 70000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY \r\n",
        ] {
            assert_eq!(
                preamble(bad),
                Preamble::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(
            preamble(&endless),
            Preamble::Invalid,
            "no CRLF within 107 bytes"
        );
    }

    /// A version 2 header: `command` (0 LOCAL, 1 PROXY), the family and transport byte `family`
    /// (`0x11` TCP over IPv4), `addresses`, and `tlvs` bytes of TLVs after them.
    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: usize) -> Vec<u8> {
        let rest = u16::try_from(addresses.len() + tlvs).unwrap();
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | command, family]);
        h.extend(rest.to_be_bytes());
        h.extend(addresses);
        h.extend(std::iter::repeat_n(0xEE, tlvs));
        h
    }

    fn inet(source: [u8; 4]) -> Vec<u8> {
        [
            &source[..],
            &[10, 0, 0, 1],
            &51000u16.to_be_bytes(),
            &6000u16.to_be_bytes(),
        ]
        .concat()
    }

    #[test]
    fn binary_headers_name_the_source() {
        let named = |h: &[u8]| match preamble(h) {
            Preamble::Header { len, source } if len == h.len() => source,
            other => panic!("{other:?} for {h:?}"),
        };
        assert_eq!(
            named(&v2(1, 0x11, &inet([192, 0, 2, 7]), 0)),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(
            named(&v2(1, 0x11, &inet([192, 0, 2, 7]), 40)),
            Some(ip("192.0.2.7")),
            "TLVs after the addresses are skipped"
        );
        let source6 = ip("2001:db8::7");
        let IpAddr::V6(v6) = source6 else {
            unreachable!()
        };
        let inet6 = [&v6.octets()[..], &[0; 16], &[0; 4]].concat();
        assert_eq!(named(&v2(1, 0x21, &inet6, 0)), Some(source6));
        assert_eq!(
            named(&v2(0, 0, &[], 0)),
            None,
            "LOCAL: the proxy's own check"
        );
        assert_eq!(named(&v2(1, 0x00, &[], 0)), None, "UNSPEC");
        assert_eq!(named(&v2(1, 0x31, &[0; 216], 0)), None, "UNIX");
        let longest = v2(1, 0x11, &inet([192, 0, 2, 7]), V2_MAX_REST - 12);
        assert_eq!(longest.len(), MAX_PREAMBLE);
        assert_eq!(named(&longest), Some(ip("192.0.2.7")), "at the bound");
        let mut then = v2(1, 0x11, &inet([192, 0, 2, 7]), 0);
        then.extend(b"{\"msgid\":1}\0");
        assert_eq!(
            preamble(&then),
            Preamble::Header {
                len: 28,
                source: Some(ip("192.0.2.7"))
            }
        );
    }

    #[test]
    fn a_binary_header_arrives_in_pieces() {
        let whole = v2(1, 0x11, &inet([192, 0, 2, 7]), 8);
        for cut in 0..whole.len() {
            assert_eq!(preamble(&whole[..cut]), Preamble::Undecided, "{cut} bytes");
        }
        assert_eq!(
            preamble(b"\r\n{}"),
            Preamble::Absent,
            "a frame after a blank line"
        );
    }

    #[test]
    fn invalid_binary_headers_are_refused() {
        let good = v2(1, 0x11, &inet([192, 0, 2, 7]), 0);
        let with = |at: usize, byte: u8| {
            let mut h = good.clone();
            h[at] = byte;
            h
        };
        for (bad, why) in [
            (with(12, 0x11), "version 1 in binary"),
            (with(12, 0x22), "no such command"),
            (with(13, 0x91), "no such family"),
            (with(13, 0x12), "datagrams"),
            (with(13, 0x10), "IPv4 without a transport"),
            (with(13, 0x01), "UNSPEC with a transport"),
            (
                v2(1, 0x11, &[192, 0, 2, 7], 0),
                "an IPv4 block short of 12 bytes",
            ),
            (v2(1, 0x21, &[0; 20], 0), "an IPv6 block short of 36 bytes"),
            (v2(1, 0x31, &[0; 108], 0), "a UNIX block short of 216 bytes"),
            (
                v2(1, 0x11, &inet([192, 0, 2, 7]), V2_MAX_REST - 11),
                "a byte past the bound",
            ),
        ] {
            assert_eq!(preamble(&bad), Preamble::Invalid, "{why}");
        }
    }

    #[test]
    fn forwarded_for_is_the_last_proxys_word() {
        assert_eq!(forwarded_for("192.0.2.7"), Some(ip("192.0.2.7")));
        assert_eq!(
            forwarded_for("10.9.9.9, 192.0.2.7"),
            Some(ip("192.0.2.7")),
            "what the client wrote itself comes first"
        );
        assert_eq!(forwarded_for("2001:db8::7"), Some(ip("2001:db8::7")));
        assert_eq!(forwarded_for("unknown"), None);
    }

    #[test]
    fn only_trusted_proxies_name_clients() {
        let proxies = trusted(&["127.0.0.1"]);
        assert!(proxies.trusts(ip("127.0.0.1")));
        assert!(proxies.trusts(ip("::ffff:127.0.0.1")));
        assert!(!proxies.trusts(ip("127.0.0.2")));
        assert_eq!(
            proxies.client(ip("127.0.0.1"), ip("192.0.2.7")),
            ip("192.0.2.7")
        );
        assert_eq!(
            proxies.client(ip("198.51.100.1"), ip("192.0.2.7")),
            ip("198.51.100.1")
        );
        assert!(!TrustedProxies::default().trusts(ip("127.0.0.1")));
    }

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(entries.iter().map(|e| e.parse().unwrap()).collect())
    }

    #[test]
    fn ranges_trust_every_address_within() {
        let proxies = trusted(&["10.1.0.0/16", "fd00::/8", "192.0.2.9"]);
        for inside in [
            "10.1.0.0",
            "10.1.255.254",
            "::ffff:10.1.2.3",
            "fd12::1",
            "192.0.2.9",
        ] {
            assert!(proxies.trusts(ip(inside)), "{inside}");
        }
        for outside in ["10.2.0.1", "10.0.255.255", "fe80::1", "192.0.2.8", "::1"] {
            assert!(!proxies.trusts(ip(outside)), "{outside}");
        }
        let everyone6 = trusted(&["::/0"]);
        assert!(
            everyone6.trusts(ip("::ffff:10.1.2.3")),
            "a mapped peer in an IPv6 range"
        );
        assert!(everyone6.trusts(ip("10.1.2.3")), "its IPv4 form too");
        let mapped = trusted(&["::ffff:172.16.0.0/108"]);
        assert!(
            mapped.trusts(ip("172.16.5.5")),
            "a mapped range is its IPv4 range"
        );
        assert!(!mapped.trusts(ip("172.32.0.1")));
        let host_bits = "10.1.2.3/8".parse::<ProxyRange>().unwrap();
        assert_eq!(host_bits.to_string(), "10.0.0.0/8", "host bits are dropped");
    }

    #[test]
    fn entries_that_are_no_address_or_range_are_refused() {
        for bad in [
            "",
            "nginx",
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/129",
            "10.0.0.1/",
        ] {
            let err = bad.parse::<ProxyRange>().unwrap_err().to_string();
            assert!(err.contains("10.0.0.0/8"), "{bad}: {err}");
        }
        assert_eq!(
            "127.0.0.1".parse::<ProxyRange>().unwrap().to_string(),
            "127.0.0.1/32"
        );
    }
}
