//! `cargo xtask bench synflood`: one lab, one generator, three targets in turn — kernel TCP
//! with SYN cookies, the kernel behind nftables SYNPROXY, and tcpfront — each flooded while
//! a legitimate client keeps opening connections.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;
use tcpfront_tests::{
    lab::{self, Lab},
    netns::{command_in, run, run_in},
    process::Tcpfront,
    rawsock::mac_of,
};

use super::{
    chart,
    common::{self, quantile_ms, ratio},
    flood::{self, FloodReport, FloodSpec},
};

const PORT: u16 = 8080;
/// The legitimate client's pace: one connection and request every this often.
const LEGIT_EVERY: Duration = Duration::from_millis(5);
const LEGIT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Kernel,
    Synproxy,
    Tcpfront,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Kernel => "kernel (syncookies)",
            Target::Synproxy => "nftables SYNPROXY",
            Target::Tcpfront => "tcpfront (XDP)",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Target::Kernel => "kernel",
            Target::Synproxy => "synproxy",
            Target::Tcpfront => "tcpfront",
        }
    }
}

pub struct Options {
    pub duration: Duration,
    pub rate: Option<u64>,
    pub max_packets: u64,
}

#[derive(Debug)]
struct Outcome {
    target: Target,
    flood: FloodReport,
    syn_acks: u64,
    cpu_front: Duration,
    legit_tried: usize,
    legit_ok: usize,
    connect: Vec<Duration>,
}

impl Outcome {
    fn answered_per_sec(&self) -> f64 {
        self.syn_acks as f64 / self.flood.elapsed.as_secs_f64().max(1e-9)
    }
    fn dropped(&self) -> u64 {
        self.flood.sent.saturating_sub(self.syn_acks)
    }
    fn cpu_ms_per_million(&self) -> f64 {
        self.cpu_front.as_secs_f64() * 1000.0 / (self.flood.sent.max(1) as f64 / 1e6)
    }
    fn success(&self) -> f64 {
        100.0 * self.legit_ok as f64 / self.legit_tried.max(1) as f64
    }
    fn q(&self, q: f64) -> f64 {
        quantile_ms(&self.connect, q).unwrap_or(f64::NAN)
    }
}

pub fn synflood(bin: &std::path::Path, opts: &Options) -> anyhow::Result<()> {
    let lab = common::lab(bin)?;
    prepare(&lab)?;
    let _server = common::ok_server(&lab.names.front_ns, PORT)?;
    let mut outcomes = Vec::new();
    for target in [Target::Kernel, Target::Synproxy, Target::Tcpfront] {
        eprintln!("xtask: bench synflood: {} ...", target.name());
        outcomes.push(run_target(&lab, target, opts)?);
    }
    drop(lab);
    report(&outcomes, opts)
}

/// The front end knows the spoofed sources' link address (as it would know its router's), so
/// every target can actually send its SYN-ACKs; the client side counts what arrives.
fn prepare(lab: &Lab) -> anyhow::Result<()> {
    let n = &lab.names;
    let client_mac = mac_of(&n.client_ns, &n.client_if)?;
    let mac = client_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut batch = String::new();
    for host in 3..=254 {
        let _ = writeln!(
            batch,
            "neigh replace 10.200.0.{host} lladdr {mac} dev {} nud permanent",
            n.front_if
        );
    }
    let path = std::env::temp_dir().join("tcpfront-bench-neigh.batch");
    std::fs::write(&path, batch)?;
    let path_str = path.to_string_lossy().into_owned();
    run(Command::new("ip").args(["-n", &n.front_ns, "-batch", &path_str]))?;
    let _ = std::fs::remove_file(path);
    sysctl(&n.front_ns, "net.ipv4.tcp_syncookies", "1")?;
    sysctl(&n.front_ns, "net.ipv4.tcp_timestamps", "1")?;
    Ok(())
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    run(command_in(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))
}

fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = command_in(ns, "nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft failed ({}): {} on:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A counter of SYN-ACKs arriving at the client namespace (they are for spoofed addresses,
/// so nothing else there would count them).
fn reset_syn_ack_counter(ns: &str) -> anyhow::Result<()> {
    let _ = nft(ns, "delete table inet tfbench\n");
    nft(
        ns,
        "table inet tfbench {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n  tcp flags & (syn | ack) == (syn | ack) counter\n }\n}\n",
    )
}

fn syn_ack_count(ns: &str) -> anyhow::Result<u64> {
    let out = command_in(ns, "nft")
        .args(["list", "chain", "inet", "tfbench", "pre"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter in: {text}"))
}

/// Busy CPU time of the whole machine from /proc/stat.
fn busy_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3).unwrap_or(&0) - v.get(4).unwrap_or(&0);
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(busy as f64 / hz))
}

fn run_target(lab: &Lab, target: Target, opts: &Options) -> anyhow::Result<Outcome> {
    let n = lab.names.clone();
    let synproxy_table = "table ip tfbench_synproxy";
    let tcpfront = match target {
        Target::Kernel => None,
        Target::Synproxy => {
            sysctl(&n.front_ns, "net.netfilter.nf_conntrack_tcp_loose", "0").ok();
            nft(
                &n.front_ns,
                &format!(
                    "{synproxy_table} {{\n chain pre {{\n  type filter hook prerouting priority raw; policy accept;\n  tcp dport {PORT} tcp flags syn notrack\n }}\n chain inp {{\n  type filter hook input priority filter; policy accept;\n  tcp dport {PORT} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm\n  ct state invalid drop\n }}\n}}\n"
                ),
            )?;
            sysctl(&n.front_ns, "net.netfilter.nf_conntrack_tcp_loose", "0")?;
            None
        }
        Target::Tcpfront => {
            let listen = format!("0.0.0.0:{PORT}");
            let upstream = format!("127.0.0.1:{PORT}");
            Some(Tcpfront::start(
                lab,
                &["--listen", &listen, "--upstream", &upstream],
            )?)
        }
    };
    reset_syn_ack_counter(&n.client_ns)?;
    let front = SocketAddr::new(lab::FRONT_V4.into(), PORT);
    // The path works before the flood starts.
    run_in(&n.client_ns, move || common::request(front, LEGIT_TIMEOUT))
        .with_context(|| format!("{}: a request before the flood failed", target.name()))?;

    let legit = common::background(&n.client_ns, move |stop| {
        let mut tried = 0;
        let mut ok = 0;
        let mut connect = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            tried += 1;
            if let Ok(c) = common::request(front, LEGIT_TIMEOUT) {
                ok += 1;
                connect.push(c);
            }
            if let Some(rest) = LEGIT_EVERY.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok((tried, ok, connect))
    });
    let spec = FloodSpec {
        iface: n.client_if.clone(),
        src_mac: mac_of(&n.client_ns, &n.client_if)?,
        dst_mac: mac_of(&n.front_ns, &n.front_if)?,
        dst: lab::FRONT_V4,
        dst_port: PORT,
        subnet: [10, 200, 0],
        first_host: 3,
        last_host: 254,
        rate: opts.rate,
        max_packets: opts.max_packets,
        duration: opts.duration,
        seed: 0x7466_5359_4e00 ^ target as u64,
    };
    let cpu0 = busy_cpu()?;
    let flood = run_in(&n.client_ns, move || flood::flood(&spec))?;
    let cpu1 = busy_cpu()?;
    // Let the last answers arrive.
    std::thread::sleep(Duration::from_millis(300));
    let (legit_tried, legit_ok, mut connect) = legit.finish()?;
    connect.sort();
    let syn_acks = syn_ack_count(&n.client_ns)?.saturating_sub(legit_tried as u64 + 1);

    match target {
        Target::Synproxy => {
            let _ = nft(&n.front_ns, "delete table ip tfbench_synproxy\n");
        }
        Target::Tcpfront => {
            if let Some(tf) = tcpfront {
                tf.stop()?;
            }
        }
        Target::Kernel => {}
    }
    Ok(Outcome {
        target,
        flood,
        syn_acks,
        cpu_front: (cpu1.saturating_sub(cpu0)).saturating_sub(flood.cpu),
        legit_tried,
        legit_ok,
        connect,
    })
}

fn report(outcomes: &[Outcome], opts: &Options) -> anyhow::Result<()> {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<22} {:>10} {:>11} {:>12} {:>10} {:>13} {:>9} {:>8} {:>8} {:>8}",
        "target",
        "SYNs sent",
        "sent/s",
        "SYN-ACK/s",
        "dropped",
        "CPU ms/1M SYN",
        "legit ok",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for o in outcomes {
        let _ = writeln!(
            table,
            "{:<22} {:>10} {:>11.0} {:>12.0} {:>10} {:>13.0} {:>8.1}% {:>8.2} {:>8.2} {:>8.2}",
            o.target.name(),
            o.flood.sent,
            o.flood.rate(),
            o.answered_per_sec(),
            o.dropped(),
            o.cpu_ms_per_million(),
            o.success(),
            o.q(0.5),
            o.q(0.99),
            o.q(1.0)
        );
    }
    let find = |t| outcomes.iter().find(|o| o.target == t);
    if let (Some(tf), Some(k)) = (find(Target::Tcpfront), find(Target::Kernel)) {
        let _ = writeln!(
            table,
            "{:<22} {:>10} {:>11} {:>12} {:>10} {:>13} {:>9} {:>8} {:>8} {:>8}",
            "tcpfront / kernel",
            "",
            ratio(tf.flood.rate(), k.flood.rate()),
            ratio(tf.answered_per_sec(), k.answered_per_sec()),
            "",
            ratio(tf.cpu_ms_per_million(), k.cpu_ms_per_million()),
            ratio(tf.success(), k.success()),
            ratio(tf.q(0.5), k.q(0.5)),
            ratio(tf.q(0.99), k.q(0.99)),
            ratio(tf.q(1.0), k.q(1.0))
        );
    }
    print!("{table}");

    let now = common::unix_now();
    let dir = common::results_dir()?;
    let json = json!({
        "benchmark": "synflood",
        "unix_time": now,
        "machine": common::machine(),
        "duration_secs": opts.duration.as_secs_f64(),
        "rate_limit_pps": opts.rate,
        "legit_every_ms": LEGIT_EVERY.as_millis() as u64,
        "targets": outcomes.iter().map(|o| json!({
            "target": o.target.key(),
            "syns_sent": o.flood.sent,
            "sent_per_sec": o.flood.rate(),
            "syn_acks": o.syn_acks,
            "syn_acks_per_sec": o.answered_per_sec(),
            "syns_unanswered": o.dropped(),
            "front_cpu_ms_per_million_syns": o.cpu_ms_per_million(),
            "legit_tried": o.legit_tried,
            "legit_ok": o.legit_ok,
            "legit_success_pct": o.success(),
            "connect_ms_p50": quantile_ms(&o.connect, 0.5),
            "connect_ms_p99": quantile_ms(&o.connect, 0.99),
            "connect_ms_max": quantile_ms(&o.connect, 1.0),
        })).collect::<Vec<_>>(),
    });
    let json_path = dir.join(format!("synflood-{now}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    let svg_path = dir.join(format!("synflood-{now}.svg"));
    let groups: Vec<chart::Group> = outcomes
        .iter()
        .map(|o| chart::Group {
            label: o.target.name().to_string(),
            values: vec![o.answered_per_sec() / 1000.0, o.q(0.5), o.q(0.99)],
        })
        .collect();
    std::fs::write(
        &svg_path,
        chart::bars(
            "SYN flood: answered SYNs and legitimate connect latency",
            &[
                ("SYN-ACKs/s (thousands)", 0),
                ("connect p50 (ms)", 1),
                ("connect p99 (ms)", 2),
            ],
            &groups,
        ),
    )?;
    println!(
        "\nwritten: {}\n         {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}
