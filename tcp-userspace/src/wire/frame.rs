//! Whole frames: Ethernet + IP + TCP, built and parsed in one go.

use super::{
    Result, WireError,
    ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetRepr},
    ip::{IpRepr, PROTO_TCP},
    tcp::{TcpPacket, TcpRepr},
};

/// A parsed frame; `P` is the TCP payload as in [`TcpRepr`] (owned by default, borrowed from
/// the frame by [`TcpFrame::parse_in_place`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFrame<P = Vec<u8>> {
    pub eth: EthernetRepr,
    pub ip: IpRepr,
    pub tcp: TcpRepr<P>,
}

impl TcpFrame<Vec<u8>> {
    /// Parses a frame, verifying the IPv4 and TCP checksums; the payload is copied.
    pub fn parse(frame: &[u8]) -> Result<Self> {
        let f = TcpFrame::parse_in_place(frame)?;
        Ok(TcpFrame {
            eth: f.eth,
            ip: f.ip,
            tcp: f.tcp.into_owned(),
        })
    }
}

impl<'a> TcpFrame<&'a [u8]> {
    /// Parses a frame, verifying the IPv4 and TCP checksums, without copying: the payload
    /// borrows `frame`.
    pub fn parse_in_place(frame: &'a [u8]) -> Result<Self> {
        let (eth, l3) = EthernetRepr::parse(frame)?;
        let (ip, ihl, payload_len) = IpRepr::parse(eth.ethertype, &frame[l3..])?;
        if ip.protocol != PROTO_TCP {
            return Err(WireError::Unsupported);
        }
        let seg = &frame[l3 + ihl..l3 + ihl + payload_len];
        let p = TcpPacket::new_checked(seg)?;
        if !p.verify_checksum(ip.src, ip.dst) {
            return Err(WireError::Checksum);
        }
        let tcp = TcpRepr::parse_borrowed(&p)?;
        // Re-borrow from `seg` (lives as long as `frame`), not from the local view `p`.
        let payload = &seg[seg.len() - tcp.payload.len()..];
        Ok(TcpFrame {
            eth,
            ip,
            tcp: tcp.with_payload(payload),
        })
    }
}

impl<P: AsRef<[u8]>> TcpFrame<P> {
    pub fn emit(&self) -> Vec<u8> {
        let payload = self.tcp.payload.as_ref();
        let mut out = vec![0u8; MAX_HEADERS + payload.len()];
        let n = emit_into(&self.eth, &self.ip, &self.tcp, &[payload], &mut out);
        out.truncate(n);
        out
    }
}

/// The longest headers a frame of ours has: Ethernet with two tags, IPv4 with 40 bytes of
/// options, TCP with 40.
pub const MAX_HEADERS: usize = 22 + 60 + 60;

/// Writes a whole frame into `out` (a UMEM frame, say): Ethernet (its ethertype from the IP
/// family), IP and TCP headers, then `payload`, with every checksum; returns its length.
pub fn emit_into<P>(
    eth: &EthernetRepr,
    ip: &IpRepr,
    tcp: &TcpRepr<P>,
    payload: &[&[u8]],
    out: &mut [u8],
) -> usize {
    let mut eth = *eth;
    eth.ethertype = if ip.is_v4() {
        ETHERTYPE_IPV4
    } else {
        ETHERTYPE_IPV6
    };
    let l3 = eth.emit_into(out);
    let tcp_len = tcp.header_len() + payload.iter().map(|p| p.len()).sum::<usize>();
    let l4 = l3 + ip.emit_into(tcp_len, &mut out[l3..]);
    l4 + tcp.emit_into(ip.src, ip.dst, payload, &mut out[l4..])
}
