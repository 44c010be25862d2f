//! The BPF filesystem where tcpfront pins its maps.

use std::{ffi::CString, path::Path};

use anyhow::{Context as _, bail};

pub const BPFFS: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs at /sys/fs/bpf unless it is already there (as systemd and bpftool do).
pub fn ensure_mounted() -> anyhow::Result<()> {
    if is_bpffs(Path::new(BPFFS))? {
        return Ok(());
    }
    let target = CString::new(BPFFS).context("mount point")?;
    let fstype = CString::new("bpf").context("fs type")?;
    let opts = CString::new("mode=0700").context("mount options")?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot mount bpffs at {BPFFS} (root is needed)"));
    }
    if !is_bpffs(Path::new(BPFFS))? {
        bail!("{BPFFS} is still not a bpffs after mounting");
    }
    tracing::info!("mounted bpffs at {BPFFS}");
    Ok(())
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("path")?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path and st a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}
