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
    bpf::config::FastPathSettings,
    bpf::{self, attach, bpffs},
    cli::{InvalidCookie, OnOff, RunArgs},
    instance::{self, InstanceLock, Paths},
    logging,
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
    instance::require_root("tcpfront run")?;
    let paths = Paths::new(&args.iface)?;
    super::interface_index(&args.iface)?;
    bpffs::ensure_mounted()?;
    let _lock = InstanceLock::acquire(&paths)?;
    instance::remove_stale_state(&paths)?;

    let mut ebpf = bpf::open_object()?;
    // Keep the logger alive as long as the program: it owns the log ring buffer.
    let log_task = logging::spawn_ebpf_logger(&mut ebpf);

    let settings = FastPathSettings {
        listen: args.listen.clone(),
        syn_cookies: args.syn_cookies == OnOff::On,
        rst_invalid_cookie: args.invalid_cookie == InvalidCookie::Rst,
        scrub_all: args.scrub_all,
        ..FastPathSettings::default()
    };
    bpf::load_xdp(&mut ebpf)?;
    // Configure before attaching: the program never sees a half-written configuration.
    bpf::config::apply(&mut ebpf, &settings)?;
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("program vanished")?
        .try_into()?;
    let (link, mode) = attach::attach(prog, &args.iface, args.mode)?;

    fs::create_dir_all(&paths.pin_dir)
        .with_context(|| format!("creating {}", paths.pin_dir.display()))?;
    let pins = Pins(&paths);
    for name in map_names::PINNED {
        ebpf.map(name)
            .with_context(|| format!("the XDP object has no {name} map"))?
            .pin(paths.pin(name))
            .with_context(|| format!("pinning {name}"))?;
    }
    let counters = ebpf
        .map(map_names::COUNTERS)
        .context("the XDP object has no COUNTERS map")?;
    // Typed handle for the shutdown summary.
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(counters).context("COUNTERS has an unexpected type")?;

    tracing::info!(
        "attached to {} in {} mode; maps pinned in {}",
        args.iface,
        mode.name(),
        paths.pin_dir.display()
    );
    if settings.listen.is_empty() {
        tracing::info!("no --listen address: counting and scrubbing only");
    }
    for addr in &settings.listen {
        tracing::info!(
            "protecting {addr} (SYN cookies {})",
            if settings.syn_cookies {
                "in XDP"
            } else {
                "off: engine handshake"
            }
        );
    }

    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down");
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
    tracing::info!("detached from {} and unpinned", args.iface);
    Ok(())
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
