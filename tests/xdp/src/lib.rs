//! Test tooling for tcpfront's XDP program: a BPF_PROG_TEST_RUN harness with crafted frames,
//! and the differential fuzzer that holds the program to the user-space wire parser.

pub mod fuzz;
pub mod harness;
