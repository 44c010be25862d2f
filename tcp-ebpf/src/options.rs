//! TCP options (RFC 9293 §3.1, RFC 7323, RFC 2018), every length checked against the header.
//!
//! A SYN from a common stack has one of a few layouts; those are recognised with a handful of
//! word compares. Anything else is walked generically: the options are copied to the stack
//! (indices masked with `& 63` are easy for the verifier to bound) and walked with
//! `bpf_loop`, whose callback the verifier checks once instead of once per iteration.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use tcp_common::bpf_mem::ld32;

use crate::{packet, parse::Segment};

pub const WSCALE_NONE: u8 = 0xff;
const MAX_OPTIONS: usize = 40;
const BUF: usize = 64;
const IDX: usize = BUF - 1;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct TcpOptions {
    /// 0: no MSS option.
    pub mss: u16,
    pub wscale: u8,
    pub sack_ok: bool,
    pub timestamps: bool,
    pub tsval: u32,
    pub tsecr: u32,
}

const NONE: TcpOptions = TcpOptions {
    mss: 0,
    wscale: WSCALE_NONE,
    sack_ok: false,
    timestamps: false,
    tsval: 0,
    tsecr: 0,
};

/// Malformed options: a length below 2, past the header, or wrong for a known kind.
pub struct BadOptions;

/// RFC 7323 §2.3: a shift above 14 is used as 14.
#[inline(always)]
fn shift(s: u32) -> u8 {
    if s > 14 { 14 } else { s as u8 }
}

/// The options of a SYN: the usual layouts directly, the rest by the generic walk.
#[inline(always)]
pub fn parse_syn(ctx: &XdpContext, seg: &Segment) -> Result<TcpOptions, BadOptions> {
    match seg.tcp_hlen {
        20 => return Ok(NONE),
        // MSS alone.
        24 => {
            if let Some(p) = packet::at::<24>(ctx, seg.l4_off) {
                // SAFETY: 24 bytes checked.
                let w0 = u32::from_be(unsafe { ld32::<20>(p) } as u32);
                if w0 >> 16 == 0x0204 {
                    return Ok(TcpOptions {
                        mss: w0 as u16,
                        ..NONE
                    });
                }
            }
        }
        // Linux: MSS, SACK-permitted, timestamps, NOP, window scale.
        40 => {
            if let Some(p) = packet::at::<40>(ctx, seg.l4_off) {
                // SAFETY: 40 bytes checked.
                let (w0, w1, w2, w3, w4) = unsafe {
                    (
                        u32::from_be(ld32::<20>(p) as u32),
                        u32::from_be(ld32::<24>(p) as u32),
                        u32::from_be(ld32::<28>(p) as u32),
                        u32::from_be(ld32::<32>(p) as u32),
                        u32::from_be(ld32::<36>(p) as u32),
                    )
                };
                if w0 >> 16 == 0x0204 && w1 == 0x0402_080a && w4 >> 8 == 0x01_0303 {
                    return Ok(TcpOptions {
                        mss: w0 as u16,
                        wscale: shift(w4 & 0xff),
                        sack_ok: true,
                        timestamps: true,
                        tsval: w2,
                        tsecr: w3,
                    });
                }
            }
        }
        _ => {}
    }
    walked(ctx, seg)
}

/// The options' bytes. Not zeroed: `bpf_xdp_load_bytes` fills the first `len`, and `step`
/// reads no byte at or past `len` (zeroing would be a byte-loop memset call, which the
/// verifier walks byte by byte).
#[repr(C)]
struct Buf(core::mem::MaybeUninit<[u64; BUF / 8]>);

impl Buf {
    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        // SAFETY: the index is masked into the buffer, and below `len` (see above).
        unsafe { *self.0.as_ptr().cast::<u8>().add(i & IDX) }
    }
}

#[repr(C)]
struct Walk {
    buf: Buf,
    len: usize,
    pos: usize,
    bad: bool,
    opts: TcpOptions,
}

#[inline(always)]
fn be16(b: &Buf, i: usize) -> u16 {
    u16::from_be_bytes([b.at(i), b.at(i + 1)])
}

#[inline(always)]
fn be32(b: &Buf, i: usize) -> u32 {
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
    let kind = w.buf.at(i);
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
    let olen = w.buf.at(i + 1) as usize;
    if olen < 2 || i + olen > len {
        w.bad = true;
        return 1;
    }
    match (kind, olen) {
        (2, 4) => w.opts.mss = be16(&w.buf, i + 2),
        (3, 3) => w.opts.wscale = shift(u32::from(w.buf.at(i + 2))),
        (4, 2) => w.opts.sack_ok = true,
        (8, 10) => {
            w.opts.timestamps = true;
            w.opts.tsval = be32(&w.buf, i + 2);
            w.opts.tsecr = be32(&w.buf, i + 6);
        }
        // RFC 2018 §3: SACK blocks of 8 bytes after the kind and length, one at least.
        (5, l) if l >= 10 && (l - 2) % 8 == 0 => {}
        (2 | 3 | 4 | 5 | 8, _) => {
            w.bad = true;
            return 1;
        }
        _ => {}
    }
    w.pos = i + olen;
    0
}

/// The generic walk, as the callers want it.
#[inline(always)]
fn walked(ctx: &XdpContext, seg: &Segment) -> Result<TcpOptions, BadOptions> {
    let mut opts = NONE;
    if tcpfront_walk_options(ctx.ctx, seg.l4_off as u64, seg.tcp_hlen as u64, &mut opts) == 0 {
        Ok(opts)
    } else {
        Err(BadOptions)
    }
}

/// Walks the options of the TCP header (of `tcp_hlen` bytes, already checked to lie in the
/// frame) at `l4_off` into `out`; 0 if they are well formed.
///
/// A global BPF function: the verifier checks it once, on its own, from its BTF signature
/// (`xdp_md` context, scalars, a pointer to `TcpOptions`). A static function or inlined code
/// is re-verified for every distinct caller state that reaches it, which multiplied with the
/// SYN and ACK paths' states past the verifier's limit. Plain C types across the call: BTF
/// cannot describe a Rust enum's layout, and the kernel refuses the object's BTF for one.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcpfront_walk_options(
    ctx: *mut xdp_md,
    l4_off: u64,
    tcp_hlen: u64,
    out: *mut TcpOptions,
) -> u64 {
    // SAFETY: the verifier passes a pointer to 16 writable bytes or null.
    let Some(out) = (unsafe { out.as_mut() }) else {
        return 1;
    };
    let mut w = Walk {
        buf: Buf(core::mem::MaybeUninit::uninit()),
        len: (tcp_hlen as usize).saturating_sub(20) & IDX,
        pos: 0,
        bad: false,
        opts: NONE,
    };
    if w.len == 0 {
        *out = NONE;
        return 0;
    }
    if w.len > MAX_OPTIONS {
        return 1;
    }
    // SAFETY: buf holds BUF ≥ len bytes; `step` only touches `w`.
    unsafe {
        if bpf_xdp_load_bytes(
            ctx,
            (l4_off as u32).wrapping_add(20),
            w.buf.0.as_mut_ptr().cast(),
            w.len as u32,
        ) != 0
        {
            return 1;
        }
        bpf_loop(
            MAX_OPTIONS as u32,
            step as *mut core::ffi::c_void,
            (&mut w as *mut Walk).cast(),
            0,
        );
    }
    *out = w.opts;
    u64::from(w.bad)
}

/// The options of a cookie ACK, checked as a SYN's are (a flow is made only from a
/// well-formed segment): the usual layouts directly (none; `NOP NOP TS`, RFC 7323
/// Appendix A), the rest by the generic walk. Returns its timestamps.
#[inline(always)]
pub fn parse_ack(ctx: &XdpContext, seg: &Segment) -> Result<Option<(u32, u32)>, BadOptions> {
    match seg.tcp_hlen {
        20 => return Ok(None),
        32 => {
            if let Some(p) = packet::at::<32>(ctx, seg.l4_off) {
                // SAFETY: 32 bytes checked; every load below ends by byte 32.
                unsafe {
                    if u32::from_be(ld32::<20>(p) as u32) == 0x0101_080a {
                        return Ok(Some((
                            u32::from_be(ld32::<24>(p) as u32),
                            u32::from_be(ld32::<28>(p) as u32),
                        )));
                    }
                }
            }
        }
        _ => {}
    }
    let o = walked(ctx, seg)?;
    Ok(o.timestamps.then_some((o.tsval, o.tsecr)))
}
