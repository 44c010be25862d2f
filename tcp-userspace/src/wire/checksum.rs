//! The Internet checksum (RFC 1071).

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to `acc` (a partial sum
/// from `add` or `pseudo_header`). `data` starts at an even offset of the checksummed bytes;
/// an odd last byte is padded with zero (RFC 9293 §3.1).
///
/// The bulk is summed as native-order 64-bit words into a 128-bit accumulator (an add and an
/// add-with-carry per word, no byte swapping): the one's-complement sum is independent of
/// byte order up to a swap of the result (RFC 1071 §2(B)), and the sum of wider words folds
/// to the same 16-bit sum (§2(C)). This runs over every segment sent and received.
pub fn add(acc: u32, data: &[u8]) -> u32 {
    let mut wide: u128 = 0;
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        let (w0, w1, w2, w3) = (
            word(&b[0..8]),
            word(&b[8..16]),
            word(&b[16..24]),
            word(&b[24..32]),
        );
        wide += u128::from(w0) + u128::from(w1) + u128::from(w2) + u128::from(w3);
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        wide += u128::from(word(w));
    }
    let mut sum = u64::from(acc) + u64::from(u16::from_be(fold_native(wide)));
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        sum += u64::from(*last) << 8;
    }
    // Back to 32 bits, carries folded in.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum as u32
}

/// Eight bytes as a native-order word.
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_ne_bytes(w)
}

/// A native-order sum folded to 16 bits with end-around carries.
fn fold_native(wide: u128) -> u16 {
    let mut x = (wide & u128::from(u64::MAX)) + (wide >> 64);
    x = (x & u128::from(u64::MAX)) + (x >> 64);
    let mut y = x as u64;
    y = (y & 0xffff_ffff) + (y >> 32);
    y = (y & 0xffff_ffff) + (y >> 32);
    y = (y & 0xffff) + (y >> 16);
    y = (y & 0xffff) + (y >> 16);
    y as u16
}

/// Folds the carries and complements.
pub fn finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The TCP pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, length: u32) -> u32 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = add(acc, &s.octets());
            acc = add(acc, &d.octets());
            acc = acc
                .wrapping_add(u32::from(protocol))
                .wrapping_add(length & 0xffff);
        }
        (s, d) => {
            acc = add(acc, &to_v6(s));
            acc = add(acc, &to_v6(d));
            acc = acc
                .wrapping_add(length >> 16)
                .wrapping_add(length & 0xffff)
                .wrapping_add(u32::from(protocol));
        }
    }
    acc
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2 (before complement).
        let acc = add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(finish(acc), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(add(0, &[0x12]), 0x1200);
    }

    /// The word-at-a-time sum against the definition, 16 bits at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    proptest! {
        #[test]
        fn matches_the_definition(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(finish(add(0, &data)), reference(&data));
        }

        /// Summed in two parts split at an even offset, as headers and payload are.
        #[test]
        fn parts_add_up(data in proptest::collection::vec(any::<u8>(), 0..3000), at in 0usize..1500) {
            let at = (at * 2).min(data.len() & !1);
            prop_assert_eq!(finish(add(add(0, &data[..at]), &data[at..])), reference(&data));
        }
    }

    #[test]
    fn all_ones_words_fold_without_losing_carries() {
        // Every word 0xffff: the worst case for carries in the wide accumulator.
        let data = vec![0xffu8; 4096 + 6];
        assert_eq!(finish(add(0, &data)), reference(&data));
        assert_eq!(finish(add(0xffff_ffff, &data)), {
            let mut a = u64::from(0xffff_ffffu32);
            for c in data.chunks(2) {
                a += u64::from(u16::from_be_bytes([c[0], c[1]]));
            }
            while a >> 16 != 0 {
                a = (a & 0xffff) + (a >> 16);
            }
            !(a as u16)
        });
    }
}
