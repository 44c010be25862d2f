//! The SYN-flood rig: a lab whose client veth carries the SYN-ACK sink, one target at a time
//! on the front veth, and the CPU split — the last CPU is the target's (its veth's NAPI
//! thread and its user-space process), the others run the generator, the client veth's NAPI
//! thread and the legitimate client.

use std::{fmt::Write as _, net::IpAddr, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use tcpfront_tests::{
    lab::{self, Lab},
    netns::{command_in, nft, run, run_in},
    process::Tcpfront,
    rawsock::{PacketSocket, ifindex, mac_of},
};

use crate::{
    common::{self, Background},
    echo,
    generator::{self, Generator},
    sink::{Pass, Sink, SinkCounts},
};

/// Which generator floods the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratorChoice {
    /// Live frames where the kernel allows them, else the echo.
    Auto,
    /// `flood_gen` under live-frames BPF_PROG_RUN.
    Live,
    /// The sink turns SYN-ACKs into fresh SYNs (`echo.rs`).
    Echo,
}

impl std::str::FromStr for GeneratorChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "live" => Ok(Self::Live),
            "echo" => Ok(Self::Echo),
            _ => bail!("--generator: {s:?} is not one of auto, live, echo"),
        }
    }
}

/// The generator in use: the seeds and their socket for the echo.
enum Flooder {
    Live,
    Echo {
        socket: PacketSocket,
        seeds: Vec<Vec<u8>>,
    },
}

pub const PORT: u16 = 8080;

/// What answers the flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Linux with `tcp_syncookies=2` and a plain listener.
    Kernel,
    /// The same listener behind nftables SYNPROXY.
    Synproxy,
    /// tcpfront's XDP program in front of the same listener (its upstream over loopback).
    Tcpfront,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Kernel, Target::Synproxy, Target::Tcpfront];

    pub fn name(self) -> &'static str {
        match self {
            Target::Kernel => "kernel (syncookies)",
            Target::Synproxy => "nftables SYNPROXY",
            Target::Tcpfront => "tcpfront (XDP)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Target::Kernel => "kernel",
            Target::Synproxy => "synproxy",
            Target::Tcpfront => "tcpfront",
        }
    }
}

/// The lab, the sink, the listener and the generator, shared by every target.
pub struct Rig {
    pub lab: Lab,
    pub target_cpu: usize,
    pub rig_cpu: usize,
    /// None while a flood runs on another thread.
    sink: Option<Sink>,
    flooder: Flooder,
    _server: Background<()>,
    /// The listener's thread (the kernel targets' application, tcpfront's upstream).
    server_tid: u32,
    generator: Option<Generator>,
    pub v6: bool,
    _no_halt: common::NoHalt,
    /// The echo's round trips wait on the rig's CPU too.
    _no_halt_rig: Option<common::NoHalt>,
}

impl Rig {
    pub fn new(v6: bool, choice: GeneratorChoice) -> anyhow::Result<Self> {
        let cpus = common::cpus();
        if cpus < 2 {
            bail!("the rig needs two CPUs (one for the target, one for the rest)");
        }
        let (target_cpu, rig_cpu) = (cpus - 1, 0);
        // One queue: the whole front side is the one target core.
        let lab = common::lab(None, 1)?;
        let n = lab.names.clone();
        spoofed_neighbours(&lab)?;
        for (key, value) in [
            ("net.ipv4.tcp_syncookies", "2"),
            ("net.ipv4.tcp_timestamps", "1"),
        ] {
            sysctl(&n.front_ns, key, value)?;
        }
        // The legitimate client opens ~500 connections a second for the whole sweep (minutes)
        // and closes first: without reuse its TIME-WAIT sockets used up the ephemeral ports
        // within a minute, after which every connect scanned the port range for milliseconds
        // of the rig's CPU (measured: 14,000 in TIME-WAIT, legitimate p99 0.2 → 7 ms, and the
        // echo generator starved). A busy client host sets the same.
        for (key, value) in [
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.ip_local_port_range", "1024 65535"),
        ] {
            sysctl(&n.client_ns, key, value)?;
        }
        let iface = n.client_if.clone();
        let mut sink = run_in(&n.client_ns, move || {
            Sink::attach(&iface, lab::CLIENT_V4, lab::CLIENT_V6)
        })?;
        // The rig's side must never be what drops SYN-ACKs: the client veth's NAPI thread
        // preempts the generator (measured: at default priority it lost a fifth of them at
        // 400k SYN/s while its CPU was half idle, to wake-up latency).
        common::threaded_napi(&n.client_ns, &n.client_if, rig_cpu, true)?;
        let (server, server_tid) = common::ok_server(&n.front_ns, PORT, Some(target_cpu))?;
        let spec = generator::lab_spec(
            v6,
            mac_of(&n.client_ns, &n.client_if)?,
            mac_of(&n.front_ns, &n.front_if)?,
            PORT,
        );
        let mut generator = Generator::new(&spec)?;
        let live = match choice {
            GeneratorChoice::Echo => false,
            GeneratorChoice::Live => true,
            GeneratorChoice::Auto => {
                let iface = n.client_if.clone();
                let (g, allowed) = run_in(&n.client_ns, move || {
                    let allowed =
                        ifindex(&iface).and_then(|i| generator.live_frames_allowed(i as u32));
                    Ok((generator, allowed))
                })?;
                generator = g;
                let allowed = allowed?;
                if !allowed {
                    eprintln!(
                        "bench synflood: this kernel refuses live-frames BPF_PROG_RUN to this \
                         process (EPERM); flooding with the echo generator instead"
                    );
                }
                allowed
            }
        };
        let echo = !live;
        let flooder = if live {
            Flooder::Live
        } else {
            sink.set_echo_template(generator::template(&spec)?)?;
            let seeds = generator.sample(4096, 0)?;
            let iface = n.client_if.clone();
            let socket = run_in(&n.client_ns, move || PacketSocket::open_send_only(&iface))?;
            Flooder::Echo { socket, seeds }
        };
        let generator = Some(generator);
        let no_halt = common::NoHalt::on(target_cpu);
        if !no_halt.active() {
            eprintln!(
                "bench synflood: note: CPU {target_cpu} may halt when idle (no cpuidle control)"
            );
        }
        Ok(Self {
            lab,
            target_cpu,
            rig_cpu,
            sink: Some(sink),
            flooder,
            _server: server,
            server_tid,
            generator,
            v6,
            _no_halt: no_halt,
            _no_halt_rig: echo.then(|| common::NoHalt::on(rig_cpu)),
        })
    }

    pub fn sink(&self) -> anyhow::Result<SinkCounts> {
        self.sink.as_ref().context("the sink is busy")?.counts()
    }

    /// CPU time of the client veth's NAPI thread, where the sink (and the echo) run.
    pub fn client_napi_cpu_time(&self) -> Duration {
        common::threads_named(&format!("napi/{}-", self.lab.names.client_if))
            .into_iter()
            .map(common::thread_cpu)
            .sum()
    }

    pub fn echo(&self) -> bool {
        matches!(self.flooder, Flooder::Echo { .. })
    }

    /// Which generator floods: "live frames" or "echo".
    pub fn generator_name(&self) -> &'static str {
        match self.flooder {
            Flooder::Live => "live frames",
            Flooder::Echo { .. } => "echo",
        }
    }

    pub fn front(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.lab.front_addr(self.v6), PORT)
    }

    /// Floods the front veth from the client's namespace, on the rig's CPU at the lowest
    /// priority (SCHED_IDLE), so that the client veth's NAPI thread and the legitimate client
    /// always get that CPU first.
    pub fn flood(&mut self, pace: generator::Pace) -> anyhow::Result<generator::FloodReport> {
        if let Flooder::Echo { socket, seeds } = &self.flooder {
            // The seeder runs on the rig's CPU at the lowest priority, as the live generator
            // does (the echo itself runs in the client veth's NAPI thread there): the
            // legitimate client must never wait behind it.
            let mut sink = self.sink.take().context("the sink is busy")?;
            let cpu = self.rig_cpu;
            let (sink, report) = std::thread::scope(|s| {
                s.spawn(move || {
                    let r = common::pin_current_thread(cpu)
                        .and_then(|()| set_idle_priority())
                        .and_then(|()| echo::flood(&mut sink, socket, seeds, pace));
                    (sink, r)
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the echo seeder panicked"))
            })?;
            self.sink = Some(sink);
            return report;
        }
        let mut g = self.generator.take().context("the generator is busy")?;
        let ns = self.lab.names.client_ns.clone();
        let iface = self.lab.names.client_if.clone();
        let cpu = self.rig_cpu;
        let (g, report) = run_in(&ns, move || {
            common::pin_current_thread(cpu)?;
            set_idle_priority()?;
            let ifindex = ifindex(&iface)? as u32;
            let r = g.flood(ifindex, pace);
            Ok((g, r))
        })?;
        self.generator = Some(g);
        report
    }

    /// Starts `target` on the front veth, pinned to the target CPU.
    pub fn start(&self, target: Target) -> anyhow::Result<Running> {
        let n = &self.lab.names;
        let mut running = Running {
            target,
            front_ns: n.front_ns.clone(),
            front_if: n.front_if.clone(),
            pass: None,
            tcpfront: None,
            server_tid: self.server_tid,
        };
        match target {
            Target::Kernel | Target::Synproxy => {
                let iface = n.front_if.clone();
                running.pass = Some(run_in(&n.front_ns, move || Pass::attach(&iface))?);
                if target == Target::Synproxy {
                    sysctl(&n.front_ns, "net.netfilter.nf_conntrack_tcp_loose", "0").ok();
                    nft(&n.front_ns, &synproxy_rules())?;
                    sysctl(&n.front_ns, "net.netfilter.nf_conntrack_tcp_loose", "0")?;
                }
            }
            Target::Tcpfront => {
                let listen = format!("{}:{PORT}", if self.v6 { "[::]" } else { "0.0.0.0" });
                let upstream = format!("127.0.0.1:{PORT}");
                let tf = Tcpfront::start_with_log(
                    &self.lab,
                    &["--listen", &listen, "--upstream", &upstream],
                    "info",
                )?;
                common::pin_process(tf.proc.pid() as u32, self.target_cpu)?;
                running.tcpfront = Some(tf);
            }
        }
        // The target's NAPI thread runs at real-time priority, as a NIC's receive softirq
        // preempts every thread: at default priority it waited behind the target's own
        // threads often enough for veth's 256-frame ring to overflow with the CPU half idle
        // (legitimate SYNs lost with the flood: one-second retransmissions). The target's
        // process gets what the receive path leaves, as it would on a NIC.
        common::threaded_napi(&n.front_ns, &n.front_if, self.target_cpu, true)?;
        Ok(running)
    }
}

/// One target, running.
pub struct Running {
    pub target: Target,
    front_ns: String,
    front_if: String,
    pass: Option<Pass>,
    tcpfront: Option<Tcpfront>,
    server_tid: u32,
}

impl Running {
    /// CPU time the target has used: its veth's NAPI thread (where the kernel's TCP and any
    /// XDP program run), the listener, and tcpfront's threads. Measured per thread, so that
    /// idle polling (the target CPU does not halt) is not counted.
    pub fn cpu_time(&self) -> Duration {
        let mut tids = common::threads_named(&format!("napi/{}-", self.front_if));
        tids.push(self.server_tid);
        if let Some(tf) = &self.tcpfront {
            tids.extend(common::tasks(tf.proc.pid() as u32));
        }
        tids.into_iter().map(common::thread_cpu).sum()
    }

    /// SYN-ACKs the target says it sent, since it started (or since boot for the kernel's
    /// own counters: callers take differences).
    pub fn answered(&self) -> anyhow::Result<u64> {
        match self.target {
            Target::Kernel => netstat(&self.front_ns, "TcpExt", "SyncookiesSent"),
            Target::Synproxy => synproxy_syn_received(&self.front_ns),
            Target::Tcpfront => {
                let pin = std::path::Path::new("/sys/fs/bpf/tcpfront")
                    .join(&self.front_if)
                    .join(tcp_common::map_names::COUNTERS);
                Ok(
                    tcpfront::bpf::counters::read_pinned(&pin)?
                        .get(tcp_common::Counter::SynAckSent),
                )
            }
        }
    }

    /// The id of the XDP program on the front veth (bpf_stats).
    pub fn xdp_prog_id(&self) -> anyhow::Result<u32> {
        let out = command_in(&self.front_ns, "ip")
            .args(["-j", "link", "show", "dev", &self.front_if])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v[0]["xdp"]["prog"]["id"]
            .as_u64()
            .map(|id| id as u32)
            .context("no XDP program on the front veth")
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        if self.target == Target::Synproxy {
            let _ = nft(
                &self.front_ns,
                "delete table ip tfbench_synproxy\ndelete table ip6 tfbench_synproxy6\n",
            );
        }
        self.pass = None;
        if let Some(tf) = self.tcpfront.take() {
            tf.stop()?;
        }
        Ok(())
    }
}

/// The front end knows the spoofed sources' link address (as it would know its router's), so
/// every target can actually send its SYN-ACKs to the client veth.
fn spoofed_neighbours(lab: &Lab) -> anyhow::Result<()> {
    let n = &lab.names;
    let mac = mac_of(&n.client_ns, &n.client_if)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut batch = String::new();
    for host in 3..=254u16 {
        let v4: IpAddr = std::net::Ipv4Addr::new(10, 200, 0, host as u8).into();
        let v6: IpAddr = std::net::Ipv6Addr::new(0xfd00, 0x7466, 0, 0, 0, 0, 1, host).into();
        for ip in [v4, v6] {
            let _ = writeln!(
                batch,
                "neigh replace {ip} lladdr {mac} dev {} nud permanent",
                n.front_if
            );
        }
    }
    let path =
        std::env::temp_dir().join(format!("tcpfront-bench-neigh-{}.batch", std::process::id()));
    std::fs::write(&path, batch)?;
    let path_str = path.to_string_lossy().into_owned();
    let r = run(Command::new("ip").args(["-n", &n.front_ns, "-batch", &path_str]));
    let _ = std::fs::remove_file(path);
    r
}

pub fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    run(command_in(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))
}

fn synproxy_rules() -> String {
    // As the nftables wiki's SYNPROXY example: SYNs untracked, then answered by SYNPROXY with
    // the options Linux offers; both families.
    let mut s = String::new();
    for (family, table) in [("ip", "tfbench_synproxy"), ("ip6", "tfbench_synproxy6")] {
        let _ = write!(
            s,
            "table {family} {table} {{\n chain pre {{\n  type filter hook prerouting priority raw; policy accept;\n  tcp dport {PORT} tcp flags syn notrack\n }}\n chain inp {{\n  type filter hook input priority filter; policy accept;\n  tcp dport {PORT} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm\n  ct state invalid drop\n }}\n}}\n"
        );
    }
    s
}

/// A `/proc/net/netstat` counter of namespace `ns` (read from a thread inside it).
fn netstat(ns: &str, group: &str, name: &str) -> anyhow::Result<u64> {
    let text = run_in(ns, || {
        Ok(std::fs::read_to_string("/proc/thread-self/net/netstat")?)
    })?;
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (
        lines.next().context("no header line")?,
        lines.next().context("no value line")?,
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("no {group} {name} in /proc/net/netstat"))
}

/// SYNs SYNPROXY answered, summed over CPUs (`/proc/net/stat/synproxy`, hexadecimal).
fn synproxy_syn_received(ns: &str) -> anyhow::Result<u64> {
    let text = run_in(ns, || {
        Ok(std::fs::read_to_string(
            "/proc/thread-self/net/stat/synproxy",
        )?)
    })?;
    let mut lines = text.lines();
    let col = lines
        .next()
        .context("empty synproxy statistics")?
        .split_whitespace()
        .position(|c| c == "syn_received")
        .context("no syn_received column")?;
    lines
        .map(|l| {
            l.split_whitespace()
                .nth(col)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .context("bad synproxy statistics line")
        })
        .sum()
}

/// SCHED_IDLE for the calling thread: it runs only when nothing else wants the CPU.
fn set_idle_priority() -> anyhow::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SCHED_IDLE");
    }
    Ok(())
}

/// bpf_stats of one program between two points in time.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub run_time: Duration,
    pub runs: u64,
}

impl ProgStats {
    pub fn of(id: u32) -> anyhow::Result<Self> {
        let info = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .with_context(|| format!("no program {id}"))?;
        Ok(Self {
            run_time: info.run_time(),
            runs: info.run_count(),
        })
    }

    /// Nanoseconds per run from `self` to `later`.
    pub fn ns_per_run(&self, later: &ProgStats) -> Option<f64> {
        let runs = later.runs.checked_sub(self.runs)?;
        (runs > 0)
            .then(|| later.run_time.saturating_sub(self.run_time).as_nanos() as f64 / runs as f64)
    }
}

/// Runs time statistics for every BPF program while the returned fd lives (BPF_ENABLE_STATS;
/// no sysctl left switched on if the bench dies).
pub fn enable_bpf_stats() -> anyhow::Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")
}
