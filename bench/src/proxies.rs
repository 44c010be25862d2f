//! The TCP front-ends a user would put in front of a service, started in the lab's front-end
//! namespace, each relaying its own port to the same upstream on the namespace's loopback:
//! HAProxy (`mode tcp`), nginx (`stream`), and tcpfront; `Direct` is the upstream itself.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tcpfront_tests::{
    lab::{self, Lab},
    netns::command_in,
    process::{ChildGuard, Tcpfront},
};

use crate::common;

/// File descriptors a process may hold here (the hard limit, which cannot be raised).
pub const FD_LIMIT: u64 = 20_000;

/// HAProxy's `maxconn`: HAProxy holds two descriptors per proxied connection and refuses to
/// start when `maxconn` needs more than the limit, so this is the most it can hold here.
pub const HAPROXY_MAXCONN: u64 = (FD_LIMIT - 200) / 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// No proxy: the client talks to the upstream.
    Direct,
    Haproxy,
    Nginx,
    Tcpfront,
}

impl Proxy {
    pub const ALL: [Proxy; 4] = [Proxy::Direct, Proxy::Haproxy, Proxy::Nginx, Proxy::Tcpfront];

    pub fn key(self) -> &'static str {
        match self {
            Proxy::Direct => "direct",
            Proxy::Haproxy => "haproxy",
            Proxy::Nginx => "nginx",
            Proxy::Tcpfront => "tcpfront",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Proxy::Direct => "kernel direct",
            Proxy::Haproxy => "HAProxy",
            Proxy::Nginx => "nginx stream",
            Proxy::Tcpfront => "tcpfront",
        }
    }

    /// The port the client connects to for an upstream on `upstream`: each proxy its own.
    pub fn port(self, upstream: u16) -> u16 {
        match self {
            Proxy::Direct => upstream,
            Proxy::Haproxy => upstream + 1000,
            Proxy::Nginx => upstream + 2000,
            Proxy::Tcpfront => upstream + 3000,
        }
    }
}

/// A running proxy; stopped when dropped.
pub struct Running {
    pub proxy: Proxy,
    /// The process whose CPU time is the proxy's (None for Direct).
    pub pid: Option<u32>,
    _child: Option<ChildGuard>,
    tcpfront: Option<Tcpfront>,
    _dir: Option<TempDir>,
}

impl Running {
    /// CPU time of every thread of the proxy's processes (nginx: master and workers).
    pub fn cpu_time(&self) -> Duration {
        let Some(pid) = self.pid else {
            return Duration::ZERO;
        };
        let mut pids = vec![pid];
        pids.extend(children(pid));
        pids.iter()
            .flat_map(|&p| common::tasks(p))
            .map(common::thread_cpu)
            .sum()
    }

    /// tcpfront's engine counters of closed connections (retransmitted segments,
    /// retransmission timeouts), once every connection but those in TIME-WAIT is closed
    /// (they are counted when they close), waiting up to `wait`. None for other proxies.
    pub fn tcpfront_recovery(&self, wait: Duration) -> anyhow::Result<Option<Recovery>> {
        let Some(tf) = &self.tcpfront else {
            return Ok(None);
        };
        let until = Instant::now() + wait;
        loop {
            let stats = tf.stats()?;
            let e = &stats["engine"];
            let open = e["connections"].as_u64().unwrap_or(0);
            let time_wait = e["time_wait"].as_u64().unwrap_or(0);
            if open <= time_wait || Instant::now() >= until {
                return Ok(Some(Recovery {
                    retransmits: e["retransmits"].as_u64().unwrap_or(0),
                    timeouts: e["timeouts"].as_u64().unwrap_or(0),
                    tail_loss_probes: e["tail_loss_probes"].as_u64().unwrap_or(0),
                    hystart_rtt_exits: e["hystart_rtt_exits"].as_u64().unwrap_or(0),
                    hystart_train_exits: e["hystart_train_exits"].as_u64().unwrap_or(0),
                    still_open: open - time_wait.min(open),
                }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tf) = self.tcpfront.take() {
            let status = tf.stop()?;
            if !status.success() {
                bail!("tcpfront exited with {status}");
            }
        }
        Ok(())
    }
}

/// How tcpfront's engine recovered from loss (counters of closed connections).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Recovery {
    pub retransmits: u64,
    pub timeouts: u64,
    pub tail_loss_probes: u64,
    /// Connections whose slow start HyStart ended, on a rise of the RTT or on an ACK train
    /// (the others left it on a loss).
    pub hystart_rtt_exits: u64,
    pub hystart_train_exits: u64,
    /// Connections not yet closed when read (their counts are missing).
    pub still_open: u64,
}

impl std::ops::Sub for Recovery {
    type Output = Recovery;
    fn sub(self, o: Recovery) -> Recovery {
        Recovery {
            retransmits: self.retransmits.saturating_sub(o.retransmits),
            timeouts: self.timeouts.saturating_sub(o.timeouts),
            tail_loss_probes: self.tail_loss_probes.saturating_sub(o.tail_loss_probes),
            hystart_rtt_exits: self.hystart_rtt_exits.saturating_sub(o.hystart_rtt_exits),
            hystart_train_exits: self
                .hystart_train_exits
                .saturating_sub(o.hystart_train_exits),
            still_open: self.still_open,
        }
    }
}

/// Child processes of `pid`.
fn children(pid: u32) -> Vec<u32> {
    common::tasks(pid)
        .into_iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/task/{t}/children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "tcpfront-bench-{what}-{}-{}",
            std::process::id(),
            common::unix_now()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `proxy` relaying its port (see [`Proxy::port`]) to 127.0.0.1:`upstream` in the
/// lab's front-end namespace, and waits until it accepts connections.
pub fn start(lab: &Lab, proxy: Proxy, upstream: u16) -> anyhow::Result<Running> {
    let port = proxy.port(upstream);
    let ns = &lab.names.front_ns;
    let running = match proxy {
        Proxy::Direct => Running {
            proxy,
            pid: None,
            _child: None,
            tcpfront: None,
            _dir: None,
        },
        Proxy::Haproxy => {
            let dir = TempDir::new("haproxy")?;
            let cfg = dir.0.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config(port, upstream))?;
            let child = ChildGuard::spawn(
                "haproxy",
                command_in(ns, "haproxy")
                    .args(["-db", "-f"])
                    .arg(&cfg)
                    .stdout(Stdio::null())
                    .stderr(log_file(&dir.0, "haproxy.log")?),
            )?;
            Running {
                proxy,
                pid: Some(child.pid() as u32),
                _child: Some(child),
                tcpfront: None,
                _dir: Some(dir),
            }
        }
        Proxy::Nginx => {
            let dir = TempDir::new("nginx")?;
            let cfg = dir.0.join("nginx.conf");
            std::fs::write(&cfg, nginx_stream_config(&dir.0, port, upstream))?;
            let child = ChildGuard::spawn(
                "nginx",
                command_in(ns, "nginx")
                    .arg("-p")
                    .arg(&dir.0)
                    .arg("-c")
                    .arg(&cfg)
                    .args(["-e", "stderr"])
                    .stdout(Stdio::null())
                    .stderr(log_file(&dir.0, "nginx.log")?),
            )?;
            Running {
                proxy,
                pid: Some(child.pid() as u32),
                _child: Some(child),
                tcpfront: None,
                _dir: Some(dir),
            }
        }
        Proxy::Tcpfront => {
            let listen_v4 = format!("{}:{port}", lab::FRONT_V4);
            let listen_v6 = format!("[{}]:{port}", lab::FRONT_V6);
            let upstream = format!("127.0.0.1:{upstream}");
            let tf = Tcpfront::start_with_log(
                lab,
                &[
                    "--listen",
                    &listen_v4,
                    "--listen",
                    &listen_v6,
                    "--upstream",
                    &upstream,
                ],
                // (Info: readiness is read from the log; per-connection logs are debug.)
                "info",
            )?;
            Running {
                proxy,
                pid: Some(tf.proc.pid() as u32),
                _child: None,
                tcpfront: Some(tf),
                _dir: None,
            }
        }
    };
    wait_listening(lab, port)?;
    Ok(running)
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).context("creating a log file")
}

/// HAProxy in `mode tcp`, one thread per CPU, as many connections as the descriptor limit
/// allows.
fn haproxy_config(port: u16, upstream: u16) -> String {
    format!(
        "global\n\
         \x20   maxconn {HAPROXY_MAXCONN}\n\
         \x20   nbthread {threads}\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   maxconn {HAPROXY_MAXCONN}\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 10m\n\
         \x20   timeout server 10m\n\
         listen front\n\
         \x20   bind {v4}:{port}\n\
         \x20   bind [{v6}]:{port}\n\
         \x20   server upstream 127.0.0.1:{upstream}\n",
        threads = common::cpus(),
        v4 = lab::FRONT_V4,
        v6 = lab::FRONT_V6,
    )
}

/// nginx `stream` proxy, a worker per CPU.
fn nginx_stream_config(dir: &Path, port: u16, upstream: u16) -> String {
    format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         worker_processes auto;\n\
         worker_rlimit_nofile {FD_LIMIT};\n\
         pid {pid};\n\
         error_log stderr warn;\n\
         daemon off;\n\
         events {{ worker_connections {conns}; }}\n\
         stream {{\n\
         \x20   server {{\n\
         \x20       listen {v4}:{port};\n\
         \x20       listen [{v6}]:{port};\n\
         \x20       proxy_pass 127.0.0.1:{upstream};\n\
         \x20       proxy_timeout 10m;\n\
         \x20   }}\n\
         }}\n",
        pid = dir.join("nginx.pid").display(),
        conns = FD_LIMIT - 200,
        v4 = lab::FRONT_V4,
        v6 = lab::FRONT_V6,
    )
}

/// Waits until `port` on the front's address accepts a connection from the client side.
pub fn wait_listening(lab: &Lab, port: u16) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::new(lab::FRONT_V4.into(), port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = tcpfront_tests::netns::run_in(&lab.names.client_ns, move || {
            Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        })?;
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing accepts connections on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
