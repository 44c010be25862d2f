//! Child processes that are killed when their handle drops, and a handle on `tcpfront run`.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::lab::Lab;

/// The tcpfront binary under test: `$TCPFRONT_BIN`, else the workspace's release build, else
/// its debug build.
pub fn tcpfront_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TCPFRONT_BIN") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let release = root.join("target/release/tcpfront");
    if release.exists() {
        release
    } else {
        root.join("target/debug/tcpfront")
    }
}

/// A child process stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Self {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first: a master process (nginx, HAProxy) then stops its workers, which
            // a SIGKILL of the master would leave running. SIGKILL if it lingers.
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tcpfront run` on the front-end interface of a lab.
pub struct Tcpfront {
    pub proc: ChildGuard,
    pub log: PathBuf,
    pub iface: String,
    pub netns: String,
}

impl Tcpfront {
    /// Starts tcpfront with `extra` run arguments and waits until it has attached.
    pub fn start(lab: &Lab, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_log(lab, extra, "debug")
    }

    /// As [`Tcpfront::start`], logging at `level` (`RUST_LOG`): benchmarks log less.
    pub fn start_with_log(lab: &Lab, extra: &[&str], level: &str) -> anyhow::Result<Self> {
        Self::start_with_env(lab, extra, level, &[])
    }

    /// As [`Tcpfront::start_with_log`], with more environment variables.
    pub fn start_with_env(
        lab: &Lab,
        extra: &[&str],
        level: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_in(&lab.names.front_ns, &lab.names.front_if, extra, level, env)
    }

    /// `tcpfront --netns NS run --iface IF …`, once it has attached.
    pub fn start_in(
        netns: &str,
        iface: &str,
        extra: &[&str],
        level: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("tcpfront-{iface}-{n}.log"));
        let log_file = std::fs::File::create(&log).context("creating the tcpfront log")?;
        let mut cmd = Command::new(tcpfront_bin());
        cmd.args(["--netns", netns, "run", "--iface", iface])
            .args(extra)
            .env("RUST_LOG", level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let proc = ChildGuard::spawn("tcpfront", &mut cmd)?;
        let mut t = Self {
            proc,
            log,
            iface: iface.to_string(),
            netns: netns.to_string(),
        };
        t.wait_ready(Duration::from_secs(30))?;
        Ok(t)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains("attached to ") {
                return Ok(());
            }
            if let Some(status) = self.proc.child.try_wait()? {
                bail!("tcpfront exited early ({status}):\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!("tcpfront not ready after {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a tcpfront CLI command against this instance (same namespace and interface).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new(tcpfront_bin())
            .args(["--netns", &self.netns])
            .args(args)
            .output()
            .context("running the tcpfront CLI")
    }

    /// `tcpfront stats --json`, parsed.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.cli(&["stats", "--iface", &self.iface, "--json"])?;
        if !out.status.success() {
            bail!(
                "tcpfront stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parsing stats JSON")
    }

    /// One XDP counter from `stats --json`.
    pub fn counter(stats: &serde_json::Value, name: &str) -> u64 {
        stats["xdp"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait_timeout(Duration::from_secs(30))?;
        Ok(status)
    }
}

impl Drop for Tcpfront {
    fn drop(&mut self) {
        // A test that failed while tcpfront ran: let it clean up, then make sure.
        if let Ok(None) = self.proc.child.try_wait() {
            // The second signal skips the drain: reset, detach and unpin at once.
            self.proc.signal(libc::SIGTERM);
            std::thread::sleep(Duration::from_millis(200));
            self.proc.signal(libc::SIGTERM);
            let _ = self.proc.wait_timeout(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `tf-test-backend` (the binary at `bin`) in namespace `ns` on 127.0.0.1:`port`, answering
/// `name` (`mode`: `echo` or `silent`), once it accepts connections.
pub fn spawn_backend(
    ns: &str,
    bin: &std::path::Path,
    port: u16,
    name: &str,
    mode: &str,
) -> anyhow::Result<ChildGuard> {
    let g = ChildGuard::spawn(
        name,
        crate::netns::command_in(ns, &bin.to_string_lossy())
            .args([&format!("127.0.0.1:{port}"), name, mode])
            .stdout(Stdio::null()),
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !crate::netns::run_in(ns, move || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })? {
        anyhow::ensure!(Instant::now() < deadline, "backend {name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(g)
}

/// A connection to `addr` from namespace `ns`, and the first line the far end sent (a
/// `tf-test-backend` says its name).
pub fn connect_and_greet(
    ns: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(std::net::TcpStream, String)> {
    use std::io::BufRead as _;
    crate::netns::run_in(ns, move || {
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        std::io::BufReader::new(&s)
            .read_line(&mut line)
            .with_context(|| format!("reading the backend's name through {addr}"))?;
        Ok((s, line.trim().to_string()))
    })
}
