//! `tcpfront run`: load, attach, pin, serve until a signal, then detach and unpin.

use std::{
    fs,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use aya::programs::Xdp;
use tcp_common::{XDP_PROGRAM, map_names};
use tokio::sync::{mpsc, watch};

use super::{
    reload::{self, Live},
    run_status,
};
use crate::{
    announce::{self, Announcer},
    backends::{Pool, health},
    bpf::{self, attach, bpffs, key_rotation, secret::Rotation},
    cli::{RunArgs, XskModeArg},
    control::server::{self as control_server, ControlState},
    datapath::{self, Phase, QueueConfig, QueueControl, QueueHandle, Upstream},
    fleet::hello,
    instance::{self, InstanceLock, Paths},
    logging, metrics,
    notify::{self, Notifier},
    settings::RunSettings,
    signals::{Signals, SignalsBlocked},
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

/// Logs and returns when a stop request arrived during start-up: what was set up so far is
/// undone by the guards (pins, the program, the sockets) as `run` returns.
fn stopped_during_start_up(started: Instant, at: &str) -> anyhow::Result<()> {
    tracing::info!(
        "stop requested during start-up ({at}, {:.0?} in): stopping without serving",
        started.elapsed()
    );
    Ok(())
}

pub async fn run(args: RunArgs, netns: Option<String>) -> anyhow::Result<()> {
    let mut settings = RunSettings::resolve(&args)?;
    instance::require_root("tcpfront run")?;
    let started = Instant::now();
    // Installed first: a signal during start-up is then seen, and start-up stops at its next
    // step, instead of the default action killing the process with its pins in place.
    let mut signals = Signals::install()?;
    let notify = Notifier::from_env();
    let iface = settings.iface.clone();
    let paths = Paths::new(&iface)?;
    super::interface_index(&iface)?;
    settings.fast_path.fleet = crate::fleet::place_if_any(&iface, &settings.fleet_nodes)?;
    // Resolved once here, so that a bad name fails start-up, not every connection.
    let pool = match &settings.upstream {
        Some(Upstream::Pool(p)) => {
            let p = p.clone();
            let pool = tokio::task::spawn_blocking(move || Pool::build(&p, None))
                .await
                .context("resolving the upstreams")??;
            Some(Arc::new(pool))
        }
        _ => None,
    };
    // The secret is read (and checked) before anything is set up.
    let cookies = Arc::new(Mutex::new(Rotation::new(
        settings.cookie_secret.clone(),
        settings.cookie_rotate,
    )?));
    settings.fast_path.cookie_keys = key_rotation::current_keys(&cookies);
    bpffs::ensure_mounted()?;
    let _lock = InstanceLock::acquire(&paths)?;
    instance::remove_stale_state(&paths)?;
    if signals.stop_requested() {
        return stopped_during_start_up(started, "before loading");
    }

    let mut ebpf = bpf::open_object()?;
    // Keep the logger alive as long as the program: it owns the log ring buffer.
    let log_task = logging::spawn_ebpf_logger(&mut ebpf);
    {
        let _blocked = SignalsBlocked::new();
        bpf::load_xdp(&mut ebpf)?;
    }
    tracing::debug!(
        "XDP program verified and loaded after {:.0?}",
        started.elapsed()
    );
    if signals.stop_requested() {
        return stopped_during_start_up(started, "program loaded");
    }
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
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let (exits_tx, mut exits) = mpsc::unbounded_channel();
    let mut datapaths: Vec<QueueHandle> = Vec::new();
    let mut xsk_modes = Vec::new();
    let connect_latency = metrics::connect_latency_histogram();
    if settings.upstream.is_some() {
        let queues = settings.queues.unwrap_or_else(|| rx_queues(&iface));
        for queue in 0..queues {
            if signals.stop_requested() {
                return stopped_during_start_up(started, "opening the queues");
            }
            let dp = datapath::spawn(
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
                    pool: pool.clone(),
                    connect_timeout: settings.connect_timeout,
                    connect_latency: connect_latency.clone(),
                    flows_pin: paths.pin(map_names::FLOWS),
                    filter_pin: paths.pin(map_names::FLOW_FILTER),
                    filter_seed: settings.fast_path.filter_seed,
                    xsks_pin: paths.pin(map_names::XSKS),
                    cookie_pin: paths.pin(map_names::COOKIE),
                    syn_cookies: settings.fast_path.syn_cookies,
                    syn_ack_window: settings.fast_path.syn_ack_window,
                    wscale: settings.fast_path.wscale,
                    cpu: datapath::cpu_for(queue),
                },
                exits_tx.clone(),
            )?;
            xsk_modes.push(dp.mode.name().to_string());
            datapaths.push(dp);
        }
        tracing::info!(
            "serving {queues} queue(s) over AF_XDP ({}), relaying to {}",
            xsk_modes.join(","),
            upstream_text(pool.as_deref())
        );
    }
    drop(exits_tx);
    let queries: Vec<QueueControl> = datapaths.iter().map(|d| d.control.clone()).collect();
    // Each queue hands the others the frames of their flows that reach it.
    for q in &queries {
        q.set_peers(queries.clone())?;
    }
    if signals.stop_requested() {
        return stopped_during_start_up(started, "before attaching");
    }

    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("program vanished")?
        .try_into()?;
    let (link, mode) = attach::attach(prog, &iface, settings.mode)?;
    let since = SystemTime::now();
    let state = Arc::new(ControlState {
        status: Mutex::new(run_status::status_info(
            &settings,
            netns,
            mode.name(),
            xsk_modes,
            since,
        )),
        queues: queries.clone(),
        flows: bpf::flows::open_pinned(&paths.pin(map_names::FLOWS))
            .ok()
            .map(Mutex::new),
        counters: bpf::counters::open_pinned(&paths.pin(map_names::COUNTERS)).ok(),
        cookies: cookies.clone(),
        cookies_wake: Arc::new(tokio::sync::Notify::new()),
        pool: pool.clone().map(|p| Arc::new(RwLock::new(p))),
        phase: phase_rx.clone(),
    });
    let key_task = tokio::spawn(key_rotation::install_forever(
        cookies.clone(),
        state.cookies_wake.clone(),
        paths.pin(map_names::COOKIE),
    ));
    let mut live = Live {
        health: pool.as_deref().map(health::spawn),
        settings: settings.clone(),
        retired: Vec::new(),
        announcer: None,
        hellos: match &settings.fast_path.fleet {
            Some(place) => Some(hello::start_for_instance(&iface, place)?),
            None => None,
        },
    };
    let control = control_server::start(&paths.socket, state.clone())?;
    let metrics_server = match settings.metrics {
        Some(addr) => Some(metrics::start(addr, state.clone(), connect_latency).await?),
        None => None,
    };
    tracing::info!(
        "attached to {iface} in {} mode after {:.0?}; maps pinned in {}; control socket {}",
        mode.name(),
        started.elapsed(),
        paths.pin_dir.display(),
        paths.socket.display()
    );
    if let Some(m) = &metrics_server {
        tracing::info!("Prometheus metrics on http://{}/metrics", m.addr);
    }
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
    // Announced last: the router sends connections only once everything serves, and once
    // the fleet's other nodes are heard (for the flows it moves here; see `fleet`).
    if let Some(h) = &mut live.hellos {
        let wait = Duration::from_millis(5 * tcp_common::maps::FLEET_HELLO_INTERVAL_MS);
        match h.wait_for_a_live_node(wait).await {
            Some(next) => tracing::info!("fleet: heard {next} before announcing"),
            None => tracing::warn!("fleet: no other node heard within {wait:?}; serving alone"),
        }
    }
    live.announcer = match &settings.announce {
        Some(name) => {
            let a = Announcer::start(name, &announce::vips(&settings.fast_path.listen)).await?;
            if let Ok(mut st) = state.status.lock() {
                st.announced = a.announced();
            }
            Some(a)
        }
        None => None,
    };
    notify.ready(&notify::serving_status(0));
    let status_task = notify
        .enabled()
        .then(|| tokio::spawn(report_status(notify, queries.clone())));

    let mut reloads = signals.reloads();
    let result = loop {
        tokio::select! {
            () = signals.next_stop() => break Ok(()),
            r = first_failure(&mut exits, datapaths.is_empty()) => break r,
            () = reloads.next() => {
                notify.reloading();
                match reload::reload(&args, &mut live, &mut ebpf, &state, &queries).await {
                    Ok(summary) => tracing::info!("{summary}"),
                    Err(e) => tracing::error!(
                        "reload refused, the running configuration stays: {e:#}"
                    ),
                }
                notify.ready(&notify::serving_status(open_connections(&queries).await));
            }
        }
    };
    if let Some(t) = status_task {
        t.abort();
    }

    // Graceful shutdown: no new connections, FIN to the open ones, wait, reset the rest.
    // The VIPs are withdrawn first, so that the router sends new connections elsewhere.
    notify.stopping("draining");
    drop(live.announcer.take());
    if let Ok(mut st) = state.status.lock() {
        st.announced.clear();
    }
    if let Err(e) = bpf::config::start_draining(&mut ebpf, &live.settings.fast_path) {
        tracing::error!("cannot stop answering SYNs: {e:#}");
    }
    let _ = phase_tx.send(Phase::Draining);
    for q in &queries {
        let _ = q.set_phase(Phase::Draining);
    }
    drain(&queries, live.settings.drain_timeout, &mut signals).await;
    let _ = phase_tx.send(Phase::Stopping);
    for q in &queries {
        let _ = q.set_phase(Phase::Stopping);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for d in datapaths {
        while !d.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if d.is_finished() {
            d.join();
        } else {
            tracing::warn!("a datapath did not stop in time");
        }
    }
    if let Ok(snapshot) = state.xdp_snapshot() {
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
    key_task.abort();
    drop(live.health.take());
    drop(metrics_server);
    drop(pins);
    drop(control);
    if let Some(task) = log_task {
        task.abort();
    }
    tracing::info!("detached from {iface}, unpinned, control socket removed");
    result
}

fn upstream_text(pool: Option<&Pool>) -> String {
    match pool {
        None => "the built-in echo".into(),
        Some(p) => format!(
            "{} ({})",
            p.backends
                .iter()
                .map(|b| format!("{}={}", b.target, b.addr))
                .collect::<Vec<_>>()
                .join(", "),
            p.settings.balance.name()
        ),
    }
}

/// Keeps systemd's `STATUS=` line current with the connection count (only under systemd).
async fn report_status(notify: Notifier, queues: Vec<QueueControl>) {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let open = open_connections(&queues).await;
        if open != last {
            notify.status(&notify::serving_status(open));
            last = open;
        }
    }
}

/// Resolves with the first datapath that ends (it only ends on error before shutdown).
async fn first_failure(
    exits: &mut mpsc::UnboundedReceiver<(u32, anyhow::Result<()>)>,
    none: bool,
) -> anyhow::Result<()> {
    if none {
        std::future::pending::<()>().await;
    }
    match exits.recv().await {
        Some((q, Ok(()))) => anyhow::bail!("queue {q} stopped unexpectedly"),
        Some((q, Err(e))) => Err(e.context(format!("queue {q} failed"))),
        None => anyhow::bail!("every queue thread is gone"),
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

/// Waits until no connection needs more time (all closed or in TIME-WAIT), the timeout
/// passes, or a second signal comes.
async fn drain(queues: &[QueueControl], timeout: Duration, signals: &mut Signals) {
    if queues.is_empty() {
        return;
    }
    tracing::info!(
        "draining: new SYNs are no longer answered; FIN sent on open connections; waiting up \
         to {timeout:?} (a second signal stops at once)"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let open = open_connections(queues).await;
        if open == 0 {
            tracing::info!("drained: every connection closed");
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("drain timeout: {open} connection(s) still open will be reset");
                return;
            }
            () = signals.next_stop() => {
                tracing::warn!("second signal: resetting {open} open connection(s) now");
                return;
            }
        }
    }
}

async fn open_connections(queues: &[QueueControl]) -> usize {
    let mut open = 0;
    for q in queues {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), q.snapshot()).await {
            open += s.open;
        }
    }
    open
}
