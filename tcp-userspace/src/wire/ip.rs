//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers, as far as TCP needs them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Result, WireError, be16, checksum};

pub const PROTO_TCP: u8 = 6;

/// The IP header of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRepr {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ttl: u8,
    /// IPv4 identification; 0 for IPv6.
    pub ident: u16,
    /// IPv4 header options length in bytes (0 for IPv6), emitted as NOPs.
    pub v4_options_len: usize,
    /// IPv4 flags and fragment offset (DF = 0x4000).
    pub v4_frag: u16,
}

impl IpRepr {
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        Self {
            src,
            dst,
            protocol: PROTO_TCP,
            ttl: 64,
            ident: 0,
            v4_options_len: 0,
            v4_frag: 0x4000,
        }
    }

    pub fn is_v4(&self) -> bool {
        self.src.is_ipv4()
    }

    pub fn header_len(&self) -> usize {
        if self.is_v4() {
            20 + self.v4_options_len
        } else {
            40
        }
    }

    /// Parses an IPv4 or IPv6 header (by `ethertype`); returns it, the payload offset and the
    /// payload length (from the header's length field, which may be shorter than the buffer).
    pub fn parse(ethertype: u16, b: &[u8]) -> Result<(Self, usize, usize)> {
        match ethertype {
            super::ethernet::ETHERTYPE_IPV4 => {
                if b.len() < 20 {
                    return Err(WireError::Truncated);
                }
                if b[0] >> 4 != 4 {
                    return Err(WireError::Malformed);
                }
                let ihl = usize::from(b[0] & 0x0f) * 4;
                if ihl < 20 {
                    return Err(WireError::Malformed);
                }
                let total = usize::from(be16(b, 2));
                if total < ihl || b.len() < total {
                    return Err(WireError::Truncated);
                }
                if checksum::finish(checksum::add(0, &b[..ihl])) != 0 {
                    return Err(WireError::Checksum);
                }
                let frag = be16(b, 6);
                if frag & 0x3fff != 0 {
                    return Err(WireError::Unsupported);
                }
                let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
                let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
                Ok((
                    IpRepr {
                        src: src.into(),
                        dst: dst.into(),
                        protocol: b[9],
                        ttl: b[8],
                        ident: be16(b, 4),
                        v4_options_len: ihl - 20,
                        v4_frag: frag,
                    },
                    ihl,
                    total - ihl,
                ))
            }
            super::ethernet::ETHERTYPE_IPV6 => {
                if b.len() < 40 {
                    return Err(WireError::Truncated);
                }
                if b[0] >> 4 != 6 {
                    return Err(WireError::Malformed);
                }
                let payload = usize::from(be16(b, 4));
                if b.len() < 40 + payload {
                    return Err(WireError::Truncated);
                }
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&b[8..24]);
                d.copy_from_slice(&b[24..40]);
                Ok((
                    IpRepr {
                        src: Ipv6Addr::from(s).into(),
                        dst: Ipv6Addr::from(d).into(),
                        protocol: b[6],
                        ttl: b[7],
                        ident: 0,
                        v4_options_len: 0,
                        v4_frag: 0,
                    },
                    40,
                    payload,
                ))
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// Emits the header for a payload of `payload_len` bytes.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.header_len(), 0);
        self.emit_into(payload_len, &mut out[start..]);
    }

    /// Writes the header (`header_len()` bytes) into `out` for a payload of `payload_len`
    /// bytes; returns its length.
    pub fn emit_into(&self, payload_len: usize, out: &mut [u8]) -> usize {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ihl = 20 + self.v4_options_len;
                out[0] = 0x40 | (ihl / 4) as u8;
                out[1] = 0;
                out[2..4].copy_from_slice(&((ihl + payload_len) as u16).to_be_bytes());
                out[4..6].copy_from_slice(&self.ident.to_be_bytes());
                out[6..8].copy_from_slice(&self.v4_frag.to_be_bytes());
                out[8] = self.ttl;
                out[9] = self.protocol;
                out[10..12].copy_from_slice(&[0, 0]);
                out[12..16].copy_from_slice(&s.octets());
                out[16..20].copy_from_slice(&d.octets());
                out[20..ihl].fill(1); // NOP options
                let c = checksum::finish(checksum::add(0, &out[..ihl]));
                out[10..12].copy_from_slice(&c.to_be_bytes());
                ihl
            }
            (s, d) => {
                out[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
                out[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
                out[6] = self.protocol;
                out[7] = self.ttl;
                out[8..24].copy_from_slice(&v6(s).octets());
                out[24..40].copy_from_slice(&v6(d).octets());
                40
            }
        }
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
