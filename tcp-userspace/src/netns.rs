//! Entering a named network namespace.

use std::{fs::File, os::fd::AsRawFd as _};

use anyhow::{Context as _, bail};

/// Moves the calling thread into `/run/netns/<name>`. Call before spawning threads.
pub fn enter(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains('/') {
        bail!("--netns {name:?}: not a namespace name");
    }
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("--netns {name}: cannot open {path}"))?;
    // SAFETY: plain syscall on a file descriptor we own.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("--netns {name}: setns failed (root is needed)"));
    }
    Ok(())
}
