//! Round-trip times across a lab, measured with UDP echoes (what `ping` would tell, without
//! needing it installed): an echo thread in the front-end namespace, probes from the client's.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{lab::Lab, netns};

/// Round-trip times of `count` probes sent `gap` apart to the front end's `addr`, in
/// milliseconds (lost probes are left out).
pub fn udp_rtts(
    lab: &Lab,
    addr: std::net::IpAddr,
    count: usize,
    gap: Duration,
) -> anyhow::Result<Vec<f64>> {
    let bind: SocketAddr = SocketAddr::new(addr, 0);
    let echo = netns::run_in(&lab.names.front_ns, move || {
        UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))
    })?;
    let target = echo.local_addr()?;
    echo.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo_stop = stop.clone();
    let echo_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !echo_stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        }
    });
    let result = netns::run_in(&lab.names.client_ns, move || {
        let any: SocketAddr = if target.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut rtts = Vec::new();
        for i in 0..count as u64 {
            let sent = Instant::now();
            s.send_to(&i.to_be_bytes(), target)?;
            let mut buf = [0u8; 64];
            // Late answers to earlier probes are skipped by their number.
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                if n == 8 && buf[..8] == i.to_be_bytes() {
                    rtts.push(sent.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
            std::thread::sleep(gap);
        }
        Ok(rtts)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = echo_thread.join();
    result
}
