//! `tcpfront run`'s settings: command-line flags over an optional TOML file over defaults,
//! validated together so that a bad combination is named before anything is attached.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::{
    backends::{BackendSpec, Balance, HealthSettings, PoolSettings, ProxyVersion},
    bpf::{
        config::FastPathSettings,
        secret::{self, SecretSource},
    },
    cli::{AttachMode, CongestionArg, DrainSyns, InvalidCookie, OnOff, RunArgs, XskModeArg},
    datapath::Upstream,
    engine::{EngineConfig, cc::Congestion, config::Keepalive},
};

/// The TOML file given by `--config`; every key is optional and named like its flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub iface: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub listen: Vec<String>,
    pub upstream: Option<OneOrMany>,
    pub echo: Option<bool>,
    pub balance: Option<String>,
    pub health_checks: Option<bool>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_rise: Option<u32>,
    pub health_fall: Option<u32>,
    pub proxy_protocol: Option<String>,
    pub connect_retries: Option<u32>,
    pub syn_cookies: Option<bool>,
    pub invalid_cookie: Option<String>,
    pub scrub_all: Option<bool>,
    pub max_conns: Option<usize>,
    pub queues: Option<u32>,
    pub msl: Option<String>,
    pub drain_timeout: Option<String>,
    pub drain_syns: Option<String>,
    pub keepalive: Option<bool>,
    pub keepalive_idle: Option<String>,
    pub keepalive_interval: Option<String>,
    pub keepalive_count: Option<u32>,
    pub fin_wait2_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub send_buffer: Option<Size>,
    pub recv_buffer: Option<Size>,
    pub send_buffer_max: Option<Size>,
    pub recv_buffer_max: Option<Size>,
    pub buffer_memory: Option<Size>,
    pub metrics: Option<String>,
    pub cookie_secret: Option<std::path::PathBuf>,
    pub cookie_rotate: Option<String>,
    pub announce: Option<String>,
    #[serde(default)]
    pub fleet_nodes: Vec<String>,
    pub congestion: Option<String>,
}

/// `upstream = "a:1"` or `upstream = ["a:1", "b:1,weight=2"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A byte size in the file: `262144` or `"256K"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn resolve(&self) -> anyhow::Result<usize> {
        match self {
            Size::Bytes(n) => usize::try_from(*n).context("too large"),
            Size::Text(t) => parse_size(t),
        }
    }
}

/// Everything `run` needs, resolved.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub iface: String,
    pub mode: Option<AttachMode>,
    pub fast_path: FastPathSettings,
    /// None: count and scrub only, no connections are served.
    pub upstream: Option<Upstream>,
    pub engine: EngineConfig,
    pub queues: Option<u32>,
    pub xsk_mode: XskModeArg,
    /// How long a graceful shutdown waits for connections to close before resetting them.
    pub drain_timeout: Duration,
    /// Upper bound of an upstream connect (and TCP_USER_TIMEOUT of the upstream socket).
    pub connect_timeout: Duration,
    /// Where the Prometheus endpoint listens.
    pub metrics: Option<SocketAddr>,
    /// The SYN cookies' secret and how often their key changes.
    pub cookie_secret: SecretSource,
    pub cookie_rotate: Duration,
    /// The TUN device that carries the VIPs for BGP (`--announce`).
    pub announce: Option<String>,
    /// The fleet's hand-off ring (`--fleet-nodes`); empty: no fleet. Where this node sits
    /// in it is found on the interface (`fleet::place`), into `fast_path.fleet`.
    pub fleet_nodes: Vec<crate::fleet::Mac>,
}

/// Default of `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `--connect-timeout` (HAProxy's documentation suggests `timeout connect 5s`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Buffer sizes a connection may be given: room for a few segments at least, and no more
/// than a window scale of 14 can advertise (RFC 7323 §2.3), within reason.
const MIN_BUFFER: usize = 16 << 10;
const MAX_RECV_BUFFER: usize = 256 << 20;
const MAX_SEND_BUFFER: usize = 256 << 20;

/// Parses `262144`, `256K`, `4M` (powers of 1024; `KiB`/`MiB` also accepted).
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: usize = num
        .parse()
        .with_context(|| format!("{s:?} is not a size (e.g. 262144, 256K, 4M)"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        other => bail!("{s:?}: unknown unit {other:?} (use K or M)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

fn buffer(
    flag: &str,
    v: Option<anyhow::Result<usize>>,
    max: usize,
) -> anyhow::Result<Option<usize>> {
    let Some(v) = v else { return Ok(None) };
    let n = v.with_context(|| flag.to_string())?;
    if !(MIN_BUFFER..=max).contains(&n) {
        bail!(
            "{flag} {n}: must be between {} KiB and {} KiB",
            MIN_BUFFER >> 10,
            max >> 10
        );
    }
    Ok(Some(n))
}

/// Buffer sizes: `--send-buffer`/`--recv-buffer` fix a buffer's size (auto-tuning off, as
/// SO_SNDBUF/SO_RCVBUF do in Linux); otherwise buffers start at the default and grow up to
/// `--send-buffer-max`/`--recv-buffer-max`, all together within `--buffer-memory`. The window
/// scale offered is what the largest receive buffer needs.
fn buffers(args: &RunArgs, file: &FileConfig, engine: &mut EngineConfig) -> anyhow::Result<()> {
    let size = |flag_value: &Option<String>, key: &Option<Size>| {
        flag_value
            .as_deref()
            .map(parse_size)
            .or(key.as_ref().map(Size::resolve))
    };
    let send = buffer(
        "--send-buffer",
        size(&args.send_buffer, &file.send_buffer),
        MAX_SEND_BUFFER,
    )?;
    let recv = buffer(
        "--recv-buffer",
        size(&args.recv_buffer, &file.recv_buffer),
        MAX_RECV_BUFFER,
    )?;
    let send_max = buffer(
        "--send-buffer-max",
        size(&args.send_buffer_max, &file.send_buffer_max),
        MAX_SEND_BUFFER,
    )?;
    let recv_max = buffer(
        "--recv-buffer-max",
        size(&args.recv_buffer_max, &file.recv_buffer_max),
        MAX_RECV_BUFFER,
    )?;
    for (fixed, max, flags) in [
        (send, send_max, "--send-buffer and --send-buffer-max"),
        (recv, recv_max, "--recv-buffer and --recv-buffer-max"),
    ] {
        if fixed.is_some() && max.is_some() {
            bail!("{flags}: a fixed buffer size does not grow; give one or the other");
        }
    }
    if let Some(n) = send {
        (engine.send_buffer, engine.send_buffer_max) = (n, n);
    }
    if let Some(n) = recv {
        (engine.recv_buffer, engine.recv_buffer_max) = (n, n);
    }
    if let Some(n) = send_max {
        engine.send_buffer_max = n;
        engine.send_buffer = engine.send_buffer.min(n);
    }
    if let Some(n) = recv_max {
        engine.recv_buffer_max = n;
        engine.recv_buffer = engine.recv_buffer.min(n);
    }
    if let Some(v) = size(&args.buffer_memory, &file.buffer_memory) {
        let n = v.context("--buffer-memory")?;
        if n < MIN_BUFFER {
            bail!(
                "--buffer-memory {n}: must be at least {} KiB",
                MIN_BUFFER >> 10
            );
        }
        engine.buffer_budget = std::sync::Arc::new(crate::engine::budget::BufferBudget::new(n));
    }
    engine.wscale = crate::engine::config::wscale_for(engine.recv_buffer_max);
    Ok(())
}

/// A duration that must be more than zero.
fn positive(flag: &str, v: Option<String>) -> anyhow::Result<Option<Duration>> {
    let Some(v) = v else { return Ok(None) };
    let d = parse_duration(&v).with_context(|| flag.to_string())?;
    if d.is_zero() {
        bail!("{flag} {v:?}: must be more than zero");
    }
    Ok(Some(d))
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, ""), |i| s.split_at(i));
    let v: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => bail!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("{s:?} is not a duration");
    }
    Ok(Duration::from_secs_f64(secs))
}

impl RunSettings {
    pub fn resolve(args: &RunArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let iface = args
            .iface
            .clone()
            .or(file.iface.clone())
            .context("--iface is required (or `iface` in the --config file)")?;
        let mode = match (args.mode, file.mode.as_deref()) {
            (Some(m), _) => Some(m),
            (None, Some("drv")) => Some(AttachMode::Drv),
            (None, Some("skb")) => Some(AttachMode::Skb),
            (None, Some(other)) => bail!("config `mode = {other:?}`: expected \"drv\" or \"skb\""),
            (None, None) => None,
        };
        let listen: Vec<SocketAddr> = if args.listen.is_empty() {
            file.listen
                .iter()
                .map(|l| {
                    l.parse()
                        .with_context(|| format!("config `listen`: {l:?} is not ADDR:PORT"))
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            args.listen.clone()
        };
        let echo = args.echo || file.echo.unwrap_or(false);
        let targets = if args.upstream.is_empty() {
            file.upstream
                .clone()
                .map(OneOrMany::into_vec)
                .unwrap_or_default()
        } else {
            args.upstream.clone()
        };
        let upstream = match (targets.is_empty(), echo) {
            (false, true) => bail!("--upstream and --echo exclude each other: choose one"),
            (false, false) => Some(Upstream::Pool(pool_settings(args, &file, &targets)?)),
            (true, true) => Some(Upstream::Echo),
            (true, false) => None,
        };
        match (&upstream, listen.is_empty()) {
            (Some(_), true) => {
                bail!("--upstream/--echo need at least one --listen address to serve")
            }
            (None, false) if !args.xdp_only => bail!(
                "--listen needs --upstream HOST:PORT or --echo (or --xdp-only): where should its \
                 connections go?"
            ),
            _ => {}
        }
        let syn_cookies = match args.syn_cookies {
            Some(v) => v == OnOff::On,
            None => file.syn_cookies.unwrap_or(true),
        };
        let rst_invalid_cookie = match (args.invalid_cookie, file.invalid_cookie.as_deref()) {
            (Some(v), _) => v == InvalidCookie::Rst,
            (None, Some("rst")) => true,
            (None, Some("drop") | None) => false,
            (None, Some(other)) => {
                bail!("config `invalid-cookie = {other:?}`: expected \"drop\" or \"rst\"")
            }
        };
        let mut engine = EngineConfig::default();
        if let Some(n) = args.max_conns.or(file.max_conns) {
            if n == 0 {
                bail!("--max-conns must be at least 1");
            }
            engine.max_connections = n;
        }
        if let Some(msl) = args.msl.clone().or(file.msl.clone()) {
            engine.msl = parse_duration(&msl).context("--msl")?;
        }
        engine.congestion = match (args.congestion, file.congestion.as_deref()) {
            (Some(CongestionArg::Cubic), _) | (None, None | Some("cubic")) => Congestion::Cubic,
            (Some(CongestionArg::Newreno), _) | (None, Some("newreno")) => Congestion::NewReno,
            (None, Some(other)) => {
                bail!("config `congestion = {other:?}`: expected \"cubic\" or \"newreno\"")
            }
        };
        let keepalive_on = match args.keepalive {
            Some(v) => v == OnOff::On,
            None => file.keepalive.unwrap_or(true),
        };
        let idle = positive(
            "--keepalive-idle",
            args.keepalive_idle.clone().or(file.keepalive_idle.clone()),
        )?;
        let interval = positive(
            "--keepalive-interval",
            args.keepalive_interval
                .clone()
                .or(file.keepalive_interval.clone()),
        )?;
        let count = args.keepalive_count.or(file.keepalive_count);
        if count == Some(0) {
            bail!("--keepalive-count must be at least 1");
        }
        engine.keepalive = if keepalive_on {
            let mut k = engine.keepalive.clone().unwrap_or(Keepalive {
                idle: Duration::from_secs(600),
                interval: Duration::from_secs(10),
                count: 6,
            });
            k.idle = idle.unwrap_or(k.idle);
            k.interval = interval.unwrap_or(k.interval);
            k.count = count.unwrap_or(k.count);
            Some(k)
        } else {
            if idle.is_some() || interval.is_some() || count.is_some() {
                bail!("--keepalive off: the --keepalive-idle/-interval/-count settings need it on");
            }
            None
        };
        if let Some(d) = positive(
            "--fin-wait2-timeout",
            args.fin_wait2_timeout
                .clone()
                .or(file.fin_wait2_timeout.clone()),
        )? {
            engine.fin_wait2_timeout = d;
        }
        let connect_timeout = positive(
            "--connect-timeout",
            args.connect_timeout
                .clone()
                .or(file.connect_timeout.clone()),
        )?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        buffers(args, &file, &mut engine)?;
        let metrics = match (args.metrics, file.metrics.as_deref()) {
            (Some(a), _) => Some(a),
            (None, Some(a)) => Some(
                a.parse()
                    .with_context(|| format!("config `metrics = {a:?}`: expected ADDR:PORT"))?,
            ),
            (None, None) => None,
        };
        let cookie_secret = match args.cookie_secret.clone().or(file.cookie_secret.clone()) {
            Some(p) => SecretSource::File(p),
            None => SecretSource::Random,
        };
        let cookie_rotate = match args.cookie_rotate.clone().or(file.cookie_rotate.clone()) {
            Some(d) => parse_duration(&d).context("--cookie-rotate")?,
            None => secret::DEFAULT_ROTATE,
        };
        secret::rotate_minutes(cookie_rotate)?;
        let announce = args.announce.clone().or(file.announce.clone());
        if let Some(name) = &announce {
            crate::instance::validate_iface_name(name).context("--announce")?;
            if crate::announce::vips(&listen).is_empty() {
                bail!(
                    "--announce {name}: no VIP to announce (only exact --listen addresses are \
                     announced, not 0.0.0.0 or ::)"
                );
            }
        }
        let fleet_nodes = if args.fleet_nodes.is_empty() {
            &file.fleet_nodes
        } else {
            &args.fleet_nodes
        };
        let fleet_nodes = if fleet_nodes.is_empty() {
            Vec::new()
        } else {
            let nodes = crate::fleet::parse_nodes(fleet_nodes).context("--fleet-nodes")?;
            if !syn_cookies {
                bail!(
                    "--fleet-nodes needs the SYN cookies in XDP (--syn-cookies on): the nodes \
                     hand each other segments there"
                );
            }
            nodes
        };
        let drain_timeout = match args.drain_timeout.clone().or(file.drain_timeout.clone()) {
            Some(d) => parse_duration(&d).context("--drain-timeout")?,
            None => DEFAULT_DRAIN_TIMEOUT,
        };
        let drain_drop_syns = match (args.drain_syns, file.drain_syns.as_deref()) {
            (Some(v), _) => v == DrainSyns::Drop,
            (None, Some("drop")) => true,
            (None, Some("pass") | None) => false,
            (None, Some(other)) => {
                bail!("config `drain-syns = {other:?}`: expected \"pass\" or \"drop\"")
            }
        };
        let queues = args.queues.or(file.queues);
        if queues == Some(0) {
            bail!("--queues must be at least 1");
        }
        Ok(Self {
            iface,
            mode,
            fast_path: FastPathSettings {
                wscale: engine.wscale,
                listen,
                syn_cookies,
                rst_invalid_cookie,
                scrub_all: args.scrub_all || file.scrub_all.unwrap_or(false),
                drain_drop_syns,
                ..FastPathSettings::default()
            },
            upstream,
            engine,
            queues,
            xsk_mode: args.xsk_mode.unwrap_or(XskModeArg::Auto),
            drain_timeout,
            connect_timeout,
            metrics,
            cookie_secret,
            cookie_rotate,
            announce,
            fleet_nodes,
        })
    }
}

/// The pool: `--upstream` targets (flags, else the file) and how they are used.
fn pool_settings(
    args: &RunArgs,
    file: &FileConfig,
    targets: &[String],
) -> anyhow::Result<PoolSettings> {
    let backends = targets
        .iter()
        .map(|t| t.parse::<BackendSpec>().context("--upstream"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let balance = match (args.balance, file.balance.as_deref()) {
        (Some(b), _) => b,
        (None, None | Some("round-robin")) => Balance::RoundRobin,
        (None, Some("least-conn")) => Balance::LeastConn,
        (None, Some(other)) => {
            bail!("config `balance = {other:?}`: expected \"round-robin\" or \"least-conn\"")
        }
    };
    let proxy_protocol = match (args.proxy_protocol, file.proxy_protocol.as_deref()) {
        (Some(v), _) => Some(v),
        (None, None) => None,
        (None, Some("v1")) => Some(ProxyVersion::V1),
        (None, Some("v2")) => Some(ProxyVersion::V2),
        (None, Some(other)) => {
            bail!("config `proxy-protocol = {other:?}`: expected \"v1\" or \"v2\"")
        }
    };
    let mut health = HealthSettings {
        // By default only a pool checks its backends: a single backend has nowhere else for
        // a connection to go (and a check is one more connection its accept loop sees).
        enabled: match args.health_checks {
            Some(v) => v == OnOff::On,
            None => file.health_checks.unwrap_or(backends.len() > 1),
        },
        ..HealthSettings::default()
    };
    if let Some(d) = positive(
        "--health-interval",
        args.health_interval
            .clone()
            .or(file.health_interval.clone()),
    )? {
        health.interval = d;
    }
    if let Some(d) = positive(
        "--health-timeout",
        args.health_timeout.clone().or(file.health_timeout.clone()),
    )? {
        health.timeout = d;
    }
    for (flag, v, slot) in [
        (
            "--health-rise",
            args.health_rise.or(file.health_rise),
            &mut health.rise,
        ),
        (
            "--health-fall",
            args.health_fall.or(file.health_fall),
            &mut health.fall,
        ),
    ] {
        if let Some(n) = v {
            if n == 0 {
                bail!("{flag} must be at least 1");
            }
            *slot = n;
        }
    }
    let connect_retries = args
        .connect_retries
        .or(file.connect_retries)
        .unwrap_or(DEFAULT_CONNECT_RETRIES);
    if connect_retries > 63 {
        bail!("--connect-retries {connect_retries}: at most 63");
    }
    Ok(PoolSettings {
        backends,
        balance,
        health,
        proxy_protocol,
        connect_retries,
    })
}

/// Default of `--connect-retries`: two other backends before the client gets RST.
pub const DEFAULT_CONNECT_RETRIES: u32 = 2;

fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("--config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn resolve(argv: &[&str]) -> anyhow::Result<RunSettings> {
        let cli = Cli::try_parse_from(std::iter::once("tcpfront").chain(argv.iter().copied()))?;
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        RunSettings::resolve(&args)
    }

    fn err(argv: &[&str]) -> String {
        format!("{:#}", resolve(argv).unwrap_err())
    }

    #[test]
    fn bad_combinations_are_named() {
        assert!(err(&["run", "--iface", "x", "--listen", "0.0.0.0:80"]).contains("--upstream"));
        assert!(err(&["run", "--iface", "x", "--echo"]).contains("--listen"));
        assert!(
            err(&[
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--echo",
                "--upstream",
                "a:1"
            ])
            .contains("--echo")
        );
        assert!(
            err(&[
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--upstream",
                "nohost"
            ])
            .contains("HOST:PORT")
        );
        assert!(
            err(&[
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--echo",
                "--max-conns",
                "0"
            ])
            .contains("--max-conns")
        );
        assert!(
            err(&[
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--echo",
                "--msl",
                "3 parsecs"
            ])
            .contains("--msl")
        );
        assert!(err(&["run"]).contains("--iface"));
        assert!(resolve(&["run", "--iface", "x", "--listen", "nonsense"]).is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("tcpfront-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "iface = \"eth9\"\nlisten = [\"0.0.0.0:80\"]\nupstream = \"127.0.0.1:8080\"\nmax-conns = 10\nmsl = \"500ms\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = resolve(&["run", "--config", p]).unwrap();
        assert_eq!(s.iface, "eth9");
        assert_eq!(s.engine.max_connections, 10);
        assert_eq!(s.engine.msl, Duration::from_millis(500));
        let Some(Upstream::Pool(pool)) = &s.upstream else {
            panic!("no pool: {:?}", s.upstream)
        };
        assert_eq!(pool.backends, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(pool.balance, Balance::RoundRobin);
        let s = resolve(&["run", "--config", p, "--iface", "eth1", "--max-conns", "5"]).unwrap();
        assert_eq!((s.iface.as_str(), s.engine.max_connections), ("eth1", 5));

        std::fs::write(&path, "listen = [\"0.0.0.0:80\"]\nbogus = 1\n").unwrap();
        assert!(err(&["run", "--config", p, "--iface", "x"]).contains("bogus"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tunables_are_set_and_checked() {
        let base = ["run", "--iface", "x", "--listen", "0.0.0.0:80", "--echo"];
        let with = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            resolve(&argv)
        };
        let s = with(&[
            "--keepalive-idle",
            "2s",
            "--keepalive-interval",
            "500ms",
            "--keepalive-count",
            "3",
            "--fin-wait2-timeout",
            "5s",
            "--connect-timeout",
            "1s",
            "--send-buffer",
            "1M",
            "--recv-buffer",
            "64K",
        ])
        .unwrap();
        assert_eq!(
            s.engine.keepalive,
            Some(Keepalive {
                idle: Duration::from_secs(2),
                interval: Duration::from_millis(500),
                count: 3
            })
        );
        assert_eq!(s.engine.fin_wait2_timeout, Duration::from_secs(5));
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
        // A fixed size: auto-tuning off for that buffer.
        assert_eq!(
            (s.engine.send_buffer, s.engine.recv_buffer),
            (1 << 20, 64 << 10)
        );
        assert_eq!(
            (s.engine.send_buffer_max, s.engine.recv_buffer_max),
            (1 << 20, 64 << 10)
        );
        assert_eq!(s.engine.wscale, 7);
        // Maxima: the window scale follows the receive maximum, to the XDP SYN-ACKs too.
        let t = with(&[
            "--recv-buffer-max",
            "64M",
            "--send-buffer-max",
            "128K",
            "--buffer-memory",
            "256M",
        ])
        .unwrap();
        assert_eq!(t.engine.recv_buffer_max, 64 << 20);
        assert_eq!(t.engine.wscale, 11);
        assert_eq!(t.fast_path.wscale, 11);
        assert_eq!(
            (t.engine.send_buffer, t.engine.send_buffer_max),
            (128 << 10, 128 << 10)
        );
        assert_eq!(t.engine.buffer_budget.limit(), 256 << 20);
        let d = with(&[]).unwrap();
        assert_eq!((d.engine.wscale, d.fast_path.wscale), (9, 9));
        assert_eq!(
            with(&["--keepalive", "off"]).unwrap().engine.keepalive,
            None
        );
        let d = with(&[]).unwrap();
        assert_eq!(d.engine.keepalive, EngineConfig::default().keepalive);
        assert_eq!(d.connect_timeout, DEFAULT_CONNECT_TIMEOUT);

        let err = |extra: &[&str]| format!("{:#}", with(extra).unwrap_err());
        assert!(err(&["--keepalive-count", "0"]).contains("--keepalive-count"));
        assert!(err(&["--keepalive-idle", "0s"]).contains("--keepalive-idle"));
        assert!(err(&["--keepalive", "off", "--keepalive-idle", "1s"]).contains("--keepalive off"));
        assert!(err(&["--connect-timeout", "soon"]).contains("--connect-timeout"));
        assert!(err(&["--recv-buffer", "512M"]).contains("--recv-buffer"));
        assert!(
            err(&["--recv-buffer", "1M", "--recv-buffer-max", "8M"]).contains("--recv-buffer-max")
        );
        assert!(err(&["--buffer-memory", "1K"]).contains("--buffer-memory"));
        assert!(err(&["--send-buffer", "1K"]).contains("--send-buffer"));
        assert!(err(&["--send-buffer", "12Q"]).contains("--send-buffer"));
    }

    #[test]
    fn tunables_from_the_file_and_bad_values_named() {
        let dir = std::env::temp_dir().join(format!("tcpfront-tun-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        let p = path.to_str().unwrap();
        std::fs::write(
            &path,
            "iface = \"x\"\nlisten = [\"0.0.0.0:80\"]\necho = true\nkeepalive-idle = \"30s\"\n\
             keepalive-count = 2\nsend-buffer = 131072\nrecv-buffer = \"1M\"\nconnect-timeout = \"2s\"\n",
        )
        .unwrap();
        let s = resolve(&["run", "--config", p]).unwrap();
        let k = s.engine.keepalive.unwrap();
        assert_eq!((k.idle, k.count), (Duration::from_secs(30), 2));
        assert_eq!(
            (s.engine.send_buffer, s.engine.recv_buffer),
            (131_072, 1 << 20)
        );
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        // A value of the wrong type names the file and the key.
        std::fs::write(&path, "iface = \"x\"\nkeepalive-count = \"many\"\n").unwrap();
        let e = err(&["run", "--config", p]);
        assert!(e.contains(p) && e.contains("keepalive-count"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pools_from_flags_and_file() {
        let s = resolve(&[
            "run",
            "--iface",
            "x",
            "--listen",
            "0.0.0.0:80",
            "--upstream",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2,weight=3",
            "--balance",
            "least-conn",
            "--proxy-protocol",
            "v2",
            "--health-interval",
            "500ms",
            "--health-fall",
            "1",
            "--connect-retries",
            "0",
        ])
        .unwrap();
        let Some(Upstream::Pool(p)) = s.upstream else {
            panic!("no pool")
        };
        assert_eq!(p.backends.len(), 2);
        assert_eq!(p.backends[1].weight, 3);
        assert_eq!(p.balance, Balance::LeastConn);
        assert_eq!(p.proxy_protocol, Some(ProxyVersion::V2));
        assert_eq!(p.health.interval, Duration::from_millis(500));
        assert_eq!((p.health.fall, p.health.rise), (1, 2));
        assert_eq!(p.connect_retries, 0);
        assert!(p.health.enabled, "a pool is checked");
        let one = |extra: &[&str]| {
            let mut argv = vec![
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--upstream",
                "h:1",
            ];
            argv.extend_from_slice(extra);
            match resolve(&argv).unwrap().upstream {
                Some(Upstream::Pool(p)) => p.health.enabled,
                _ => panic!("no pool"),
            }
        };
        assert!(!one(&[]), "a single backend is not checked unless asked");
        assert!(one(&["--health-checks", "on"]));

        let dir = std::env::temp_dir().join(format!("tcpfront-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        let p = path.to_str().unwrap();
        std::fs::write(
            &path,
            "iface = \"x\"\nlisten = [\"0.0.0.0:80\"]\nupstream = [\"127.0.0.1:1\", \
             \"127.0.0.1:2,weight=2\"]\nproxy-protocol = \"v1\"\nhealth-checks = false\n",
        )
        .unwrap();
        let s = resolve(&["run", "--config", p]).unwrap();
        let Some(Upstream::Pool(pool)) = s.upstream else {
            panic!("no pool")
        };
        assert_eq!(pool.backends.len(), 2);
        assert_eq!(pool.proxy_protocol, Some(ProxyVersion::V1));
        assert!(!pool.health.enabled);
        std::fs::write(
            &path,
            "listen = [\"0.0.0.0:80\"]\nupstream = \"a:1\"\nbalance = \"random\"\n",
        )
        .unwrap();
        assert!(err(&["run", "--config", p, "--iface", "x"]).contains("balance"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err(&[
                "run",
                "--iface",
                "x",
                "--listen",
                "0.0.0.0:80",
                "--upstream",
                "a:1,weight=0"
            ])
            .contains("weight")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("262144").unwrap(), 262_144);
        assert_eq!(parse_size("256K").unwrap(), 256 << 10);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert!(parse_size("4G").is_err());
        assert!(parse_size("K").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("1d").is_err());
    }
}
