//! Test-only impairment of a lab veth, seeded so that a failing run can be replayed:
//! - `impair_rx` (XDP, on the client's veth: frames from tcpfront) drops some TCP frames and
//!   sends some through another CPU (cpumap), where they arrive after later frames.
//! - `impair_tx` (tc egress, on the client's veth: frames to tcpfront) drops some TCP frames
//!   and sends a copy of some.
//!
//! It stands in for the peer pass-through program, which veth needs for XDP_TX frames.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
        helpers::generated::bpf_get_smp_processor_id,
        macros::{classifier, map, xdp},
        maps::{Array, CpuMap, PerCpuArray},
        programs::{TcContext, XdpContext},
    };

    /// Set by user space: parts per million of TCP frames to impair, and the machine's CPUs.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Conf {
        pub drop_ppm: u32,
        pub reorder_ppm: u32,
        pub duplicate_ppm: u32,
        pub ifindex: u32,
        pub cpus: u32,
    }

    /// Indexes of `STATS`.
    const SEEN_RX: u32 = 0;
    const DROPPED_RX: u32 = 1;
    const REORDERED_RX: u32 = 2;
    const SEEN_TX: u32 = 3;
    const DROPPED_TX: u32 = 4;
    const DUPLICATED_TX: u32 = 5;

    /// Marks our own copies so that they pass untouched the second time.
    const COPY_MARK: u32 = 0x7466_0001;

    #[map(name = "CONF")]
    static CONF: Array<Conf> = Array::with_max_entries(1, 0);
    /// xorshift64* state per CPU, seeded by user space.
    #[map(name = "RNG")]
    static RNG: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
    #[map(name = "STATS")]
    static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(8, 0);
    #[map(name = "CPUS")]
    static CPUS: CpuMap = CpuMap::with_max_entries(64, 0);

    fn bump(i: u32) {
        if let Some(p) = STATS.get_ptr_mut(i) {
            // SAFETY: this CPU's slot.
            unsafe { *p += 1 };
        }
    }

    /// A draw in 0..1_000_000.
    fn draw() -> u32 {
        let Some(p) = RNG.get_ptr_mut(0) else {
            return u32::MAX;
        };
        // SAFETY: this CPU's slot.
        unsafe {
            let mut x = *p;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *p = x;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 % 1_000_000
        }
    }

    fn conf() -> Option<Conf> {
        CONF.get(0).copied()
    }

    /// Whether an Ethernet frame carries TCP (IPv4 or IPv6, no VLAN in the lab).
    fn is_tcp(ethertype: u16, proto_v4: u8, next_v6: u8) -> bool {
        (ethertype == 0x0800 && proto_v4 == 6) || (ethertype == 0x86dd && next_v6 == 6)
    }

    #[xdp]
    pub fn impair_rx(ctx: XdpContext) -> u32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        if start + 54 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: 54 bytes are in bounds (checked above).
        let (ethertype, p4, p6) = unsafe {
            let b = start as *const u8;
            (
                u16::from_be_bytes([*b.add(12), *b.add(13)]),
                *b.add(23),
                *b.add(20),
            )
        };
        let Some(c) = conf() else {
            return xdp_action::XDP_PASS;
        };
        if !is_tcp(ethertype, p4, p6) {
            return xdp_action::XDP_PASS;
        }
        bump(SEEN_RX);
        let r = draw();
        if r < c.drop_ppm {
            bump(DROPPED_RX);
            return xdp_action::XDP_DROP;
        }
        if r < c.drop_ppm + c.reorder_ppm && c.cpus > 1 {
            // SAFETY: a plain helper call.
            let cpu = unsafe { bpf_get_smp_processor_id() };
            if let Ok(action) = CPUS.redirect((cpu + 1) % c.cpus, 0) {
                bump(REORDERED_RX);
                return action;
            }
        }
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn impair_tx(ctx: TcContext) -> i32 {
        // SAFETY: reading a field of the context.
        let mark = unsafe { (*ctx.skb.skb).mark };
        if mark == COPY_MARK {
            ctx.set_mark(0);
            return TC_ACT_OK;
        }
        let (Ok(ethertype), Ok(p4), Ok(p6)) = (
            ctx.load::<[u8; 2]>(12),
            ctx.load::<u8>(23),
            ctx.load::<u8>(20),
        ) else {
            return TC_ACT_OK;
        };
        let Some(c) = conf() else {
            return TC_ACT_OK;
        };
        if !is_tcp(u16::from_be_bytes(ethertype), p4, p6) {
            return TC_ACT_OK;
        }
        bump(SEEN_TX);
        let r = draw();
        if r < c.drop_ppm {
            bump(DROPPED_TX);
            return TC_ACT_SHOT;
        }
        if r < c.drop_ppm + c.duplicate_ppm {
            ctx.set_mark(COPY_MARK);
            if ctx.clone_redirect(c.ifindex, 0).is_ok() {
                bump(DUPLICATED_TX);
            }
            ctx.set_mark(0);
        }
        TC_ACT_OK
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
