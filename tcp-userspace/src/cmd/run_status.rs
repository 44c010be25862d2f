//! What `status` says of a running instance's settings, filled at start and after a reload.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    control::proto::{CookieSecret, StatusInfo},
    datapath::Upstream,
    settings::RunSettings,
};

pub fn status_info(
    s: &RunSettings,
    netns: Option<String>,
    mode: &str,
    xsk_modes: Vec<String>,
    since: SystemTime,
) -> StatusInfo {
    let mut st = StatusInfo {
        iface: s.iface.clone(),
        pid: std::process::id(),
        netns,
        mode: mode.into(),
        xsk_modes,
        since_unix: since
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        uptime_secs: 0,
        listen: Vec::new(),
        upstream: None,
        syn_cookies: s.fast_path.syn_cookies,
        invalid_cookie: String::new(),
        max_conns: 0,
        msl_ms: 0,
        drain_timeout_ms: 0,
        phase: "serving".into(),
        connections: 0,
        cookie_secret: CookieSecret {
            source: s.cookie_secret.describe(),
            age_secs: 0,
            epoch: 0,
            rotate_secs: s.cookie_rotate.as_secs(),
            next_rotation_secs: 0,
            validity_secs: 120,
        },
        balance: None,
        proxy_protocol: None,
        backends: Vec::new(),
        announce: s.announce.clone(),
        announced: Vec::new(),
        fleet: None,
    };
    refresh_status(&mut st, s);
    st
}

/// The parts of `status` a reload may change.
pub fn refresh_status(st: &mut StatusInfo, s: &RunSettings) {
    st.listen = s.fast_path.listen.clone();
    st.fleet = s
        .fast_path
        .fleet
        .as_ref()
        .map(crate::fleet::FleetPlace::describe);
    st.upstream = s.upstream.as_ref().map(|u| match u {
        Upstream::Pool(p) => p
            .backends
            .iter()
            .map(|b| b.target.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        Upstream::Echo => "echo".into(),
    });
    st.invalid_cookie = if s.fast_path.rst_invalid_cookie {
        "rst"
    } else {
        "drop"
    }
    .into();
    st.max_conns = s.engine.max_connections as u64;
    st.msl_ms = s.engine.msl.as_millis() as u64;
    st.drain_timeout_ms = s.drain_timeout.as_millis() as u64;
}
