//! `tcpfront run`: load, attach, pin, serve until a signal, then detach and unpin.

use std::fs;

use anyhow::Context as _;
use aya::{
    maps::{MapData, PerCpuArray},
    programs::Xdp,
};
use tcp_common::{XDP_PROGRAM, map_names};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    bpf::{self, attach, bpffs},
    cli::{RunArgs, XskModeArg},
    datapath::{Datapath, QueueConfig},
    instance::{self, InstanceLock, Paths},
    logging,
    relay::{self, Upstream},
    settings::RunSettings,
    xsk::XskMode,
};

/// Removes the pins when dropped, so that an error or a panic after pinning leaves nothing.
struct Pins<'a>(&'a Paths);

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        if let Err(e) = instance::remove_pins(self.0) {
            tracing::error!("{e:#}");
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = RunSettings::resolve(&args)?;
    instance::require_root("tcpfront run")?;
    let iface = settings.iface.clone();
    let paths = Paths::new(&iface)?;
    super::interface_index(&iface)?;
    if let Some(Upstream::Tcp(addr)) = &settings.upstream {
        relay::check_resolves(addr).await?;
    }
    bpffs::ensure_mounted()?;
    let _lock = InstanceLock::acquire(&paths)?;
    instance::remove_stale_state(&paths)?;

    let mut ebpf = bpf::open_object()?;
    // Keep the logger alive as long as the program: it owns the log ring buffer.
    let log_task = logging::spawn_ebpf_logger(&mut ebpf);
    bpf::load_xdp(&mut ebpf)?;
    // Configure before attaching: the program never sees a half-written configuration.
    bpf::config::apply(&mut ebpf, &settings.fast_path)?;

    fs::create_dir_all(&paths.pin_dir)
        .with_context(|| format!("creating {}", paths.pin_dir.display()))?;
    let pins = Pins(&paths);
    for name in map_names::PINNED {
        ebpf.map(name)
            .with_context(|| format!("the XDP object has no {name} map"))?
            .pin(paths.pin(name))
            .with_context(|| format!("pinning {name}"))?;
    }

    // AF_XDP sockets are registered before the program goes live, so no flow finds its queue
    // without a socket.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut datapaths = Vec::new();
    if let Some(upstream) = &settings.upstream {
        let queues = settings.queues.unwrap_or_else(|| rx_queues(&iface));
        for queue in 0..queues {
            let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
            let dp = Datapath::open(
                QueueConfig {
                    iface: iface.clone(),
                    queue,
                    mode: match settings.xsk_mode {
                        XskModeArg::Auto => None,
                        XskModeArg::Copy => Some(XskMode::Copy),
                        XskModeArg::Zerocopy => Some(XskMode::ZeroCopy),
                    },
                    engine: settings.engine.clone(),
                    listen: settings.fast_path.listen.clone(),
                    upstream: upstream.clone(),
                    flows_pin: paths.pin(map_names::FLOWS),
                    xsks_pin: paths.pin(map_names::XSKS),
                },
                cmd_tx,
            )?;
            datapaths.push(tokio::spawn(dp.run(cmd_rx, stop_rx.clone())));
        }
        tracing::info!(
            "serving {queues} queue(s) over AF_XDP (copy mode), relaying to {upstream:?}"
        );
    }

    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("program vanished")?
        .try_into()?;
    let (link, mode) = attach::attach(prog, &iface, settings.mode)?;
    let counters = ebpf
        .map(map_names::COUNTERS)
        .context("the XDP object has no COUNTERS map")?;
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(counters).context("COUNTERS has an unexpected type")?;

    tracing::info!(
        "attached to {iface} in {} mode; maps pinned in {}",
        mode.name(),
        paths.pin_dir.display()
    );
    if settings.fast_path.listen.is_empty() {
        tracing::info!("no --listen address: counting and scrubbing only");
    }
    for addr in &settings.fast_path.listen {
        tracing::info!(
            "protecting {addr} (SYN cookies {})",
            if settings.fast_path.syn_cookies {
                "in XDP"
            } else {
                "off: engine handshake"
            }
        );
    }

    let result = tokio::select! {
        r = wait_for_shutdown_signal() => r,
        r = first_failure(&mut datapaths) => r,
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for d in datapaths {
        let _ = d.await;
    }
    if let Ok(snapshot) = bpf::counters::read(&counters) {
        tracing::info!(
            "frames seen: {}, tcp: {}",
            snapshot.get(tcp_common::Counter::Frames),
            snapshot.get(tcp_common::Counter::Tcp)
        );
    }

    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("program vanished")?
        .try_into()?;
    prog.detach(link).context("detaching the XDP program")?;
    drop(pins);
    if let Some(task) = log_task {
        task.abort();
    }
    tracing::info!("detached from {iface} and unpinned");
    result
}

/// Resolves with the first datapath that ends (it only ends on error before shutdown).
async fn first_failure(
    datapaths: &mut [tokio::task::JoinHandle<anyhow::Result<()>>],
) -> anyhow::Result<()> {
    if datapaths.is_empty() {
        std::future::pending::<()>().await;
    }
    let finished = std::future::poll_fn(|cx| {
        for h in datapaths.iter_mut() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(h).poll(cx) {
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await;
    match finished {
        Ok(Ok(())) => anyhow::bail!("a datapath stopped unexpectedly"),
        Ok(Err(e)) => Err(e.context("datapath failed")),
        Err(e) => Err(anyhow::anyhow!("datapath panicked: {e}")),
    }
}

/// RX queues of the interface (ETHTOOL_GCHANNELS), 1 if the driver does not say.
fn rx_queues(iface: &str) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: a plain ioctl on a throw-away socket with a correctly sized ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return 1;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut ifr);
        libc::close(fd);
        if rc != 0 {
            return 1;
        }
    }
    (ch.rx_count + ch.combined_count).max(1)
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
