//! Loads and stores at any alignment, one BPF instruction each, for the BPF programs of this
//! workspace.
//!
//! Packet headers behind a 14-byte Ethernet header are only 2-byte aligned. The kernel allows
//! misaligned packet and map access on architectures with efficient unaligned access (x86-64,
//! arm64): the verifier checks alignment only under `BPF_F_STRICT_ALIGNMENT`, and the JITs emit
//! plain moves. LLVM 22's BPF backend, however, turns every load or store it cannot prove
//! aligned into byte accesses plus shifts (about 4 instructions per byte), and ignores the
//! `allows-misaligned-mem-access` feature. Inline assembly says exactly what we mean.
//!
//! Values are in native (little-endian) byte order, as they lie in memory: callers convert
//! header fields with `from_be`/`to_be` (one `be32`-style instruction), and checksums are summed
//! in native order directly (RFC 1071 §2(B): the sum is byte-order independent).

use core::arch::asm;

macro_rules! load {
    ($name:ident, $width:literal) => {
        /// Loads from `p + OFF`; the caller has checked the bytes (verifier-visible bounds).
        #[inline(always)]
        pub unsafe fn $name<const OFF: i16>(p: *const u8) -> u64 {
            let v: u64;
            // SAFETY: the caller guarantees that the bytes are readable.
            unsafe {
                asm!(
                    concat!("{v} = *(", $width, " *)({p} + {off})"),
                    v = out(reg) v,
                    p = in(reg) p,
                    off = const OFF,
                    options(readonly, nostack, preserves_flags)
                );
            }
            v
        }
    };
}

macro_rules! store {
    ($name:ident, $width:literal) => {
        /// Stores the low bits of `v` at `p + OFF`; the caller has checked the bytes.
        #[inline(always)]
        pub unsafe fn $name<const OFF: i16>(p: *mut u8, v: u64) {
            // SAFETY: the caller guarantees that the bytes are writable.
            unsafe {
                asm!(
                    concat!("*(", $width, " *)({p} + {off}) = {v}"),
                    p = in(reg) p,
                    v = in(reg) v,
                    off = const OFF,
                    options(nostack, preserves_flags)
                );
            }
        }
    };
}

load!(ld8, "u8");
load!(ld16, "u16");
load!(ld32, "u32");
load!(ld64, "u64");
store!(st8, "u8");
store!(st16, "u16");
store!(st32, "u32");
store!(st64, "u64");

/// `p + N`, computed where LLVM cannot see it. A bounds check `p + N > data_end` must reach
/// the verifier in that form: LLVM would otherwise rewrite `p + 1 > end` as `p >= end`, from
/// which the verifier learns no readable range.
#[inline(always)]
pub fn offset_opaque<const N: usize>(p: usize) -> usize {
    let mut r = p;
    // SAFETY: register arithmetic only.
    unsafe {
        asm!(
            "{r} += {n}",
            r = inout(reg) r,
            n = const N,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    r
}

/// Atomically adds `v` (two's complement: a "negative" `v` subtracts) to the 64-bit word at
/// `p`: BPF's `lock` add. Rust's atomics have no read-modify-write on the BPF target (it has
/// no compare-and-swap), and the result is not needed.
#[inline(always)]
pub unsafe fn atomic_add64(p: *mut u64, v: u64) {
    // SAFETY: the caller guarantees that `p` is a valid, 8-aligned map value word.
    unsafe {
        asm!(
            "lock *(u64 *)({p} + 0) += {v}",
            p = in(reg) p,
            v = in(reg) v,
            options(nostack, preserves_flags)
        );
    }
}
