//! A WAN emulator for the lab (test and benchmark tooling, not part of tcpfront): the
//! middle namespace of a lab made with [`crate::lab::LabNames::with_wan`] carries frames
//! between the client's and the front end's veths with a one-way delay, jitter, a bottleneck
//! rate with a bounded queue, and seeded loss and reordering — what netem would do, which
//! this kernel lacks.
//!
//! It runs as two threads of the calling process (one per direction), living in the middle
//! namespace; [`Wan::stop`] ends them and says what each direction did.

pub mod line;
pub mod link;
pub mod probe;

use std::{
    sync::{Arc, atomic::AtomicBool},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;

pub use line::Shape;
pub use link::DirectionStats;

use crate::lab::Lab;

/// A symmetric path: the same impairments both ways.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Round-trip time: each direction delays by half.
    pub rtt: Duration,
    pub jitter: Duration,
    /// Bottleneck rate each way, in bits per second (0: none).
    pub rate_bps: u64,
    /// The bottleneck's buffer, in time; `None`: one round-trip time (at least 5 ms), the
    /// classic router buffer of one bandwidth-delay product.
    pub queue: Option<Duration>,
    /// Random loss each way, in parts per million.
    pub loss_ppm: u32,
    pub reorder_ppm: u32,
    pub seed: u64,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: 0,
            queue: None,
            loss_ppm: 0,
            reorder_ppm: 0,
            seed: 0x0077_616e,
        }
    }
}

impl Profile {
    pub fn shape(&self) -> Shape {
        Shape {
            delay: self.rtt / 2,
            jitter: self.jitter,
            rate_bps: self.rate_bps,
            queue: self.queue.unwrap_or(self.rtt.max(Duration::from_millis(5))),
            loss_ppm: self.loss_ppm,
            reorder_ppm: self.reorder_ppm,
            reorder_delay: Duration::from_millis(1),
        }
    }
}

/// What the emulator did, each way.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WanStats {
    pub client_to_front: DirectionStats,
    pub front_to_client: DirectionStats,
}

/// The running emulator of one lab.
pub struct Wan {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<DirectionStats>>>,
}

impl Wan {
    /// Starts carrying frames across the lab's middle namespace. `cpu` pins both threads.
    pub fn start(lab: &Lab, profile: Profile, cpu: Option<usize>) -> anyhow::Result<Self> {
        let w = lab
            .names
            .wan
            .clone()
            .context("the lab has no WAN namespace (LabNames::with_wan)")?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let shape = profile.shape();
        for (i, (from, to)) in [
            (w.client_side.clone(), w.front_side.clone()),
            (w.front_side.clone(), w.client_side.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let thread_stop = stop.clone();
            let seed = profile.seed.wrapping_add(i as u64);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(crate::netns::spawn_in(&w.ns, move || {
                if let Some(cpu) = cpu {
                    crate::netns::pin_thread(cpu)?;
                }
                let opened = link::Direction::open(&from, &to)
                    .with_context(|| format!("emulator sockets {from} → {to}"));
                let dir = match opened {
                    Ok(d) => {
                        let _ = ready_tx.send(None);
                        d
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Some(format!("{e:#}")));
                        return Err(e);
                    }
                };
                Ok(link::run(dir, line::Line::new(shape, seed), thread_stop))
            }));
            match ready_rx.recv_timeout(Duration::from_secs(5)) {
                Ok(None) => {}
                Ok(Some(e)) => {
                    let wan = Self { stop, threads };
                    drop(wan);
                    anyhow::bail!("starting the WAN emulator: {e}");
                }
                Err(_) => anyhow::bail!("the WAN emulator did not start"),
            }
        }
        Ok(Self { stop, threads })
    }

    /// Stops both directions and returns their counts.
    pub fn stop(mut self) -> anyhow::Result<WanStats> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut got = Vec::new();
        for t in self.threads.drain(..) {
            got.push(
                t.join()
                    .map_err(|_| anyhow::anyhow!("an emulator thread panicked"))??,
            );
        }
        let front_to_client = got.pop().context("emulator thread missing")?;
        let client_to_front = got.pop().context("emulator thread missing")?;
        Ok(WanStats {
            client_to_front,
            front_to_client,
        })
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
