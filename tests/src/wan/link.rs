//! The emulator's I/O: one thread per direction receives the frames of one veth through an
//! AF_PACKET socket, puts each through that direction's [`Line`] and sends it out of the other
//! veth when its delivery time comes. It sleeps in `ppoll` until the next frame arrives or
//! falls due, with a 1 µs timer slack, so delays are kept to a few microseconds.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;

use super::line::{Line, LineStats, Verdict};

/// Largest frame carried: MTU 1500 plus Ethernet and 802.1Q headers, with room to spare.
/// Anything larger (a GSO or GRO packet: the lab turns those off) is dropped and counted.
const FRAME_MAX: usize = 2048;

/// Frames taken from the socket per wake-up at most, before due frames are sent.
const BATCH: usize = 64;

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: i32,
    opt: i32,
    value: i32,
    what: &str,
) -> anyhow::Result<()> {
    // SAFETY: the option value is a plain int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(())
}

/// An AF_PACKET socket bound to `ifname`: receiving every frame that arrives on it (not those
/// sent from it) when `receive`, else for sending only.
fn packet_socket(ifname: &str, receive: bool) -> anyhow::Result<OwnedFd> {
    let index = crate::rawsock::ifindex(ifname)?;
    let proto = if receive {
        (libc::ETH_P_ALL as u16).to_be()
    } else {
        0
    };
    // SAFETY: plain syscall; the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if receive {
        setsockopt_int(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
            "PACKET_IGNORE_OUTGOING",
        )?;
        // Room for bursts while the thread sleeps or sends (a window's worth of frames).
        setsockopt_int(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            64 << 20,
            "SO_RCVBUFFORCE",
        )?;
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index;
    // SAFETY: the address outlives the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding an AF_PACKET socket to {ifname}"));
    }
    Ok(fd)
}

/// Both sockets of one direction: frames come in on `from`, leave on `to`.
pub struct Direction {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Direction {
    /// Opens the sockets (in the calling thread's namespace).
    pub fn open(from: &str, to: &str) -> anyhow::Result<Self> {
        Ok(Self {
            rx: packet_socket(from, true)?,
            tx: packet_socket(to, false)?,
        })
    }
}

/// What one direction did, beyond its line's verdicts.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DirectionStats {
    pub line: LineStats,
    /// Frames the kernel dropped because the emulator's socket was full: the emulator, not the
    /// emulated link, was the bottleneck. Should stay 0.
    pub socket_drops: u64,
    /// Frames too large to carry (offloads left on).
    pub oversize: u64,
    /// Frames the outgoing veth refused.
    pub send_errors: u64,
    /// Largest lateness of a delivery behind its due time, in microseconds.
    pub max_late_us: u64,
}

struct Pending {
    at: u64,
    seq: u64,
    len: usize,
    buf: Box<[u8; FRAME_MAX]>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

fn socket_drops(fd: &OwnedFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as u32;
    // SAFETY: the kernel writes at most `len` bytes into `st`.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    st.tp_drops as u64
}

/// Carries frames one way until `stop` is set; returns what it did.
pub fn run(dir: Direction, mut line: Line, stop: Arc<AtomicBool>) -> DirectionStats {
    // SAFETY: prctl on the calling thread only: wake-ups 1 µs after their time, not 50 µs.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0, 0, 0) };
    let mut stats = DirectionStats::default();
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut free: Vec<Box<[u8; FRAME_MAX]>> = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns();
        let wait = match heap.peek() {
            Some(Reverse(p)) => p.at.saturating_sub(now).min(50_000_000),
            None => 50_000_000,
        };
        if wait > 0 {
            let mut pfd = libc::pollfd {
                fd: dir.rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ts = libc::timespec {
                tv_sec: (wait / 1_000_000_000) as i64,
                tv_nsec: (wait % 1_000_000_000) as i64,
            };
            // SAFETY: one pollfd and a timespec that outlive the call.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        }
        for _ in 0..BATCH {
            let mut buf = free.pop().unwrap_or_else(|| Box::new([0u8; FRAME_MAX]));
            // SAFETY: the kernel writes at most FRAME_MAX bytes into the buffer.
            let n = unsafe {
                libc::recv(
                    dir.rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    FRAME_MAX,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n <= 0 {
                free.push(buf);
                break;
            }
            let len = n as usize;
            if len > FRAME_MAX {
                stats.oversize += 1;
                free.push(buf);
                continue;
            }
            match line.admit(now_ns(), len) {
                Verdict::Deliver(at) => {
                    seq += 1;
                    heap.push(Reverse(Pending { at, seq, len, buf }));
                }
                Verdict::Lost | Verdict::QueueFull => free.push(buf),
            }
        }
        let now = now_ns();
        while heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = heap.pop() else { break };
            stats.max_late_us = stats.max_late_us.max((now - p.at) / 1000);
            // SAFETY: the frame outlives the call; the socket is bound to the outgoing veth.
            let rc = unsafe { libc::send(dir.tx.as_raw_fd(), p.buf.as_ptr().cast(), p.len, 0) };
            if rc < 0 {
                stats.send_errors += 1;
            }
            free.push(p.buf);
        }
    }
    stats.line = line.stats.clone();
    stats.socket_drops = socket_drops(&dir.rx);
    stats
}
