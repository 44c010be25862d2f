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
}

/// A protected listen address: key of `LISTEN`. An all-zero `addr` matches any address of
/// the family. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// IPv4 in the first 4 bytes (network order), or IPv6.
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

/// Key of `FLOWS`: a connection as seen from the client (src = client, dst = tcpfront).
/// Ports in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
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
    /// `bpf_ktime_get_ns()` when the flow was created.
    pub created_ns: u64,
    /// MSS the client may send us / we may send it (the cookie's MSS).
    pub mss: u16,
    /// Shift the client applies to its windows.
    pub client_wscale: u8,
    /// Shift we announced.
    pub server_wscale: u8,
    pub flags: u8,
    /// Engine life-cycle mark (0 = new, set by user space).
    pub state: u8,
    pub _pad: [u8; 6],
}

/// Low bits of the TSval of a cookie SYN-ACK carry what the client's SYN offered, as Linux
/// does (`cookie_init_timestamp`), so the returning ACK's TSecr tells it back without state:
/// bits 0..=3 window scale (15 = none), bit 4 SACK permitted, bits 5..=6 the cookie's MSS
/// index.
pub const TS_OPT_BITS: u32 = 7;
pub const TS_WSCALE_MASK: u32 = 0xf;
pub const TS_WSCALE_NONE: u32 = 0xf;
pub const TS_SACK_BIT: u32 = 1 << 4;
pub const TS_MSS_SHIFT: u32 = 5;
pub const TS_MSS_MASK: u32 = 0x3;

/// The MSS values the kernel's SYN-cookie helpers encode (net/ipv4/syncookies.c `msstab`,
/// net/ipv6/syncookies.c `msstab`). Index 0 is also what a flow gets when timestamps were off
/// and the index could not travel.
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
    unsafe impl aya::Pod for super::ListenKey {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Config>(), 8);
        assert_eq!(core::mem::size_of::<ListenKey>(), 20);
        assert_eq!(core::mem::size_of::<FlowKey>(), 40);
        assert_eq!(core::mem::size_of::<FlowValue>(), 40);
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
