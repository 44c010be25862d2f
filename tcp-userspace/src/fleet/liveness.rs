//! Which node segments of unknown flows go to: the first node after this one in the ring
//! that was heard within `FLEET_DEAD_NS`. The XDP program notes each hello's time in
//! `FLEET_RING`; this reads it on every hello tick and keeps `FLEET_NEXT`, which is all the
//! program's hand-off reads (no search over the ring per segment).

use std::path::Path;

use anyhow::Context as _;
use aya::maps::{Array, Map, MapData};
use tcp_common::maps::{FLEET_DEAD_NS, FleetNext, FleetNode};

use super::{FleetPlace, Mac};

/// The position of the first node after `me` heard within `FLEET_DEAD_NS` of `now_ns`.
pub fn next_live(ring: &[FleetNode], me: usize, now_ns: u64) -> Option<usize> {
    (1..ring.len()).map(|k| (me + k) % ring.len()).find(|&i| {
        ring[i].last_seen_ns != 0 && now_ns.saturating_sub(ring[i].last_seen_ns) < FLEET_DEAD_NS
    })
}

/// `FLEET_RING` and `FLEET_NEXT` of a running program, for one ring.
pub struct Liveness {
    ring: Array<MapData, FleetNode>,
    next: Array<MapData, FleetNext>,
    size: usize,
    me: usize,
    current: Option<FleetNext>,
}

impl Liveness {
    /// Opens the pinned maps.
    pub fn open(ring_pin: &Path, next_pin: &Path, place: &FleetPlace) -> anyhow::Result<Self> {
        let ring = MapData::from_pin(ring_pin)
            .with_context(|| format!("opening {}", ring_pin.display()))?;
        let next = MapData::from_pin(next_pin)
            .with_context(|| format!("opening {}", next_pin.display()))?;
        Self::new(ring, next, place)
    }

    pub fn new(ring: MapData, next: MapData, place: &FleetPlace) -> anyhow::Result<Self> {
        Ok(Self {
            ring: Array::try_from(Map::Array(ring)).context("FLEET_RING")?,
            next: Array::try_from(Map::Array(next)).context("FLEET_NEXT")?,
            size: place.nodes.len(),
            me: place.index,
            current: None,
        })
    }

    /// Re-reads the ring and rewrites `FLEET_NEXT` if the first live node changed. Returns
    /// the node segments now go to, and whether that changed.
    pub fn refresh(&mut self) -> anyhow::Result<(Option<Mac>, bool)> {
        let ring = (0..self.size as u32)
            .map(|i| self.ring.get(&i, 0))
            .collect::<Result<Vec<_>, _>>()
            .context("reading FLEET_RING")?;
        let next = match next_live(&ring, self.me, monotonic_coarse_ns()) {
            Some(i) => FleetNext {
                mac: ring[i].mac,
                live: 1,
                _pad: 0,
            },
            None => FleetNext::default(),
        };
        let changed = self.current != Some(next);
        if changed {
            self.next.set(0, next, 0).context("writing FLEET_NEXT")?;
            self.current = Some(next);
        }
        Ok(((next.live != 0).then_some(Mac(next.mac)), changed))
    }
}

/// The clock `bpf_ktime_get_coarse_ns` reads.
fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seen: &[u64]) -> Vec<FleetNode> {
        seen.iter()
            .enumerate()
            .map(|(i, &t)| FleetNode {
                mac: [2, 0, 0, 0, 0, i as u8],
                _pad: [0; 2],
                last_seen_ns: t,
            })
            .collect()
    }

    #[test]
    fn the_next_live_node_is_the_first_heard_lately_after_this_one() {
        let now = 10 * FLEET_DEAD_NS;
        let fresh = now - FLEET_DEAD_NS / 2;
        let stale = now - FLEET_DEAD_NS;
        // Node 1 of 4: 2 is silent, 3 is live.
        assert_eq!(
            next_live(&ring(&[fresh, fresh, stale, fresh]), 1, now),
            Some(3)
        );
        // Wrapping round: node 3's next live is 0.
        assert_eq!(
            next_live(&ring(&[fresh, stale, stale, fresh]), 3, now),
            Some(0)
        );
        // This node's own entry never counts; never heard (0) is not alive.
        assert_eq!(next_live(&ring(&[fresh, 0, stale]), 0, now), None);
        assert_eq!(next_live(&ring(&[0, fresh]), 0, now), Some(1));
    }
}
