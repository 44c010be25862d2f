//! The fuzzing harness: arbitrary bytes become segments fed to connections in every state.
//! Used by the `cargo fuzz` target in `tcp-userspace/fuzz` and by a property test, so CI runs
//! it too. The only property: nothing panics.

use std::{net::SocketAddr, time::Duration};

use super::{
    config::EngineConfig,
    table::Engine,
    tcb::{CookieHandshake, State, Tcb},
    time::Instant,
};
use crate::wire::tcp::{ACK, FIN, SYN, TcpOptions, TcpPacket, TcpRepr};

const ISS: u32 = 0x1000;
const IRS: u32 = 0x9000;

fn local() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 80))
}
fn remote() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 5000))
}

fn peer(flags: u8, seq: u32, ack: u32) -> TcpRepr {
    TcpRepr {
        src_port: 5000,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 1000,
        options: TcpOptions {
            timestamps: Some((1, 0)),
            ..TcpOptions::default()
        },
        ..TcpRepr::default()
    }
}

/// A connection driven into `state` by ordinary segments.
fn in_state(state: State, cfg: &EngineConfig) -> Tcb {
    let now = Instant(0);
    if state == State::SynSent {
        return Tcb::connect(cfg, local(), remote(), ISS, now);
    }
    let mut syn = peer(SYN, IRS, 0);
    syn.options.mss = Some(1000);
    syn.options.wscale = Some(2);
    syn.options.sack_permitted = true;
    let mut t = Tcb::accept(cfg, local(), remote(), ISS, &syn, now);
    if state == State::SynReceived {
        return t;
    }
    t.on_segment(&peer(ACK, IRS + 1, ISS + 1), now);
    t.send(b"0123456789", now);
    match state {
        State::FinWait1 | State::FinWait2 | State::Closing | State::TimeWait => {
            t.close(now);
            if state == State::FinWait2 || state == State::TimeWait {
                t.on_segment(&peer(ACK, IRS + 1, ISS + 12), now);
            }
            if state == State::Closing || state == State::TimeWait {
                t.on_segment(&peer(ACK | FIN, IRS + 1, ISS + 1), now);
            }
        }
        State::CloseWait | State::LastAck => {
            t.on_segment(&peer(ACK | FIN, IRS + 1, ISS + 1), now);
            if state == State::LastAck {
                t.close(now);
            }
        }
        _ => {}
    }
    t.take_outgoing();
    t
}

const STATES: [State; 10] = [
    State::SynSent,
    State::SynReceived,
    State::Established,
    State::FinWait1,
    State::FinWait2,
    State::CloseWait,
    State::Closing,
    State::LastAck,
    State::TimeWait,
    State::Listen,
];

/// A segment from arbitrary bytes: parsed when it parses, else read field by field.
fn segment_from(bytes: &[u8]) -> TcpRepr {
    if let Ok(p) = TcpPacket::new_checked(bytes)
        && let Ok(r) = TcpRepr::parse(&p)
    {
        return r;
    }
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let u32_at = |i: usize| u32::from_be_bytes([b(i), b(i + 1), b(i + 2), b(i + 3)]);
    TcpRepr {
        src_port: 5000,
        dst_port: 80,
        // Mostly near the interesting sequence numbers, sometimes anywhere.
        seq: if b(0) & 1 == 0 {
            IRS.wrapping_add(u32::from(b(1)))
        } else {
            u32_at(2)
        },
        ack: if b(0) & 2 == 0 {
            ISS.wrapping_add(u32::from(b(6)))
        } else {
            u32_at(7)
        },
        flags: b(11),
        window: u16::from_be_bytes([b(12), b(13)]),
        options: TcpOptions {
            timestamps: (b(0) & 4 != 0).then(|| (u32_at(14), u32_at(18))),
            sack: [
                (b(0) & 8 != 0).then(|| (u32_at(14), u32_at(22))),
                None,
                None,
                None,
            ],
            ..TcpOptions::default()
        },
        payload: bytes.get(26..).unwrap_or_default().to_vec(),
        ..TcpRepr::default()
    }
}

/// Feeds `data` to connections: chunks separated by 0xff 0xff each become one segment (or,
/// with a leading 0xfe, a clock step firing timers, or an application call).
pub fn run(data: &[u8]) {
    let cfg = EngineConfig {
        recv_buffer: 4096,
        send_buffer: 4096,
        ..EngineConfig::default()
    };
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let state = STATES[usize::from(selector) % STATES.len()];
    let mut now = Instant(0);
    if state == State::Listen {
        let mut e = Engine::new(cfg);
        e.listen(local());
        for chunk in rest.split(|&b| b == 0xff) {
            now = now + Duration::from_millis(u64::from(chunk.first().copied().unwrap_or(0)));
            e.on_segment(local(), remote(), &segment_from(chunk), now);
            e.poll_timers(now);
            let _ = e.take_outgoing();
        }
        let h = CookieHandshake {
            client_isn: IRS,
            server_isn: ISS,
            mss: 1,
            wscale: Some((255, 255)),
            sack: true,
            timestamps: Some((0, 0)),
        };
        e.accept_cookie(local(), remote(), &h, &segment_from(rest), now);
        return;
    }
    let mut t = in_state(state, &cfg);
    let mut buf = [0u8; 512];
    for chunk in rest.split(|&b| b == 0xff) {
        match chunk.first() {
            Some(0xfe) => {
                now = now
                    + Duration::from_millis(u64::from(chunk.get(1).copied().unwrap_or(0)) * 100);
                if t.next_deadline().is_some_and(|d| d <= now) {
                    t.on_timer(now);
                }
            }
            Some(0xfd) => {
                t.send(&chunk[1..], now);
            }
            Some(0xfc) => {
                t.recv(&mut buf, now);
            }
            Some(0xfb) => t.close(now),
            Some(0xfa) => t.abort(now),
            _ => t.on_segment(&segment_from(chunk), now),
        }
        let _ = t.take_outgoing();
        let _ = t.take_events();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_state_can_be_reached() {
        let cfg = EngineConfig::default();
        for s in STATES.iter().filter(|&&s| s != State::Listen) {
            assert_eq!(in_state(*s, &cfg).state(), *s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            run(&data);
        }
    }
}
