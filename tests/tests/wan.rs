//! The lab's WAN emulator carries both families' frames between client and front end with
//! the delay, rate and loss it is set to. (Its fidelity in time, measured, is reported by
//! `cargo xtask bench wan`; here only what cannot depend on the machine's speed is asserted:
//! nothing arrives before its delay, nothing passes faster than the rate, the loss is near its
//! seeded rate, and tcpfront serves through it.)

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tcpfront_tests::{
    lab::{Lab, LabNames, queue_per_cpu},
    netns::{command_in, run_in},
    process::{ChildGuard, Tcpfront, tcpfront_bin},
    wan::{Profile, Wan, probe::udp_rtts},
};

fn wan_lab(tcpfront: bool) -> anyhow::Result<Lab> {
    let bin = tcpfront_bin();
    Lab::create(
        LabNames::unique().with_wan(),
        false,
        tcpfront.then_some(bin.as_path()),
        queue_per_cpu(),
    )
}

#[test]
fn emulated_path_delays_limits_and_loses_as_set() -> anyhow::Result<()> {
    let lab = wan_lab(false)?;
    let rate = 100_000_000;
    let wan = Wan::start(
        &lab,
        Profile {
            rtt: Duration::from_millis(20),
            rate_bps: rate,
            loss_ppm: 10_000,
            ..Profile::default()
        },
        None,
    )?;
    for v6 in [false, true] {
        let addr = lab.front_addr(v6);
        let rtts = udp_rtts(&lab, addr, 40, Duration::from_millis(20))?;
        eprintln!("UDP echo RTTs to {addr}: {rtts:?}");
        anyhow::ensure!(rtts.len() >= 30, "{} of 40 pings answered", rtts.len());
        let min = rtts.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            min >= 20.0,
            "a ping came back in {min} ms, under the 20 ms RTT"
        );
    }
    let _server = ChildGuard::spawn(
        "iperf3 server",
        command_in(&lab.names.front_ns, "iperf3")
            .args(["-s", "-p", "5201"])
            .stdout(std::process::Stdio::null()),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let out = command_in(&lab.names.client_ns, "iperf3")
        .args(["-c", "10.200.0.2", "-p", "5201", "-t", "3", "-J"])
        .output()
        .context("iperf3")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3: {v}"))?;
    eprintln!("iperf3 through 100 Mbit/s: {:.1} Mbit/s", bps / 1e6);
    let stats = wan.stop()?;
    eprintln!("{}", serde_json::to_string_pretty(&stats)?);
    assert!(
        bps <= rate as f64,
        "{bps} bit/s through a {rate} bit/s link"
    );
    let up = &stats.client_to_front;
    let lost = up.line.lost as f64 / (up.line.lost + up.line.frames) as f64;
    assert!((0.005..0.015).contains(&lost), "lost {lost} at 1%: {up:?}");
    assert_eq!(up.oversize + stats.front_to_client.oversize, 0, "{stats:?}");
    Ok(())
}

#[test]
fn tcpfront_serves_through_the_emulated_path() -> anyhow::Result<()> {
    let lab = wan_lab(true)?;
    let wan = Wan::start(
        &lab,
        Profile {
            rtt: Duration::from_millis(10),
            ..Profile::default()
        },
        None,
    )?;
    let tf = Tcpfront::start(
        &lab,
        &[
            "--listen",
            "0.0.0.0:8080",
            "--listen",
            "[::]:8080",
            "--echo",
        ],
    )?;
    for v6 in [false, true] {
        let addr = std::net::SocketAddr::new(lab.front_addr(v6), 8080);
        let echoed = run_in(&lab.names.client_ns, move || {
            let t0 = Instant::now();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            let connect = t0.elapsed();
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
            let writer = {
                let mut s = s.try_clone()?;
                let data = data.clone();
                std::thread::spawn(move || s.write_all(&data))
            };
            let mut got = vec![0u8; data.len()];
            s.read_exact(&mut got)?;
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??;
            Ok((connect, got == data))
        })?;
        eprintln!("{addr}: connected in {:?}", echoed.0);
        // The handshake crossed the path (the SYN-ACK is tcpfront's XDP_TX frame).
        assert!(
            echoed.0 >= Duration::from_millis(10),
            "{addr}: {:?}",
            echoed.0
        );
        assert!(echoed.1, "{addr}: echo differs");
    }
    tf.stop()?;
    let stats = wan.stop()?;
    assert!(stats.front_to_client.line.frames > 100, "{stats:?}");
    Ok(())
}
