//! Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs clock, F a
//! keyed hash (SipHash with a per-process random key, from std's `RandomState`).

use std::{hash::BuildHasher, net::SocketAddr};

use super::time::Instant;

pub struct IsnGenerator {
    key: std::collections::hash_map::RandomState,
}

impl Default for IsnGenerator {
    fn default() -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl IsnGenerator {
    pub fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> u32 {
        let f = self.key.hash_one((local, remote)) as u32;
        let m = (now.0 / 4) as u32;
        m.wrapping_add(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_per_tuple_and_grows_with_time() {
        let g = IsnGenerator::default();
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1234".parse().unwrap();
        let c: SocketAddr = "10.0.0.2:1235".parse().unwrap();
        assert_ne!(g.isn(a, b, Instant(0)), g.isn(a, c, Instant(0)));
        let later = g.isn(a, b, Instant(4_000));
        assert_eq!(later.wrapping_sub(g.isn(a, b, Instant(0))), 1000);
        // Another generator (another key) gives another ISN.
        assert_ne!(
            IsnGenerator::default().isn(a, b, Instant(0)),
            g.isn(a, b, Instant(0))
        );
    }
}
