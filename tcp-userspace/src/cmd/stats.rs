//! `tcpfront stats`: the XDP counters summed over CPUs and the engines' counters, once or
//! every few seconds with rates.

use std::{fmt::Write as _, time::Duration};

use anyhow::bail;
use tcp_common::map_names;

use crate::{
    bpf::counters::{self, CounterSnapshot},
    cli::StatsArgs,
    control::{
        client,
        proto::{EngineStats, Request, Response},
    },
    instance::{self, Paths},
};

/// One reading: XDP counters, and the engine's when a daemon answers.
pub struct Reading {
    pub xdp: CounterSnapshot,
    pub engine: Option<EngineStats>,
}

/// Asks the daemon first (it works from any mount namespace); only a daemon that is gone
/// leaves the pinned counters as the source.
pub fn read(paths: &Paths) -> anyhow::Result<Reading> {
    let xdp = match client::ask(paths, &Request::Xdp)? {
        Some(Response::Xdp { counters: named }) => counters::from_named(&named),
        Some(other) => bail!("unexpected answer {other:?}"),
        None => {
            let pin = paths.pin(map_names::COUNTERS);
            if !pin.exists() {
                bail!(
                    "tcpfront is not running on {} (no control socket {} and no pinned maps in \
                     {})",
                    paths.iface,
                    paths.socket.display(),
                    paths.pin_dir.display()
                );
            }
            return Ok(Reading {
                xdp: counters::read_pinned(&pin)?,
                engine: None,
            });
        }
    };
    let engine = match client::ask(paths, &Request::Stats)? {
        Some(Response::Stats(s)) => Some(s),
        Some(other) => bail!("unexpected answer {other:?}"),
        None => None,
    };
    Ok(Reading { xdp, engine })
}

pub async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    instance::require_root("tcpfront stats")?;
    let paths = instance::resolve(args.iface.as_deref())?;
    let first = read(&paths)?;
    if first.engine.is_none() {
        eprintln!(
            "note: no daemon answers on {}; engine counters are not available",
            paths.socket.display()
        );
    }
    let Some(every) = args.watch else {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&to_json(&first, None))?);
        } else {
            print!("{}", to_table(&first, None));
        }
        return Ok(());
    };
    let mut prev = first;
    let mut reports = 0u64;
    let mut interval = tokio::time::interval(Duration::from_secs(every));
    interval.tick().await;
    loop {
        interval.tick().await;
        let now = read(&paths)?;
        let rates = Rates {
            prev: &prev,
            secs: every as f64,
        };
        if args.json {
            println!("{}", to_json(&now, Some(&rates)));
        } else {
            println!("--- every {every}s");
            print!("{}", to_table(&now, Some(&rates)));
        }
        reports += 1;
        if args.count.is_some_and(|c| reports >= c) {
            return Ok(());
        }
        prev = now;
    }
}

/// The earlier reading that rates are computed against.
pub struct Rates<'a> {
    prev: &'a Reading,
    secs: f64,
}

fn engine_fields(e: &EngineStats) -> Vec<(&'static str, u64)> {
    vec![
        ("opened", e.opened),
        ("closed", e.closed),
        ("reset", e.reset),
        ("rejected_full", e.rejected_full),
        ("rst_no_conn", e.rst_no_conn),
        ("retransmits", e.retransmits),
        ("timeouts", e.timeouts),
        ("tail_loss_probes", e.tail_loss_probes),
        ("undone_reductions", e.undone_reductions),
        ("hystart_rtt_exits", e.hystart_rtt_exits),
        ("hystart_train_exits", e.hystart_train_exits),
        ("bad_frames", e.bad_frames),
        ("misrouted", e.misrouted),
        ("misrouted_dropped", e.misrouted_dropped),
        ("tx_full", e.tx_full),
        ("upstream_failed", e.upstream_failed),
        ("connect_failures", e.connect_failures),
        ("no_backend", e.no_backend),
        ("reopened", e.reopened),
        ("xsk_rx_dropped", e.xsk_rx_dropped),
        ("xsk_rx_ring_full", e.xsk_rx_ring_full),
        ("xsk_fill_ring_empty", e.xsk_fill_ring_empty),
        ("connections", e.connections),
        ("time_wait", e.time_wait),
    ]
}

pub fn to_json(r: &Reading, rates: Option<&Rates>) -> serde_json::Value {
    let xdp: serde_json::Map<String, serde_json::Value> = r
        .xdp
        .iter()
        .map(|(c, v)| (c.name().to_string(), v.into()))
        .collect();
    let mut out = serde_json::json!({ "xdp": xdp, "engine": r.engine });
    if let Some(rt) = rates {
        let xdp_rates: serde_json::Map<String, serde_json::Value> = r
            .xdp
            .iter()
            .map(|(c, v)| {
                let per_sec = v.saturating_sub(rt.prev.xdp.get(c)) as f64 / rt.secs;
                (c.name().to_string(), per_sec.into())
            })
            .collect();
        out["xdp_per_sec"] = xdp_rates.into();
        if let (Some(now), Some(before)) = (&r.engine, &rt.prev.engine) {
            let e: serde_json::Map<String, serde_json::Value> = engine_fields(now)
                .into_iter()
                .zip(engine_fields(before))
                .map(|((k, a), (_, b))| {
                    (k.to_string(), (a.saturating_sub(b) as f64 / rt.secs).into())
                })
                .collect();
            out["engine_per_sec"] = e.into();
        }
    }
    out
}

pub fn to_table(r: &Reading, rates: Option<&Rates>) -> String {
    let mut out = String::new();
    let rate = |now: u64, before: u64| match rates {
        Some(rt) => format!("{:>12.1}/s", now.saturating_sub(before) as f64 / rt.secs),
        None => String::new(),
    };
    let _ = writeln!(out, "XDP (all CPUs)");
    for (c, v) in r.xdp.iter() {
        let before = rates.map_or(0, |rt| rt.prev.xdp.get(c));
        let _ = writeln!(out, "  {:<22} {v:>14} {}", c.name(), rate(v, before));
    }
    match &r.engine {
        Some(e) => {
            let _ = writeln!(out, "engine (all queues)");
            let before = rates.and_then(|rt| rt.prev.engine.as_ref());
            let prev_fields = before.map(engine_fields);
            for (i, (k, v)) in engine_fields(e).into_iter().enumerate() {
                let b = prev_fields.as_ref().map_or(0, |p| p[i].1);
                let show_rate = !matches!(k, "connections" | "time_wait");
                let _ = writeln!(
                    out,
                    "  {k:<22} {v:>14} {}",
                    if show_rate { rate(v, b) } else { String::new() }
                );
            }
            for (state, n) in &e.states {
                let _ = writeln!(out, "    {state:<20} {n:>14}");
            }
            for q in &e.queues {
                let cpu = q.cpu.map_or("any".to_string(), |c| c.to_string());
                let _ = writeln!(
                    out,
                    "  queue {:<3} cpu {cpu:<4} opened {:>10}  connections {:>8}  misrouted {:>6}  allocations {:>8}",
                    q.queue, q.opened, q.connections, q.misrouted, q.allocations
                );
            }
        }
        None => {
            let _ = writeln!(out, "engine: no daemon answering");
        }
    }
    out
}
