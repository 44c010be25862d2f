//! The PROXY protocol header (HAProxy's "PROXY protocol" specification, versions 1 and 2)
//! that tells a backend who the client is: written before any client byte on the upstream
//! connection. Built into a fixed buffer: no allocation per connection.

use std::net::{IpAddr, SocketAddr};

/// Which version to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    /// Human-readable: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// Binary.
    V2,
}

/// The v2 signature (§2.2).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest header: v1 with two full IPv6 addresses is 104 bytes (§2.1); v2 with IPv6
/// is 52.
pub const MAX_LEN: usize = 108;

/// A header ready to send, and how much of it has been sent.
#[derive(Clone, Debug)]
pub struct ProxyHeader {
    buf: [u8; MAX_LEN],
    len: usize,
    sent: usize,
}

impl ProxyHeader {
    /// The header for a connection from `client` to `local` (the address the client
    /// connected to). Addresses of different families (never in practice: the engine's
    /// connections are of one family) are sent as v1's `UNKNOWN` / v2's `UNSPEC`.
    pub fn new(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> Self {
        let mut h = Self {
            buf: [0; MAX_LEN],
            len: 0,
            sent: 0,
        };
        match version {
            ProxyVersion::V1 => h.v1(client, local),
            ProxyVersion::V2 => h.v2(client, local),
        }
        h
    }

    fn v1(&mut self, client: SocketAddr, local: SocketAddr) {
        use std::io::Write as _;
        let mut w = std::io::Cursor::new(&mut self.buf[..]);
        // §2.1: "TCP4"/"TCP6", source then destination address, then the ports, in
        // decimal, single spaces, CRLF.
        let r = match (client.ip(), local.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => write!(
                w,
                "PROXY TCP4 {s} {d} {} {}\r\n",
                client.port(),
                local.port()
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => write!(
                w,
                "PROXY TCP6 {s} {d} {} {}\r\n",
                client.port(),
                local.port()
            ),
            _ => write!(w, "PROXY UNKNOWN\r\n"),
        };
        // 104 bytes at most fit in MAX_LEN: the write cannot run out of room.
        debug_assert!(r.is_ok());
        self.len = w.position() as usize;
    }

    fn v2(&mut self, client: SocketAddr, local: SocketAddr) {
        self.buf[..12].copy_from_slice(&V2_SIGNATURE);
        // Version 2, command PROXY (§2.2).
        self.buf[12] = 0x21;
        let addresses = match (client.ip(), local.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.buf[13] = 0x11; // TCP over IPv4
                self.buf[16..20].copy_from_slice(&s.octets());
                self.buf[20..24].copy_from_slice(&d.octets());
                self.buf[24..26].copy_from_slice(&client.port().to_be_bytes());
                self.buf[26..28].copy_from_slice(&local.port().to_be_bytes());
                12
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                self.buf[13] = 0x21; // TCP over IPv6
                self.buf[16..32].copy_from_slice(&s.octets());
                self.buf[32..48].copy_from_slice(&d.octets());
                self.buf[48..50].copy_from_slice(&client.port().to_be_bytes());
                self.buf[50..52].copy_from_slice(&local.port().to_be_bytes());
                36
            }
            _ => {
                self.buf[13] = 0x00; // UNSPEC: the receiver uses the real addresses
                0
            }
        };
        self.buf[14..16].copy_from_slice(&(addresses as u16).to_be_bytes());
        self.len = 16 + addresses;
    }

    /// What is still to be sent.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.len]
    }

    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.len);
    }

    pub fn is_sent(&self) -> bool {
        self.sent == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_is_the_specification_line() {
        let h = ProxyHeader::new(
            ProxyVersion::V1,
            a("192.0.2.7:51234"),
            a("198.51.100.1:443"),
        );
        assert_eq!(
            h.pending(),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n"
        );
        let h = ProxyHeader::new(
            ProxyVersion::V1,
            a("[2001:db8::7]:1"),
            a("[2001:db8::1]:80"),
        );
        assert_eq!(h.pending(), b"PROXY TCP6 2001:db8::7 2001:db8::1 1 80\r\n");
        // The longest possible line fits.
        let long = a("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
        let h = ProxyHeader::new(ProxyVersion::V1, long, long);
        assert_eq!(h.pending().len(), 104);
        assert!(h.pending().ends_with(b"65535 65535\r\n"));
    }

    #[test]
    fn v2_is_the_specification_layout() {
        let h = ProxyHeader::new(
            ProxyVersion::V2,
            a("192.0.2.7:51234"),
            a("198.51.100.1:443"),
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend([0x21, 0x11, 0, 12, 192, 0, 2, 7, 198, 51, 100, 1]);
        want.extend(51234u16.to_be_bytes());
        want.extend(443u16.to_be_bytes());
        assert_eq!(h.pending(), &want[..]);
        let h = ProxyHeader::new(
            ProxyVersion::V2,
            a("[2001:db8::7]:1"),
            a("[2001:db8::1]:80"),
        );
        let p = h.pending();
        assert_eq!(p.len(), 52);
        assert_eq!(&p[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(p[31], 7);
        assert_eq!(&p[48..52], &[0, 1, 0, 80]);
    }

    #[test]
    fn partial_sends_resume() {
        let mut h = ProxyHeader::new(ProxyVersion::V1, a("10.0.0.1:1"), a("10.0.0.2:2"));
        let all = h.pending().to_vec();
        h.consume(5);
        assert_eq!(h.pending(), &all[5..]);
        assert!(!h.is_sent());
        h.consume(1000);
        assert!(h.is_sent() && h.pending().is_empty());
    }
}
