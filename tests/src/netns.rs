//! Running code and commands inside a named network namespace.

use std::{fs::File, os::fd::AsRawFd as _, process::Command, thread::JoinHandle};

use anyhow::{Context as _, bail};

/// Runs `ip ARGS…` and fails with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

/// Runs a command to completion and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {cmd:?} (run `cargo xtask setup`?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A `Command` that runs `program` inside namespace `ns`.
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// Moves the calling thread into `/run/netns/<ns>`.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: plain syscall on an fd we own; only this thread changes namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {ns}"));
    }
    Ok(())
}

/// Runs `f` on a new thread that lives in namespace `ns`, so that its sockets are real kernel
/// sockets of that namespace.
pub fn spawn_in<T, F>(ns: &str, f: F) -> JoinHandle<anyhow::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        f()
    })
}

/// Runs `f` inside `ns` and waits for it.
pub fn run_in<T, F>(ns: &str, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    match spawn_in(ns, f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Names of all namespaces under /run/netns.
pub fn list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs an nftables script inside namespace `ns`; nft's own message on failure.
pub fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
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

/// Pins the calling thread to one CPU.
pub fn pin_thread(cpu: usize) -> anyhow::Result<()> {
    pin_task(0, cpu)
}

/// Pins thread (task) `tid` to one CPU (0: the calling thread).
pub fn pin_task(tid: libc::pid_t, cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning {tid} to CPU {cpu}"));
    }
    Ok(())
}

/// Pins every thread of process `pid` to `cpu` (threads it starts later inherit it).
pub fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let dir = format!("/proc/{pid}/task");
    for t in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let tid: libc::pid_t = t?.file_name().to_string_lossy().parse()?;
        pin_task(tid, cpu)?;
    }
    Ok(())
}
