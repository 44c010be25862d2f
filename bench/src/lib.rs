//! tcpfront's benchmarks: each puts tcpfront side by side with what a user would run instead,
//! in one lab and one run, and reports ratios. Run through `cargo xtask bench …`.

pub mod ebpf;
pub mod generator;
pub mod micro;
pub mod sink;

/// The XDP SYN path's cost per SYN (micro-benchmark), IPv4 and IPv6.
pub fn xdp_cost(repeat: u32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tf = tcpfront::bpf::open_object()?;
    tcpfront::bpf::load_xdp(&mut tf)?;
    tcpfront::bpf::config::apply(
        &mut tf,
        &tcpfront::bpf::config::FastPathSettings {
            listen: vec!["0.0.0.0:8080".parse()?, "[::]:8080".parse()?],
            ..Default::default()
        },
    )?;
    let prog: &aya::programs::Xdp = tf
        .program(tcp_common::XDP_PROGRAM)
        .context("no tcpfront program")?
        .try_into()?;
    let fd = prog.fd()?.try_clone()?;
    for v6 in [false, true] {
        let spec = generator::lab_spec(v6, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 8080);
        let mut b = micro::SynBench::new(&spec)?;
        let (verdict, ns) = b.cost(&fd, repeat)?;
        println!(
            "{}: tcpfront {ns:.1} ns per SYN (verdict {verdict})",
            if v6 { "IPv6" } else { "IPv4" }
        );
    }
    Ok(())
}

/// Temporary probe.
pub fn probe(rate: Option<u64>, secs: u64, v6: bool) -> anyhow::Result<()> {
    use tcpfront_tests::{netns::run_in, rawsock::mac_of};
    let ns_c = "tf-client".to_string();
    let ns_f = "tf-front".to_string();
    let smac = mac_of(&ns_c, "tf-c0")?;
    let dmac = mac_of(&ns_f, "tf-f0")?;
    let spec = generator::lab_spec(v6, smac, dmac, 8080);
    let r = run_in(&ns_c, move || {
        let sink = sink::Sink::attach(
            "tf-c0",
            tcpfront_tests::lab::CLIENT_V4,
            tcpfront_tests::lab::CLIENT_V6,
        )?;
        let mut g = generator::Generator::new(&spec)?;
        let s = g.sample()?;
        eprintln!("sample {:02x?}", s);
        let idx = std::fs::read_to_string("/sys/class/net/tf-c0/ifindex")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let idx = if idx == 0 {
            let n = std::ffi::CString::new("tf-c0")?;
            unsafe { libc::if_nametoindex(n.as_ptr()) }
        } else {
            idx
        };
        let r = g.flood(
            idx,
            generator::Pace {
                rate,
                max: u64::MAX,
                duration: std::time::Duration::from_secs(secs),
            },
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        eprintln!("sink {:?}", sink.counts()?);
        r
    })?;
    eprintln!("{r:?} rate {:.0}", r.rate());
    Ok(())
}
