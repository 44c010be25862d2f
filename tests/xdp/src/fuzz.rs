//! Differential fuzz of the XDP program against the user-space wire parser.
//!
//! Frames are made from valid seeds (SYNs of every common shape, both families, tagged and
//! not, with and without payload; ACKs carrying a valid cookie, fetched by running their SYN
//! first; stray ACKs, RSTs and FINs) and mutated (bytes changed, flipped, cut, padded, length
//! and offset fields moved, checksums made right again half of the time so that the mutation
//! reaches deeper). Each runs through BPF_PROG_TEST_RUN. The oracle: every frame the program
//! answers (XDP_TX) or turns into a flow must be one that `TcpFrame::parse` accepts, of the
//! right kind (a SYN for a SYN-ACK, an ACK for a RST or a flow), to a protected port; and
//! every answer must itself parse, addressed back to the sender.

use std::net::SocketAddr;

use tcp_common::{
    Counter,
    classify::{ACK, FIN, PSH, RST, SYN},
};
use tcpfront::{
    bpf::config::FastPathSettings,
    wire::{
        ethernet::{ETHERTYPE_QINQ, ETHERTYPE_VLAN},
        frame::TcpFrame,
        tcp::{TcpOptions, TcpRepr},
    },
};

use crate::harness::{Harness, XDP_DROP, XDP_PASS, XDP_TX, frame, linux_syn, refresh_checksums};

/// Where the program is told to protect: every IPv4 and IPv6 address of port 80, and one
/// exact address on port 443.
pub const PROTECTED: &[&str] = &["0.0.0.0:80", "[::]:80", "192.0.2.1:443"];

fn protected(dst: SocketAddr) -> bool {
    dst.port() == 80 || dst == "192.0.2.1:443".parse::<SocketAddr>().expect("address")
}

/// A frame the oracle found wrong.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub what: String,
    pub frame: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub frames: u64,
    pub answered: u64,
    pub flows: u64,
    pub dropped: u64,
    pub mismatches: Vec<Mismatch>,
}

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const CLIENTS_V4: [&str; 2] = ["198.51.100.7", "203.0.113.9"];
const CLIENTS_V6: [&str; 2] = ["2001:db8:1::7", "2001:db8:2::9"];

/// What the program must do with a seed left unmutated: the other half of the oracle (a
/// program that dropped everything would pass the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A SYN to a protected port: a SYN-ACK.
    Answer,
    /// The ACK carrying the cookie of that SYN-ACK: a flow.
    Flow,
    /// Anything to an unprotected destination: passed to the kernel untouched.
    Pass,
    /// Not pinned down here (stray segments, answered per configuration).
    Any,
}

/// A valid seed frame and what the program must do with it.
fn seed(h: &Harness, rng: &mut Rng) -> anyhow::Result<(Vec<u8>, Expect)> {
    let v6 = rng.chance(40);
    let client = if v6 {
        CLIENTS_V6[rng.below(2) as usize]
    } else {
        CLIENTS_V4[rng.below(2) as usize]
    };
    let server = match (v6, rng.below(3)) {
        (true, _) => "2001:db8::1",
        (false, 0) => "192.0.2.1",
        (false, _) => "192.0.2.2",
    };
    let dport = if rng.chance(85) { 80 } else { 443 };
    let sport = 1024 + rng.below(60_000) as u16;
    let isn = rng.next_u64() as u32;
    let mut syn = linux_syn(sport, dport, isn, rng.next_u64() as u32);
    match rng.below(5) {
        0 => syn.options = TcpOptions::default(),
        1 => {
            syn.options = TcpOptions {
                mss: Some(536 + rng.below(9000) as u16),
                ..TcpOptions::default()
            }
        }
        2 => {
            syn.options.timestamps = None;
            syn.options.wscale = Some(rng.below(16) as u8);
        }
        _ => {}
    }
    if rng.chance(10) {
        syn.payload = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect();
    }
    let mut f = frame(client, server, syn.clone());
    if rng.chance(10) {
        f.eth.vlans = [Some((ETHERTYPE_QINQ, 100)), Some((ETHERTYPE_VLAN, 200))];
    }
    let is_protected = protected(SocketAddr::new(f.ip.dst, dport));
    let pinned = |e: Expect| if is_protected { e } else { Expect::Pass };
    match rng.below(4) {
        // A SYN.
        0 | 1 => Ok((f.emit(), pinned(Expect::Answer))),
        // The ACK completing its handshake: valid cookie.
        2 => {
            let (verdict, out) = h.run(&f.emit())?;
            let syn_ack = match TcpFrame::parse(&out) {
                Ok(s) if verdict == XDP_TX => s,
                _ => return Ok((f.emit(), pinned(Expect::Answer))),
            };
            let mut ack = f.clone();
            ack.tcp = TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq: isn.wrapping_add(1),
                ack: syn_ack.tcp.seq.wrapping_add(1),
                flags: if rng.chance(20) { ACK | FIN } else { ACK },
                window: 500,
                options: TcpOptions {
                    timestamps: syn_ack.tcp.options.timestamps.map(|(v, _)| (7, v)),
                    ..TcpOptions::default()
                },
                ..TcpRepr::default()
            };
            if rng.chance(30) {
                ack.tcp.flags |= PSH;
                ack.tcp.payload = (0..rng.below(1400)).map(|_| rng.next_u64() as u8).collect();
            }
            Ok((ack.emit(), Expect::Flow))
        }
        // Something with no flow: an ACK with a random cookie, a RST, a FIN.
        _ => {
            let mut stray = f.clone();
            stray.tcp = TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq: rng.next_u64() as u32,
                ack: rng.next_u64() as u32,
                flags: [ACK, RST, RST | ACK, FIN | ACK, ACK | PSH][rng.below(5) as usize],
                window: 1000,
                ..TcpRepr::default()
            };
            Ok((stray.emit(), pinned(Expect::Any)))
        }
    }
}

/// Offsets of the headers, found leniently (the frame may already be mutated).
fn offsets(f: &[u8]) -> (usize, usize) {
    let mut l3 = 14;
    while l3 + 4 <= f.len()
        && matches!(u16::from_be_bytes([f[l3 - 2], f[l3 - 1]]), 0x8100 | 0x88a8)
        && l3 < 22
    {
        l3 += 4;
    }
    let ihl = f.get(l3).map_or(20, |b| {
        if b >> 4 == 6 {
            40
        } else {
            usize::from(b & 0x0f) * 4
        }
    });
    (l3, l3 + ihl)
}

fn mutate(f: &mut Vec<u8>, rng: &mut Rng) {
    let (l3, l4) = offsets(f);
    for _ in 0..1 + rng.below(3) {
        if f.is_empty() {
            return;
        }
        match rng.below(10) {
            0 | 1 => {
                let i = rng.below(f.len() as u64) as usize;
                f[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(f.len() as u64) as usize;
                f[i] ^= 1 << rng.below(8);
            }
            3 => f.truncate(rng.below(f.len() as u64 + 1) as usize),
            4 => {
                // Ethernet padding (zeros), or junk after the packet.
                let n = rng.below(64) as usize;
                let junk = rng.chance(50);
                for _ in 0..n {
                    f.push(if junk { rng.next_u64() as u8 } else { 0 });
                }
            }
            5 => {
                // The IP length field.
                let at = if f.get(l3).is_some_and(|b| b >> 4 == 6) {
                    l3 + 4
                } else {
                    l3 + 2
                };
                if at + 2 <= f.len() {
                    let v = u16::from_be_bytes([f[at], f[at + 1]]);
                    let nv = match rng.below(3) {
                        0 => v.wrapping_add(rng.below(64) as u16),
                        1 => v.wrapping_sub(rng.below(64) as u16),
                        _ => rng.next_u64() as u16,
                    };
                    f[at..at + 2].copy_from_slice(&nv.to_be_bytes());
                }
            }
            6 => {
                // The data offset, or the IHL.
                if rng.chance(70) {
                    if l4 + 13 <= f.len() {
                        f[l4 + 12] = (rng.below(16) as u8) << 4;
                    }
                } else if l3 < f.len() {
                    f[l3] = (f[l3] & 0xf0) | rng.below(16) as u8;
                }
            }
            7 => {
                // The flags.
                if l4 + 14 <= f.len() {
                    f[l4 + 13] = [
                        SYN,
                        ACK,
                        SYN | ACK,
                        RST,
                        FIN,
                        SYN | FIN,
                        rng.next_u64() as u8,
                    ][rng.below(7) as usize];
                }
            }
            _ => {
                // An option byte.
                if l4 + 21 < f.len() {
                    let i = l4 + 20 + rng.below((f.len() - l4 - 20) as u64).min(40) as usize;
                    if i < f.len() {
                        f[i] =
                            [0, 1, 2, 3, 4, 5, 8, 10, rng.next_u64() as u8][rng.below(9) as usize];
                    }
                }
            }
        }
    }
    if rng.chance(50) {
        // Right checksums where the headers still let us compute them: the mutation then
        // reaches past the checksum checks.
        refresh_checksums(f);
    }
}

/// The oracle for one frame.
fn check(input: &[u8], verdict: u32, output: &[u8], new_flow: bool) -> Option<String> {
    if verdict != XDP_TX && !new_flow {
        return None;
    }
    let parsed = match TcpFrame::parse(input) {
        Ok(p) => p,
        Err(e) => {
            let act = if new_flow {
                "made a flow of"
            } else {
                "answered"
            };
            return Some(format!("{act} a frame user space rejects: {e}"));
        }
    };
    let dst = SocketAddr::new(parsed.ip.dst, parsed.tcp.dst_port);
    if !protected(dst) {
        return Some(format!("acted on an unprotected destination {dst}"));
    }
    let f = parsed.tcp.flags;
    if new_flow {
        if f & (SYN | RST) != 0 || f & ACK == 0 {
            return Some(format!("a flow from a segment with flags {f:#04x}"));
        }
        return None;
    }
    let reply = match TcpFrame::parse(output) {
        Ok(r) => r,
        Err(e) => return Some(format!("the answer does not parse: {e}")),
    };
    let back = (reply.ip.src, reply.ip.dst) == (parsed.ip.dst, parsed.ip.src)
        && (reply.tcp.src_port, reply.tcp.dst_port) == (parsed.tcp.dst_port, parsed.tcp.src_port)
        && (reply.eth.src, reply.eth.dst) == (parsed.eth.dst, parsed.eth.src);
    if !back {
        return Some("the answer is not addressed back to the sender".into());
    }
    if f & (SYN | ACK | RST | FIN) == SYN {
        if reply.tcp.flags != SYN | ACK || reply.tcp.ack != parsed.tcp.seq.wrapping_add(1) {
            return Some(format!("a SYN answered with {:?}", reply.tcp));
        }
        if !reply.tcp.payload.is_empty() {
            return Some("a SYN-ACK with payload".into());
        }
        return None;
    }
    if f & ACK != 0 && f & (SYN | RST) == 0 {
        if reply.tcp.flags != RST || reply.tcp.seq != parsed.tcp.ack {
            return Some(format!("an ACK answered with {:?}", reply.tcp));
        }
        return None;
    }
    Some(format!("answered a segment with flags {f:#04x}"))
}

/// Whether the frame's connection has a flow.
fn has_flow(h: &Harness, f: &[u8]) -> bool {
    TcpFrame::parse(f).is_ok_and(|p| {
        h.has_flow(
            SocketAddr::new(p.ip.dst, p.tcp.dst_port),
            SocketAddr::new(p.ip.src, p.tcp.src_port),
        )
        .unwrap_or(false)
    })
}

/// Runs `frames` mutated frames from `seed`.
pub fn run(frames: u64, seed_value: u64) -> anyhow::Result<Report> {
    let h = Harness::new(&FastPathSettings {
        listen: PROTECTED
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?,
        rst_invalid_cookie: true,
        ..FastPathSettings::default()
    })?;
    let mut rng = Rng::new(seed_value);
    let mut report = Report::default();
    let mut inserted = h.counters()?.get(Counter::FlowInserted);
    for _ in 0..frames {
        let (mut f, expect) = seed(&h, &mut rng)?;
        let mutated = rng.chance(90);
        if mutated {
            mutate(&mut f, &mut rng);
        }
        // BPF_PROG_TEST_RUN takes no frame shorter than an Ethernet header (nor does a NIC).
        if f.len() < 14 {
            continue;
        }
        let (verdict, out) = h.run(&f)?;
        report.frames += 1;
        // A flow turns into XDP_DROP under BPF_PROG_TEST_RUN (no AF_XDP socket to go to).
        let new_flow = verdict == XDP_DROP && {
            let now = h.counters()?.get(Counter::FlowInserted);
            let n = now > inserted;
            inserted = now;
            n
        };
        if verdict == XDP_TX {
            report.answered += 1;
        } else if new_flow {
            report.flows += 1;
        } else if verdict == XDP_DROP {
            report.dropped += 1;
        }
        let what = check(&f, verdict, &out, new_flow).or_else(|| {
            let done = match expect {
                // A SYN for a connection that has a flow goes to user space (RFC 6191
                // reuse of TIME-WAIT); the seeds' random ports do meet earlier flows.
                Expect::Answer => verdict == XDP_TX || verdict == XDP_DROP && has_flow(&h, &f),
                // (Or, its connection already had a flow, from an earlier seed.)
                Expect::Flow => new_flow || verdict == XDP_DROP && has_flow(&h, &f),
                Expect::Pass => verdict == XDP_PASS,
                Expect::Any => true,
            };
            (!mutated && !done)
                .then(|| format!("a valid seed expecting {expect:?} got verdict {verdict}"))
        });
        if let Some(mut what) = what {
            // Run it again for the counters that say why (the program keeps no state a
            // mismatching frame could have changed, apart from flows).
            if let Ok((_, _, delta)) = h.run_counted(&f) {
                what = format!("{what} (counters: {delta:?})");
            }
            report.mismatches.push(Mismatch { what, frame: f });
        }
    }
    Ok(report)
}
