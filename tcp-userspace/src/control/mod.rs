//! The control socket of a running instance (`/run/tcpfront/<iface>.sock`): `conns`, `stats`
//! and `status` ask the daemon through it. One JSON request line, one JSON answer line.

pub mod client;
pub mod proto;
pub mod server;
