//! The datapath: one thread per AF_XDP queue, pinned to a CPU, sharing nothing with the
//! others (its socket, its engine, its connections' upstream sockets). This module opens a
//! queue and hands out the handle the rest of tcpfront talks to it through; `queue` is its
//! loop, `relay` its connections' upstream side.

mod queue;
mod ready;
mod relay;
mod snapshot;

use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    path::PathBuf,
    sync::{Arc, mpsc},
};

use anyhow::{Context as _, anyhow};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, XskMap};
use mio::{Interest, Poll, Waker, unix::SourceFd};
use tokio::sync::oneshot;

pub use self::{queue::QueueStats, relay::Upstream, snapshot::QueueSnapshot};
use crate::{
    bpf::flows::FlowFilter,
    engine::{Engine, EngineConfig},
    xsk::{XskMode, XskSocket},
};

/// UMEM frames per queue (4 KiB each): half stock the fill ring, half wait to transmit.
/// Deep rings absorb bursts while the loop is busy; a full RX ring drops frames in the kernel.
const UMEM_FRAMES: u32 = 16384;

/// Everything one queue's loop needs.
pub struct QueueConfig {
    pub iface: String,
    pub queue: u32,
    /// None: zero-copy if the driver can, else copy.
    pub mode: Option<XskMode>,
    pub engine: EngineConfig,
    pub listen: Vec<SocketAddr>,
    /// The backends; None: the built-in echo.
    pub pool: Option<Arc<crate::backends::Pool>>,
    /// Bound of an upstream connect, kept as the socket's TCP_USER_TIMEOUT.
    pub connect_timeout: std::time::Duration,
    /// Upstream connect latencies, in seconds (shared with the metrics endpoint).
    pub connect_latency: prometheus_client::metrics::histogram::Histogram,
    pub flows_pin: PathBuf,
    pub filter_pin: PathBuf,
    /// The flow filter's hash seed (`Config::filter_seed`).
    pub filter_seed: u64,
    pub xsks_pin: PathBuf,
    /// The XDP program's cookie keys, to answer a SYN that retires a TIME-WAIT as it would.
    pub cookie_pin: PathBuf,
    /// SYN cookies in XDP (else the engine does every handshake).
    pub syn_cookies: bool,
    /// What cookie SYN-ACKs announce (`FastPathSettings`).
    pub syn_ack_window: u16,
    pub wscale: u8,
    /// The CPU to run on (None: wherever the scheduler likes).
    pub cpu: Option<usize>,
}

/// Where the whole instance is in its life: a shutdown first drains, then stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// No new connections; every open one was sent FIN after its pending data.
    Draining,
    /// Reset what is left and end the loop.
    Stopping,
}

/// What the rest of tcpfront asks a queue's loop, which alone owns its engine.
pub enum QueueCmd {
    Snapshot(oneshot::Sender<QueueSnapshot>),
    Phase(Phase),
    /// The other queues, to hand them frames of the flows they own.
    Peers(Vec<QueueControl>),
    /// A frame of a flow this queue owns that arrived on another queue (a copy: rare).
    Frame(Vec<u8>),
    /// A reload: settings for new connections (open ones keep theirs).
    Reconfigure(Box<Reconfig>),
}

/// What a reload changes in a queue.
pub struct Reconfig {
    pub engine: EngineConfig,
    pub listen: Vec<SocketAddr>,
    pub pool: Option<Arc<crate::backends::Pool>>,
    pub connect_timeout: std::time::Duration,
}

/// Talks to one queue's thread: a channel and the waker that interrupts its `poll`.
#[derive(Clone)]
pub struct QueueControl {
    pub queue: u32,
    tx: mpsc::Sender<QueueCmd>,
    waker: Arc<Waker>,
}

impl QueueControl {
    fn send(&self, cmd: QueueCmd) -> anyhow::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| anyhow!("queue {} has stopped", self.queue))?;
        self.waker
            .wake()
            .with_context(|| format!("waking queue {}", self.queue))
    }

    pub async fn snapshot(&self) -> anyhow::Result<QueueSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.send(QueueCmd::Snapshot(tx))?;
        rx.await
            .map_err(|_| anyhow!("queue {} has stopped", self.queue))
    }

    pub fn set_phase(&self, phase: Phase) -> anyhow::Result<()> {
        self.send(QueueCmd::Phase(phase))
    }

    /// Tells the queue about every queue (itself included), once all have started.
    pub fn set_peers(&self, peers: Vec<QueueControl>) -> anyhow::Result<()> {
        self.send(QueueCmd::Peers(peers))
    }

    /// Applies a reload to connections opened from now on.
    pub fn reconfigure(&self, r: Reconfig) -> anyhow::Result<()> {
        self.send(QueueCmd::Reconfigure(Box::new(r)))
    }

    /// Hands the queue a frame of one of its flows.
    pub fn forward(&self, frame: &[u8]) -> anyhow::Result<()> {
        self.send(QueueCmd::Frame(frame.to_vec()))
    }
}

/// A running queue.
pub struct QueueHandle {
    pub control: QueueControl,
    pub mode: XskMode,
    thread: std::thread::JoinHandle<()>,
}

impl QueueHandle {
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Opens the AF_XDP socket of the queue, registers it in the XSKMAP and starts its thread.
/// The thread reports how it ended on `exits`.
pub fn spawn(
    cfg: QueueConfig,
    exits: tokio::sync::mpsc::UnboundedSender<(u32, anyhow::Result<()>)>,
) -> anyhow::Result<QueueHandle> {
    let open = |mode| {
        XskSocket::open(&cfg.iface, cfg.queue, UMEM_FRAMES, mode).with_context(|| {
            format!(
                "AF_XDP socket for {} queue {} ({mode:?} mode)",
                cfg.iface, cfg.queue
            )
        })
    };
    let xsk = match cfg.mode {
        Some(mode) => open(mode)?,
        None => match open(XskMode::ZeroCopy) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("zero-copy AF_XDP unavailable ({e:#}); using copy mode");
                open(XskMode::Copy)?
            }
        },
    };
    let mode = xsk.mode();
    tracing::info!("{} queue {}: AF_XDP in {mode:?} mode", cfg.iface, cfg.queue);
    let xsks = MapData::from_pin(&cfg.xsks_pin).context("opening XSKS")?;
    let mut xsks: XskMap<MapData> = XskMap::try_from(Map::XskMap(xsks))?;
    xsks.set(cfg.queue, xsk.as_raw_fd(), 0)
        .with_context(|| format!("registering queue {} in XSKS", cfg.queue))?;
    let flows = MapData::from_pin(&cfg.flows_pin).context("opening FLOWS")?;
    let flows = BpfHashMap::try_from(Map::LruHashMap(flows))?;
    let filter = FlowFilter::open(&cfg.filter_pin, cfg.filter_seed)?;
    let cookie = MapData::from_pin(&cfg.cookie_pin).context("opening COOKIE")?;
    let cookie = aya::maps::Array::try_from(Map::Array(cookie))?;
    let pool = cfg.pool.clone();
    let mut engine = Engine::new(cfg.engine.clone());
    for l in &cfg.listen {
        engine.listen(*l);
    }
    let poll = Poll::new().context("creating the queue's poll")?;
    poll.registry()
        .register(
            &mut SourceFd(&xsk.as_raw_fd()),
            queue::XSK,
            Interest::READABLE,
        )
        .context("polling the AF_XDP socket")?;
    let waker = Arc::new(Waker::new(poll.registry(), queue::WAKER).context("creating a waker")?);
    let (tx, rx) = mpsc::channel();
    let q = cfg.queue;
    let cpu = cfg.cpu;
    let name = format!("tcpfront-q{q}");
    let queue = queue::Queue::new(
        cfg,
        queue::Maps {
            flows,
            filter,
            cookie,
        },
        xsk,
        engine,
        pool,
        poll,
        rx,
    );
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(cpu) = cpu
                && let Err(e) = pin_to(cpu)
            {
                tracing::warn!("queue {q}: {e:#}");
            }
            let r = queue.run();
            if let Err(e) = &r {
                tracing::error!("queue {q}: {e:#}");
            }
            let _ = exits.send((q, r));
        })
        .context("starting a queue thread")?;
    Ok(QueueHandle {
        control: QueueControl {
            queue: q,
            tx,
            waker,
        },
        mode,
        thread,
    })
}

/// The CPU queue `queue` runs on: the queue-th CPU this process may use (so that a
/// `taskset` around tcpfront is respected), round robin.
pub fn cpu_for(queue: u32) -> Option<usize> {
    // SAFETY: a zeroed cpu_set_t filled by the kernel for this process.
    let allowed: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    };
    (!allowed.is_empty()).then(|| allowed[queue as usize % allowed.len()])
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPU {cpu}"));
    }
    Ok(())
}
