//! tcpfront's XDP program: parse, classify and count every frame at the NIC; answer SYNs to
//! protected ports with SYN cookies; hand cookie-validated flows to user space over AF_XDP.
// On the host (clippy, `cargo check --workspace`) this is an ordinary empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod cookie;
#[cfg(target_arch = "bpf")]
mod count;
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod fleet;
#[cfg(target_arch = "bpf")]
mod frontdoor;
#[cfg(target_arch = "bpf")]
mod listen;
#[cfg(target_arch = "bpf")]
mod options;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod reply;

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use aya_log_ebpf::debug;
    use tcp_common::{
        BPF_F_MMAPABLE, Counter, CounterBlock, MAX_FLOWS, MAX_LISTEN, MAX_QUEUES, PORT_ENTRIES,
        classify,
        cookie::CookieKeys,
        maps::{
            CFG_ENABLED, CFG_SCRUB_ALL, Config, FLOW_FILTER_WORDS, FleetNext, FleetNode, FlowKey,
            FlowValue, ListenKey, MAX_FLEET_NODES, PROTECTION_NONE, PROTECTION_RETIRED,
        },
    };

    use crate::{
        count::Counts,
        fleet::{self, Arrival},
        frontdoor, listen,
        parse::{self, NotTcp},
    };

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);
    #[map(name = "CONFIG")]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
    #[map(name = "LISTEN")]
    pub static LISTEN: HashMap<ListenKey, u32> = HashMap::with_max_entries(MAX_LISTEN, 0);
    /// Per TCP port: which families and addresses are protected (`PORT_*` bits).
    #[map(name = "PORTS")]
    pub static PORTS: Array<u8> = Array::with_max_entries(PORT_ENTRIES, 0);
    #[map(name = "FLOWS")]
    pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
    /// Per slot, how many `FLOWS` keys hash there, 8-bit counters eight to a word (see
    /// `tcp_common::maps::flow_filter_slot`); mapped by user space, which decrements a slot
    /// when it deletes a flow.
    #[map(name = "FLOW_FILTER")]
    pub static FLOW_FILTER: Array<u64> = Array::with_max_entries(FLOW_FILTER_WORDS, BPF_F_MMAPABLE);
    /// The SipHash keys of the SYN cookie and the wall-clock offset (`tcp_common::cookie`).
    #[map(name = "COOKIE")]
    pub static COOKIE: Array<CookieKeys> = Array::with_max_entries(1, 0);
    /// The fleet's nodes by MAC address (`tcp_common::maps::mac_key`): their position in
    /// `FLEET_RING`. Hand-off frames are accepted from these only.
    #[map(name = "FLEET_NODES")]
    pub static FLEET_NODES: HashMap<u64, u32> = HashMap::with_max_entries(MAX_FLEET_NODES, 0);
    /// The ring, by position: each node's MAC and when it was last heard.
    #[map(name = "FLEET_RING")]
    pub static FLEET_RING: Array<FleetNode> = Array::with_max_entries(MAX_FLEET_NODES, 0);
    /// The node segments of unknown flows go to: the first live one after this node.
    #[map(name = "FLEET_NEXT")]
    pub static FLEET_NEXT: Array<FleetNext> = Array::with_max_entries(1, 0);
    #[map(name = "XSKS")]
    pub static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);
    /// Per CPU: a copy of a segment with payload, for its checksum.
    #[map(name = "SCRATCH")]
    pub static SCRATCH: PerCpuArray<[u8; SCRATCH_LEN + 64]> = PerCpuArray::with_max_entries(1, 0);
    /// The longest segment whose checksum the program verifies (no XDP frame is longer).
    pub const SCRATCH_LEN: usize = 4096;

    #[xdp]
    pub fn tcpfront(ctx: XdpContext) -> u32 {
        let Some(block) = COUNTERS.get_ptr_mut(0) else {
            return xdp_action::XDP_PASS;
        };
        let c = Counts::new(block);
        c.add(Counter::Frames);
        let verdict = process(&ctx, c);
        c.add(match verdict {
            xdp_action::XDP_PASS => Counter::VerdictPass,
            xdp_action::XDP_DROP => Counter::VerdictDrop,
            xdp_action::XDP_TX => Counter::VerdictTx,
            xdp_action::XDP_REDIRECT => Counter::VerdictRedirect,
            _ => Counter::VerdictAborted,
        });
        verdict
    }

    #[inline(always)]
    fn process(ctx: &XdpContext, c: Counts) -> u32 {
        let Some(config) = CONFIG.get(0) else {
            return xdp_action::XDP_PASS;
        };
        let enabled = config.flags & CFG_ENABLED != 0;
        let from = if enabled {
            match fleet::receive(ctx, config, c) {
                Ok(from) => from,
                Err(verdict) => return verdict,
            }
        } else {
            Arrival::Direct
        };
        let seg = match parse::parse(ctx, c) {
            Ok(seg) => seg,
            Err(NotTcp::Pass(reason)) => {
                c.add(reason);
                return xdp_action::XDP_PASS;
            }
            Err(NotTcp::Drop(reason)) => {
                // The kernel would drop these too; counting them here is the point.
                c.add(reason);
                debug!(ctx, "dropped a malformed frame ({})", reason.name());
                return xdp_action::XDP_DROP;
            }
        };
        c.add(Counter::Tcp);
        let class = classify::classify(seg.flags);
        c.add(class);
        count_flags(seg.flags, c);

        if !enabled {
            return xdp_action::XDP_PASS;
        }
        let protection = listen::protection(ctx, &seg);
        let protected = protection != PROTECTION_NONE;
        if classify::is_illegal(class) {
            if protected || config.flags & CFG_SCRUB_ALL != 0 {
                c.add(Counter::DropIllegalFlags);
                return xdp_action::XDP_DROP;
            }
            return xdp_action::XDP_PASS;
        }
        if !protected {
            return xdp_action::XDP_PASS;
        }
        frontdoor::handle(
            ctx,
            &seg,
            class,
            config,
            protection == PROTECTION_RETIRED,
            from,
            c,
        )
    }

    #[inline(always)]
    fn count_flags(flags: u8, c: Counts) {
        if flags & classify::PSH != 0 {
            c.add(Counter::FlagPsh);
        }
        if flags & classify::URG != 0 {
            c.add(Counter::FlagUrg);
        }
        if flags & classify::ECE != 0 {
            c.add(Counter::FlagEce);
        }
        if flags & classify::CWR != 0 {
            c.add(Counter::FlagCwr);
        }
    }

    /// A pass-through program for the *peer* of a veth that carries tcpfront: veth only
    /// delivers XDP_TX frames to a peer that has an XDP program attached.
    #[xdp]
    pub fn tcpfront_peer_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(target_arch = "bpf")]
use prog::{
    COOKIE, FLEET_NEXT, FLEET_NODES, FLEET_RING, FLOW_FILTER, FLOWS, LISTEN, PORTS, SCRATCH,
    SCRATCH_LEN, XSKS,
};

#[cfg(not(target_arch = "bpf"))]
fn main() {}
