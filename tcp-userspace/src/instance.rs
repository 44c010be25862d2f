//! One tcpfront instance per interface: where its files live, the lock that makes it the only
//! one, and clean-up of what a dead instance left behind.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::bpf::bpffs::BPFFS;

pub const RUN_DIR: &str = "/run/tcpfront";

/// The files of the instance on one interface.
#[derive(Clone, Debug)]
pub struct Paths {
    pub iface: String,
    /// `/sys/fs/bpf/tcpfront/<iface>/`: pinned maps.
    pub pin_dir: PathBuf,
    /// `/run/tcpfront/<iface>.lock`: flock'ed by the live instance, holds its pid.
    pub lock: PathBuf,
    /// `/run/tcpfront/<iface>.sock`: the control socket.
    pub socket: PathBuf,
}

impl Paths {
    pub fn new(iface: &str) -> anyhow::Result<Self> {
        validate_iface_name(iface)?;
        Ok(Self {
            iface: iface.to_string(),
            pin_dir: Path::new(BPFFS).join("tcpfront").join(iface),
            lock: Path::new(RUN_DIR).join(format!("{iface}.lock")),
            socket: Path::new(RUN_DIR).join(format!("{iface}.sock")),
        })
    }

    pub fn pin(&self, map: &str) -> PathBuf {
        self.pin_dir.join(map)
    }
}

/// Rejects names the kernel could never have (IFNAMSIZ is 16 with the NUL).
pub fn validate_iface_name(iface: &str) -> anyhow::Result<()> {
    if iface.is_empty()
        || iface.len() > 15
        || iface.contains('/')
        || iface.contains(char::is_whitespace)
        || iface == "."
        || iface == ".."
    {
        bail!("--iface {iface:?}: not a valid interface name");
    }
    Ok(())
}

/// Held for the life of `tcpfront run`; the kernel releases the flock if the process dies.
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock of `paths.iface`, or says which pid holds it.
    pub fn acquire(paths: &Paths) -> anyhow::Result<Self> {
        fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&paths.lock)
            .with_context(|| format!("opening {}", paths.lock.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "tcpfront is already running on {} (pid {}); stop it first",
                paths.iface,
                pid.trim()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Self {
            file,
            path: paths.lock.clone(),
        })
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock so that a waiting starter never sees our pid.
        let _ = fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Removes pins and a socket left by an instance that died without cleaning up. Only call
/// with the lock held: then nobody else owns these files.
pub fn remove_stale_state(paths: &Paths) -> anyhow::Result<()> {
    if paths.pin_dir.exists() {
        tracing::warn!(
            "{}: removing stale pins of a dead instance in {}",
            paths.iface,
            paths.pin_dir.display()
        );
        remove_pins(paths)?;
    }
    if paths.socket.exists() {
        fs::remove_file(&paths.socket)
            .with_context(|| format!("removing stale {}", paths.socket.display()))?;
    }
    Ok(())
}

/// Unpins every map of the instance.
pub fn remove_pins(paths: &Paths) -> anyhow::Result<()> {
    match fs::remove_dir_all(&paths.pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("unpinning {}", paths.pin_dir.display())),
    }
}

/// Fails with a plain message when the caller is not root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN); try again with sudo");
    }
    Ok(())
}

/// Interfaces with a tcpfront instance: a control socket, or pinned maps (also those a
/// crashed instance left).
pub fn running_instances() -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    if let Ok(dir) = fs::read_dir(Path::new(BPFFS).join("tcpfront")) {
        for e in dir.flatten() {
            if e.path().is_dir() {
                names.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    if let Ok(dir) = fs::read_dir(RUN_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(iface) = name.strip_suffix(".sock") {
                names.insert(iface.to_string());
            }
        }
    }
    names.into_iter().collect()
}

/// The instance a query command means: the one named by `--iface`, or the only one running.
pub fn resolve(iface: Option<&str>) -> anyhow::Result<Paths> {
    let running = running_instances();
    match iface {
        Some(i) => {
            let paths = Paths::new(i)?;
            if !running.iter().any(|r| r == i) {
                bail!(
                    "tcpfront is not running on {i} (no control socket {} and no pinned maps in \
                     {})",
                    paths.socket.display(),
                    paths.pin_dir.display()
                );
            }
            Ok(paths)
        }
        None => match running.as_slice() {
            [] => bail!("tcpfront is not running on any interface"),
            [one] => Paths::new(one),
            many => bail!(
                "tcpfront runs on several interfaces ({}); choose one with --iface",
                many.join(", ")
            ),
        },
    }
}
