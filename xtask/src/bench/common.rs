//! What both benchmarks share: their lab, a tiny request/response server, a client loop,
//! result files and percentiles.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tcpfront_tests::{
    lab::{self, Lab, LabNames},
    netns::spawn_in,
};

use crate::util;

pub fn names() -> LabNames {
    LabNames {
        client_ns: "tfb-client".into(),
        front_ns: "tfb-front".into(),
        client_if: "tfb-c0".into(),
        front_if: "tfb-f0".into(),
    }
}

/// A fresh benchmark lab (a leftover of an interrupted run is removed first).
pub fn lab(bin: &std::path::Path) -> anyhow::Result<Lab> {
    lab::destroy(&names());
    Lab::create(names(), false, Some(bin))
}

/// Stops its thread when dropped.
pub struct Background<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<T>>>,
}

impl<T> Background<T> {
    pub fn finish(mut self) -> anyhow::Result<T> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?,
            None => anyhow::bail!("already finished"),
        }
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn background<T, F>(ns: &str, f: F) -> Background<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<AtomicBool>) -> anyhow::Result<T> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    Background {
        stop,
        handle: Some(spawn_in(ns, move || f(s))),
    }
}

/// A request/response server in `ns` on `port`: reads a line, answers `ok\n`, closes. The
/// listener has the default backlog of Rust's std (128).
pub fn ok_server(ns: &str, port: u16) -> anyhow::Result<Background<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let bg = background(ns, move |stop| {
        let l = TcpListener::bind(("0.0.0.0", port))?;
        l.set_nonblocking(true)?;
        tx.send(()).ok();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || serve_ok(s));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(5))
        .context("the benchmark server did not start")?;
    Ok(bg)
}

fn serve_ok(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 64];
    let mut got = 0;
    while got < b.len() {
        match s.read(&mut b[got..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                got += n;
                if b[..got].contains(&b'\n') {
                    break;
                }
            }
        }
    }
    let _ = s.write_all(b"ok\n");
}

/// One request: connect (timed), `x\n`, read `ok\n`, close. Returns the connect time.
pub fn request(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    let connect = t.elapsed();
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"x\n")?;
    let mut b = [0u8; 3];
    s.read_exact(&mut b)?;
    anyhow::ensure!(&b == b"ok\n", "bad answer");
    Ok(connect)
}

/// Where results go: `target/bench/`.
pub fn results_dir() -> anyhow::Result<PathBuf> {
    let dir = util::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Seconds since the epoch, for file names and the record.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The machine, for the record: kernel, CPU model and count.
pub fn machine() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    serde_json::json!({ "kernel": kernel.trim(), "cpu": model, "cpus": cpus })
}

/// The `q` quantile (0..=1) of sorted durations, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i].as_secs_f64() * 1000.0)
}

pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}
