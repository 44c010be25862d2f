//! tcpfront's benchmarks: each puts tcpfront side by side with what a user would run instead,
//! in one lab and one run, and reports ratios. Run through `cargo xtask bench …`.

pub mod chart;
pub mod common;
pub mod ebpf;
pub mod echo;
pub mod generator;
pub mod idle;
pub mod micro;
pub mod proxies;
pub mod rig;
pub mod sink;
pub mod synflood;
pub mod throughput;
pub mod upstreams;
pub mod wan;
