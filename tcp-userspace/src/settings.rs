//! `tcpfront run`'s settings: command-line flags over an optional TOML file over defaults,
//! validated together so that a bad combination is named before anything is attached.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::{
    bpf::config::FastPathSettings,
    cli::{AttachMode, DrainSyns, InvalidCookie, OnOff, RunArgs, XskModeArg},
    datapath::Upstream,
    engine::EngineConfig,
};

/// The TOML file given by `--config`; every key is optional and named like its flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub iface: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub listen: Vec<String>,
    pub upstream: Option<String>,
    pub echo: Option<bool>,
    pub syn_cookies: Option<bool>,
    pub invalid_cookie: Option<String>,
    pub scrub_all: Option<bool>,
    pub max_conns: Option<usize>,
    pub queues: Option<u32>,
    pub msl: Option<String>,
    pub drain_timeout: Option<String>,
    pub drain_syns: Option<String>,
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
}

/// Default of `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `500ms`, `30s`, `2m` or a plain number of seconds.
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
        _ => bail!("{s:?}: unknown unit {unit:?} (use ms, s or m)"),
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
        let upstream_addr = args.upstream.clone().or(file.upstream.clone());
        let upstream = match (upstream_addr, echo) {
            (Some(_), true) => bail!("--upstream and --echo exclude each other: choose one"),
            (Some(a), false) => {
                if !a.contains(':') {
                    bail!("--upstream {a:?}: expected HOST:PORT");
                }
                Some(Upstream::Tcp(a))
            }
            (None, true) => Some(Upstream::Echo),
            (None, false) => None,
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
        })
    }
}

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
        assert_eq!(s.upstream, Some(Upstream::Tcp("127.0.0.1:8080".into())));
        let s = resolve(&["run", "--config", p, "--iface", "eth1", "--max-conns", "5"]).unwrap();
        assert_eq!((s.iface.as_str(), s.engine.max_connections), ("eth1", 5));

        std::fs::write(&path, "listen = [\"0.0.0.0:80\"]\nbogus = 1\n").unwrap();
        assert!(err(&["run", "--config", p, "--iface", "x"]).contains("bogus"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1h").is_err());
    }
}
