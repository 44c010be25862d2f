//! A seeded lossy link for tests: drops, reorders and duplicates TCP frames on the client
//! side of a lab veth, in both directions (see `impair-ebpf`). Netem cannot be seeded, and
//! frames tcpfront sends over AF_XDP bypass qdiscs anyway.
//!
//! Attach from a thread inside the client namespace; everything is detached when the
//! [`Impairment`] drops.

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, CpuMap, PerCpuArray, PerCpuValues},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc},
    util::nr_cpus,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/impair-ebpf"));

/// How much to impair, in parts per million of TCP frames per direction.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub seed: u64,
    pub drop_ppm: u32,
    /// Frames from tcpfront that take a detour through another CPU.
    pub reorder_ppm: u32,
    /// Frames to tcpfront that are sent twice.
    pub duplicate_ppm: u32,
}

/// What the programs did so far, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    pub seen_rx: u64,
    pub dropped_rx: u64,
    pub reordered_rx: u64,
    pub seen_tx: u64,
    pub dropped_tx: u64,
    pub duplicated_tx: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Conf {
    drop_ppm: u32,
    reorder_ppm: u32,
    duplicate_ppm: u32,
    ifindex: u32,
    cpus: u32,
}
// SAFETY: plain #[repr(C)] data without padding, the same layout as in impair-ebpf.
unsafe impl aya::Pod for Conf {}

pub struct Impairment {
    ebpf: Ebpf,
}

/// splitmix64: spreads one seed into independent per-CPU xorshift states (never zero).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

impl Impairment {
    /// Attaches to `iface` of the calling thread's network namespace, replacing nothing: the
    /// interface must have no XDP program (detach the peer pass-through program first).
    pub fn attach(iface: &str, p: Profile) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the impairment object")?;
        let cpus = nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        let ifindex = {
            let c = std::ffi::CString::new(iface)?;
            // SAFETY: a NUL-terminated name.
            unsafe { libc::if_nametoindex(c.as_ptr()) }
        };
        anyhow::ensure!(ifindex != 0, "no interface {iface}");
        let mut conf: Array<_, Conf> =
            Array::try_from(ebpf.map_mut("CONF").context("no CONF map")?)?;
        conf.set(
            0,
            Conf {
                drop_ppm: p.drop_ppm,
                reorder_ppm: p.reorder_ppm,
                duplicate_ppm: p.duplicate_ppm,
                ifindex,
                cpus: cpus as u32,
            },
            0,
        )?;
        let mut rng: PerCpuArray<_, u64> =
            PerCpuArray::try_from(ebpf.map_mut("RNG").context("no RNG map")?)?;
        let states: Vec<u64> = (0..cpus)
            .map(|c| splitmix(p.seed ^ (c as u64) << 32))
            .collect();
        rng.set(0, PerCpuValues::try_from(states)?, 0)?;
        let mut cpumap: CpuMap<_> = CpuMap::try_from(ebpf.map_mut("CPUS").context("no CPUS map")?)?;
        for c in 0..cpus as u32 {
            cpumap.set(c, 256, None, 0)?;
        }

        let rx: &mut Xdp = ebpf
            .program_mut("impair_rx")
            .context("no impair_rx")?
            .try_into()?;
        rx.load()?;
        // A program detached just before (by unpinning its link) is released a moment later.
        let mut tries = 0;
        loop {
            match rx.attach(iface, XdpMode::Driver) {
                Ok(_) => break,
                Err(_) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("attaching impair_rx to {iface}"));
                }
            }
        }
        // Already there is fine.
        let _ = tc::qdisc_add_clsact(iface);
        let tx: &mut SchedClassifier = ebpf
            .program_mut("impair_tx")
            .context("no impair_tx")?
            .try_into()?;
        tx.load()?;
        tx.attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attaching impair_tx to {iface}"))?;
        Ok(Self { ebpf })
    }

    pub fn stats(&self) -> anyhow::Result<ImpairStats> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("STATS").context("no STATS map")?)?;
        let get = |i: u32| -> anyhow::Result<u64> { Ok(map.get(&i, 0)?.iter().sum()) };
        Ok(ImpairStats {
            seen_rx: get(0)?,
            dropped_rx: get(1)?,
            reordered_rx: get(2)?,
            seen_tx: get(3)?,
            dropped_tx: get(4)?,
            duplicated_tx: get(5)?,
        })
    }
}
