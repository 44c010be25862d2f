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
    netns::{command_in, run_in, spawn_in},
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

const BULK: usize = 100 * 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// 100 MB each way at once, byte-exact, over a 40 ms path that loses 1% of the frames each
/// way: every loss repaired by SACK recovery or the retransmission timer, on a path where a
/// round trip is long enough for both to matter.
#[test]
fn hundred_megabytes_each_way_survive_a_long_lossy_path() -> anyhow::Result<()> {
    use sha2::{Digest as _, Sha256};
    let lab = wan_lab(true)?;
    let wan = Wan::start(
        &lab,
        Profile {
            rtt: Duration::from_millis(40),
            loss_ppm: 10_000,
            seed: 40_010,
            ..Profile::default()
        },
        None,
    )?;
    let listener = run_in(&lab.names.front_ns, || {
        Ok(std::net::TcpListener::bind("127.0.0.1:18080")?)
    })?;
    let down = pattern(BULK, 7);
    let down_hash: [u8; 32] = Sha256::digest(&down).into();
    let upstream = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut handlers = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept()?;
            let down = down.clone();
            handlers.push(std::thread::spawn(move || -> anyhow::Result<()> {
                let mut kind = [0u8; 1];
                s.read_exact(&mut kind)?;
                if kind[0] == b'U' {
                    let mut h = Sha256::new();
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = s.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                    s.write_all(&h.finalize())?;
                } else {
                    s.write_all(&down)?;
                }
                Ok(())
            }));
        }
        for h in handlers {
            h.join()
                .map_err(|_| anyhow::anyhow!("upstream panicked"))??;
        }
        Ok(())
    });
    let tf = Tcpfront::start(
        &lab,
        &["--listen", "0.0.0.0:8080", "--upstream", "127.0.0.1:18080"],
    )?;
    let addr = std::net::SocketAddr::new(lab.front_addr(false), 8080);
    let upload = pattern(BULK, 3);
    let upload_hash: [u8; 32] = Sha256::digest(&upload).into();
    let t0 = Instant::now();
    let up = spawn_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.write_all(b"U")?;
        s.write_all(&upload)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut digest = Vec::new();
        s.read_to_end(&mut digest)?;
        Ok((digest, t0.elapsed()))
    });
    let dl = spawn_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.write_all(b"D")?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
            h.update(&buf[..n]);
        }
        anyhow::ensure!(total == BULK, "downloaded {total} bytes");
        Ok((<[u8; 32]>::from(h.finalize()), t0.elapsed()))
    });
    let (got_up, up_time) = up
        .join()
        .map_err(|_| anyhow::anyhow!("upload panicked"))??;
    let (got_down, down_time) = dl
        .join()
        .map_err(|_| anyhow::anyhow!("download panicked"))??;
    eprintln!("100 MB up in {up_time:?}, 100 MB down in {down_time:?}");
    upstream
        .join()
        .map_err(|_| anyhow::anyhow!("upstream panicked"))??;
    assert_eq!(got_up, upload_hash.to_vec(), "upload SHA-256 differs");
    assert_eq!(got_down, down_hash, "download SHA-256 differs");
    let stats = tf.stats()?;
    tf.stop()?;
    let w = wan.stop()?;
    eprintln!("emulator: {w:?}\ntcpfront: {}", stats["engine"]);
    // The path really lost frames both ways.
    assert!(
        w.client_to_front.line.lost > 100 && w.front_to_client.line.lost > 100,
        "{w:?}"
    );
    Ok(())
}
