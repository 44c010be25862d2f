//! Keys and values of the maps the XDP program and tcpfront share.

/// Address family tags used in keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// `CONFIG` flag: answer SYNs with cookies at the NIC. Off: SYNs go to the engine.
pub const CFG_SYN_COOKIES: u32 = 1 << 0;
/// `CONFIG` flag: answer an ACK with an invalid cookie with RST instead of dropping it.
pub const CFG_RST_INVALID_COOKIE: u32 = 1 << 1;
/// `CONFIG` flag: the program is live; without it everything passes (also while starting).
pub const CFG_ENABLED: u32 = 1 << 2;
/// `CONFIG` flag: drop illegal flag combinations and malformed TCP for every destination, not
/// only for protected ports.
pub const CFG_SCRUB_ALL: u32 = 1 << 3;
/// `CONFIG` flag: shutting down. New SYNs to protected ports are no longer answered; known
/// flows still reach user space so that their connections can close.
pub const CFG_DRAINING: u32 = 1 << 4;
/// `CONFIG` flag, with `CFG_DRAINING`: drop those SYNs instead of passing them to the kernel.
pub const CFG_DRAIN_DROP_SYNS: u32 = 1 << 5;

/// The single entry of the `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub flags: u32,
    /// Receive window advertised in cookie SYN-ACKs (unscaled, as RFC 7323 §2.2 requires).
    pub syn_ack_window: u16,
    /// Window scale tcpfront offers in SYN-ACKs when the client offered one.
    pub wscale: u8,
    pub _pad: u8,
    /// Seed of the flow filter's hash (see `flow_filter_slot`), random per instance.
    pub filter_seed: u64,
    /// The largest MSS a cookie SYN-ACK offers (0: no limit besides the cookie's table), so
    /// that a client's largest segment still fits the segment between the nodes of a fleet
    /// with the hand-off header added (see `FLEET_HANDOFF_LEN`).
    pub mss_cap_v4: u16,
    pub mss_cap_v6: u16,
    /// Fleet hand-off: the number of nodes in the ring (`FLEET_RING`; 0: no fleet, segments
    /// of no local flow are dropped or reset here) and this node's position in it.
    pub fleet_size: u8,
    pub fleet_self: u8,
    pub _pad2: [u8; 2],
}

/// Ethertype of a segment one fleet node hands to the next (IEEE 802 "local experimental
/// ethertype 1"): a segment of a flow this node does not have, which ECMP may have moved
/// away from the node that does (a node joined or left). Behind the two MAC addresses:
///
/// | bytes | field |
/// |---|---|
/// | 12..14 | `FLEET_ETHERTYPE` |
/// | 14 | nodes visited so far (1 from the first node) |
/// | 15 | `FLEET_KIND_SEGMENT`, or `FLEET_KIND_HELLO` (then nothing follows) |
/// | 16..22 | the source MAC the first node received the frame with (the router's) |
/// | 22.. | the frame's own ethertype and everything after it |
///
/// The receiving node strips it, restoring the frame as the router sent it, except that it
/// is now addressed to this node.
pub const FLEET_ETHERTYPE: u16 = 0x88b5;
/// Bytes the hand-off header adds to a frame.
pub const FLEET_HANDOFF_LEN: usize = 10;
/// Hand-off header kind: a segment handed on.
pub const FLEET_KIND_SEGMENT: u8 = 0;
/// Hand-off header kind: a node's sign of life. Each node sends one to every other node every
/// `FLEET_HELLO_INTERVAL_MS`; a node not heard for `FLEET_DEAD_NS` is skipped by the ring
/// (a killed node must not swallow segments that the next node may own).
pub const FLEET_KIND_HELLO: u8 = 1;
pub const FLEET_HELLO_INTERVAL_MS: u64 = 100;
pub const FLEET_DEAD_NS: u64 = 400_000_000;

/// The node this one hands segments to: the single value of `FLEET_NEXT`, kept by user
/// space from `FLEET_RING` (the first node after this one heard within `FLEET_DEAD_NS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetNext {
    pub mac: [u8; 6],
    /// 0: no other node is alive; segments of unknown flows end here.
    pub live: u8,
    pub _pad: u8,
}

/// A node of the ring: value of `FLEET_RING`, indexed by position.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetNode {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// When its last hello arrived (`bpf_ktime_get_coarse_ns`, CLOCK_MONOTONIC); 0: never.
    pub last_seen_ns: u64,
}
/// Nodes a fleet may have.
pub const MAX_FLEET_NODES: u32 = 64;

/// A MAC address as the key of the `FLEET_NODES` map: its six bytes, little-endian, in a u64.
pub const fn mac_key(mac: [u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// `PORTS` value bit: every IPv4 address of this port is protected (`0.0.0.0:P`).
pub const PORT_V4_ANY: u8 = 1 << 0;
/// `PORTS` value bit: every IPv6 address of this port is protected (`[::]:P`).
pub const PORT_V6_ANY: u8 = 1 << 1;
/// `PORTS` value bit: some IPv4 addresses of this port are protected; `LISTEN` says which.
pub const PORT_V4_EXACT: u8 = 1 << 2;
/// `PORTS` value bit: some IPv6 addresses of this port are protected; `LISTEN` says which.
pub const PORT_V6_EXACT: u8 = 1 << 3;

/// `PORTS` value bit: the IPv4 wildcard of this port is *retired* (removed by a reload): its
/// connections' segments still go to user space, its new SYNs are not answered.
pub const PORT_V4_ANY_RETIRED: u8 = 1 << 4;
/// `PORTS` value bit: the IPv6 wildcard of this port is retired.
pub const PORT_V6_ANY_RETIRED: u8 = 1 << 5;

/// `LISTEN` value: the exact address takes new connections.
pub const LISTEN_SERVING: u32 = 1;
/// `LISTEN` value: the exact address was removed by a reload: its open connections are
/// served to their end, new SYNs are not answered.
pub const LISTEN_RETIRED: u32 = 2;

/// What a destination is to the XDP program.
pub const PROTECTION_NONE: u8 = 0;
pub const PROTECTION_SERVING: u8 = 1;
pub const PROTECTION_RETIRED: u8 = 2;

/// The `PORTS` bit that retires a family's wildcard.
pub const fn port_retired_bit(family: u8) -> u8 {
    if family == FAMILY_V6 {
        PORT_V6_ANY_RETIRED
    } else {
        PORT_V4_ANY_RETIRED
    }
}

/// The `PORTS` bits that make `dst:port` protected for a family, given whether `LISTEN`
/// holds the exact address (`exact`). The XDP program asks `LISTEN` only when the port has
/// exact entries of that family, so the common wildcard case costs one array lookup.
pub const fn port_bits(family: u8) -> (u8, u8) {
    if family == FAMILY_V6 {
        (PORT_V6_ANY, PORT_V6_EXACT)
    } else {
        (PORT_V4_ANY, PORT_V4_EXACT)
    }
}

/// A protected listen address: key of `LISTEN`. An all-zero `addr` matches any address of
/// the family. Ports are in host byte order. Aligned so that the XDP program fills it with
/// word stores.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// IPv4 in the first 4 bytes (network order), or IPv6.
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

/// Key of `FLOWS`: a connection as seen from the client (src = client, dst = tcpfront).
/// Ports in host byte order. Aligned so that the XDP program fills it with word stores.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// The key as the five little-endian words it is in memory (what the XDP program builds
    /// and hashes): source address, destination address, then ports and family.
    pub fn words(&self) -> [u64; 5] {
        let w = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        };
        [
            w(&self.src[..8]),
            w(&self.src[8..]),
            w(&self.dst[..8]),
            w(&self.dst[8..]),
            u64::from(self.src_port)
                | u64::from(self.dst_port) << 16
                | u64::from(self.family) << 32,
        ]
    }
}

/// Slots of the flow filter (a power of two). Each slot is an 8-bit counter, eight to a
/// 64-bit word of `FLOW_FILTER` (BPF's atomic add works on whole words): 128 KiB in all,
/// small enough for the CPU's caches and TLB, where `FLOWS` (hundreds of thousands of
/// buckets) is not.
pub const FLOW_FILTER_BITS: u32 = 17;
pub const FLOW_FILTER_SLOTS: u32 = 1 << FLOW_FILTER_BITS;
/// Words of the `FLOW_FILTER` array.
pub const FLOW_FILTER_WORDS: u32 = FLOW_FILTER_SLOTS / 8;

/// The flow filter slot of a flow key's words, under the instance's random `seed`.
///
/// The filter counts, per slot, the `FLOWS` entries whose keys hash there: the XDP program
/// adds one before it inserts a flow, user space takes one away after it deleted one. A zero
/// slot proves that no flow with such a key exists, so a SYN (or any segment) of a new
/// 4-tuple needs no `FLOWS` lookup, which costs a cache and TLB miss. A non-zero slot only
/// says "look": collisions, and entries the LRU evicted, cost a lookup, never a wrong answer.
/// The seed keeps clients from aiming 256 connections at one 8-bit slot.
pub const fn flow_filter_slot(w: &[u64; 5], seed: u64) -> u32 {
    // Multiply-add of the words with odd constants, the top bits taken: cheap in BPF (no
    // rotate instruction) and mixing every input bit into the slot.
    let h = (w[0] ^ seed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(w[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(w[2].wrapping_mul(0x1656_67b1_9e37_79f9))
        .wrapping_add(w[3].wrapping_mul(0x85eb_ca77_c2b2_ae63))
        .wrapping_add((w[4] ^ seed).wrapping_mul(0x27d4_eb2f_1656_67c5));
    (h.wrapping_mul(0xff51_afd7_ed55_8ccd) >> (64 - FLOW_FILTER_BITS)) as u32
}

/// The `FLOW_FILTER` word of a slot, and the shift of its 8-bit counter in that word.
pub const fn flow_filter_place(slot: u32) -> (u32, u32) {
    (slot / 8, (slot % 8) * 8)
}

/// `FlowValue::flags`: the client offered SACK (RFC 2018).
pub const FLOW_SACK: u8 = 1 << 0;
/// `FlowValue::flags`: timestamps are in use (RFC 7323).
pub const FLOW_TIMESTAMPS: u8 = 1 << 1;
/// `FlowValue::flags`: window scaling is in use (both sides sent the option).
pub const FLOW_WSCALE: u8 = 1 << 2;
/// `FlowValue::flags`: the flow was created from a cookie-validated ACK.
pub const FLOW_FROM_COOKIE: u8 = 1 << 3;

/// Value of `FLOWS`: what the handshake negotiated, for the engine to build its TCB from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// The client's initial sequence number.
    pub client_isn: u32,
    /// Ours: the cookie.
    pub server_isn: u32,
    /// The client's most recent TSval (for TSecr), when timestamps are on.
    pub ts_recent: u32,
    /// Our TSval clock offset: what we sent in the SYN-ACK.
    pub ts_offset: u32,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC, jiffy resolution) when the flow was
    /// created.
    pub created_ns: u64,
    /// MSS the client may send us / we may send it (the cookie's MSS).
    pub mss: u16,
    /// Shift the client applies to its windows.
    pub client_wscale: u8,
    /// Shift we announced.
    pub server_wscale: u8,
    pub flags: u8,
    /// The AF_XDP queue that owns the flow, plus one (0: none yet). The XDP program sets it
    /// to the queue the flow's first ACK arrived on; a queue that receives a frame of a flow
    /// another owns hands it over.
    pub state: u8,
    pub _pad: [u8; 6],
}

/// The MSS values a cookie encodes (as net/ipv4/syncookies.c and net/ipv6/syncookies.c
/// `msstab`): two bits of the cookie index this table.
pub const COOKIE_MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
pub const COOKIE_MSS_V6: [u16; 4] = [1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60];

/// Index of `mss` in the family's cookie table (the largest entry not above it).
pub const fn cookie_mss_index(family: u8, mss: u16) -> u32 {
    let table = if family == FAMILY_V6 {
        &COOKIE_MSS_V6
    } else {
        &COOKIE_MSS_V4
    };
    if mss >= table[3] {
        3
    } else if mss >= table[2] {
        2
    } else if mss >= table[1] {
        1
    } else {
        0
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] plain data with explicit padding fields.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::FleetNode {}
    unsafe impl aya::Pod for super::FleetNext {}
    unsafe impl aya::Pod for super::ListenKey {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for crate::cookie::CookieKeys {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Config>(), 24);
        assert_eq!(core::mem::size_of::<FleetNode>(), 16);
        assert_eq!(core::mem::size_of::<FleetNext>(), 8);
        assert_eq!(core::mem::size_of::<ListenKey>(), 20);
        assert_eq!(core::mem::size_of::<FlowKey>(), 40);
        assert_eq!(core::mem::size_of::<FlowValue>(), 40);
    }

    #[test]
    fn flow_key_words_are_its_memory() {
        let k = FlowKey {
            src: [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            dst: [5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
            src_port: 40000,
            dst_port: 80,
            family: FAMILY_V6,
            _pad: [0; 3],
        };
        // SAFETY: FlowKey is #[repr(C, align(8))] plain data of exactly 40 bytes.
        let mem: [u64; 5] = unsafe { core::mem::transmute(k) };
        if cfg!(target_endian = "little") {
            assert_eq!(k.words(), mem);
        }
        assert!(flow_filter_slot(&k.words(), 7) < FLOW_FILTER_SLOTS);
        assert_ne!(
            flow_filter_slot(&k.words(), 7),
            flow_filter_slot(&k.words(), 8),
            "the seed changes the slot"
        );
    }

    #[test]
    fn mss_index_picks_the_largest_entry_not_above() {
        assert_eq!(cookie_mss_index(FAMILY_V4, 1460), 3);
        assert_eq!(cookie_mss_index(FAMILY_V4, 1459), 2);
        assert_eq!(cookie_mss_index(FAMILY_V4, 100), 0);
        assert_eq!(cookie_mss_index(FAMILY_V6, 1440), 2);
        assert_eq!(cookie_mss_index(FAMILY_V6, 8940), 3);
    }
}
