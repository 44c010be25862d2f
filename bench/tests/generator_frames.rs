//! The flood generator's frames, byte for byte: what `flood_gen` writes is a SYN as Linux
//! sends it, with checksums that verify, randomised source address, port, ISN and TSval
//! within the spoofed ranges, for both families; and it writes the whole frame, whatever the
//! page held before (in live-frames mode the page comes back from the peer rewritten).

use std::{collections::HashSet, net::IpAddr};

use tcp_common::classify::SYN;
use tcpfront::wire::frame::TcpFrame;
use tcpfront_bench::generator::{Generator, lab_spec};

const SRC_MAC: [u8; 6] = [0x02, 0x74, 0x66, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0x74, 0x66, 0, 0, 2];

#[test]
fn generated_syns_parse_with_valid_checksums_and_vary_within_the_spoofed_ranges()
-> anyhow::Result<()> {
    for v6 in [false, true] {
        let spec = lab_spec(v6, SRC_MAC, DST_MAC, 8080);
        let mut generator = Generator::new(&spec)?;
        let mut frames = generator.sample(300, 0x00)?;
        frames.extend(generator.sample(300, 0xff)?);
        let (mut sources, mut ports, mut isns, mut tsvals) = (
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
        );
        for f in &frames {
            // Verifies the IPv4 header checksum and the TCP checksum.
            let p =
                TcpFrame::parse(f).map_err(|e| anyhow::anyhow!("v6={v6}: {e}; frame {f:02x?}"))?;
            assert_eq!((p.eth.src, p.eth.dst), (SRC_MAC, DST_MAC));
            assert_eq!(p.eth.vlans, [None, None]);
            assert_eq!(p.ip.dst, spec.dst);
            assert_eq!(p.ip.ttl, 64);
            assert_eq!(p.tcp.dst_port, 8080);
            assert_eq!(p.tcp.flags, SYN);
            assert_eq!(p.tcp.ack, 0);
            assert_eq!(p.tcp.window, 64240);
            assert!(p.tcp.payload.is_empty());
            let o = p.tcp.options;
            assert_eq!(o.mss, Some(1460));
            assert_eq!(o.wscale, Some(7));
            assert!(o.sack_permitted);
            assert_eq!(o.timestamps.map(|t| t.1), Some(0), "TSecr 0 in a SYN");
            // Linux's option layout, byte for byte (MSS, SACK-permitted, TS, NOP, WS).
            let l4 = f.len() - 40;
            assert_eq!(&f[l4 + 20..l4 + 28], &[2, 4, 0x05, 0xb4, 4, 2, 8, 10]);
            assert_eq!(&f[l4 + 36..l4 + 40], &[1, 3, 3, 7]);
            // Source: the base with its last two bytes a host number in 3..=254.
            let (base, host) = match (p.ip.src, spec.src_base) {
                (IpAddr::V4(s), IpAddr::V4(b)) => {
                    let (s, b) = (s.octets(), b.octets());
                    assert_eq!(s[..2], b[..2], "v4 source base");
                    (true, u16::from_be_bytes([s[2], s[3]]))
                }
                (IpAddr::V6(s), IpAddr::V6(b)) => {
                    let (s, b) = (s.octets(), b.octets());
                    assert_eq!(s[..14], b[..14], "v6 source base");
                    (true, u16::from_be_bytes([s[14], s[15]]))
                }
                _ => (false, 0),
            };
            assert!(base, "source family");
            assert!(spec.hosts.contains(&host), "host {host}");
            assert!(spec.ports.contains(&p.tcp.src_port));
            sources.insert(p.ip.src);
            ports.insert(p.tcp.src_port);
            isns.insert(p.tcp.seq);
            tsvals.insert(o.timestamps.map(|t| t.0));
        }
        // 600 draws: from 252 hosts nearly all appear; ports, ISNs, TSvals barely repeat.
        assert!(sources.len() > 200, "v6={v6}: {} sources", sources.len());
        assert!(ports.len() > 590, "v6={v6}: {} ports", ports.len());
        assert!(isns.len() > 595, "v6={v6}: {} ISNs", isns.len());
        assert!(tsvals.len() > 595, "v6={v6}: {} TSvals", tsvals.len());
    }
    Ok(())
}
