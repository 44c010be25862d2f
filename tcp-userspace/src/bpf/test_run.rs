//! BPF_PROG_TEST_RUN: runs a loaded XDP program on a crafted frame without a NIC, or in
//! live-frames mode, where what it transmits really leaves through a device.

use std::os::fd::{AsRawFd as _, BorrowedFd};

use anyhow::Context as _;

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames the program returns XDP_TX/XDP_REDIRECT for are
/// really sent (include/uapi/linux/bpf.h).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct xdp_md` as BPF_PROG_TEST_RUN's `ctx_in`.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn test_run(attr: &mut TestRunAttr) -> anyhow::Result<()> {
    // SAFETY: attr points at valid buffers that outlive the call; the size matches.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_TEST_RUN failed");
    }
    Ok(())
}

/// Runs the program `repeat` times in live-frames mode, each run on a fresh copy of `frame`
/// received on `ifindex` (in the calling thread's network namespace), queue 0: what it
/// returns XDP_TX for leaves through that device, as from a driver. The kernel flushes
/// after every `batch` frames. The pages are recycled, so a program that rewrites frames
/// must write them whole every run.
pub fn run_live(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> anyhow::Result<()> {
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..TestRunAttr::default()
    };
    test_run(&mut attr)
}

/// Runs the program `repeat` times on `frame` (each run sees what the previous one left);
/// returns the last XDP action and the mean duration of a run in nanoseconds, as the kernel
/// measures it around the whole loop (no clock read per run).
pub fn run_repeat(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> anyhow::Result<(u32, u32)> {
    let mut out = vec![0u8; 4096];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    test_run(&mut attr)?;
    Ok((attr.retval, attr.duration))
}

/// Runs the program once on `frame`; returns the XDP action and the frame as it left.
pub fn run(prog: BorrowedFd<'_>, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    test_run(&mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}
