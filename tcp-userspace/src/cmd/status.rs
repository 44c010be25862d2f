//! `tcpfront status`: every instance on this machine, how it runs and since when.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    cli::StatusArgs,
    control::{
        client,
        proto::{Request, Response, StatusInfo},
    },
    instance::{self, Paths},
};

#[derive(Serialize)]
struct Entry {
    iface: String,
    /// `running`, or `stale` for pins without a daemon (crashed; the next run cleans up).
    state: &'static str,
    status: Option<StatusInfo>,
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    instance::require_root("tcpfront status")?;
    let mut entries = Vec::new();
    for iface in instance::running_instances() {
        let paths = Paths::new(&iface)?;
        let status = match client::ask(&paths, &Request::Status) {
            Ok(Some(Response::Status(s))) => Some(s),
            Ok(_) => None,
            Err(e) => {
                eprintln!("{iface}: {e:#}");
                None
            }
        };
        entries.push(Entry {
            iface,
            state: if status.is_some() { "running" } else { "stale" },
            status,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("tcpfront is not running on any interface");
        return Ok(());
    }
    let mut out = String::new();
    for e in &entries {
        let Some(s) = &e.status else {
            let _ = writeln!(
                out,
                "{}: stale state of a dead instance (pins or control socket; the next `tcpfront \
                 run` on it removes them)",
                e.iface
            );
            continue;
        };
        let _ = writeln!(
            out,
            "{}{}: {} (pid {}), XDP {} mode, up {}s since {} (unix), {} connection(s)",
            s.iface,
            s.netns
                .as_ref()
                .map_or_else(String::new, |n| format!(" in netns {n}")),
            s.phase,
            s.pid,
            s.mode,
            s.uptime_secs,
            s.since_unix,
            s.connections
        );
        let listen: Vec<String> = s.listen.iter().map(|l| l.to_string()).collect();
        let _ = writeln!(
            out,
            "  listen {} -> upstream {}",
            if listen.is_empty() {
                "(none: counting and scrubbing)".into()
            } else {
                listen.join(", ")
            },
            s.upstream.as_deref().unwrap_or("(none)")
        );
        let _ = writeln!(
            out,
            "  AF_XDP {}; SYN cookies {}; invalid cookies: {}; max-conns {}; MSL {}ms; drain \
             timeout {}ms",
            if s.xsk_modes.is_empty() {
                "not used".into()
            } else {
                s.xsk_modes.join(",")
            },
            if s.syn_cookies { "in XDP" } else { "off" },
            s.invalid_cookie,
            s.max_conns,
            s.msl_ms,
            s.drain_timeout_ms
        );
        if let Some(dev) = &s.announce {
            let vips: Vec<String> = s.announced.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  announcing on {dev}: {}",
                if vips.is_empty() {
                    "nothing (withdrawn)".into()
                } else {
                    vips.join(", ")
                }
            );
        }
        if let Some(fleet) = &s.fleet {
            let _ = writeln!(out, "  fleet: {fleet}");
        }
        if let Some(balance) = &s.balance {
            let _ = writeln!(
                out,
                "  backends ({balance}{}):",
                s.proxy_protocol
                    .as_ref()
                    .map_or_else(String::new, |v| format!(", PROXY protocol {v}"))
            );
        }
        for b in &s.backends {
            let _ = writeln!(
                out,
                "    {:<24} {:<4} weight {:<3} {} active, {} connects, {} failed; last check: {}",
                b.backend,
                if b.up { "UP" } else { "DOWN" },
                b.weight,
                b.active,
                b.connects,
                b.connect_failures,
                b.last_check.as_ref().map_or_else(
                    || "none yet".to_string(),
                    |c| format!("{} ({})", if c.ok { "ok" } else { "failed" }, c.detail)
                )
            );
        }
        let _ = writeln!(
            out,
            "  cookie secret: {}; epoch {} (every {}s), {}s old, next key in {}s; a cookie \
             stays valid at most {}s",
            s.cookie_secret.source,
            s.cookie_secret.epoch,
            s.cookie_secret.rotate_secs,
            s.cookie_secret.age_secs,
            s.cookie_secret.next_rotation_secs,
            s.cookie_secret.validity_secs
        );
    }
    print!("{out}");
    Ok(())
}
