//! `tcpfront conns`: the connection table of a running instance, like `ss -tan`.

use std::fmt::Write as _;

use tcp_common::map_names;

use crate::{
    bpf::flows,
    cli::ConnsArgs,
    control::{
        client,
        proto::{ConnInfo, ConnsReply, Request, Response},
    },
    instance,
};

pub fn conns(args: ConnsArgs) -> anyhow::Result<()> {
    instance::require_root("tcpfront conns")?;
    let paths = instance::resolve(args.iface.as_deref())?;
    let (mut reply, note) = match client::ask(&paths, &Request::Conns)? {
        Some(Response::Conns(r)) => (r, None),
        Some(other) => anyhow::bail!("unexpected answer {other:?}"),
        None => (
            from_pinned_flows(&paths)?,
            Some(format!(
                "note: no daemon answers on {}; showing the pinned flow map only (no engine \
                 state)",
                paths.socket.display()
            )),
        ),
    };
    reply.connections.retain(|c| {
        args.state
            .as_ref()
            .is_none_or(|s| c.state.as_deref() == Some(s.as_str()))
            && args
                .port
                .is_none_or(|p| c.local.port() == p || c.remote.port() == p)
    });
    let show_listeners = args.state.as_deref().is_none_or(|s| s == "LISTEN");
    reply
        .listeners
        .retain(|l| args.port.is_none_or(|p| l.port() == p));
    if !show_listeners {
        reply.listeners.clear();
    }
    if let Some(n) = &note {
        eprintln!("{n}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", table(&reply));
    }
    Ok(())
}

fn from_pinned_flows(paths: &instance::Paths) -> anyhow::Result<ConnsReply> {
    let map = flows::open_pinned(&paths.pin(map_names::FLOWS))?;
    let now = flows::monotonic_ns();
    let mut connections: Vec<ConnInfo> = flows::entries(&map)
        .iter()
        .map(|(k, v)| flows::flow_info(k, v, now))
        .collect();
    connections.sort_by_key(|c| (c.local, c.remote));
    Ok(ConnsReply {
        listeners: Vec::new(),
        connections,
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One header line, LISTEN rows, then one row per connection.
pub fn table(r: &ConnsReply) -> String {
    let mut out = String::new();
    // Address columns as wide as the longest address, like ss.
    let aw = r
        .connections
        .iter()
        .flat_map(|c| [c.local.to_string().len(), c.remote.to_string().len()])
        .chain(r.listeners.iter().map(|l| l.to_string().len()))
        .max()
        .unwrap_or(0)
        .max(15);
    let _ = writeln!(
        out,
        "{:<18} {:<aw$} {:<aw$} {:>10} {:>10} {:>10} {:>8} {:>8} {:>5} {:>5} {:>8} {:>6} {:>4} {:>12} {:>12} {:>8}  UPSTREAM",
        "STATE",
        "LOCAL",
        "PEER",
        "SND.UNA",
        "SND.NXT",
        "RCV.NXT",
        "SND.WND",
        "RCV.WND",
        "WS",
        "MSS",
        "SRTT",
        "RTO",
        "RETX",
        "BYTES-IN",
        "BYTES-OUT",
        "AGE"
    );
    for l in &r.listeners {
        let _ = writeln!(
            out,
            "{:<18} {:<aw$} {:<aw$}",
            "LISTEN",
            l.to_string(),
            "*:*"
        );
    }
    for c in &r.connections {
        let state = match (&c.state, c.time_wait_left_ms) {
            (Some(s), Some(left)) => format!("{s}({:.1}s)", left as f64 / 1000.0),
            (Some(s), None) => s.clone(),
            (None, _) => "(flow)".into(),
        };
        let ws = match (c.snd_wscale, c.rcv_wscale) {
            (Some(a), Some(b)) => format!("{a}/{b}"),
            _ => "-".into(),
        };
        let srtt = c.srtt_us.map(|us| format!("{:.1}ms", us as f64 / 1000.0));
        let rto = c.rto_ms.map(|ms| format!("{ms}ms"));
        let age = c.age_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0));
        let upstream = match (&c.upstream, &c.upstream_local) {
            (Some(u), Some(l)) => format!("{l}->{u}"),
            (Some(u), None) => u.clone(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<18} {:<aw$} {:<aw$} {:>10} {:>10} {:>10} {:>8} {:>8} {:>5} {:>5} {:>8} {:>6} {:>4} {:>12} {:>12} {:>8}  {}",
            state,
            c.local.to_string(),
            c.remote.to_string(),
            opt(c.snd_una),
            opt(c.snd_nxt),
            opt(c.rcv_nxt),
            opt(c.snd_wnd),
            opt(c.rcv_wnd),
            ws,
            opt(c.mss),
            opt(srtt),
            opt(rto),
            opt(c.retransmits),
            opt(c.bytes_in),
            opt(c.bytes_out),
            opt(age),
            upstream
        );
    }
    out
}
