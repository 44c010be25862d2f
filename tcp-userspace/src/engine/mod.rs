//! The user-space TCP engine (RFC 9293), sans-I/O: segments and a clock in, segments, timer
//! deadlines and application events out.

pub mod assembler;
pub mod budget;
pub mod cc;
pub mod config;
pub mod fuzz;
pub mod hystart;
pub mod isn;
pub mod ring;
pub mod rtt;
pub mod seq;
pub mod table;
pub mod tcb;
pub mod time;
pub mod timer;

pub use config::EngineConfig;
pub use table::{ConnId, ConnKey, Engine, EngineCounters, Outgoing};
pub use tcb::{CookieHandshake, Event, OutPayload, OutSegment, ResetReason, State, Tcb};
pub use time::Instant;
