//! The SYN cookie's keys, which the XDP program reads from its `COOKIE` map, and a second,
//! independent implementation of the cookie (the message built from socket addresses, the
//! hash from the `siphasher` crate) that checks what the program mints.

use std::net::SocketAddr;

use siphasher::sip::SipHasher24;
use tcp_common::cookie::{
    COOKIE_KEY_SLOTS, COOKIE_MAC_BITS, COOKIE_MAC_MASK, COOKIE_SLOT_UNUSED, CookieKeys, cookie_bits,
};

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now, in ns (two's complement): what turns the XDP
/// program's monotonic clock into wall-clock minutes.
pub fn clock_offset_ns() -> u64 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes into our timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    };
    read(libc::CLOCK_REALTIME).wrapping_sub(read(libc::CLOCK_MONOTONIC))
}

/// The current wall-clock minute.
pub fn current_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

/// CLOCK_MONOTONIC_COARSE in ns: the XDP program's `bpf_ktime_get_coarse_ns`.
pub fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The minute the XDP program counts now, from the same clock and offset.
pub fn program_minute(keys: &CookieKeys) -> u64 {
    coarse_now_ns().wrapping_add(keys.clock_offset_ns) / tcp_common::cookie::NS_PER_MINUTE
}

/// Mints a cookie as the XDP program would now: (cookie, the MSS it encodes), or None if no
/// key covers this minute. `mss` 0 means the SYN had no MSS option.
pub fn mint(
    keys: &CookieKeys,
    client: SocketAddr,
    server: SocketAddr,
    client_isn: u32,
    mss: u16,
    wscale: Option<u8>,
    sack: bool,
) -> Option<(u32, u16)> {
    use tcp_common::maps::{COOKIE_MSS_V4, COOKIE_MSS_V6, FAMILY_V4, FAMILY_V6, cookie_mss_index};
    let minute = program_minute(keys);
    let k = keys.key[keys.slot_for(minute)?];
    let (family, table) = if client.is_ipv4() {
        (FAMILY_V4, &COOKIE_MSS_V4)
    } else {
        (FAMILY_V6, &COOKIE_MSS_V6)
    };
    let mss_index = cookie_mss_index(family, if mss == 0 { 536 } else { mss });
    let c = cookie(
        k,
        &CookieInput {
            client,
            server,
            client_isn,
            minute,
            mss_index,
            wscale,
            sack,
        },
    );
    Some((c, table[mss_index as usize]))
}

/// One random key for the whole life of the instance (used from minute 0 on).
pub fn per_instance_keys() -> CookieKeys {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(
        n, 16,
        "the kernel's random pool is always available after boot"
    );
    let k0 = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
    let mut keys = CookieKeys {
        key: [[0; 2]; COOKIE_KEY_SLOTS],
        from_minute: [COOKIE_SLOT_UNUSED; COOKIE_KEY_SLOTS],
        clock_offset_ns: clock_offset_ns(),
    };
    keys.key[0] = [k0, k1];
    keys.from_minute[0] = 0;
    keys
}

/// What a cookie is minted from.
#[derive(Clone, Copy, Debug)]
pub struct CookieInput {
    /// The client (the SYN's source) and tcpfront (its destination).
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub client_isn: u32,
    pub minute: u64,
    pub mss_index: u32,
    pub wscale: Option<u8>,
    pub sack: bool,
}

/// The cookie the XDP program mints for `input` with key `k`: the message of
/// `tcp_common::cookie` written out byte by byte, hashed by `siphasher`. User space mints
/// with it too (a SYN that retires a TIME-WAIT), and the tests check the program against it.
pub fn cookie(k: [u64; 2], input: &CookieInput) -> u32 {
    let bits = cookie_bits(input.minute, input.mss_index, input.wscale, input.sack);
    let mut msg = Vec::with_capacity(46);
    match (input.client.ip(), input.server.ip()) {
        (std::net::IpAddr::V4(c), std::net::IpAddr::V4(s)) => {
            msg.extend_from_slice(&c.octets());
            msg.extend_from_slice(&s.octets());
        }
        (c, s) => {
            let v6 = |a: std::net::IpAddr| match a {
                std::net::IpAddr::V6(v) => v.octets(),
                std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            msg.extend_from_slice(&v6(c));
            msg.extend_from_slice(&v6(s));
        }
    }
    msg.extend_from_slice(&input.client.port().to_be_bytes());
    msg.extend_from_slice(&input.server.port().to_be_bytes());
    msg.extend_from_slice(&input.client_isn.to_le_bytes());
    msg.extend_from_slice(&(input.minute as u32).to_le_bytes());
    msg.extend_from_slice(&((bits >> COOKIE_MAC_BITS) as u16).to_le_bytes());
    let mut h = SipHasher24::new_with_keys(k[0], k[1]);
    std::hash::Hasher::write(&mut h, &msg);
    bits | (std::hash::Hasher::finish(&h) as u32 & COOKIE_MAC_MASK)
}

#[cfg(test)]
mod tests {
    use tcp_common::cookie::{MSG_LEN_V4, MSG_LEN_V6, cookie_minute, last_word, siphash24};

    use super::*;

    /// The word-wise SipHash the XDP program runs against the crate's byte-wise one, on the
    /// messages both build, for both families.
    #[test]
    fn the_programs_siphash_matches_the_crate() {
        let k = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        for (client, server) in [
            ("192.0.2.10:40000", "192.0.2.1:80"),
            ("[2001:db8::10]:40000", "[2001:db8::1]:443"),
        ] {
            let input = CookieInput {
                client: client.parse().unwrap(),
                server: server.parse().unwrap(),
                client_isn: 0x1234_5678,
                minute: 29_400_000,
                mss_index: 3,
                wscale: Some(7),
                sack: true,
            };
            let bits = cookie_bits(input.minute, 3, Some(7), true);
            let ports = |a: SocketAddr, b: SocketAddr| {
                let mut p = [0u8; 4];
                p[..2].copy_from_slice(&a.port().to_be_bytes());
                p[2..].copy_from_slice(&b.port().to_be_bytes());
                u64::from(u32::from_le_bytes(p)) | u64::from(input.client_isn) << 32
            };
            let w_ports = ports(input.client, input.server);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
            let h = match (input.client.ip(), input.server.ip()) {
                (std::net::IpAddr::V4(c), std::net::IpAddr::V4(s)) => {
                    let mut a = [0u8; 8];
                    a[..4].copy_from_slice(&c.octets());
                    a[4..].copy_from_slice(&s.octets());
                    siphash24(
                        k,
                        &[word(&a), w_ports],
                        last_word(input.minute, bits, MSG_LEN_V4),
                    )
                }
                (std::net::IpAddr::V6(c), std::net::IpAddr::V6(s)) => {
                    let (c, s) = (c.octets(), s.octets());
                    siphash24(
                        k,
                        &[
                            word(&c[..8]),
                            word(&c[8..]),
                            word(&s[..8]),
                            word(&s[8..]),
                            w_ports,
                        ],
                        last_word(input.minute, bits, MSG_LEN_V6),
                    )
                }
                _ => unreachable!(),
            };
            assert_eq!(bits | (h as u32 & COOKIE_MAC_MASK), cookie(k, &input));
        }
    }

    #[test]
    fn a_cookie_names_its_minute_for_four_minutes() {
        let c = cookie_bits(1001, 0, None, false);
        assert_eq!(cookie_minute(c, 1002), (1001, 1));
    }

    #[test]
    fn the_clock_offset_is_the_epoch_seen_from_boot() {
        let off = clock_offset_ns();
        // Boot was less than a century before now, and after 2020.
        assert!(off > 1_577_836_800 * 1_000_000_000);
    }
}
