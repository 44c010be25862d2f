//! `cargo xtask bench idle`: what idle connections cost. For each proxy, with 0, 1,000 and
//! 10,000 established idle connections (each has echoed one byte through the proxy, so the
//! upstream side is open too): the proxy's CPU over a quiet interval, and the latency of a
//! new connection (connect, one byte echoed, close) as p50/p99.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tcpfront_tests::{lab, netns::run_in};

use crate::{
    common::{self, quantile_ms},
    proxies::{self, HAPROXY_MAXCONN, Proxy},
    upstreams,
};

pub struct Options {
    pub counts: Vec<usize>,
    pub targets: Vec<Proxy>,
    /// How long the proxy's CPU is measured, idle.
    pub quiet: Duration,
    /// New connections timed per step.
    pub probes: usize,
}

struct Step {
    proxy: Proxy,
    asked: usize,
    held: usize,
    cpu_share: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

pub fn idle(o: &Options) -> anyhow::Result<()> {
    let bin = common::tcpfront_bin();
    let lab = common::lab(Some(&bin), lab::queue_per_cpu())?;
    common::nic_like_receive(&lab)?;
    let _echo = upstreams::echo(&lab)?;
    let mut steps = Vec::new();
    for &proxy in &o.targets {
        let running = proxies::start(&lab, proxy, upstreams::ECHO)
            .with_context(|| format!("starting {}", proxy.label()))?;
        let addr = SocketAddr::new(lab::FRONT_V4.into(), proxy.port(upstreams::ECHO));
        let mut held: Vec<TcpStream> = Vec::new();
        for &asked in &o.counts {
            // HAProxy holds two descriptors per connection under a 20,000 limit.
            let limit = match proxy {
                Proxy::Haproxy | Proxy::Nginx => HAPROXY_MAXCONN as usize - 100,
                _ => usize::MAX,
            };
            let want = asked.min(limit);
            if held.len() < want {
                let more = want - held.len();
                eprintln!(
                    "bench idle: {}: opening {more} idle connections ...",
                    proxy.label()
                );
                let opened = run_in(&lab.names.client_ns, move || open_idle(addr, more))?;
                held.extend(opened);
            }
            std::thread::sleep(Duration::from_secs(2));
            let cpu0 = running.cpu_time();
            let t0 = Instant::now();
            std::thread::sleep(o.quiet);
            let cpu_share =
                running.cpu_time().saturating_sub(cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
            let probes = o.probes;
            let mut lat = run_in(&lab.names.client_ns, move || probe(addr, probes))?;
            lat.sort();
            let step = Step {
                proxy,
                asked,
                held: held.len(),
                cpu_share,
                p50_ms: quantile_ms(&lat, 0.5).unwrap_or(f64::NAN),
                p99_ms: quantile_ms(&lat, 0.99).unwrap_or(f64::NAN),
                max_ms: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            };
            eprintln!(
                "  {:>6} idle: CPU {:6.2}% of a core, new connection p50 {:.3} ms p99 {:.3} ms",
                step.held,
                step.cpu_share * 100.0,
                step.p50_ms,
                step.p99_ms
            );
            steps.push(step);
        }
        drop(held);
        running.stop()?;
    }
    drop(lab);
    report(&steps, o)
}

/// Opens `n` connections that each echo one byte, and keeps them.
fn open_idle(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("idle connection {i} to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"i")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .with_context(|| format!("idle connection {i}: no echo"))?;
        v.push(s);
    }
    Ok(v)
}

/// Times `n` new connections, one every 5 ms: connect, one byte echoed, close.
fn probe(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"p")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        lat.push(t.elapsed());
        drop(s);
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(lat)
}

fn report(steps: &[Step], o: &Options) -> anyhow::Result<()> {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<14} {:>8} {:>18} {:>12} {:>12} {:>12}",
        "target", "idle", "CPU (% of a core)", "new p50 ms", "new p99 ms", "new max ms"
    );
    for s in steps {
        let held = if s.held < s.asked {
            format!("{}*", s.held)
        } else {
            s.held.to_string()
        };
        let _ = writeln!(
            t,
            "{:<14} {:>8} {:>18.2} {:>12.3} {:>12.3} {:>12.3}",
            s.proxy.label(),
            held,
            s.cpu_share * 100.0,
            s.p50_ms,
            s.p99_ms,
            s.max_ms
        );
    }
    if steps.iter().any(|s| s.held < s.asked) {
        let _ = writeln!(
            t,
            "* as many as its 2 descriptors per connection allow under the {} limit",
            proxies::FD_LIMIT
        );
    }
    // Each proxy's p99 with the most idle connections against its own with none.
    for p in &o.targets {
        let mine: Vec<&Step> = steps.iter().filter(|s| s.proxy == *p).collect();
        if let (Some(first), Some(last)) = (mine.first(), mine.last())
            && first.held == 0
            && last.held > 0
        {
            let _ = writeln!(
                t,
                "{}: new-connection p99 with {} idle = {:.2}x its p99 with none",
                p.label(),
                last.held,
                last.p99_ms / first.p99_ms
            );
        }
    }
    print!("{t}");
    let now = common::unix_now();
    let path = common::results_dir()?.join(format!("idle-{now}.json"));
    let json = json!({
        "benchmark": "idle",
        "unix_time": now,
        "machine": common::machine(),
        "quiet_secs": o.quiet.as_secs_f64(),
        "probes": o.probes,
        "steps": steps.iter().map(|s| json!({
            "target": s.proxy.key(),
            "asked": s.asked,
            "idle_connections": s.held,
            "cpu_share_of_a_core": s.cpu_share,
            "new_connection_p50_ms": s.p50_ms,
            "new_connection_p99_ms": s.p99_ms,
            "new_connection_max_ms": s.max_ms,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("\nwritten: {}", path.display());
    Ok(())
}
