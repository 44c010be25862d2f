//! Helpers shared by the integration tests that need tcpfront's library (not the xtask's lab
//! support, which must build before `cargo xtask setup` has installed bpf-linker).

pub mod xdp;
