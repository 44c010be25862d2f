//! The echo generator's frames, byte for byte: the sink turns a SYN-ACK to a spoofed source,
//! whatever its length, into a whole fresh SYN as `flood_gen` writes it (the template's
//! length, valid checksums, random fields within the spoofed ranges) and sends it back
//! (XDP_TX) while its pacing allows; otherwise, or with the echo off, it drops the SYN-ACK.
//! Frames to the client's own address pass untouched. Both families.

use std::{collections::HashSet, net::IpAddr};

use flood_common::{Pacing, V4_LEN, V6_LEN};
use tcp_common::classify::{ACK, SYN};
use tcpfront::wire::{frame::TcpFrame, tcp::TcpOptions};
use tcpfront_bench::{
    generator::{Generator, lab_spec, template},
    sink::Sink,
};
use tcpfront_tests::lab::{CLIENT_V4, CLIENT_V6};

const CLIENT_MAC: [u8; 6] = [0x02, 0x74, 0x66, 0, 0, 1];
const FRONT_MAC: [u8; 6] = [0x02, 0x74, 0x66, 0, 0, 2];
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// A SYN-ACK the target sends in answer to `syn`, with `options` and `payload` (to vary its
/// length both ways around the template's).
fn syn_ack(syn: &TcpFrame, options: TcpOptions, payload: usize) -> Vec<u8> {
    let mut f = syn.clone();
    std::mem::swap(&mut f.eth.src, &mut f.eth.dst);
    std::mem::swap(&mut f.ip.src, &mut f.ip.dst);
    std::mem::swap(&mut f.tcp.src_port, &mut f.tcp.dst_port);
    f.tcp.flags = SYN | ACK;
    f.tcp.ack = syn.tcp.seq.wrapping_add(1);
    f.tcp.seq = 0x1234_5678;
    f.tcp.options = options;
    f.tcp.payload = vec![0xa5; payload];
    f.emit()
}

#[test]
fn the_echo_turns_syn_acks_into_whole_fresh_syns_within_its_pacing() -> anyhow::Result<()> {
    for v6 in [false, true] {
        let spec = lab_spec(v6, CLIENT_MAC, FRONT_MAC, 8080);
        let mut generator = Generator::new(&spec)?;
        let syn = TcpFrame::parse(&generator.sample(1, 0)?[0])?;
        let mut sink = Sink::load(CLIENT_V4, CLIENT_V6)?;
        sink.set_echo_template(template(&spec)?)?;
        sink.set_pacing(Pacing {
            limit: u64::MAX,
            rng: 0x9e37_79b9_7f4a_7c15,
            ..Pacing::default()
        })?;
        let shorter = syn_ack(&syn, TcpOptions::default(), 0);
        let longer = syn_ack(&syn, syn.tcp.options, 24);
        let want_len = if v6 { V6_LEN } else { V4_LEN };
        assert!(shorter.len() < want_len && longer.len() > want_len);

        // Echo off: the sink only counts and drops.
        let (verdict, _) = sink.test_run(&shorter)?;
        assert_eq!(verdict, XDP_DROP, "v6={v6}: echo off");

        sink.set_echo(true)?;
        let (mut sources, mut ports, mut isns) = (HashSet::new(), HashSet::new(), HashSet::new());
        for i in 0..200 {
            let input = if i % 2 == 0 { &shorter } else { &longer };
            let (verdict, out) = sink.test_run(input)?;
            assert_eq!(verdict, XDP_TX, "v6={v6}: echoed");
            assert_eq!(out.len(), want_len, "v6={v6}: the template's length");
            let p = TcpFrame::parse(&out)
                .map_err(|e| anyhow::anyhow!("v6={v6}: {e}; frame {out:02x?}"))?;
            assert_eq!((p.eth.src, p.eth.dst), (CLIENT_MAC, FRONT_MAC));
            assert_eq!(p.ip.dst, spec.dst);
            assert_eq!(p.tcp.dst_port, 8080);
            assert_eq!(p.tcp.flags, SYN);
            assert_eq!(p.tcp.ack, 0);
            assert!(p.tcp.payload.is_empty());
            assert_eq!(p.tcp.options.mss, Some(1460));
            assert_eq!(p.tcp.options.wscale, Some(7));
            assert!(p.tcp.options.sack_permitted);
            let host = match (p.ip.src, spec.src_base) {
                (IpAddr::V4(s), IpAddr::V4(b)) => {
                    assert_eq!(s.octets()[..2], b.octets()[..2]);
                    u16::from_be_bytes([s.octets()[2], s.octets()[3]])
                }
                (IpAddr::V6(s), IpAddr::V6(b)) => {
                    assert_eq!(s.octets()[..14], b.octets()[..14]);
                    u16::from_be_bytes([s.octets()[14], s.octets()[15]])
                }
                _ => panic!("v6={v6}: source family"),
            };
            assert!(spec.hosts.contains(&host), "host {host}");
            assert!(spec.ports.contains(&p.tcp.src_port));
            sources.insert(p.ip.src);
            ports.insert(p.tcp.src_port);
            isns.insert(p.tcp.seq);
        }
        assert!(sources.len() > 100, "v6={v6}: {} sources", sources.len());
        assert!(
            ports.len() > 195 && isns.len() > 195,
            "v6={v6}: random fields"
        );

        // A SYN-ACK to the client's own address is a legitimate connection's: it passes.
        let mut own = TcpFrame::parse(&shorter)?;
        own.ip.dst = if v6 {
            CLIENT_V6.into()
        } else {
            CLIENT_V4.into()
        };
        let own = own.emit();
        assert_eq!(sink.test_run(&own)?, (XDP_PASS, own.clone()), "v6={v6}");

        // Past the pacing's limit nothing more is sent.
        sink.set_echo(false)?;
        let sent = sink.pacing()?.sent;
        assert_eq!(sent, 200, "v6={v6}: PACE counts the echoed SYNs");
        sink.set_pacing(Pacing {
            limit: sent,
            sent,
            rng: 1,
            ..Pacing::default()
        })?;
        sink.set_echo(true)?;
        assert_eq!(sink.test_run(&longer)?.0, XDP_DROP, "v6={v6}: limit");
        let counts = sink.counts()?;
        assert_eq!(
            (counts.echoed, counts.syn_acks, counts.passed),
            (200, 202, 1),
            "v6={v6}"
        );
    }
    Ok(())
}
