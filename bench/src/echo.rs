//! The echo generator, for kernels that refuse live-frames BPF_PROG_RUN (it needs more
//! privilege than some VMs give root): the SYN-ACK sink on the client veth rewrites each
//! SYN-ACK to a spoofed source into a whole fresh SYN (the same template and random fields as
//! `flood_gen`) and sends it back with XDP_TX, so the target still receives every flood SYN
//! as an XDP frame from its peer, as from a NIC driver. The frames circulating between the two
//! veths are the generator: this module seeds them (an AF_PACKET socket, which reaches the
//! target as skbs) and replaces the ones lost, while the sink's pacing drops the surplus.
//!
//! So within a target's capacity (≥ 99% answered) at most ~1% of the SYNs are seeds; beyond it,
//! the lost frames are replaced by seeds and the offered rate holds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use flood_common::Pacing;

use tcpfront_tests::rawsock::PacketSocket;

use crate::{
    generator::{self, FloodReport, Pace},
    sink::Sink,
};

/// How often the seeder looks at what the echo sent.
const TICK: Duration = Duration::from_micros(500);
/// At most this many seeds per tick: the veth ring between the two ends holds 256 frames.
const SEEDS_PER_TICK: u64 = 512;
/// The sink's pacing lets this many SYNs through at once after a lull (frames arrive in NAPI
/// batches of up to 64), so that pacing drops only a true surplus.
const BURST: u64 = 256;
/// "As fast as it goes": a rate no target reaches here.
const UNPACED: u64 = 50_000_000;

/// One flood through the echo: seeds, tops up, stops, and reports SYNs sent (echoed and
/// seeded) over the flood's wall time. `seeds` are whole SYNs as `flood_gen` writes them.
pub fn flood(
    sink: &mut Sink,
    socket: &PacketSocket,
    seeds: &[Vec<u8>],
    pace: Pace,
) -> anyhow::Result<FloodReport> {
    anyhow::ensure!(!seeds.is_empty(), "no seed frames");
    let rate = pace.rate.unwrap_or(UNPACED).max(1);
    let interval_ns = (1_000_000_000 / rate).max(1);
    sink.set_echo(false)?;
    sink.set_pacing(Pacing {
        interval_ns,
        max_lag_ns: interval_ns * BURST,
        limit: pace.max,
        rng: generator::seed(),
        ..Pacing::default()
    })?;
    sink.set_echo(true)?;
    let cpu0 = generator::thread_cpu();
    let t0 = Instant::now();
    let (mut seeded, mut next) = (0u64, 0usize);
    let result: anyhow::Result<()> = (|| {
        loop {
            let elapsed = t0.elapsed();
            if elapsed >= pace.duration {
                return Ok(());
            }
            let echoed = sink.pacing()?.sent;
            if echoed + seeded >= pace.max {
                return Ok(());
            }
            let expected = (rate as f64 * elapsed.as_secs_f64()) as u64;
            let behind = expected.saturating_sub(echoed + seeded);
            for _ in 0..behind.min(SEEDS_PER_TICK) {
                if !socket
                    .try_send(&seeds[next])
                    .context("sending a seed SYN")?
                {
                    break;
                }
                next = (next + 1) % seeds.len();
                seeded += 1;
            }
            std::thread::sleep(TICK);
        }
    })();
    let off = sink.set_echo(false);
    let elapsed = t0.elapsed();
    result?;
    off?;
    // The frames still circulating are dropped at their next pass through the sink.
    std::thread::sleep(Duration::from_millis(5));
    let echoed = sink.pacing()?.sent;
    Ok(FloodReport {
        sent: echoed + seeded,
        seeded,
        elapsed,
        cpu: generator::thread_cpu() - cpu0,
    })
}
