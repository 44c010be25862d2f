//! Support for tcpfront's integration tests (and the xtask lab): network namespaces joined by
//! veth pairs that clean themselves up, a handle on a running `tcpfront`, and a pcap reader.

pub mod fleet;
pub mod lab;
pub mod netns;
pub mod pcap;
pub mod process;
pub mod rawsock;
pub mod wan;
