//! `tcpfront stats`: the XDP counters, summed over CPUs.

use anyhow::bail;
use tcp_common::map_names;

use crate::{
    bpf::counters::{self, CounterSnapshot},
    cli::StatsArgs,
    instance::{self, Paths},
};

pub fn stats(args: StatsArgs) -> anyhow::Result<()> {
    instance::require_root("tcpfront stats")?;
    let paths = Paths::new(&args.iface)?;
    let pin = paths.pin(map_names::COUNTERS);
    if !pin.exists() {
        bail!(
            "tcpfront is not running on {} (no pinned maps in {})",
            args.iface,
            paths.pin_dir.display()
        );
    }
    let snapshot = counters::read_pinned(&pin)?;
    if args.json {
        println!("{}", to_json(&snapshot));
    } else {
        print!("{}", to_table(&snapshot));
    }
    Ok(())
}

pub fn to_json(s: &CounterSnapshot) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = s
        .iter()
        .map(|(c, v)| (c.name().to_string(), v.into()))
        .collect();
    serde_json::json!({ "xdp": map })
}

pub fn to_table(s: &CounterSnapshot) -> String {
    let mut out = String::new();
    for (c, v) in s.iter() {
        out.push_str(&format!("{:<22} {v:>14}\n", c.name()));
    }
    out
}
