//! `cargo xtask bench synflood`: each target's one-core capacity to answer a SYN flood, on a
//! rig that hands SYNs to the target the way a NIC driver does (XDP frames, no skb), with a
//! legitimate client measuring what the flood does to real connections.
//!
//! For each target (kernel SYN cookies, nftables SYNPROXY, tcpfront) the offered rate climbs
//! a ladder; at each step the generator floods for a while and we count what the target says
//! it answered, what reached the client, the target CPU's busy time, and the legitimate
//! client's success and connect latency. A target's capacity is the highest offered rate it
//! answered at 99% or more.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use serde_json::{Value, json};
use tcpfront_tests::netns::run_in;

use crate::{
    chart,
    common::{self, quantile_ms, ratio},
    generator::Pace,
    micro,
    rig::{self, ProgStats, Rig, Running, Target},
};

/// The legitimate client's pace: one connection and request every this often.
const LEGIT_EVERY: Duration = Duration::from_millis(2);
const LEGIT_TIMEOUT: Duration = Duration::from_secs(3);
/// SCHED_FIFO priority of the legitimate client, above the rig's NAPI threads (50).
const LEGIT_PRIORITY: i32 = 60;
/// The unflooded and the 5x-kernel measurements last this many steps.
const P99_STEPS: u32 = 3;
/// Answered at least this share of the offered rate: within capacity.
const WITHIN: f64 = 0.99;

pub struct Options {
    pub step: Duration,
    /// Offered rates to try, in SYNs per second.
    pub rates: Vec<u64>,
    pub v6: bool,
    pub generator: rig::GeneratorChoice,
    pub targets: Vec<Target>,
}

/// The default ladder: fine steps where the kernel saturates, coarse ones above.
pub fn default_rates() -> Vec<u64> {
    [
        50, 75, 100, 125, 150, 175, 200, 250, 300, 400, 600, 800, 1_000, 1_250, 1_500, 2_000,
        2_500, 3_000, 4_000, 5_000, 6_000, 8_000,
    ]
    .iter()
    .map(|k| k * 1000)
    .collect()
}

/// What the legitimate client saw.
#[derive(Clone, Debug, Default)]
struct Legit {
    tried: usize,
    ok: usize,
    /// Connect times of the successful requests, sorted.
    connect: Vec<Duration>,
}

impl Legit {
    fn success(&self) -> f64 {
        100.0 * self.ok as f64 / self.tried.max(1) as f64
    }
    fn p(&self, q: f64) -> f64 {
        quantile_ms(&self.connect, q).unwrap_or(f64::NAN)
    }
    fn json(&self) -> Value {
        json!({
            "tried": self.tried,
            "ok": self.ok,
            "success_pct": self.success(),
            "connect_ms_p50": quantile_ms(&self.connect, 0.5),
            "connect_ms_p99": quantile_ms(&self.connect, 0.99),
            "connect_ms_max": quantile_ms(&self.connect, 1.0),
        })
    }
}

#[derive(Clone, Debug)]
struct Step {
    asked: u64,
    sent: u64,
    /// Of `sent`, the echo generator's seeds.
    seeded: u64,
    offered: f64,
    /// SYN-ACKs the target counted / the sink received, per second.
    answered: f64,
    delivered: f64,
    /// Share of its core the target used (CPU time of its threads per second).
    busy: f64,
    /// Share of the rig's core used by the generator and the client veth's NAPI thread.
    rig_busy: f64,
    legit: Legit,
}

impl Step {
    fn answered_share(&self) -> f64 {
        self.answered / self.offered.max(1.0)
    }
    fn json(&self) -> Value {
        json!({
            "asked_pps": self.asked,
            "sent": self.sent,
            "seeded": self.seeded,
            "offered_pps": self.offered,
            "answered_pps": self.answered,
            "delivered_to_client_pps": self.delivered,
            "answered_share": self.answered_share(),
            "target_cpu_busy": self.busy,
            "rig_cpu_busy": self.rig_busy,
            "legit": self.legit.json(),
        })
    }
}

struct Outcome {
    target: Target,
    unflooded: Legit,
    steps: Vec<Step>,
    /// The step at five times the kernel's capacity (tcpfront only).
    at_5x_kernel: Option<Step>,
    /// bpf_stats of the front veth's XDP program during a flood at half the capacity.
    xdp_ns_per_packet: Option<f64>,
    /// Where the ladder stopped climbing, and why.
    stopped: String,
}

impl Outcome {
    fn capacity_step(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.answered_share() >= WITHIN)
            .max_by(|a, b| a.offered.total_cmp(&b.offered))
    }

    fn capacity(&self) -> f64 {
        self.capacity_step().map_or(0.0, |s| s.offered)
    }

    /// SYN-ACKs per second of the target core's busy time, at the capacity step: what one
    /// fully busy core would answer when the rig, not the target, ends the ladder.
    fn per_busy_core(&self) -> f64 {
        self.capacity_step()
            .filter(|s| s.busy > 0.0)
            .map_or(0.0, |s| s.answered / s.busy)
    }
}

pub fn synflood(opts: &Options) -> anyhow::Result<()> {
    let mut rig = Rig::new(opts.v6, opts.generator)?;
    eprintln!(
        "bench synflood: target CPU {}, generator/client CPU {}, {} s per step, generator: {}",
        rig.target_cpu,
        rig.rig_cpu,
        opts.step.as_secs_f64(),
        rig.generator_name()
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &target in &opts.targets {
        let kernel_capacity = outcomes
            .iter()
            .find(|o| o.target == Target::Kernel)
            .map(Outcome::capacity);
        outcomes.push(sweep(&mut rig, target, opts, kernel_capacity)?);
    }
    let micro = micro_costs()?;
    drop(rig);
    report(&outcomes, &micro, opts)
}

fn sweep(
    rig: &mut Rig,
    target: Target,
    opts: &Options,
    kernel_capacity: Option<f64>,
) -> anyhow::Result<Outcome> {
    eprintln!("bench synflood: {} ...", target.name());
    let running = rig.start(target)?;
    let front = rig.front();
    // The path works before anything is measured (tcpfront may need a moment).
    let ns = rig.lab.names.client_ns.clone();
    run_in(&ns, move || {
        let mut last = None;
        for _ in 0..30 {
            match common::request(front, LEGIT_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
    })
    .with_context(|| format!("{}: a request before the flood failed", target.name()))?;

    // The two p99s the goal compares are each taken over three steps' time (~4,500
    // connections): over one step a p99 is the 15th-slowest connection, and single
    // connections stall for a fraction of a millisecond now and then on this VM.
    let unflooded = measure(rig, &running, None, opts.step * P99_STEPS)?.legit;
    let mut steps: Vec<Step> = Vec::new();
    let mut stopped = "end of the ladder".to_string();
    for &rate in &opts.rates {
        let s = measure(rig, &running, Some(rate), opts.step)?;
        eprintln!(
            "  asked {:>9} offered {:>9.0} answered {:>9.0} ({:5.1}%) busy {:3.0}% rig {:3.0}% seeds {:4.1}% legit {:5.1}% p99 {:.2} ms",
            rate,
            s.offered,
            s.answered,
            100.0 * s.answered_share(),
            100.0 * s.busy,
            100.0 * s.rig_busy,
            100.0 * s.seeded as f64 / s.sent.max(1) as f64,
            s.legit.success(),
            s.legit.p(0.99)
        );
        // Short of the asked rate: the generator's limit, or, with the echo, a target that
        // lost more SYNs than the seeder could replace (the echo sends one SYN per SYN-ACK;
        // when the target answers them all, the echo's frames in flight, which veth's two
        // 256-frame rings bound, are what ran short).
        let short = s.offered < 0.9 * rate as f64;
        let generator_limited = short && (!rig.echo() || s.answered_share() >= WITHIN);
        let saturated = (short && !generator_limited)
            || (s.answered_share() < 0.5 && steps.last().is_some_and(|p| p.answered_share() < 0.5));
        steps.push(s);
        if generator_limited {
            stopped = format!(
                "generator limit ({:.2} M SYN/s)",
                steps[steps.len() - 1].offered / 1e6
            );
            break;
        }
        if saturated {
            stopped = if rig.echo() {
                "target saturated (answered < 50% twice, or lost more than the echo could replace)"
            } else {
                "target saturated (answered < 50% twice)"
            }
            .into();
            break;
        }
    }
    let mut outcome = Outcome {
        target,
        unflooded,
        steps,
        at_5x_kernel: None,
        xdp_ns_per_packet: None,
        stopped,
    };
    if target == Target::Tcpfront
        && let Some(k) = kernel_capacity.filter(|&k| k > 0.0)
    {
        let rate = (5.0 * k) as u64;
        eprintln!("  at 5x the kernel's capacity ({rate} SYN/s) ...");
        outcome.at_5x_kernel = Some(measure(rig, &running, Some(rate), opts.step * P99_STEPS)?);
    }
    // bpf_stats of the XDP program at half its capacity (never below 100k SYN/s).
    let cost_rate = (outcome.capacity() / 2.0).max(100_000.0) as u64;
    let id = running.xdp_prog_id()?;
    let stats_on = rig::enable_bpf_stats()?;
    let before = ProgStats::of(id)?;
    rig.flood(Pace {
        rate: Some(cost_rate),
        max: u64::MAX,
        duration: opts.step,
    })?;
    let after = ProgStats::of(id)?;
    drop(stats_on);
    outcome.xdp_ns_per_packet = before.ns_per_run(&after);
    running.stop()?;
    Ok(outcome)
}

/// One step: the flood at `rate` (none: only the legitimate client) for `step`, and what
/// the target, the client and the CPU saw meanwhile.
fn measure(
    rig: &mut Rig,
    running: &Running,
    rate: Option<u64>,
    step: Duration,
) -> anyhow::Result<Step> {
    let front = rig.front();
    let a0 = running.answered()?;
    let s0 = rig.sink()?;
    let b0 = running.cpu_time();
    let r0 = rig.client_napi_cpu_time();
    let t0 = std::time::Instant::now();
    let legit = common::background(&rig.lab.names.client_ns, Some(rig.rig_cpu), move |stop| {
        // Above the client veth's NAPI thread (priority 50), which runs the echo: a real
        // client does not share its CPU with a flood generator, so its wake-ups must not
        // wait for the generator's (the target's receive path is what is measured).
        common::set_fifo(LEGIT_PRIORITY)?;
        let mut l = Legit::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = std::time::Instant::now();
            l.tried += 1;
            if let Ok(c) = common::request(front, LEGIT_TIMEOUT) {
                l.ok += 1;
                l.connect.push(c);
            }
            if let Some(rest) = LEGIT_EVERY.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok(l)
    });
    let (sent, seeded, elapsed, generator_cpu) = match rate {
        Some(r) => {
            let f = rig.flood(Pace {
                rate: Some(r),
                max: u64::MAX,
                duration: step,
            })?;
            (f.sent, f.seeded, f.elapsed, f.cpu)
        }
        None => {
            std::thread::sleep(step);
            (0, 0, step, Duration::ZERO)
        }
    };
    let rig_cpu = rig.client_napi_cpu_time().saturating_sub(r0) + generator_cpu;
    // Answers still in flight.
    std::thread::sleep(Duration::from_millis(300));
    let mut legit = legit.finish()?;
    legit.connect.sort();
    let wall = t0.elapsed().as_secs_f64();
    let busy = running.cpu_time().saturating_sub(b0).as_secs_f64() / wall;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rig_busy = rig_cpu.as_secs_f64() / secs;
    let answered = running.answered()?.saturating_sub(a0);
    let delivered = rig.sink()?.syn_acks.saturating_sub(s0.syn_acks);
    Ok(Step {
        asked: rate.unwrap_or(0),
        sent,
        seeded,
        offered: sent as f64 / secs,
        answered: answered as f64 / secs,
        delivered: delivered as f64 / secs,
        busy: busy.min(1.0),
        rig_busy: rig_busy.min(1.0),
        legit,
    })
}

/// The SYN path's cost without the rig (micro-benchmark), both families.
fn micro_costs() -> anyhow::Result<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    for (name, v6) in [("IPv4", false), ("IPv6", true)] {
        let ns = micro::tcpfront_syn_ns(v6, 1_000_000)?;
        out.push((name, ns));
    }
    Ok(out)
}

fn report(outcomes: &[Outcome], micro: &[(&str, f64)], opts: &Options) -> anyhow::Result<()> {
    let mut t = String::new();
    for o in outcomes {
        let _ = writeln!(
            t,
            "\n{} — unflooded legit: {:.1}% ok, connect p50 {:.3} ms, p99 {:.3} ms; ladder stopped: {}",
            o.target.name(),
            o.unflooded.success(),
            o.unflooded.p(0.5),
            o.unflooded.p(0.99),
            o.stopped
        );
        let _ = writeln!(
            t,
            "{:>12} {:>12} {:>12} {:>8} {:>12} {:>6} {:>9} {:>9} {:>9}",
            "offered/s",
            "answered/s",
            "at client/s",
            "answered",
            "target CPU",
            "",
            "legit ok",
            "p50 ms",
            "p99 ms"
        );
        for s in &o.steps {
            let _ = writeln!(
                t,
                "{:>12.0} {:>12.0} {:>12.0} {:>7.1}% {:>11.0}% {:>6} {:>8.1}% {:>9.3} {:>9.3}",
                s.offered,
                s.answered,
                s.delivered,
                100.0 * s.answered_share(),
                100.0 * s.busy,
                "",
                s.legit.success(),
                s.legit.p(0.5),
                s.legit.p(0.99)
            );
        }
    }
    let find = |t| outcomes.iter().find(|o| o.target == t);
    let _ = writeln!(
        t,
        "\none-core capacity (highest offered rate answered at >= 99%):"
    );
    for o in outcomes {
        let _ = writeln!(
            t,
            "  {:<22} {:>10.0} SYN/s   {:>10.0} SYN-ACK/s per busy core   XDP program {:>6} ns/packet (bpf_stats)",
            o.target.name(),
            o.capacity(),
            o.per_busy_core(),
            o.xdp_ns_per_packet
                .map_or("-".into(), |ns| format!("{ns:.0}"))
        );
    }
    if let (Some(tf), Some(k)) = (find(Target::Tcpfront), find(Target::Kernel)) {
        let _ = writeln!(
            t,
            "  tcpfront / kernel: {} (capacity; {}){}",
            ratio(tf.capacity(), k.capacity()),
            ratio(tf.per_busy_core(), k.per_busy_core()),
            if tf.stopped.starts_with("generator") {
                " in SYN-ACKs per busy core: tcpfront's ladder ended at the generator's limit, not its own"
            } else {
                " in SYN-ACKs per busy core"
            }
        );
        if let Some(s) = find(Target::Synproxy) {
            let _ = writeln!(
                t,
                "  tcpfront / SYNPROXY: {}",
                ratio(tf.capacity(), s.capacity())
            );
        }
        if let Some(x) = &tf.at_5x_kernel {
            let _ = writeln!(
                t,
                "  tcpfront at 5x the kernel's capacity ({:.0} SYN/s offered, {:.1}% answered): legit {:.1}% ok, connect p99 {:.3} ms = {} its unflooded p99",
                x.offered,
                100.0 * x.answered_share(),
                x.legit.success(),
                x.legit.p(0.99),
                ratio(x.legit.p(0.99), tf.unflooded.p(0.99))
            );
        }
        if let (Some(ns), Some(floor)) = (tf.xdp_ns_per_packet, k.xdp_ns_per_packet) {
            let _ = writeln!(
                t,
                "  bpf_stats: tcpfront {ns:.0} ns/packet; an empty program (the kernel targets' pass) {floor:.0} ns/packet on this machine"
            );
        }
    }
    for (family, ns) in micro {
        let _ = writeln!(
            t,
            "  micro-benchmark (BPF_PROG_TEST_RUN, no clock per run, warm caches): {family} SYN {ns:.0} ns"
        );
    }
    print!("{t}");

    let now = common::unix_now();
    let dir = common::results_dir()?;
    let json = json!({
        "benchmark": "synflood",
        "unix_time": now,
        "machine": common::machine(),
        "family": if opts.v6 { "ipv6" } else { "ipv4" },
        "step_secs": opts.step.as_secs_f64(),
        "legit_every_ms": LEGIT_EVERY.as_millis() as u64,
        "micro_ns_per_syn": micro.iter().map(|(f, ns)| json!({"family": f, "ns": ns})).collect::<Vec<_>>(),
        "targets": outcomes.iter().map(|o| json!({
            "target": o.target.key(),
            "capacity_pps": o.capacity(),
            "syn_acks_per_busy_core_second": o.per_busy_core(),
            "xdp_ns_per_packet": o.xdp_ns_per_packet,
            "stopped": o.stopped,
            "unflooded_legit": o.unflooded.json(),
            "steps": o.steps.iter().map(Step::json).collect::<Vec<_>>(),
            "at_5x_kernel": o.at_5x_kernel.as_ref().map(Step::json),
        })).collect::<Vec<_>>(),
    });
    let base = dir.join(format!("synflood-{now}"));
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    draw(&base, outcomes)?;
    println!(
        "\nwritten: {0}.json\n         {0}.png\n         {0}.svg",
        base.display()
    );
    Ok(())
}

fn draw(base: &std::path::Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let series: Vec<chart::Series> = outcomes
        .iter()
        .map(|o| chart::Series {
            label: o.target.name().to_string(),
            points: o
                .steps
                .iter()
                .map(|s| (s.offered / 1e6, s.answered / 1e6, s.legit.p(0.99)))
                .collect(),
        })
        .collect();
    chart::synflood(base, &series)
}

/// The chart of a run, again, from its JSON (`base`.json → `base`.png and .svg).
pub fn chart_from_json(path: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let targets = v["targets"]
        .as_array()
        .with_context(|| format!("{}: no targets", path.display()))?;
    let series = targets
        .iter()
        .map(|t| {
            let key = t["target"].as_str().unwrap_or_default();
            let label = Target::ALL
                .into_iter()
                .find(|x| x.key() == key)
                .map_or_else(|| key.to_string(), |x| x.name().to_string());
            let points = t["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
                    (
                        f(&s["offered_pps"]) / 1e6,
                        f(&s["answered_pps"]) / 1e6,
                        f(&s["legit"]["connect_ms_p99"]),
                    )
                })
                .collect();
            chart::Series { label, points }
        })
        .collect::<Vec<_>>();
    let base = path.with_extension("");
    chart::synflood(&base, &series)?;
    println!("written: {0}.png\n         {0}.svg", base.display());
    Ok(())
}
