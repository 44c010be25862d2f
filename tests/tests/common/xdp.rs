//! The XDP harness lives in its own crate (the differential fuzzer uses it too).
pub use xdp_harness::harness::*;
