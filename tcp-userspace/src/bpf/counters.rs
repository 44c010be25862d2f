//! Reading the per-CPU `COUNTERS` map.

use std::path::Path;

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use tcp_common::{Counter, CounterBlock};

/// Counter values summed over all CPUs, indexed like [`Counter::ALL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot(pub Vec<u64>);

impl CounterSnapshot {
    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.index() as usize).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

/// The per-CPU counter map as user space opens it: one [`CounterBlock`] per CPU.
pub type CounterMap<T> = PerCpuArray<T, CounterBlock>;

pub fn read<T: std::borrow::Borrow<MapData>>(
    map: &CounterMap<T>,
) -> anyhow::Result<CounterSnapshot> {
    let per_cpu = map.get(&0, 0).context("reading the counters")?;
    let out = Counter::ALL
        .iter()
        .map(|c| per_cpu.iter().map(|block| block[c.index() as usize]).sum())
        .collect();
    Ok(CounterSnapshot(out))
}

/// Rebuilds a snapshot from counter names and values (the control socket's answer);
/// names this build does not know are ignored, missing ones read 0.
pub fn from_named(named: &std::collections::BTreeMap<String, u64>) -> CounterSnapshot {
    CounterSnapshot(
        Counter::ALL
            .iter()
            .map(|c| named.get(c.name()).copied().unwrap_or(0))
            .collect(),
    )
}

/// Opens the counters map from its pin.
pub fn open_pinned(pin: &Path) -> anyhow::Result<CounterMap<MapData>> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    PerCpuArray::try_from(Map::PerCpuArray(data))
        .with_context(|| format!("{} is not the counters map", pin.display()))
}

/// Reads the counters from their pin, which outlives a crashed daemon.
pub fn read_pinned(pin: &Path) -> anyhow::Result<CounterSnapshot> {
    read(&open_pinned(pin)?)
}
