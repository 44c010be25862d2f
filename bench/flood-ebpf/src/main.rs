//! Bench-only XDP programs for the SYN-flood rig (none of this is part of tcpfront):
//! - `flood_gen` runs under `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on the client
//!   veth and returns XDP_TX, so every run sends one SYN into the front veth as an XDP frame,
//!   the way a NIC driver hands frames over (no skb on the way in);
//! - `syn_ack_sink` sits on the client veth and counts and drops the SYN-ACKs (and RSTs) sent
//!   to the spoofed sources, so the client's kernel never sees them; as the *echo generator*
//!   (where live frames are refused) it turns each such SYN-ACK into a fresh SYN instead;
//! - `pass` lets everything through: veth hands XDP frames only to a peer with an XDP
//!   program, so the kernel targets get this one on the front veth.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::generated::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_xdp_adjust_tail},
        macros::{map, xdp},
        maps::{Array, PerCpuArray, ProgramArray},
        programs::XdpContext,
    };
    use flood_common::{FloodConf, L3_OFF, Pacing, SinkConf, TSVAL_OFF, V4_LEN, V6_LEN, sink_stat};
    use tcp_common::bpf_mem::{ld8, ld16, ld32, ld64, st16, st32, st64};

    #[map(name = "FLOOD")]
    static FLOOD: Array<FloodConf> = Array::with_max_entries(1, 0);
    #[map(name = "PACE")]
    static PACE: Array<Pacing> = Array::with_max_entries(1, 0);
    /// The program `syn_bench` hands each fresh SYN to.
    #[map(name = "TARGET")]
    static TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);
    #[map(name = "SINK")]
    static SINK: Array<SinkConf> = Array::with_max_entries(1, 0);
    #[map(name = "SINK_STATS")]
    static SINK_STATS: PerCpuArray<[u64; sink_stat::COUNT as usize]> =
        PerCpuArray::with_max_entries(1, 0);

    const L4_V4: usize = L3_OFF + 20;
    const L4_V6: usize = L3_OFF + 40;

    #[inline(always)]
    fn frame<const N: usize>(ctx: &XdpContext) -> Option<*mut u8> {
        let (start, end) = (ctx.data(), ctx.data_end());
        (start + N <= end).then_some(start as *mut u8)
    }

    #[inline(always)]
    fn fold(mut s: u64) -> u64 {
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        (s & 0xffff) + (s >> 16)
    }

    /// `r % n` for a 16-bit `r`, without a division.
    #[inline(always)]
    fn scale16(r: u32, n: u32) -> u32 {
        ((r & 0xffff) * n) >> 16
    }

    /// Whether this run sends: within the limit and not ahead of schedule.
    #[inline(always)]
    fn due(pace: &mut Pacing) -> bool {
        if pace.sent >= pace.limit {
            return false;
        }
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        if pace.interval_ns != 0 {
            if now < pace.next_ns {
                return false;
            }
            let from = if pace.next_ns + pace.max_lag_ns < now {
                now - pace.max_lag_ns
            } else {
                pace.next_ns
            };
            pace.next_ns = from + pace.interval_ns;
        }
        if pace.sent == 0 {
            pace.first_ns = now;
        }
        pace.last_ns = now;
        pace.sent += 1;
        true
    }

    /// xorshift64 (Marsaglia): 64 random bits per step, a few instructions.
    #[inline(always)]
    fn next_random(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[xdp]
    pub fn flood_gen(ctx: XdpContext) -> u32 {
        let Some(pace) = PACE.get_ptr_mut(0) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: this program is the only writer, from the one thread that runs it.
        let pace = unsafe { &mut *pace };
        if !due(pace) {
            return xdp_action::XDP_DROP;
        }
        let (a, b) = (next_random(&mut pace.rng), next_random(&mut pace.rng));
        if write_syn(&ctx, a, b) {
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_ABORTED
        }
    }

    /// The micro-benchmark of a SYN path: under BPF_PROG_TEST_RUN with a repeat count, every
    /// run writes a fresh random SYN (as `flood_gen` does) and tail-calls `TARGET[0]`, so
    /// the per-run duration the kernel reports is this program's (measured alone with a
    /// trivial target) plus the target's, without a clock read per run.
    #[xdp]
    pub fn syn_bench(ctx: XdpContext) -> u32 {
        // SAFETY: helper without arguments.
        let (a, b) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
        if !write_syn(
            &ctx,
            u64::from(a) << 32 | u64::from(b),
            u64::from(b) << 32 | u64::from(a),
        ) {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: a tail call to a program of the same type; on failure we fall through.
        unsafe { TARGET.tail_call(&ctx, 0) };
        xdp_action::XDP_ABORTED
    }

    /// Writes one whole SYN from the template with fresh random fields (from the random
    /// words `a` and `b`); false if the frame is not the template's length.
    #[inline(always)]
    fn write_syn(ctx: &XdpContext, a: u64, b: u64) -> bool {
        let Some(conf) = FLOOD.get_ptr(0) else {
            return false;
        };
        // SAFETY: a live map value; the program only reads it.
        let conf = unsafe { &*conf };
        let t = conf.frame.as_ptr();
        let (r1, r2, r3) = (a as u32, (a >> 32) as u32, b as u32);
        // Network byte order as it lies in memory: stored and summed as is.
        let host = u64::from(((conf.host_first + scale16(r1, conf.host_count)) as u16).to_be());
        let sport =
            u64::from(((conf.port_first + scale16(r1 >> 16, conf.port_count)) as u16).to_be());
        let seq = u64::from(r2.to_be());
        let tsval = u64::from(r3.to_be());
        let tcp_var = host + sport + seq + tsval;
        if conf.family == 4 {
            let Some(p) = frame::<V4_LEN>(ctx) else {
                return false;
            };
            // SAFETY: `frame` checked V4_LEN bytes; the template holds FRAME_MAX ≥ V4_LEN.
            unsafe {
                copy_v4(t, p);
                let id = u64::from((r3 >> 16) as u16);
                st16::<{ (L3_OFF + 4) as i16 }>(p, id);
                st16::<{ (L3_OFF + 14) as i16 }>(p, host);
                let ip = fold(u64::from(conf.ip_sum) + id + host);
                st16::<{ (L3_OFF + 10) as i16 }>(p, !ip & 0xffff);
                write_tcp::<{ L4_V4 as i16 }>(p, sport, seq, tsval, conf.tcp_sum, tcp_var);
            }
        } else {
            let Some(p) = frame::<V6_LEN>(ctx) else {
                return false;
            };
            // SAFETY: `frame` checked V6_LEN bytes; the template holds FRAME_MAX ≥ V6_LEN.
            unsafe {
                copy_v6(t, p);
                st16::<{ (L3_OFF + 8 + 14) as i16 }>(p, host);
                write_tcp::<{ L4_V6 as i16 }>(p, sport, seq, tsval, conf.tcp_sum, tcp_var);
            }
        }
        true
    }

    /// The varying TCP fields and the checksum, fixed from the template's sum.
    #[inline(always)]
    unsafe fn write_tcp<const L4: i16>(
        p: *mut u8,
        sport: u64,
        seq: u64,
        tsval: u64,
        tcp_sum: u32,
        var: u64,
    ) {
        // SAFETY: the caller checked the whole frame.
        unsafe {
            st16::<L4>(p.add(0), sport);
            st32::<L4>(p.add(4), seq);
            st32::<L4>(p.add(TSVAL_OFF), tsval);
            let sum = fold(u64::from(tcp_sum) + var);
            st16::<L4>(p.add(16), !sum & 0xffff);
        }
    }

    /// The template's 74 bytes, in words.
    #[inline(always)]
    unsafe fn copy_v4(t: *const u8, p: *mut u8) {
        // SAFETY: both sides hold at least V4_LEN = 74 bytes.
        unsafe {
            st64::<0>(p, ld64::<0>(t));
            st64::<8>(p, ld64::<8>(t));
            st64::<16>(p, ld64::<16>(t));
            st64::<24>(p, ld64::<24>(t));
            st64::<32>(p, ld64::<32>(t));
            st64::<40>(p, ld64::<40>(t));
            st64::<48>(p, ld64::<48>(t));
            st64::<56>(p, ld64::<56>(t));
            st64::<64>(p, ld64::<64>(t));
            st16::<72>(p, ld16::<72>(t));
        }
    }

    /// The template's 94 bytes, in words.
    #[inline(always)]
    unsafe fn copy_v6(t: *const u8, p: *mut u8) {
        // SAFETY: both sides hold at least V6_LEN = 94 bytes.
        unsafe {
            copy_v4(t, p);
            st64::<72>(p, ld64::<72>(t));
            st64::<80>(p, ld64::<80>(t));
            st32::<88>(p, ld32::<88>(t));
            st16::<92>(p, ld16::<92>(t));
        }
    }

    #[inline(always)]
    fn sink_count(i: u32) {
        if let Some(s) = SINK_STATS.get_ptr_mut(0) {
            // SAFETY: this CPU's slot; `i` is one of the sink_stat constants.
            unsafe { (*s)[i as usize] += 1 };
        }
    }

    const SYN: u64 = 0x02;
    const RST: u64 = 0x04;
    const ACK: u64 = 0x10;

    #[xdp]
    pub fn syn_ack_sink(ctx: XdpContext) -> u32 {
        let Some(conf) = SINK.get_ptr(0) else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: a live map value, read only.
        let conf = unsafe { &*conf };
        let (start, end) = (ctx.data(), ctx.data_end());
        if start + L3_OFF + 20 + 20 > end {
            return xdp_action::XDP_PASS; // too short for a TCP segment
        }
        let p = start as *const u8;
        // SAFETY: 54 bytes were checked above, 74 for IPv6 below; every offset is inside.
        let (to_us, flags) = unsafe {
            match ld16::<12>(p) {
                0x0008 => {
                    let ihl = (ld8::<{ L3_OFF as i16 }>(p) & 0x0f) as usize * 4;
                    if ld8::<{ (L3_OFF + 9) as i16 }>(p) != 6 || ihl != 20 {
                        return xdp_action::XDP_PASS;
                    }
                    let dst = ld32::<{ (L3_OFF + 16) as i16 }>(p) as u32;
                    (
                        dst == u32::from_ne_bytes(conf.own_v4),
                        ld8::<{ (L3_OFF + 20 + 13) as i16 }>(p),
                    )
                }
                0xdd86 => {
                    if start + L3_OFF + 40 + 20 > end || ld8::<{ (L3_OFF + 6) as i16 }>(p) != 6 {
                        return xdp_action::XDP_PASS;
                    }
                    let own = conf.own_v6.as_ptr();
                    let same = ld64::<{ (L3_OFF + 24) as i16 }>(p) == ld64::<0>(own)
                        && ld64::<{ (L3_OFF + 32) as i16 }>(p) == ld64::<8>(own);
                    (same, ld8::<{ (L3_OFF + 40 + 13) as i16 }>(p))
                }
                _ => return xdp_action::XDP_PASS,
            }
        };
        if to_us {
            sink_count(sink_stat::PASSED);
            return xdp_action::XDP_PASS;
        }
        if flags & RST != 0 {
            sink_count(sink_stat::RST);
            return xdp_action::XDP_DROP;
        }
        if flags & (SYN | ACK) == SYN | ACK {
            sink_count(sink_stat::SYN_ACK);
            if conf.echo != 0 {
                return echo(&ctx);
            }
            return xdp_action::XDP_DROP;
        }
        xdp_action::XDP_PASS
    }

    /// The echo generator: the SYN-ACK's frame becomes a whole fresh SYN (the template's
    /// length, every byte written) and goes back to the target, if `PACE` says one is due.
    /// The frames in flight between the two veths are the generator: user space seeds them
    /// and tops them up; pacing drops the surplus.
    #[inline(always)]
    fn echo(ctx: &XdpContext) -> u32 {
        let (Some(pace), Some(conf)) = (PACE.get_ptr_mut(0), FLOOD.get_ptr(0)) else {
            return xdp_action::XDP_DROP;
        };
        // SAFETY: one client veth queue, so one NAPI thread runs this program at a time;
        // user space writes PACE only while the echo is off.
        let pace = unsafe { &mut *pace };
        if !due(pace) {
            return xdp_action::XDP_DROP;
        }
        // SAFETY: a live map value, read only.
        let want = if unsafe { (*conf).family } == 4 {
            V4_LEN
        } else {
            V6_LEN
        } as i32;
        let have = (ctx.data_end() - ctx.data()) as i32;
        // SAFETY: the helper checks the delta against the frame's room.
        if want != have && unsafe { bpf_xdp_adjust_tail(ctx.ctx, want - have) } != 0 {
            return xdp_action::XDP_DROP;
        }
        let (a, b) = (next_random(&mut pace.rng), next_random(&mut pace.rng));
        if write_syn(ctx, a, b) {
            sink_count(sink_stat::ECHOED);
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_DROP
        }
    }

    #[xdp]
    pub fn pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// The cheapest answer a target could give, for the rig's ceiling: the frame goes back
    /// (XDP_TX) with its MACs swapped and its TCP flags made SYN-ACK, so that the sink counts
    /// it. Nothing else is rewritten.
    #[xdp]
    pub fn reflect(ctx: XdpContext) -> u32 {
        let Some(p) = frame::<{ L3_OFF + 20 + 14 }>(&ctx) else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: 48 bytes checked; the IPv4 TCP flags byte is at 47 (IPv6 frames get 0x12
        // at 47 too, inside their addresses, which the sink does not mind).
        unsafe {
            let (d0, d4, s0, s2) = (ld32::<0>(p), ld16::<4>(p), ld16::<6>(p), ld32::<8>(p));
            st16::<0>(p, s0);
            st32::<2>(p, s2);
            st32::<6>(p, d0);
            st16::<10>(p, d4);
            core::ptr::write_volatile(p.add(L3_OFF + 20 + 13), (SYN | ACK) as u8);
        }
        xdp_action::XDP_TX
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
