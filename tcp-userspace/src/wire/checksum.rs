//! The Internet checksum (RFC 1071).

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to `acc` (a partial sum
/// from `add` or `pseudo_header`). `data` starts at an even offset of the checksummed bytes;
/// an odd last byte is padded with zero (RFC 9293 §3.1).
///
/// Eight bytes at a time: the sum of big-endian 32-bit words folds to the same 16-bit sum
/// (RFC 1071 §2(C)), and a 64-bit accumulator cannot overflow for any frame.
pub fn add(acc: u32, data: &[u8]) -> u32 {
    let mut sum = u64::from(acc);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
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
    }
}
