//! The TCP header and its options (RFC 9293 §3.1, RFC 7323, RFC 2018): a zero-copy view and a
//! plain `TcpRepr`.

use std::net::IpAddr;

use super::{Result, WireError, be16, be32, checksum};

/// The flag bits, defined once for both sides in tcp-common.
pub use tcp_common::classify::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

/// A TCP segment in a byte buffer, lengths checked by `new_checked`.
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(WireError::Truncated);
        }
        let hlen = usize::from(b[12] >> 4) * 4;
        if hlen < 20 {
            return Err(WireError::Malformed);
        }
        if b.len() < hlen {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        be16(self.b(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn seq(&self) -> u32 {
        be32(self.b(), 4)
    }
    pub fn ack(&self) -> u32 {
        be32(self.b(), 8)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[12] >> 4) * 4
    }
    pub fn flags(&self) -> u8 {
        self.b()[13]
    }
    pub fn window(&self) -> u16 {
        be16(self.b(), 14)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 16)
    }
    pub fn urgent(&self) -> u16 {
        be16(self.b(), 18)
    }
    pub fn options(&self) -> &[u8] {
        &self.b()[20..self.header_len()]
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }

    /// Whether the checksum over the pseudo-header and the whole segment is right.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let acc = checksum::pseudo_header(src, dst, 6, self.b().len() as u32);
        checksum::finish(checksum::add(acc, self.b())) == 0
    }
}

/// The options we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (left, right), at most 4 (RFC 2018 §3).
    pub sack: [Option<(u32, u32)>; 4],
}

impl TcpOptions {
    /// Parses an options area; unknown kinds are skipped, malformed lengths rejected.
    pub fn parse(mut b: &[u8]) -> Result<Self> {
        let mut o = TcpOptions::default();
        while let Some(&kind) = b.first() {
            match kind {
                0 => break,
                1 => {
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*b.get(1).ok_or(WireError::Malformed)?);
            if len < 2 || len > b.len() {
                return Err(WireError::Malformed);
            }
            let body = &b[2..len];
            match (kind, len) {
                (2, 4) => o.mss = Some(be16(body, 0)),
                // RFC 7323 §2.3: shifts above 14 are used as 14.
                (3, 3) => o.wscale = Some(body[0].min(14)),
                (4, 2) => o.sack_permitted = true,
                (5, l) if l >= 10 && (l - 2) % 8 == 0 => {
                    for (i, blk) in body.chunks_exact(8).take(4).enumerate() {
                        o.sack[i] = Some((be32(blk, 0), be32(blk, 4)));
                    }
                }
                (8, 10) => o.timestamps = Some((be32(body, 0), be32(body, 4))),
                (2 | 3 | 4 | 5 | 8, _) => return Err(WireError::Malformed),
                _ => {}
            }
            b = &b[len..];
        }
        Ok(o)
    }

    /// Emits the options, NOP-padded to a multiple of 4 (the layout of RFC 7323 App. A).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        if let Some(mss) = self.mss {
            out.extend_from_slice(&[2, 4]);
            out.extend_from_slice(&mss.to_be_bytes());
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some(_)) => out.extend_from_slice(&[4, 2]),
            (true, None) => out.extend_from_slice(&[1, 1, 4, 2]),
            (false, Some(_)) => out.extend_from_slice(&[1, 1]),
            (false, None) => {}
        }
        if let Some((val, ecr)) = self.timestamps {
            out.extend_from_slice(&[8, 10]);
            out.extend_from_slice(&val.to_be_bytes());
            out.extend_from_slice(&ecr.to_be_bytes());
        }
        if let Some(ws) = self.wscale {
            out.extend_from_slice(&[1, 3, 3, ws]);
        }
        let blocks: Vec<_> = self.sack.iter().flatten().collect();
        if !blocks.is_empty() {
            out.extend_from_slice(&[1, 1, 5, (2 + 8 * blocks.len()) as u8]);
            for (l, r) in blocks {
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
        while !(out.len() - start).is_multiple_of(4) {
            out.push(1);
        }
    }

    pub fn emitted_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v);
        v.len()
    }
}

/// A TCP segment's header fields and payload, independent of any buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
}

impl TcpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Result<Self> {
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            urgent: p.urgent(),
            options: TcpOptions::parse(p.options())?,
            payload: p.payload().to_vec(),
        })
    }

    pub fn header_len(&self) -> usize {
        20 + self.options.emitted_len()
    }

    /// Emits header and payload with the checksum for `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&[0, self.flags]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.urgent.to_be_bytes());
        self.options.emit(out);
        let hlen = out.len() - start;
        out[start + 12] = ((hlen / 4) as u8) << 4;
        out.extend_from_slice(&self.payload);
        let len = (out.len() - start) as u32;
        let acc = checksum::pseudo_header(src, dst, 6, len);
        let c = checksum::finish(checksum::add(acc, &out[start..]));
        out[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let o = TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 2)),
            sack: [Some((10, 20)), Some((30, 40)), None, None],
        };
        let mut b = Vec::new();
        o.emit(&mut b);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(TcpOptions::parse(&b).unwrap(), o);
    }

    #[test]
    fn malformed_option_lengths_are_rejected() {
        assert_eq!(TcpOptions::parse(&[2, 3, 0]), Err(WireError::Malformed));
        assert_eq!(TcpOptions::parse(&[8, 1]), Err(WireError::Malformed));
        assert_eq!(TcpOptions::parse(&[30, 10, 0]), Err(WireError::Malformed));
        assert_eq!(TcpOptions::parse(&[2]), Err(WireError::Malformed));
    }

    #[test]
    fn segment_round_trip_with_checksum() {
        let src: IpAddr = "10.0.0.1".parse().unwrap();
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        let r = TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: 7,
            ack: 9,
            flags: ACK | PSH,
            window: 100,
            payload: b"hello".to_vec(),
            options: TcpOptions {
                timestamps: Some((5, 6)),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut b = Vec::new();
        r.emit(src, dst, &mut b);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(src, dst));
        assert!(!p.verify_checksum(dst, "10.0.0.3".parse().unwrap()));
        assert_eq!(TcpRepr::parse(&p).unwrap(), r);
    }
}
