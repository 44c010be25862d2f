//! Ethernet II with up to two 802.1Q/802.1ad tags.

use super::{Result, WireError, be16};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EthernetRepr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// VLAN tags (TPID, TCI), outer first.
    pub vlans: [Option<(u16, u16)>; 2],
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Parses the header; returns it and the offset of the payload.
    pub fn parse(frame: &[u8]) -> Result<(Self, usize)> {
        if frame.len() < 14 {
            return Err(WireError::Truncated);
        }
        let mut r = EthernetRepr::default();
        r.dst.copy_from_slice(&frame[0..6]);
        r.src.copy_from_slice(&frame[6..12]);
        let mut off = 12;
        let mut ethertype = be16(frame, off);
        for slot in 0..2 {
            if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                break;
            }
            if frame.len() < off + 6 {
                return Err(WireError::Truncated);
            }
            r.vlans[slot] = Some((ethertype, be16(frame, off + 2)));
            off += 4;
            ethertype = be16(frame, off);
        }
        r.ethertype = ethertype;
        Ok((r, off + 2))
    }

    pub fn header_len(&self) -> usize {
        14 + 4 * self.vlans.iter().flatten().count()
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.header_len(), 0);
        self.emit_into(&mut out[start..]);
    }

    /// Writes the header (`header_len()` bytes) into `out`; returns its length.
    pub fn emit_into(&self, out: &mut [u8]) -> usize {
        out[0..6].copy_from_slice(&self.dst);
        out[6..12].copy_from_slice(&self.src);
        let mut n = 12;
        for (tpid, tci) in self.vlans.iter().flatten() {
            out[n..n + 2].copy_from_slice(&tpid.to_be_bytes());
            out[n + 2..n + 4].copy_from_slice(&tci.to_be_bytes());
            n += 4;
        }
        out[n..n + 2].copy_from_slice(&self.ethertype.to_be_bytes());
        n + 2
    }
}
