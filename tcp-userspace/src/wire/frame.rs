//! Whole frames: Ethernet + IP + TCP, built and parsed in one go.

use super::{
    Result, WireError,
    ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetRepr},
    ip::{IpRepr, PROTO_TCP},
    tcp::{TcpPacket, TcpRepr},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFrame {
    pub eth: EthernetRepr,
    pub ip: IpRepr,
    pub tcp: TcpRepr,
}

impl TcpFrame {
    /// Parses a frame, verifying the IPv4 and TCP checksums.
    pub fn parse(frame: &[u8]) -> Result<Self> {
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
        Ok(Self {
            eth,
            tcp: TcpRepr::parse(&p)?,
            ip,
        })
    }

    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.tcp.payload.len());
        let mut eth = self.eth;
        eth.ethertype = if self.ip.is_v4() {
            ETHERTYPE_IPV4
        } else {
            ETHERTYPE_IPV6
        };
        eth.emit(&mut out);
        let tcp_len = self.tcp.header_len() + self.tcp.payload.len();
        self.ip.emit(tcp_len, &mut out);
        self.tcp.emit(self.ip.src, self.ip.dst, &mut out);
        out
    }
}
