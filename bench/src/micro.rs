//! The cost of one SYN in an XDP program, without a rig: `syn_bench` writes a fresh random
//! SYN and tail-calls the program under test, BPF_PROG_TEST_RUN repeats that a million times
//! and reports the mean duration of a run. The same with a trivial target (`pass`) measures
//! `syn_bench` itself, which is subtracted. No clock is read per run, unlike bpf_stats.

use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{ProgramFd, Xdp},
};
use flood_common::{FloodConf, V4_LEN, V6_LEN};
use tcpfront::bpf::test_run;

use crate::{ebpf, generator};

pub struct SynBench {
    ebpf: Ebpf,
    len: usize,
}

impl SynBench {
    pub fn new(spec: &generator::SynSpec) -> anyhow::Result<Self> {
        let mut ebpf = ebpf::load()?;
        let conf = generator::template(spec)?;
        let len = if conf.family == 4 { V4_LEN } else { V6_LEN };
        let mut map: Array<_, FloodConf> =
            Array::try_from(ebpf.map_mut("FLOOD").context("no FLOOD map")?)?;
        map.set(0, conf, 0).context("writing the template")?;
        for name in ["syn_bench", "pass"] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("no {name} program"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Self { ebpf, len })
    }

    fn run(&mut self, target: &ProgramFd, repeat: u32) -> anyhow::Result<(u32, f64)> {
        let mut targets =
            ProgramArray::try_from(self.ebpf.map_mut("TARGET").context("no TARGET map")?)?;
        targets
            .set(0, target, 0)
            .context("setting the tail-call target")?;
        let prog: &Xdp = self
            .ebpf
            .program("syn_bench")
            .context("no syn_bench program")?
            .try_into()?;
        // Three rounds, the best one: the least disturbed by the rest of the machine.
        let mut best = f64::INFINITY;
        let mut verdict = 0;
        for _ in 0..3 {
            let (v, ns) = test_run::run_repeat(prog.fd()?.as_fd(), &vec![0u8; self.len], repeat)?;
            verdict = v;
            best = best.min(f64::from(ns));
        }
        Ok((verdict, best))
    }

    /// Mean nanoseconds per SYN of `target` (its verdict alongside), `syn_bench`'s own share
    /// subtracted.
    pub fn cost(&mut self, target: &ProgramFd, repeat: u32) -> anyhow::Result<(u32, f64)> {
        let pass = self.pass_fd()?;
        let (_, base) = self.run(&pass, repeat)?;
        let (verdict, total) = self.run(target, repeat)?;
        Ok((verdict, (total - base).max(0.0)))
    }

    fn pass_fd(&self) -> anyhow::Result<ProgramFd> {
        let prog: &Xdp = self
            .ebpf
            .program("pass")
            .context("no pass program")?
            .try_into()?;
        Ok(prog.fd()?.try_clone()?)
    }
}

/// tcpfront's XDP program protecting port 8080 (both families), its SYN path measured:
/// nanoseconds per SYN.
pub fn tcpfront_syn_ns(v6: bool, repeat: u32) -> anyhow::Result<f64> {
    let mut tf = tcpfront::bpf::open_object()?;
    tcpfront::bpf::load_xdp(&mut tf)?;
    tcpfront::bpf::config::apply(
        &mut tf,
        &tcpfront::bpf::config::FastPathSettings {
            listen: vec!["0.0.0.0:8080".parse()?, "[::]:8080".parse()?],
            ..Default::default()
        },
    )?;
    let prog: &Xdp = tf
        .program(tcp_common::XDP_PROGRAM)
        .context("no tcpfront program")?
        .try_into()?;
    let fd = prog.fd()?.try_clone()?;
    let spec = generator::lab_spec(v6, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 8080);
    let mut b = SynBench::new(&spec)?;
    let (verdict, ns) = b.cost(&fd, repeat)?;
    anyhow::ensure!(
        verdict == 3,
        "tcpfront did not answer the SYNs (verdict {verdict})"
    );
    Ok(ns)
}
