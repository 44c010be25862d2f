//! Bounds checks on the frame behind an `XdpContext`, in the form the verifier needs: a
//! pointer is usable for N bytes once `start + offset + N <= data_end` was compared.

use aya_ebpf::programs::XdpContext;
use tcp_common::bpf_mem::offset_opaque;

/// A pointer to `start + offset` if the frame holds `N` bytes from there on.
#[inline(always)]
pub fn at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<*mut u8> {
    let p = ctx.data() + offset;
    if offset_opaque::<N>(p) > ctx.data_end() {
        return None;
    }
    Some(p as *mut u8)
}

/// Bytes in the frame.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
