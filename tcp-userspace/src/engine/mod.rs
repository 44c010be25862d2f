//! The user-space TCP engine (RFC 9293), sans-I/O: segments and a clock in, segments, timer
//! deadlines and application events out.

pub mod assembler;
pub mod cc;
pub mod config;
pub mod rtt;
pub mod seq;
pub mod tcb;
pub mod time;

pub use config::EngineConfig;
pub use tcb::{CookieHandshake, Event, ResetReason, State, Tcb};
pub use time::Instant;
