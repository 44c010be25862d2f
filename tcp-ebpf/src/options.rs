//! TCP options (RFC 9293 §3.1, RFC 7323, RFC 2018), every length checked against the header.
//!
//! The options are copied to the stack (indices into a 64-byte buffer masked with `& 63` are
//! easy for the verifier to bound) and walked with `bpf_loop`, whose callback the verifier
//! checks once instead of once per iteration and per path.

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};

pub const WSCALE_NONE: u8 = 0xff;
const MAX_OPTIONS: usize = 40;
const BUF: usize = 64;
const IDX: usize = BUF - 1;

#[derive(Clone, Copy)]
pub struct TcpOptions {
    pub mss: u16,
    pub wscale: u8,
    pub sack_ok: bool,
    pub timestamps: bool,
    pub tsval: u32,
    pub tsecr: u32,
}

/// Malformed options: a length below 2, past the header, or wrong for a known kind.
pub struct BadOptions;

#[repr(C)]
struct Walk {
    buf: [u8; BUF],
    len: usize,
    pos: usize,
    bad: bool,
    opts: TcpOptions,
}

#[inline(always)]
fn be16(b: &[u8; BUF], i: usize) -> u16 {
    u16::from_be_bytes([b[i & IDX], b[(i + 1) & IDX]])
}

#[inline(always)]
fn be32(b: &[u8; BUF], i: usize) -> u32 {
    ((be16(b, i) as u32) << 16) | be16(b, i + 2) as u32
}

/// One option per call; returns 1 to stop the loop.
extern "C" fn step(_index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let i = w.pos & IDX;
    let len = w.len & IDX;
    if i >= len {
        return 1;
    }
    let kind = w.buf[i];
    if kind == 0 {
        return 1; // End of option list.
    }
    if kind == 1 {
        w.pos = i + 1; // NOP.
        return 0;
    }
    if i + 1 >= len {
        w.bad = true;
        return 1;
    }
    let olen = w.buf[(i + 1) & IDX] as usize;
    if olen < 2 || i + olen > len {
        w.bad = true;
        return 1;
    }
    match (kind, olen) {
        (2, 4) => w.opts.mss = be16(&w.buf, i + 2),
        (3, 3) => {
            // RFC 7323 §2.3: a shift above 14 is used as 14.
            let shift = w.buf[(i + 2) & IDX];
            w.opts.wscale = if shift > 14 { 14 } else { shift };
        }
        (4, 2) => w.opts.sack_ok = true,
        (8, 10) => {
            w.opts.timestamps = true;
            w.opts.tsval = be32(&w.buf, i + 2);
            w.opts.tsecr = be32(&w.buf, i + 6);
        }
        (2 | 3 | 4 | 8, _) => {
            w.bad = true;
            return 1;
        }
        _ => {}
    }
    w.pos = i + olen;
    0
}

/// Parses the options of the segment whose TCP header (of `tcp_hlen` bytes, already checked
/// to lie in the frame) starts at `l4_off`.
#[inline(always)]
pub fn parse(ctx: &XdpContext, l4_off: usize, tcp_hlen: usize) -> Result<TcpOptions, BadOptions> {
    let mut w = Walk {
        buf: [0; BUF],
        len: tcp_hlen.saturating_sub(20) & IDX,
        pos: 0,
        bad: false,
        opts: TcpOptions {
            mss: 0,
            wscale: WSCALE_NONE,
            sack_ok: false,
            timestamps: false,
            tsval: 0,
            tsecr: 0,
        },
    };
    if w.len == 0 {
        return Ok(w.opts);
    }
    if w.len > MAX_OPTIONS {
        return Err(BadOptions);
    }
    // SAFETY: buf holds BUF ≥ len bytes; `step` only touches `w`.
    unsafe {
        if bpf_xdp_load_bytes(
            ctx.ctx,
            (l4_off + 20) as u32,
            w.buf.as_mut_ptr().cast(),
            w.len as u32,
        ) != 0
        {
            return Err(BadOptions);
        }
        bpf_loop(
            MAX_OPTIONS as u32,
            step as *mut core::ffi::c_void,
            (&mut w as *mut Walk).cast(),
            0,
        );
    }
    if w.bad { Err(BadOptions) } else { Ok(w.opts) }
}

/// The timestamps option of a non-SYN segment, found where RFC 7323 Appendix A recommends
/// it (`NOP NOP TS` or `TS` first), which is where every common stack puts it. Used on the
/// cookie ACK: a segment that has it elsewhere is treated as having none, which only makes
/// the flow's parameters conservative (no window scale, no SACK, the smallest cookie MSS).
///
/// A full walk here made the verifier's state space explode: TSecr's bits select table
/// entries, and tracking their precision back through the loop defeated state pruning.
#[inline(always)]
pub fn aligned_timestamps(ctx: &XdpContext, l4_off: usize, tcp_hlen: usize) -> Option<(u32, u32)> {
    if tcp_hlen < 32 {
        return None;
    }
    let mut b = [0u8; 12];
    // SAFETY: b holds the 12 bytes; the header is at least 32 bytes long.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, (l4_off + 20) as u32, b.as_mut_ptr().cast(), 12) } != 0
    {
        return None;
    }
    let at = if b[0] == 1 && b[1] == 1 && b[2] == 8 && b[3] == 10 {
        4
    } else if b[0] == 8 && b[1] == 10 {
        2
    } else {
        return None;
    };
    let tsval = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let tsecr = u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
    Some((tsval, tsecr))
}
