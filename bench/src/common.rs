//! What the benchmarks share: their lab, an event-driven request/response server, a client
//! request, CPU pinning and accounting, result files and percentiles.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
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

pub fn names() -> LabNames {
    LabNames {
        client_ns: "tfb-client".into(),
        front_ns: "tfb-front".into(),
        client_if: "tfb-c0".into(),
        front_if: "tfb-f0".into(),
        wan: None,
    }
}

/// A fresh benchmark lab with `queues` queues on each veth end (a leftover of an interrupted
/// run is removed first); with `tcpfront`, its pass-through program goes on the client veth.
pub fn lab(tcpfront: Option<&std::path::Path>, queues: u32) -> anyhow::Result<Lab> {
    lab::destroy(&names());
    Lab::create(names(), false, tcpfront, queues)
}

/// A fresh benchmark lab with the WAN emulator's namespace between client and front end
/// (see [`tcpfront_tests::wan`]), `queues` queues on every veth end.
pub fn wan_lab(tcpfront: &std::path::Path, queues: u32) -> anyhow::Result<Lab> {
    let names = names().with_wan();
    lab::destroy(&names);
    Lab::create(names, false, Some(tcpfront), queues)
}

/// Makes the front veth receive as a NIC's driver does: through NAPI with GRO. (veth
/// without an XDP program hands each frame to the stack alone, with no GRO, which would
/// charge the kernel targets per frame for what a NIC coalesces; with tcpfront's program the
/// frames are redirected before GRO either way.) The client veth already sends frames of
/// wire size: its checksum offload, and with it TSO, is off.
pub fn nic_like_receive(lab: &Lab) -> anyhow::Result<()> {
    tcpfront_tests::netns::run(
        tcpfront_tests::netns::command_in(&lab.names.front_ns, "ethtool").args([
            "-K",
            &lab.names.front_if,
            "gro",
            "on",
        ]),
    )
    .context("GRO on the front veth")
}

/// The tcpfront binary `cargo xtask bench` built.
pub fn tcpfront_bin() -> PathBuf {
    tcpfront_tests::process::tcpfront_bin()
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

/// Runs `f` on a thread in namespace `ns` (pinned to `cpu` if given) until told to stop.
pub fn background<T, F>(ns: &str, cpu: Option<usize>, f: F) -> Background<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<AtomicBool>) -> anyhow::Result<T> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    Background {
        stop,
        handle: Some(spawn_in(ns, move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu)?;
            }
            f(s)
        })),
    }
}

/// A request/response server in `ns` on `port` (every address): reads a line, answers
/// `ok\n`, closes. Event-driven (one tokio thread, a task per connection), so that it is never
/// what limits connections per second; pinned to `cpu` if given. Also returns its thread id.
pub fn ok_server(ns: &str, port: u16, cpu: Option<usize>) -> anyhow::Result<(Background<()>, u32)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let bg = background(ns, cpu, move |stop| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("::", port)).await?;
            // SAFETY: gettid cannot fail.
            tx.send(unsafe { libc::gettid() } as u32).ok();
            loop {
                tokio::select! {
                    r = l.accept() => {
                        let (s, _) = r?;
                        tokio::spawn(serve_ok(s));
                    }
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                    }
                }
            }
        })
    });
    let tid = rx
        .recv_timeout(Duration::from_secs(5))
        .context("the benchmark server did not start")?;
    Ok((bg, tid))
}

/// CPU time a thread (any, kernel threads too) has run, from /proc/TID/schedstat.
pub fn thread_cpu(tid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// The threads of process `pid`.
pub fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

async fn serve_ok(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut b = [0u8; 64];
    let mut got = 0;
    let read = async {
        while got < b.len() {
            match s.read(&mut b[got..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    got += n;
                    if b[..got].contains(&b'\n') {
                        return true;
                    }
                }
            }
        }
        true
    };
    if let Ok(true) = tokio::time::timeout(Duration::from_secs(5), read).await {
        let _ = s.write_all(b"ok\n").await;
    }
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

pub use tcpfront_tests::netns::{pin_process, pin_task, pin_thread as pin_current_thread};

/// Threads whose name starts with `prefix` (kernel threads included).
pub fn threads_named(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .collect()
}

/// Moves `iface`'s receive work (NAPI) into its own kernel thread and pins that to `cpu`:
/// `/sys/class/net/IF/threaded`, written inside `ns` (whose sysfs shows the interface). On
/// veth the NAPI instance exists only while an XDP program is attached, so call this after
/// attaching. With `realtime` the thread gets SCHED_FIFO, as a NIC's softirq preempts
/// ordinary work.
pub fn threaded_napi(ns: &str, iface: &str, cpu: usize, realtime: bool) -> anyhow::Result<()> {
    tcpfront_tests::netns::run(
        tcpfront_tests::netns::command_in(ns, "sh")
            .args(["-c", &format!("echo 1 > /sys/class/net/{iface}/threaded")]),
    )
    .with_context(|| format!("threaded NAPI on {iface}"))?;
    let threads = threads_named(&format!("napi/{iface}-"));
    anyhow::ensure!(!threads.is_empty(), "no NAPI thread for {iface}");
    for t in threads {
        pin_task(t as libc::pid_t, cpu)?;
        if realtime {
            let param = libc::sched_param { sched_priority: 50 };
            // SAFETY: plain syscall on a thread id we just found.
            if unsafe { libc::sched_setscheduler(t as libc::pid_t, libc::SCHED_FIFO, &param) } != 0
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("SCHED_FIFO for the NAPI thread of {iface}"));
            }
        }
    }
    Ok(())
}

/// SCHED_FIFO at `priority` for the calling thread.
pub fn set_fifo(priority: i32) -> anyhow::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall on the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SCHED_FIFO");
    }
    Ok(())
}

/// Keeps a CPU from halting when idle while it lives, and restores what it changed when
/// dropped: its resume-latency QoS set to "n/a" (no low-power state at all), which every
/// cpuidle governor honours, and its cpuidle states other than POLL disabled. The second alone
/// is not enough: the `haltpoll` governor (a KVM guest's) returns its halt state without
/// looking at `disable` when halt-polling is off (`haltpoll.guest_halt_poll_ns=0` on the
/// machine of 2026-12-07: the states were "disabled" and both CPUs still halted ~2,000 times
/// a second in a flood).
///
/// In a VM a halted vCPU takes long to wake (here: so long that veth's fixed 256-frame ring
/// overflowed at 1.5 M frames/s with the target's CPU half idle), where a NIC's interrupt
/// wakes a core in microseconds and its ring holds thousands of frames. Polling idle time
/// still counts as idle in /proc/stat.
pub struct NoHalt {
    restore: Vec<(PathBuf, String)>,
}

/// Machine settings the running benchmark changed, with their old values: what the interrupt
/// handler ([`restore_on_interrupt`]) writes back if the run is stopped before its guards
/// drop. (A stopped run left both CPUs polling for good: the next run read "n/a" as the old
/// value.)
static CHANGED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

fn changed() -> std::sync::MutexGuard<'static, Vec<(PathBuf, String)>> {
    CHANGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT or SIGTERM: writes back the machine settings the run changed, removes the
/// benchmark labs (their namespaces, with every XDP program on their veths) and exits with
/// status 130. Children in the same process group (tcpfront, HAProxy, nginx, iperf3) get the
/// terminal's SIGINT themselves and clean up their own state.
pub fn restore_on_interrupt() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("a runtime for the signal handler")?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("\ncargo xtask bench: interrupted; restoring and removing the lab");
                for (path, old) in changed().drain(..).rev() {
                    let _ = std::fs::write(path, old);
                }
                tcpfront_tests::lab::destroy(&names().with_wan());
                tcpfront_tests::lab::destroy(&names());
                std::process::exit(130);
            });
        })
        .context("starting the signal handler")?;
    Ok(())
}

impl NoHalt {
    pub fn on(cpu: usize) -> Self {
        let mut restore = Vec::new();
        let qos = PathBuf::from(format!(
            "/sys/devices/system/cpu/cpu{cpu}/power/pm_qos_resume_latency_us"
        ));
        if let Ok(old) = std::fs::read_to_string(&qos)
            && std::fs::write(&qos, "n/a").is_ok()
        {
            restore.push((qos, old.trim().to_string()));
        }
        let dir = PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle"));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let state = entry.path();
            let name = std::fs::read_to_string(state.join("name")).unwrap_or_default();
            if name.trim() == "POLL" {
                continue;
            }
            let disable = state.join("disable");
            if let Ok(old) = std::fs::read_to_string(&disable)
                && std::fs::write(&disable, "1").is_ok()
            {
                restore.push((disable, old.trim().to_string()));
            }
        }
        changed().extend(restore.iter().cloned());
        Self { restore }
    }

    /// Whether any idle state was switched off.
    pub fn active(&self) -> bool {
        !self.restore.is_empty()
    }
}

impl Drop for NoHalt {
    fn drop(&mut self) {
        let mut changed = changed();
        for (path, old) in &self.restore {
            let _ = std::fs::write(path, old);
            changed.retain(|(p, _)| p != path);
        }
    }
}

/// The CPUs of the machine: the last one is the target's, the others the rest of the rig's.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where results go: `target/bench/` of the workspace.
pub fn results_dir() -> anyhow::Result<PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate has no parent directory")?;
    let dir = root.join("target/bench");
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
    serde_json::json!({ "kernel": kernel.trim(), "cpu": model, "cpus": cpus() })
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
