//! Wire formats, apart from behaviour (as in smoltcp): zero-copy views over byte buffers that
//! check lengths once, and plain `Repr` structs that parse from and emit into them.
//!
//! Used by the engine, the AF_XDP path and the tests that craft frames.

pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod ip;
pub mod tcp;

/// Why bytes are not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header says it is.
    Truncated,
    /// A field holds a value the format does not allow.
    Malformed,
    /// Valid, but not something we handle (another protocol, fragments, extension headers).
    Unsupported,
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::Malformed => "malformed",
            WireError::Unsupported => "unsupported",
            WireError::Checksum => "bad checksum",
        })
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
