//! tcpfront's own SYN cookie (not the kernel's): its layout, its SipHash message and the key
//! map, shared by the XDP program that mints and checks cookies and by user space, which
//! holds the keys and checks the program against an independent implementation.
//!
//! A cookie is the ISN of our SYN-ACK (RFC 9293 §3.4), 32 bits, from the most significant:
//!
//! | bits | what |
//! |---|---|
//! | 31..30 | the minute it was minted in, modulo 4 |
//! | 29..28 | the MSS index (`COOKIE_MSS_V4`/`V6`) |
//! | 27..24 | the client's window scale, 15 = none (RFC 7323 §2) |
//! | 23 | the client offered SACK (RFC 2018) |
//! | 22..0 | MAC: the low 23 bits of SipHash-2-4 over the 4-tuple, the client's ISN, the minute and bits 31..23 |
//!
//! As net/ipv4/syncookies.c, the MSS index is in the cookie and a cookie is valid in the minute
//! it was minted and the next (up to two minutes). Unlike Linux, window scale and SACK are in
//! the cookie too, so they survive a client that sends no timestamps. The minute counts
//! wall-clock minutes since the Unix epoch, so that nodes whose clocks agree (NTP) accept each
//! other's cookies; one hash mints a cookie and one checks it (the minute's two low bits say
//! which minute to check against).

/// Where the minute's two low bits are.
pub const COOKIE_MINUTE_SHIFT: u32 = 30;
pub const COOKIE_MSS_SHIFT: u32 = 28;
pub const COOKIE_WSCALE_SHIFT: u32 = 24;
pub const COOKIE_WSCALE_NONE: u32 = 15;
pub const COOKIE_SACK_BIT: u32 = 1 << 23;
pub const COOKIE_MAC_BITS: u32 = 23;
pub const COOKIE_MAC_MASK: u32 = (1 << COOKIE_MAC_BITS) - 1;
/// How many minutes after the one it was minted in a cookie is still accepted.
pub const COOKIE_MAX_AGE_MINUTES: u64 = 1;
pub const NS_PER_MINUTE: u64 = 60_000_000_000;

/// The SipHash message's length in bytes: addresses, ports, the client's ISN, the minute and
/// the cookie's nine high bits (see [`last_word`]).
pub const MSG_LEN_V4: u64 = 4 + 4 + 2 + 2 + 4 + 4 + 2;
pub const MSG_LEN_V6: u64 = 16 + 16 + 2 + 2 + 4 + 4 + 2;

/// The cookie's bits 31..23 (minute modulo 4, MSS index, window scale, SACK) in place.
pub const fn cookie_bits(minute: u64, mss_index: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let ws = match wscale {
        Some(w) if w <= 14 => w as u32,
        _ => COOKIE_WSCALE_NONE,
    };
    (((minute & 3) as u32) << COOKIE_MINUTE_SHIFT)
        | ((mss_index & 3) << COOKIE_MSS_SHIFT)
        | (ws << COOKIE_WSCALE_SHIFT)
        | if sack { COOKIE_SACK_BIT } else { 0 }
}

/// The minute a cookie minted at most three minutes ago was minted in, and its age.
pub const fn cookie_minute(cookie: u32, now_minute: u64) -> (u64, u64) {
    let age = (now_minute.wrapping_sub((cookie >> COOKIE_MINUTE_SHIFT) as u64)) & 3;
    (now_minute.wrapping_sub(age), age)
}

/// The last SipHash message word: the minute (4 bytes), the cookie's bits 31..23 (2 bytes,
/// little-endian), and the message length in the top byte, as SipHash pads its last block.
/// The words before it are the addresses as they lie in the packet (source then
/// destination), then the two ports as they lie in the packet followed by the client's ISN
/// (little-endian): `[saddr daddr] [sport dport isn]` for IPv4.
pub const fn last_word(minute: u64, high_bits: u32, msg_len: u64) -> u64 {
    (minute & 0xffff_ffff) | (((high_bits >> COOKIE_MAC_BITS) as u64) << 32) | (msg_len << 56)
}

/// Key slots of the `COOKIE` map: a key takes over at its `from_minute`, the one before
/// still checks the cookies minted before that minute.
pub const COOKIE_KEY_SLOTS: usize = 3;
/// `from_minute` of an unused slot.
pub const COOKIE_SLOT_UNUSED: u64 = u64::MAX;

/// The single entry of the `COOKIE` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKeys {
    /// SipHash-2-4 keys (k0, k1).
    pub key: [[u64; 2]; COOKIE_KEY_SLOTS],
    /// The first minute each key mints cookies for; `COOKIE_SLOT_UNUSED` if none.
    pub from_minute: [u64; COOKIE_KEY_SLOTS],
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns (two's complement): the XDP program
    /// reads the coarse monotonic clock and adds this to count wall-clock minutes.
    pub clock_offset_ns: u64,
}

impl CookieKeys {
    /// The slot whose key covers `minute`: the latest `from_minute` not after it.
    pub const fn slot_for(&self, minute: u64) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut i = 0;
        while i < COOKIE_KEY_SLOTS {
            let f = self.from_minute[i];
            if f != COOKIE_SLOT_UNUSED && f <= minute {
                best = match best {
                    Some(b) if self.from_minute[b] >= f => Some(b),
                    _ => Some(i),
                };
            }
            i += 1;
        }
        best
    }
}

/// SipHash-2-4 (Aumasson & Bernstein) over whole 64-bit words, the last one already padded
/// (see [`last_word`]). Written for the XDP program; user space checks it against the
/// `siphasher` crate.
#[inline(always)]
pub fn siphash24(k: [u64; 2], words: &[u64], last: u64) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut i = 0;
    while i < words.len() {
        v[3] ^= words[i];
        round(&mut v);
        round(&mut v);
        v[0] ^= words[i];
        i += 1;
    }
    v[3] ^= last;
    round(&mut v);
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_comes_back_from_its_two_bits() {
        for minted in 1000u64..1008 {
            let c = cookie_bits(minted, 0, None, false);
            for age in 0..4 {
                assert_eq!(cookie_minute(c, minted + age), (minted, age));
            }
        }
    }

    #[test]
    fn bits_do_not_overlap_the_mac() {
        let c = cookie_bits(3, 3, Some(14), true);
        assert_eq!(c & COOKIE_MAC_MASK, 0);
        assert_eq!(
            cookie_bits(0, 0, Some(15), false) >> COOKIE_WSCALE_SHIFT & 0xf,
            15
        );
    }

    #[test]
    fn the_latest_key_not_after_the_minute_is_used() {
        let k = CookieKeys {
            key: [[1, 1], [2, 2], [3, 3]],
            from_minute: [100, 160, COOKIE_SLOT_UNUSED],
            clock_offset_ns: 0,
        };
        assert_eq!(k.slot_for(99), None);
        assert_eq!(k.slot_for(100), Some(0));
        assert_eq!(k.slot_for(159), Some(0));
        assert_eq!(k.slot_for(160), Some(1));
        assert_eq!(k.slot_for(10_000), Some(1));
    }
}
