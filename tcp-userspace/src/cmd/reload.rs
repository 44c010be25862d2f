//! SIGHUP: re-read `--config` and apply it without dropping a connection.
//!
//! Everything is checked before anything changes: the file (and the flags, which still
//! override it), names resolved, and the settings a running instance cannot change. Then the
//! XDP maps are updated in place (the program is never reloaded), the queues get the new
//! settings for new connections, the pool is swapped (backends that stay keep their health
//! and counts) and the health checks restart. Open connections keep their TCB's settings and
//! their backend; a removed listen address is *retired*: its connections are served to their
//! end, its new SYNs are not answered.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, bail};
use aya::Ebpf;

use crate::{
    backends::{Pool, health},
    bpf::{
        self,
        secret::{Secret, SecretSource},
    },
    cli::RunArgs,
    control::server::ControlState,
    datapath::{QueueControl, Reconfig, Upstream},
    settings::RunSettings,
};

/// What a reload may replace, as it runs now.
pub struct Live {
    pub settings: RunSettings,
    /// Listen addresses removed by earlier reloads (their connections may still run).
    pub retired: Vec<SocketAddr>,
    pub health: Option<health::HealthChecker>,
    /// The VIPs' device, while serving with `--announce`.
    pub announcer: Option<crate::announce::Announcer>,
    /// This node's hellos to the other nodes of its fleet (`--fleet-nodes`).
    pub hellos: Option<crate::fleet::hello::Hellos>,
}

/// Applies the configuration file again; on error nothing has changed.
pub async fn reload(
    args: &RunArgs,
    live: &mut Live,
    ebpf: &mut Ebpf,
    state: &ControlState,
    queues: &[QueueControl],
) -> anyhow::Result<String> {
    let Some(path) = &args.config else {
        // Flags are fixed for the process's life; a secret file is still read again.
        if let SecretSource::File(p) = &live.settings.cookie_secret {
            let secret = Secret::from_file(p)?;
            install_secret(state, secret, live.settings.cookie_secret.clone());
            return Ok(format!(
                "re-read the cookie secret {} (it takes over at the next epoch); no --config \
                 file to reload",
                p.display()
            ));
        }
        bail!("there is no --config file to reload (flags are fixed for the process's life)");
    };
    let mut new = RunSettings::resolve(args)?;
    unchangeable(&live.settings, &new)?;
    // The fast path's secrets stay: flows and cookies in flight depend on them.
    new.fast_path.filter_seed = live.settings.fast_path.filter_seed;
    new.fast_path.cookie_keys = live.settings.fast_path.cookie_keys;
    new.fast_path.fleet = crate::fleet::place_if_any(&new.iface, &new.fleet_nodes)?;

    // A secret file is read again: a new secret takes over at the next epoch boundary.
    let secret = match &new.cookie_secret {
        SecretSource::File(p) => Some(Secret::from_file(p)?),
        SecretSource::Random if live.settings.cookie_secret != SecretSource::Random => {
            Some(Secret::random()?)
        }
        SecretSource::Random => None,
    };

    let pool = match &new.upstream {
        Some(Upstream::Pool(p)) => {
            let previous = state.current_pool();
            let p = p.clone();
            let built = tokio::task::spawn_blocking(move || Pool::build(&p, previous.as_deref()))
                .await
                .context("resolving the upstreams")??;
            Some(Arc::new(built))
        }
        _ => None,
    };

    // From here on, the new configuration is applied.
    let old_listen = &live.settings.fast_path.listen;
    let retired: Vec<SocketAddr> = old_listen
        .iter()
        .chain(&live.retired)
        .filter(|a| !new.fast_path.listen.contains(a))
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let previous: Vec<SocketAddr> = old_listen.iter().chain(&live.retired).copied().collect();
    bpf::config::apply_listen(ebpf, &new.fast_path.listen, &retired, &previous)?;
    bpf::config::update(ebpf, &new.fast_path)?;
    for q in queues {
        q.reconfigure(Reconfig {
            engine: new.engine.clone(),
            listen: new.fast_path.listen.clone(),
            pool: pool.clone(),
            connect_timeout: new.connect_timeout,
        })?;
    }
    if let (Some(shared), Some(p)) = (&state.pool, &pool)
        && let Ok(mut current) = shared.write()
    {
        *current = p.clone();
    }
    if let Some(secret) = secret {
        install_secret(state, secret, new.cookie_secret.clone());
    }
    if let Some(a) = &mut live.announcer {
        a.update(&crate::announce::vips(&new.fast_path.listen))
            .await?;
        if let Ok(mut st) = state.status.lock() {
            st.announced = a.announced();
        }
    }
    if new.fast_path.fleet != live.settings.fast_path.fleet {
        live.hellos = match &new.fast_path.fleet {
            Some(place) => Some(crate::fleet::hello::start_for_instance(&new.iface, place)?),
            None => None,
        };
    }
    // The old checks stop as their handle drops.
    live.health = pool.as_deref().map(health::spawn);
    if let Ok(mut st) = state.status.lock() {
        super::run_status::refresh_status(&mut st, &new);
    }
    let summary = format!(
        "reloaded {}: listen {}{}; {}",
        path.display(),
        list(&new.fast_path.listen),
        if retired.is_empty() {
            String::new()
        } else {
            format!(
                " (retired, serving their open connections: {})",
                list(&retired)
            )
        },
        match &pool {
            Some(p) => format!(
                "{} backend(s), {}",
                p.backends.len(),
                p.settings.balance.name()
            ),
            None => "no pool".into(),
        }
    );
    live.settings = new;
    live.retired = retired;
    Ok(summary)
}

/// A new secret for the epochs after the current one; the key task installs them now.
fn install_secret(state: &ControlState, secret: Secret, source: SecretSource) {
    if let Ok(mut r) = state.cookies.lock() {
        r.replace_secret(secret, bpf::cookie::current_minute());
        r.source = source;
    }
    state.cookies_wake.notify_one();
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "(none)".into();
    }
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Settings that shape the process (its interface, queues, sockets): a restart changes them.
fn unchangeable(old: &RunSettings, new: &RunSettings) -> anyhow::Result<()> {
    let kind = |s: &RunSettings| match &s.upstream {
        None => "none",
        Some(Upstream::Echo) => "echo",
        Some(Upstream::Pool(_)) => "upstream",
    };
    let fixed = [
        ("iface", old.iface != new.iface),
        ("mode", old.mode != new.mode),
        ("queues", old.queues != new.queues),
        ("xsk-mode", old.xsk_mode != new.xsk_mode),
        ("metrics", old.metrics != new.metrics),
        ("cookie-rotate", old.cookie_rotate != new.cookie_rotate),
        ("announce", old.announce != new.announce),
        (
            "syn-cookies",
            old.fast_path.syn_cookies != new.fast_path.syn_cookies,
        ),
        ("upstream/echo", kind(old) != kind(new)),
    ];
    if let Some((name, _)) = fixed.iter().find(|(_, changed)| *changed) {
        bail!("`{name}` cannot change on reload: restart tcpfront for that");
    }
    Ok(())
}
