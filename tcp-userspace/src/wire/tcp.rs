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
        let mut b = [0u8; 40];
        let n = self.emit_into(&mut b);
        out.extend_from_slice(&b[..n]);
    }

    /// Writes the options into `out` (at least `emitted_len()` bytes, at most 40 needed);
    /// returns their length.
    pub fn emit_into(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            out[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
            n
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[2, 4, m[0], m[1]]);
        }
        put(match (self.sack_permitted, self.timestamps) {
            (true, Some(_)) => &[4, 2],
            (true, None) => &[1, 1, 4, 2],
            (false, Some(_)) => &[1, 1],
            (false, None) => &[],
        });
        if let Some((val, ecr)) = self.timestamps {
            put(&[8, 10]);
            put(&val.to_be_bytes());
            put(&ecr.to_be_bytes());
        }
        if let Some(ws) = self.wscale {
            put(&[1, 3, 3, ws]);
        }
        let blocks = self.sack.iter().flatten().count();
        if blocks > 0 {
            put(&[1, 1, 5, (2 + 8 * blocks) as u8]);
            for (l, r) in self.sack.iter().flatten() {
                put(&l.to_be_bytes());
                put(&r.to_be_bytes());
            }
        }
        let len = put(&[]);
        put(&[1, 1, 1][..(4 - len % 4) % 4])
    }

    /// What `emit` writes, in bytes.
    pub fn emitted_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamps) {
            (true, Some(_)) => 2,
            (true, None) => 4,
            (false, Some(_)) => 2,
            (false, None) => 0,
        };
        if self.timestamps.is_some() {
            n += 10;
        }
        if self.wscale.is_some() {
            n += 4;
        }
        let blocks = self.sack.iter().flatten().count();
        if blocks > 0 {
            n += 4 + 8 * blocks;
        }
        n.div_ceil(4) * 4
    }
}

/// A TCP segment's header fields and payload, independent of any buffer. The payload is
/// owned (`Vec<u8>`, the default), borrowed from a received frame (`&[u8]`), or anything else
/// the sender resolves at emission (the engine's outgoing segments name a range of their
/// send buffer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpRepr<P = Vec<u8>> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: P,
}

impl TcpRepr<Vec<u8>> {
    /// Parses and copies the payload (tests, slow paths).
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Result<Self> {
        Ok(TcpRepr::parse_borrowed(p)?.into_owned())
    }
}

impl<'a> TcpRepr<&'a [u8]> {
    /// Parses without copying: the payload borrows the packet's bytes.
    pub fn parse_borrowed<T: AsRef<[u8]>>(p: &'a TcpPacket<T>) -> Result<Self> {
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            urgent: p.urgent(),
            options: TcpOptions::parse(p.options())?,
            payload: p.payload(),
        })
    }
}

impl<P> TcpRepr<P> {
    /// The same header with another payload.
    pub fn with_payload<Q>(self, payload: Q) -> TcpRepr<Q> {
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            urgent: self.urgent,
            options: self.options,
            payload,
        }
    }

    pub fn header_len(&self) -> usize {
        20 + self.options.emitted_len()
    }

    /// Writes the header and then `payload` (in pieces, e.g. the two halves of a ring buffer)
    /// into `out`, with the checksum for `src` → `dst`; returns the segment's length. `out`
    /// must hold `header_len()` plus the payload. This payload is what is sent, whatever
    /// `self.payload` is.
    pub fn emit_into(&self, src: IpAddr, dst: IpAddr, payload: &[&[u8]], out: &mut [u8]) -> usize {
        let hlen = self.header_len();
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.ack.to_be_bytes());
        out[12] = ((hlen / 4) as u8) << 4;
        out[13] = self.flags;
        out[14..16].copy_from_slice(&self.window.to_be_bytes());
        out[16..18].copy_from_slice(&[0, 0]);
        out[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        self.options.emit_into(&mut out[20..hlen]);
        let mut len = hlen;
        for piece in payload {
            out[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        }
        let acc = checksum::pseudo_header(src, dst, 6, len as u32);
        let c = checksum::finish(checksum::add(acc, &out[..len]));
        out[16..18].copy_from_slice(&c.to_be_bytes());
        len
    }
}

impl<P: AsRef<[u8]>> TcpRepr<P> {
    pub fn into_owned(self) -> TcpRepr<Vec<u8>> {
        let payload = self.payload.as_ref().to_vec();
        self.with_payload(payload)
    }

    /// Emits header and payload with the checksum for `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, out: &mut Vec<u8>) {
        let start = out.len();
        let payload = self.payload.as_ref();
        out.resize(start + self.header_len() + payload.len(), 0);
        self.emit_into(src, dst, &[payload], &mut out[start..]);
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
    fn emitted_len_is_what_emit_writes() {
        for o in [
            TcpOptions::default(),
            TcpOptions {
                mss: Some(1460),
                ..Default::default()
            },
            TcpOptions {
                sack_permitted: true,
                ..Default::default()
            },
            TcpOptions {
                timestamps: Some((1, 2)),
                sack: [Some((1, 2)), Some((3, 4)), Some((5, 6)), None],
                ..Default::default()
            },
            TcpOptions {
                mss: Some(1),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some((1, 2)),
                ..Default::default()
            },
        ] {
            let mut b = Vec::new();
            o.emit(&mut b);
            assert_eq!(b.len(), o.emitted_len(), "{o:?}");
        }
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
