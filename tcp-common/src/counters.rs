//! The per-CPU packet counters of the XDP program.
//!
//! The map is a `PerCpuArray` with a single [`CounterBlock`] per CPU, indexed by [`Counter`]:
//! the program looks its CPU's block up once per frame and then counts with plain adds.
//! User space sums the CPUs.

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal ),+ $(,)?) => {
        /// One slot of the `COUNTERS` per-CPU array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Counter {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl Counter {
            /// Every counter, in map index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant),+];
            /// Number of slots in the map.
            pub const COUNT: u32 = Counter::ALL.len() as u32;

            /// Stable name used in `tcpfront stats` output and its JSON.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)+ }
            }

            /// The counter's documentation (empty for self-explanatory ones), for metric
            /// help texts.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => concat!("" $(, $doc)*),)+ }
            }

            pub const fn index(self) -> u32 {
                self as u32
            }
        }

        /// One CPU's counters: the single value of the `COUNTERS` per-CPU array.
        pub type CounterBlock = [u64; Counter::COUNT as usize];
    };
}

counters! {
    // What arrived.
    /// Frames seen by the program.
    Frames = "frames",
    /// Frames that were neither IPv4 nor IPv6 (after up to two VLAN tags).
    NonIp = "non_ip",
    /// Frames that carried one or two 802.1Q/802.1ad tags.
    Vlan = "vlan_tagged",
    Ipv4 = "ipv4",
    Ipv6 = "ipv6",
    /// IP packets whose payload is not TCP.
    NonTcp = "non_tcp",
    /// IPv4 fragments: never parsed as TCP, always passed.
    Ipv4Fragment = "ipv4_fragment",
    /// IPv6 packets with extension headers before TCP: passed, not parsed.
    Ipv6ExtHeader = "ipv6_ext_header",
    /// TCP segments with a well-formed header.
    Tcp = "tcp",

    // Flag class: exactly one per well-formed TCP segment.
    ClassSyn = "class_syn",
    ClassSynAck = "class_syn_ack",
    /// ACK set, no SYN/FIN/RST (pure ACKs and data segments).
    ClassAck = "class_ack",
    /// FIN with ACK.
    ClassFin = "class_fin",
    /// RST (with or without ACK), no SYN.
    ClassRst = "class_rst",
    /// No ACK and none of SYN/FIN/RST, but some other flag (PSH/URG/ECE/CWR alone).
    ClassNoAck = "class_no_ack",
    /// Illegal: SYN and FIN together.
    ClassSynFin = "class_syn_fin",
    /// Illegal: SYN and RST together.
    ClassSynRst = "class_syn_rst",
    /// Illegal: FIN without ACK.
    ClassFinNoAck = "class_fin_no_ack",
    /// Illegal: no flag at all (null scan).
    ClassNull = "class_null",
    /// Illegal: FIN, PSH and URG together (Xmas scan).
    ClassXmas = "class_xmas",

    // Individual flags, counted on every segment that carries them.
    FlagPsh = "flag_psh",
    FlagUrg = "flag_urg",
    FlagEce = "flag_ece",
    FlagCwr = "flag_cwr",

    // Verdicts: exactly one per frame.
    VerdictPass = "verdict_pass",
    VerdictDrop = "verdict_drop",
    VerdictTx = "verdict_tx",
    VerdictRedirect = "verdict_redirect",
    VerdictAborted = "verdict_aborted",

    // Why a frame was dropped (each drop counts one reason).
    DropTruncated = "drop_truncated",
    /// An IP version that does not match the ethertype, or an IPv4 IHL below 5.
    DropBadIhl = "drop_bad_ihl",
    DropBadDataOffset = "drop_bad_data_offset",
    DropBadOptions = "drop_bad_options",
    DropIllegalFlags = "drop_illegal_flags",
    DropCookieInvalid = "drop_cookie_invalid",
    /// No AF_XDP socket registered for the RX queue of a flow's segment.
    DropNoSocket = "drop_no_socket",
    /// A SYN to a protected port carrying IPv4 options (cookie SYN-ACKs are built without).
    DropIpOptions = "drop_ip_options",
    /// RST or a segment without ACK to a protected port, matching no flow.
    DropNoFlow = "drop_no_flow",
    /// The frame could not be resized for the reply.
    DropResize = "drop_resize",
    /// IPv4 total length or IPv6 payload length shorter than the headers it must hold, or a
    /// TCP data offset past the IP payload (RFC 791, RFC 8200 §3, RFC 9293 §3.1).
    DropBadIpLength = "drop_bad_ip_length",
    /// An IPv4 header checksum that does not verify (RFC 791), on a frame we would answer.
    DropBadIpChecksum = "drop_bad_ip_checksum",
    /// A TCP checksum that does not verify (RFC 9293 §3.1: discard), on a segment we would
    /// answer or turn into a flow.
    DropBadChecksum = "drop_bad_checksum",

    // The SYN-cookie front door.
    SynAckSent = "syn_ack_sent",
    /// A SYN that could not be answered: no cookie key covers the current minute (user
    /// space did not install one in time).
    DropNoCookieKey = "drop_no_cookie_key",
    CookieValid = "cookie_ack_valid",
    CookieInvalid = "cookie_ack_invalid",
    RstSent = "rst_sent",
    /// SYNs handed to the engine because cookies are off.
    SynRedirected = "syn_redirected",
    FlowInserted = "flow_inserted",
    /// Segments of known flows handed to the AF_XDP socket.
    FlowRedirected = "flow_redirected",
    /// SYNs to a protected port while tcpfront drains on shutdown (passed or dropped).
    SynWhileDraining = "syn_while_draining",

    // The fleet hand-off (see `maps::FLEET_ETHERTYPE`).
    /// Segments of no local flow handed to the next node of the fleet.
    FleetHandedOff = "fleet_handed_off",
    /// Segments another node handed to this one.
    FleetReceived = "fleet_received",
    /// Handed-off segments that found their flow here.
    FleetClaimed = "fleet_claimed",
    /// Handed-off segments that no node of the fleet had a flow for (dropped, or reset if
    /// `--invalid-cookie rst`).
    FleetUnclaimed = "fleet_unclaimed",
    /// Hellos from the fleet's other nodes.
    FleetHello = "fleet_hello",
    /// Segments of no local flow that found no live node to go to (every other node silent):
    /// dropped, or reset if `--invalid-cookie rst`.
    FleetNoLiveNode = "fleet_no_live_node",
    /// Hand-off frames from a MAC address that is not one of the fleet's nodes, or while
    /// this node is in no fleet: dropped.
    DropFleetNotNode = "drop_fleet_not_node",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
            for other in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), other.name());
            }
        }
    }
}
