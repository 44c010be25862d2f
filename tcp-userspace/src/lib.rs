//! tcpfront: a TCP front-end accelerated by XDP.
//!
//! The binary (`main.rs`) only wires these modules together.

pub mod alloc_count;
pub mod announce;
pub mod backends;
pub mod bpf;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod datapath;
pub mod engine;
pub mod fleet;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod netns;
pub mod notify;
pub mod settings;
pub mod signals;
pub mod wire;
pub mod xsk;
