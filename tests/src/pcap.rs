//! Just enough of the classic pcap format (what `tcpdump -w` writes) to count TCP segments by
//! flag class, independently of tcpfront's own parser.

use anyhow::{Context as _, bail};

/// The frames of a pcap file with Ethernet link type.
pub fn read_frames(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    if bytes.len() < 24 {
        bail!("pcap file shorter than its header");
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into()?);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => bail!("not a pcap file (magic {magic:#x})"),
    };
    let u32_at = |b: &[u8], at: usize| -> anyhow::Result<u32> {
        let raw: [u8; 4] = b.get(at..at + 4).context("truncated pcap")?.try_into()?;
        Ok(if le {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    };
    let linktype = u32_at(bytes, 20)?;
    if linktype != 1 {
        bail!("pcap link type {linktype} is not Ethernet");
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32_at(bytes, at + 8)? as usize;
        let start = at + 16;
        let frame = bytes
            .get(start..start + caplen)
            .context("truncated pcap record")?;
        frames.push(frame.to_vec());
        at = start + caplen;
    }
    Ok(frames)
}

/// The TCP flags byte of an Ethernet frame carrying TCP over IPv4 or IPv6, if it does.
pub fn tcp_flags(frame: &[u8]) -> Option<u8> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    off += 2;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16::from_be_bytes(frame.get(off + 2..off + 4)?.try_into().ok()?);
        off += 4;
    }
    let l4 = match ethertype {
        0x0800 => {
            let ihl = (*frame.get(off)? & 0x0f) as usize * 4;
            if *frame.get(off + 9)? != 6 {
                return None;
            }
            off + ihl
        }
        0x86dd => {
            if *frame.get(off + 6)? != 6 {
                return None;
            }
            off + 40
        }
        _ => return None,
    };
    frame.get(l4 + 13).copied()
}
