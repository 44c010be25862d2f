//! The XDP-native SYN-flood generator: `flood_gen` run with BPF_PROG_RUN in live-frames mode
//! on the client veth. Each run writes one whole SYN from a template (random spoofed source
//! address and port, ISN, TSval; full checksums) and transmits it into the front veth, where
//! the target's XDP program receives it as an XDP frame, as from a NIC driver.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, maps::Array, programs::Xdp};
use flood_common::{FloodConf, L3_OFF, Pacing, TCP_HLEN, TSVAL_OFF, V4_LEN, V6_LEN};
use tcpfront::bpf::test_run;

use crate::ebpf;

/// What to send.
#[derive(Clone, Debug)]
pub struct SynSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The spoofed sources: this address with its last two bytes replaced by a host number
    /// in `hosts` (both families).
    pub src_base: IpAddr,
    pub hosts: std::ops::RangeInclusive<u16>,
    pub ports: std::ops::RangeInclusive<u16>,
    pub dst: IpAddr,
    pub dst_port: u16,
}

/// Pacing and bounds of one flood.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// SYNs per second; None: as fast as the generator goes.
    pub rate: Option<u64>,
    pub max: u64,
    pub duration: Duration,
}

/// What a flood reached.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    pub elapsed: Duration,
    /// CPU time of the generating thread.
    pub cpu: Duration,
    /// Of `sent`, the echo's seeds (sent over AF_PACKET: they reach the target as skbs).
    pub seeded: u64,
}

impl FloodReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Native-order one's-complement sum of `b` (RFC 1071), unfolded; `b` starts at an even
/// offset of the checksummed data.
fn sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_ne_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The template SYN (varying fields and checksums zero) and its partial sums.
pub fn template(spec: &SynSpec) -> anyhow::Result<FloodConf> {
    let mut c = FloodConf::default();
    let f = &mut c.frame;
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    let (l4, pseudo) = match (spec.src_base, spec.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            c.family = 4;
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut f[L3_OFF..L3_OFF + 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + TCP_HLEN) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..14].copy_from_slice(&s.octets()[..2]);
            ip[16..20].copy_from_slice(&d.octets());
            c.ip_sum = sum(ip);
            let mut pseudo = [0u8; 12];
            pseudo[0..2].copy_from_slice(&s.octets()[..2]);
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = 6;
            pseudo[10..12].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
            (L3_OFF + 20, sum(&pseudo))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            c.family = 6;
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut f[L3_OFF..L3_OFF + 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..22].copy_from_slice(&s.octets()[..14]);
            ip[24..40].copy_from_slice(&d.octets());
            let mut pseudo = [0u8; 40];
            pseudo[0..14].copy_from_slice(&s.octets()[..14]);
            pseudo[16..32].copy_from_slice(&d.octets());
            pseudo[34..36].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
            pseudo[39] = 6;
            (L3_OFF + 40, sum(&pseudo))
        }
        _ => bail!("source and destination must be of the same family"),
    };
    let t = &mut f[l4..l4 + TCP_HLEN];
    t[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    t[12] = ((TCP_HLEN / 4) as u8) << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    // What Linux sends: MSS 1460, SACK permitted, timestamps (TSval varies, TSecr 0), NOP,
    // window scale 7.
    t[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    t[24..28].copy_from_slice(&[4, 2, 8, 10]);
    debug_assert_eq!(TSVAL_OFF, 28);
    t[36..40].copy_from_slice(&[1, 3, 3, 7]);
    c.tcp_sum = pseudo + sum(t);
    let (first, last) = (*spec.hosts.start(), *spec.hosts.end());
    let (pfirst, plast) = (*spec.ports.start(), *spec.ports.end());
    if first > last || pfirst > plast || pfirst == 0 {
        bail!("empty host or port range");
    }
    c.host_first = u32::from(first);
    c.host_count = u32::from(last - first) + 1;
    c.port_first = u32::from(pfirst);
    c.port_count = u32::from(plast - pfirst) + 1;
    Ok(c)
}

/// The loaded generator program with its template.
pub struct Generator {
    ebpf: Ebpf,
    len: usize,
}

impl Generator {
    pub fn new(spec: &SynSpec) -> anyhow::Result<Self> {
        let mut ebpf = ebpf::load()?;
        let conf = template(spec)?;
        let len = if conf.family == 4 { V4_LEN } else { V6_LEN };
        let mut map: Array<_, FloodConf> =
            Array::try_from(ebpf.map_mut("FLOOD").context("no FLOOD map")?)?;
        map.set(0, conf, 0).context("writing the flood template")?;
        let prog: &mut Xdp = ebpf
            .program_mut("flood_gen")
            .context("no flood_gen program")?
            .try_into()?;
        prog.load().context("loading flood_gen")?;
        Ok(Self { ebpf, len })
    }

    fn prog(&self) -> anyhow::Result<&Xdp> {
        Ok(self
            .ebpf
            .program("flood_gen")
            .context("no flood_gen program")?
            .try_into()?)
    }

    fn set_pacing(&mut self, p: Pacing) -> anyhow::Result<()> {
        let mut map: Array<_, Pacing> =
            Array::try_from(self.ebpf.map_mut("PACE").context("no PACE map")?)?;
        map.set(0, p, 0).context("writing PACE")?;
        Ok(())
    }

    fn pacing(&self) -> anyhow::Result<Pacing> {
        let map: Array<_, Pacing> = Array::try_from(self.ebpf.map("PACE").context("no PACE map")?)?;
        Ok(map.get(&0, 0)?)
    }

    /// Runs the program `n` times without sending (BPF_PROG_TEST_RUN, each on a frame of the
    /// template's length filled with `stale`, as the page returning from the peer holds an
    /// old frame) and returns the frames it wrote: what the flood sends.
    pub fn sample(&mut self, n: usize, stale: u8) -> anyhow::Result<Vec<Vec<u8>>> {
        self.set_pacing(Pacing {
            limit: u64::MAX,
            rng: seed(),
            ..Pacing::default()
        })?;
        (0..n).map(|_| self.sample_one(stale)).collect()
    }

    fn sample_one(&self, stale: u8) -> anyhow::Result<Vec<u8>> {
        let (verdict, out) = test_run::run(self.prog()?.fd()?.as_fd(), &vec![stale; self.len])?;
        if verdict != XDP_TX {
            bail!("flood_gen returned {verdict}, not XDP_TX");
        }
        Ok(out)
    }

    /// Whether this kernel lets us run the program in live-frames mode on `ifindex` (an
    /// interface of the calling thread's namespace): one run with a limit of zero, which
    /// sends nothing.
    pub fn live_frames_allowed(&mut self, ifindex: u32) -> anyhow::Result<bool> {
        self.set_pacing(Pacing {
            limit: 0,
            rng: seed(),
            ..Pacing::default()
        })?;
        let fd = self.prog()?.fd()?.try_clone()?;
        match test_run::run_live(fd.as_fd(), &vec![0u8; self.len], ifindex, 1, 1) {
            Ok(()) => Ok(true),
            Err(e) if is_os_error(&e, libc::EPERM) => Ok(false),
            Err(e) => Err(e).context("trying live-frames BPF_PROG_RUN"),
        }
    }

    /// Sends SYNs out of `ifindex` (an interface of the calling thread's namespace) at the
    /// pace asked for, until `max` or `duration`.
    ///
    /// One live-frames BPF_PROG_RUN call runs the whole flood (setting one up costs
    /// milliseconds, a gap no paced flood may have); the program paces itself and a watcher
    /// thread ends the call with a signal.
    pub fn flood(&mut self, ifindex: u32, pace: Pace) -> anyhow::Result<FloodReport> {
        let interval_ns = pace.rate.map_or(0, |r| 1_000_000_000 / r.max(1));
        self.set_pacing(Pacing {
            interval_ns,
            // Fall at most 32 SYNs behind before skipping ahead: never a long burst.
            max_lag_ns: interval_ns * 32,
            limit: pace.max,
            rng: seed(),
            ..Pacing::default()
        })?;
        install_wakeup_handler()?;
        let fd = self.prog()?.fd()?.try_clone()?;
        let frame = vec![0u8; self.len];
        // SAFETY: pthread_self cannot fail.
        let me = unsafe { libc::pthread_self() };
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let done = done.clone();
            let me = me as usize;
            std::thread::spawn(move || {
                std::thread::sleep(pace.duration);
                // Signal until the runner says it saw it (a signal between two calls is
                // lost otherwise).
                while !done.load(Ordering::Acquire) {
                    // SAFETY: the runner thread lives until `done` is set.
                    unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR1) };
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut result = Ok(());
        while t0.elapsed() < pace.duration {
            match test_run::run_live(fd.as_fd(), &frame, ifindex, u32::MAX, 64) {
                Ok(()) => {}
                Err(e) if is_os_error(&e, libc::EINTR) => {}
                Err(e) => {
                    let refused = is_os_error(&e, libc::EPERM);
                    result = Err(e).context(if refused {
                        "running the flood generator: this kernel refuses BPF_PROG_RUN in \
                         live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) to this process, so \
                         the NIC-like rig cannot run here"
                    } else {
                        "running the flood generator"
                    });
                    break;
                }
            }
        }
        let elapsed = t0.elapsed();
        let cpu = thread_cpu() - cpu0;
        done.store(true, Ordering::Release);
        let _ = watcher.join();
        result?;
        let p = self.pacing()?;
        Ok(FloodReport {
            sent: p.sent,
            seeded: 0,
            elapsed: if p.sent > 1 {
                Duration::from_nanos(p.last_ns - p.first_ns)
            } else {
                elapsed
            },
            cpu,
        })
    }
}

const XDP_TX: u32 = 3;

/// A non-zero seed for the generator's xorshift, different every flood.
pub fn seed() -> u64 {
    tcpfront::bpf::config::random_seed() | 1
}

/// Whether `e` was caused by the system error `code`.
fn is_os_error(e: &anyhow::Error, code: i32) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(code))
    })
}

extern "C" fn wakeup(_: libc::c_int) {}

/// SIGUSR1 interrupts the generator's system call (no SA_RESTART) and does nothing else.
fn install_wakeup_handler() -> anyhow::Result<()> {
    // SAFETY: a handler that does nothing; sigaction with a zeroed, then filled struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wakeup as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        if libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("installing SIGUSR1");
        }
    }
    Ok(())
}

pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The spoofed ranges of the bench lab: 10.200.0.3–254 and fd00:7466::1:3–254 (the lab's own
/// hosts are .1 and .2), ports 1024–65535.
pub fn lab_spec(v6: bool, src_mac: [u8; 6], dst_mac: [u8; 6], dst_port: u16) -> SynSpec {
    let (src_base, dst): (IpAddr, IpAddr) = if v6 {
        (
            Ipv6Addr::new(0xfd00, 0x7466, 0, 0, 0, 0, 1, 0).into(),
            tcpfront_tests::lab::FRONT_V6.into(),
        )
    } else {
        (
            Ipv4Addr::new(10, 200, 0, 0).into(),
            tcpfront_tests::lab::FRONT_V4.into(),
        )
    };
    SynSpec {
        src_mac,
        dst_mac,
        src_base,
        hosts: 3..=254,
        ports: 1024..=65535,
        dst,
        dst_port,
    }
}
