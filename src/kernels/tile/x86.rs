//! AVX2+FMA and AVX-512 tile kernels: `MR` broadcast weights × `NV` vectors of `B`, all
//! accumulators in registers (AVX-512: 24 of 32 zmm; AVX2: 12 of 16 ymm), one FMA chain
//! per accumulator. The one-row kernels (`MR = 1`, 8 vectors: enough independent chains
//! to hide the FMA latency) serve groups with fewer output channels than the wide
//! kernels' `MR`, which would spend most of their FMAs on zero weight rows.

use std::arch::x86_64::*;

use super::TileKernel;

pub const F32_AVX512: TileKernel<f32> = TileKernel::new(
    8,
    48,
    "avx512-8x48",
    f32_avx512,
    16,
    f32_avx512_narrow,
    f32_avx512_pack,
);
pub const F64_AVX512: TileKernel<f64> = TileKernel::new(
    8,
    24,
    "avx512-8x24",
    f64_avx512,
    8,
    f64_avx512_narrow,
    f64_avx512_pack,
);
pub const F32_AVX2: TileKernel<f32> = TileKernel::new(
    6,
    16,
    "avx2-6x16",
    f32_avx2,
    8,
    f32_avx2_narrow,
    f32_avx2_pack,
);
pub const F64_AVX2: TileKernel<f64> = TileKernel::new(
    6,
    8,
    "avx2-6x8",
    f64_avx2,
    4,
    f64_avx2_narrow,
    f64_avx2_pack,
);

pub const F32_AVX512_ROW: TileKernel<f32> = TileKernel::new(
    1,
    128,
    "avx512-1x128",
    f32_avx512_row,
    16,
    f32_avx512_row_narrow,
    f32_avx512_pack,
);
pub const F64_AVX512_ROW: TileKernel<f64> = TileKernel::new(
    1,
    64,
    "avx512-1x64",
    f64_avx512_row,
    8,
    f64_avx512_row_narrow,
    f64_avx512_pack,
);
pub const F32_AVX2_ROW: TileKernel<f32> = TileKernel::new(
    1,
    64,
    "avx2-1x64",
    f32_avx2_row,
    8,
    f32_avx2_row_narrow,
    f32_avx2_pack,
);
pub const F64_AVX2_ROW: TileKernel<f64> = TileKernel::new(
    1,
    32,
    "avx2-1x32",
    f64_avx2_row,
    4,
    f64_avx2_row_narrow,
    f64_avx2_pack,
);

/// Expands to one `#[target_feature]` entry point plus its register-blocked body. The
/// body is a macro, not an `#[inline(always)]` generic, so that every intrinsic is
/// compiled inside the target_feature function.
macro_rules! tile_kernel {
    ($name:ident, $t:ty, $features:literal, $mr:expr, $nv:expr, $lanes:expr,
     ($zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $store:ident)) => {
        /// # Safety
        /// See `TileKernel::run`; additionally the CPU must support the enabled features
        /// (guaranteed by `simd::level`).
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            kt: usize,
            a: *const *const $t,
            b: *const $t,
            offs: *const isize,
            c: *mut $t,
            ldc: usize,
            accumulate: bool,
            bias: *const $t,
        ) {
            const MR: usize = $mr;
            const NV: usize = $nv;
            let mut acc = [[$zero(); NV]; MR];
            if accumulate {
                for i in 0..MR {
                    for j in 0..NV {
                        // SAFETY: the caller guarantees `MR` rows of `ldc >= NV·lanes`
                        // readable elements at `c`.
                        acc[i][j] = unsafe { $load(c.add(i * ldc + j * $lanes)) };
                    }
                }
            }
            let mut rows = [std::ptr::null::<$t>(); MR];
            for i in 0..MR {
                // SAFETY: the caller guarantees `MR` row pointers at `a`.
                rows[i] = unsafe { *a.add(i) };
            }
            for k in 0..kt {
                // SAFETY: the caller guarantees `kt` offsets, `NV·lanes` readable elements
                // at `b + offs[k]`, and `kt` readable weights in each row.
                unsafe {
                    let brow = b.offset(*offs.add(k));
                    let mut bv = [$zero(); NV];
                    for j in 0..NV {
                        bv[j] = $load(brow.add(j * $lanes));
                    }
                    for i in 0..MR {
                        let av = $set1(*rows[i].add(k));
                        for j in 0..NV {
                            acc[i][j] = $fma(av, bv[j], acc[i][j]);
                        }
                    }
                }
            }
            if !bias.is_null() {
                for i in 0..MR {
                    // SAFETY: the caller guarantees `MR` biases at a non-null `bias`.
                    let add = $set1(unsafe { *bias.add(i) });
                    for j in 0..NV {
                        acc[i][j] = $add(acc[i][j], add);
                    }
                }
            }
            for i in 0..MR {
                for j in 0..NV {
                    // SAFETY: the caller guarantees `MR` rows of `ldc >= NV·lanes` elements.
                    unsafe { $store(c.add(i * ldc + j * $lanes), acc[i][j]) };
                }
            }
        }
    };
}

/// An AVX-512 panel packer (see `TileKernel::pack_window`). Per row: the zeros before
/// the input, the copy, the zeros after it. A copy goes in whole vectors, two per
/// iteration (a loop of single whole-vector copies would be turned into a call to
/// `memcpy`, which costs more than a run of a few vectors), the last one overlapping the
/// one before; zeros and copies shorter than a vector go through masks computed per
/// vector (masked lanes are neither read nor written).
macro_rules! pack_avx512 {
    ($name:ident, $t:ty, $lanes:expr, $mask:ty, $zero:ident, $load:ident, $store:ident,
     $maskz_load:ident, $mask_store:ident) => {
        /// # Safety
        /// See `TileKernel::pack_window`; additionally the CPU must support AVX-512.
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            dst: *mut $t,
            ld: usize,
            rows: usize,
            len: usize,
            src: *const $t,
            src_len: usize,
            start: isize,
            shift: usize,
        ) {
            const L: usize = $lanes;
            // The first min(k, L) lanes.
            let first = |k: usize| ((1u32 << k.min(L)) - 1) as $mask;
            // Zeros at at[0..k], for k elements writable at `at`.
            let zeros = |at: *mut $t, k: usize| {
                let mut v = 0;
                while v < k {
                    // SAFETY: the mask keeps the store to at[v..k].
                    unsafe { $mask_store(at.add(v), first(k - v), $zero()) };
                    v += L;
                }
            };
            for s in 0..rows {
                let i0 = start + (s * shift) as isize;
                // Row positions lead..end read src[i0 + t], inside src; the rest is zero.
                let lead = i0.min(0).unsigned_abs().min(len);
                let end = (src_len as isize - i0).clamp(lead as isize, len as isize) as usize;
                let n = end - lead;
                // `from` is in bounds only when n > 0, hence the wrapping arithmetic.
                let from = src.wrapping_offset(i0 + lead as isize);
                // SAFETY: the caller guarantees `len` writable elements at each row start.
                let row = unsafe { dst.add(s * ld) };
                zeros(row, lead);
                // SAFETY: lead <= len.
                let to = unsafe { row.add(lead) };
                if n >= L {
                    let mut v = 0;
                    while v + 2 * L <= n {
                        // SAFETY: v + 2L <= n, and n elements are readable at `from`
                        // (inside src) and writable at `to` (inside the row).
                        unsafe {
                            let (a, b) = ($load(from.add(v)), $load(from.add(v + L)));
                            $store(to.add(v), a);
                            $store(to.add(v + L), b);
                        }
                        v += 2 * L;
                    }
                    if v + L <= n {
                        // SAFETY: as above, v + L <= n.
                        unsafe { $store(to.add(v), $load(from.add(v))) };
                    }
                    // The last L elements, overlapping what is already copied.
                    // SAFETY: as above, L <= n.
                    unsafe { $store(to.add(n - L), $load(from.add(n - L))) };
                } else if n > 0 {
                    let m = first(n);
                    // SAFETY: the mask keeps both accesses to the first n elements.
                    unsafe { $mask_store(to, m, $maskz_load(m, from)) };
                }
                // SAFETY: end <= len.
                zeros(unsafe { row.add(end) }, len - end);
            }
        }
    };
}

/// An AVX2 panel packer in the manner of `pack_avx512`. AVX2's masked stores are slow on
/// some CPUs, so parts shorter than a vector go element by element (in a loop of fixed
/// length, which stays a loop).
macro_rules! pack_avx2 {
    ($name:ident, $t:ty, $lanes:expr, $zero:ident, $load:ident, $store:ident) => {
        /// # Safety
        /// See `TileKernel::pack_window`; additionally the CPU must support AVX2.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            dst: *mut $t,
            ld: usize,
            rows: usize,
            len: usize,
            src: *const $t,
            src_len: usize,
            start: isize,
            shift: usize,
        ) {
            const L: usize = $lanes;
            // Zeros at at[0..k], for k elements writable at `at`.
            let zeros = |at: *mut $t, k: usize| {
                let mut v = 0;
                while v + L <= k {
                    // SAFETY: v + L <= k.
                    unsafe { $store(at.add(v), $zero()) };
                    v += L;
                }
                for i in 0..L {
                    if v + i < k {
                        // SAFETY: v + i < k.
                        unsafe { *at.add(v + i) = 0.0 };
                    }
                }
            };
            for s in 0..rows {
                let i0 = start + (s * shift) as isize;
                let lead = i0.min(0).unsigned_abs().min(len);
                let end = (src_len as isize - i0).clamp(lead as isize, len as isize) as usize;
                let n = end - lead;
                let from = src.wrapping_offset(i0 + lead as isize);
                // SAFETY: the caller guarantees `len` writable elements at each row start.
                let row = unsafe { dst.add(s * ld) };
                zeros(row, lead);
                // SAFETY: lead <= len.
                let to = unsafe { row.add(lead) };
                if n >= L {
                    let mut v = 0;
                    while v + 2 * L <= n {
                        // SAFETY: as in `pack_avx512`.
                        unsafe {
                            let (a, b) = ($load(from.add(v)), $load(from.add(v + L)));
                            $store(to.add(v), a);
                            $store(to.add(v + L), b);
                        }
                        v += 2 * L;
                    }
                    if v + L <= n {
                        // SAFETY: v + L <= n.
                        unsafe { $store(to.add(v), $load(from.add(v))) };
                    }
                    // SAFETY: L <= n.
                    unsafe { $store(to.add(n - L), $load(from.add(n - L))) };
                } else {
                    for i in 0..L {
                        if i < n {
                            // SAFETY: i < n.
                            unsafe { *to.add(i) = *from.add(i) };
                        }
                    }
                }
                // SAFETY: end <= len.
                zeros(unsafe { row.add(end) }, len - end);
            }
        }
    };
}

pack_avx512!(
    f32_avx512_pack,
    f32,
    16,
    __mmask16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_maskz_loadu_ps,
    _mm512_mask_storeu_ps
);
pack_avx512!(
    f64_avx512_pack,
    f64,
    8,
    __mmask8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_maskz_loadu_pd,
    _mm512_mask_storeu_pd
);
pack_avx2!(
    f32_avx2_pack,
    f32,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps
);
pack_avx2!(
    f64_avx2_pack,
    f64,
    4,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd
);

/// For one element type and instruction set: each `(kernel, narrow, MR, NV)` shape as a
/// full-width kernel plus its one-vector (`NV = 1`) narrow variant.
macro_rules! tile_kernels {
    ($t:ty, $features:literal, $lanes:expr, $ops:tt,
     $(($name:ident, $narrow:ident, $mr:expr, $nv:expr)),+ $(,)?) => {
        $(
            tile_kernel!($name, $t, $features, $mr, $nv, $lanes, $ops);
            tile_kernel!($narrow, $t, $features, $mr, 1, $lanes, $ops);
        )+
    };
}

tile_kernels!(
    f32,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    16,
    (
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    ),
    (f32_avx512, f32_avx512_narrow, 8, 3),
    (f32_avx512_row, f32_avx512_row_narrow, 1, 8),
);
tile_kernels!(
    f64,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    8,
    (
        _mm512_setzero_pd,
        _mm512_loadu_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        _mm512_add_pd,
        _mm512_storeu_pd
    ),
    (f64_avx512, f64_avx512_narrow, 8, 3),
    (f64_avx512_row, f64_avx512_row_narrow, 1, 8),
);
tile_kernels!(
    f32,
    "avx2,fma",
    8,
    (
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    ),
    (f32_avx2, f32_avx2_narrow, 6, 2),
    (f32_avx2_row, f32_avx2_row_narrow, 1, 8),
);
tile_kernels!(
    f64,
    "avx2,fma",
    4,
    (
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_add_pd,
        _mm256_storeu_pd
    ),
    (f64_avx2, f64_avx2_narrow, 6, 2),
    (f64_avx2_row, f64_avx2_row_narrow, 1, 8),
);
