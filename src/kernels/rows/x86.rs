//! AVX2+FMA and AVX-512 row kernels: `R` broadcast positions × 2 vectors of output
//! channels (or × 1 vector, for groups of one vector's worth of output channels), all
//! accumulators in registers (AVX-512: up to 28 of 32 zmm; AVX2: up to 12 of 16 ymm),
//! one FMA chain per accumulator.

use std::arch::x86_64::*;

use super::scalar;
use super::{RowArgs, RowKernel};
use crate::workspace::CACHE_LINE;

/// Expands to a `#[target_feature]` body generic over the position count `R`, and the
/// entry point that picks `R` (a macro, not an `#[inline(always)]` generic, so that every
/// intrinsic is compiled inside the target_feature function).
///
/// `shapes` lists `(position stride, kernel width)` pairs that get a body of their own
/// with both as constants. With a run-time position stride LLVM steps the broadcast
/// address with a chain of adds, and a rolled kernel-column loop adds four instructions
/// a tap: 24 instructions for the 12 FMAs of a tap at AVX2 against 21. On the 2-vCPU AMD
/// EPYC, whose sibling hyperthread is another tenant's, the core's dispatch width is
/// shared, and while the sibling runs the kernel ran at 55-70 GF/s instead of 99 (ONNX
/// Runtime's, at about 20 instructions a tap, at 80-88); with constants, 85-90. The
/// column step stays a run-time value: given it as a constant, LLVM reuses each
/// broadcast across kernel columns and spills the accumulators (2.8× slower). At AVX-512
/// (on a Xeon with two FMA ports, no sibling tenant) the same bodies gained 0-5 %
/// (`s2` 5 %, `conv1` and `cifar` 2 %).
macro_rules! row_kernel {
    ($name:ident, $t:ty, $features:literal, $lanes:expr, $vecs:literal, [$($r:literal)+],
     shapes [$(($ps:literal, $kw:literal))*],
     ($zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident)) => {
        /// # Safety
        /// See `RowKernel::run`; additionally the CPU must support the enabled features
        /// (guaranteed by `simd::level`).
        unsafe fn $name(r: usize, a: &RowArgs<$t>) {
            /// `PS`, `KW`: the position stride and kernel width, or 0 for `a`'s.
            #[target_feature(enable = $features)]
            unsafe fn body<const R: usize, const PS: usize, const KW: usize>(
                a: &RowArgs<$t>,
            ) {
                let pos_step = if PS == 0 { a.pos_step } else { PS };
                let kw = if KW == 0 { a.kw } else { KW };
                let mut acc = [[$zero(); $vecs]; R];
                let mut w = a.w;
                let ahead = a.ahead.cast::<i8>();
                let ahead_bytes = a.ahead.len() * std::mem::size_of::<$t>();
                let mut asked = 0;
                for i in 0..a.kh {
                    for c in 0..a.channels {
                        if asked < ahead_bytes {
                            // SAFETY: `asked` lies inside `a.ahead`; a prefetch reads
                            // nothing architecturally and cannot fault.
                            unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.add(asked)) };
                            asked += CACHE_LINE;
                        }
                        // SAFETY (this block): the caller guarantees `vecs` vectors
                        // of weights per tap and every input element the sum names.
                        unsafe {
                            let mut x = a.x.add(i * a.kh_step + c * a.channel);
                            for _ in 0..kw {
                                let wv: [_; $vecs] =
                                    std::array::from_fn(|j| $load(w.add(j * $lanes)));
                                for p in 0..R {
                                    let xp = $set1(*x.add(p * pos_step));
                                    for j in 0..$vecs {
                                        acc[p][j] = $fma(xp, wv[j], acc[p][j]);
                                    }
                                }
                                w = w.add($vecs * $lanes);
                                x = x.add(a.kw_step);
                            }
                        }
                    }
                }
                for (p, acc_p) in acc.iter().enumerate() {
                    for (j, &acc_pj) in acc_p.iter().enumerate() {
                        // SAFETY: the caller guarantees `R · vecs · lanes` writable results.
                        unsafe { $store(a.out.add((p * $vecs + j) * $lanes), acc_pj) };
                    }
                }
            }
            /// The body for this call's stride and width.
            ///
            /// # Safety
            /// As `body`.
            #[inline]
            unsafe fn pick<const R: usize>(a: &RowArgs<$t>) {
                // SAFETY (every call): forwarded contract.
                unsafe {
                    $(if a.pos_step == $ps && a.kw == $kw {
                        return body::<R, $ps, $kw>(a);
                    })*
                    body::<R, 0, 0>(a)
                }
            }
            match r {
                // SAFETY: forwarded contract.
                $($r => unsafe { pick::<$r>(a) },)+
                _ => unreachable!("row kernel called for {r} positions"),
            }
        }
    };
}

row_kernel!(f32_avx512, f32, "avx512f,avx2,fma", 16, 2, [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps));
row_kernel!(f64_avx512, f64, "avx512f,avx2,fma", 8, 2, [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd));
row_kernel!(f32_avx2, f32, "avx2,fma", 8, 2, [1 2 3 4 5 6],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps));
row_kernel!(f64_avx2, f64, "avx2,fma", 4, 2, [1 2 3 4 5 6],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm256_setzero_pd, _mm256_loadu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_storeu_pd));
// One vector of output channels, for groups of 16 (8) output channels, which the
// two-vector kernels would compute with half their lanes. At most 14 positions at AVX-512
// as for two vectors: with 28, LLVM kept the position loop rolled and the accumulators
// on the stack (2.7× slower); with 16, 1.2× slower.
row_kernel!(f32_avx512_narrow, f32, "avx512f,avx2,fma", 16, 1,
    [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps));
row_kernel!(f64_avx512_narrow, f64, "avx512f,avx2,fma", 8, 1,
    [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd));
row_kernel!(f32_avx2_narrow, f32, "avx2,fma", 8, 1, [1 2 3 4 5 6 7 8 9 10 11 12],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps));
row_kernel!(f64_avx2_narrow, f64, "avx2,fma", 4, 1, [1 2 3 4 5 6 7 8 9 10 11 12],
    shapes [(1, 3) (2, 3) (1, 5) (2, 7)],
    (_mm256_setzero_pd, _mm256_loadu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_storeu_pd));

/// 8 rows of 8 float32 as 8 columns: pairs of rows interleaved, then quadruples, then
/// the 128-bit halves (`s0` holds columns 0 and 4 of rows 0-3, `s4` the same of rows
/// 4-7, and so on).
#[target_feature(enable = "avx")]
#[inline]
fn columns_f32(r: [__m256; 8]) -> [__m256; 8] {
    let (t0, t1) = (
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
    );
    let (t2, t3) = (
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
    );
    let (t4, t5) = (
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
    );
    let (t6, t7) = (
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    );
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// 16 rows of 16 float32 as 16 columns: pairs of rows interleaved, then quadruples
/// (`u[4k + j]` holds, in 128-bit lane `l`, column `4l + j` of rows `4k..4k + 4`), then
/// the lanes regrouped twice (`v[j]`, `v[j + 4]`: lanes 0/2 and 1/3 of `u[j]` and
/// `u[j + 4]`; the same for rows 8-15 in `v[j + 8]`, `v[j + 12]`).
#[target_feature(enable = "avx512f")]
#[inline]
fn columns_f32x16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for k in 0..4 {
        let (a, b) = (4 * k, 4 * k + 2);
        u[a] = _mm512_shuffle_ps::<0x44>(t[a], t[b]);
        u[a + 1] = _mm512_shuffle_ps::<0xEE>(t[a], t[b]);
        u[a + 2] = _mm512_shuffle_ps::<0x44>(t[a + 1], t[b + 1]);
        u[a + 3] = _mm512_shuffle_ps::<0xEE>(t[a + 1], t[b + 1]);
    }
    let mut v = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        v[j] = _mm512_shuffle_f32x4::<0x88>(u[j], u[j + 4]);
        v[j + 4] = _mm512_shuffle_f32x4::<0xDD>(u[j], u[j + 4]);
        v[j + 8] = _mm512_shuffle_f32x4::<0x88>(u[j + 8], u[j + 12]);
        v[j + 12] = _mm512_shuffle_f32x4::<0xDD>(u[j + 8], u[j + 12]);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for j in 0..8 {
        out[j] = _mm512_shuffle_f32x4::<0x88>(v[j], v[j + 8]);
        out[j + 8] = _mm512_shuffle_f32x4::<0xDD>(v[j], v[j + 8]);
    }
    out
}

/// 4 rows of 4 float64 as 4 columns (`t0` holds columns 0 and 2 of rows 0-1, `t1`
/// columns 1 and 3, `t2` and `t3` the same of rows 2-3).
#[target_feature(enable = "avx")]
#[inline]
fn columns_f64(r: [__m256d; 4]) -> [__m256d; 4] {
    let (t0, t1) = (
        _mm256_unpacklo_pd(r[0], r[1]),
        _mm256_unpackhi_pd(r[0], r[1]),
    );
    let (t2, t3) = (
        _mm256_unpacklo_pd(r[2], r[3]),
        _mm256_unpackhi_pd(r[2], r[3]),
    );
    [
        _mm256_permute2f128_pd::<0x20>(t0, t2),
        _mm256_permute2f128_pd::<0x20>(t1, t3),
        _mm256_permute2f128_pd::<0x31>(t0, t2),
        _mm256_permute2f128_pd::<0x31>(t1, t3),
    ]
}

/// Expands to a `TransposeFn` that moves `B × B` blocks through registers (`$columns`);
/// only blocks narrower than `B` go through the reference.
macro_rules! transposer {
    ($name:ident, $t:ty, $features:literal, $b:literal, $columns:ident, $narrow:path,
     ($zero:ident, $load:ident, $set1:ident, $add:ident, $store:ident)) => {
        /// # Safety
        /// See `super::TransposeFn`; additionally the CPU must support the enabled
        /// features.
        #[target_feature(enable = $features)]
        unsafe fn $name(
            src: &[$t],
            ld: usize,
            rows: usize,
            offsets: &[usize],
            add: Option<&[$t]>,
            dst: *mut $t,
        ) {
            const B: usize = $b;
            let cols = offsets.len();
            if rows < B || cols < B {
                // SAFETY: forwarded contract (the narrower transposer's features are a
                // subset of these).
                unsafe { $narrow(src, ld, rows, offsets, add, dst) };
                return;
            }
            // Block origins that cover every row (column): a last, partial block moves
            // back to end at the edge and writes some elements again, with the same
            // values, instead of leaving them to the scalar reference.
            let origins = |n: usize| (0..n).step_by(B).map(move |o| o.min(n - B));
            // The inner loop walks the longer side, so that its `B` source rows (packing
            // the weights: 32 rows of thousands of taps) or destination rows (storing an
            // output row: 32 channels of up to hundreds of positions) are read or written
            // as streams: the other order made packing `deep`'s weights 1.25× slower and
            // storing `conv1`'s rows 2 % slower overall.
            let rows_outer = cols >= rows;
            let (outer, inner) = if rows_outer {
                (rows, cols)
            } else {
                (cols, rows)
            };
            for o in origins(outer) {
                for i in origins(inner) {
                    let (r0, c0) = if rows_outer { (o, i) } else { (i, o) };
                    let mut r = [$zero(); B];
                    for (i, ri) in r.iter_mut().enumerate() {
                        // SAFETY: rows r0..r0 + B and columns c0..c0 + B lie in `src`
                        // (`(rows − 1)·ld + cols` elements).
                        *ri = unsafe { $load(src.as_ptr().add((r0 + i) * ld + c0)) };
                    }
                    for (c, mut x) in $columns(r).into_iter().enumerate() {
                        if let Some(a) = add {
                            x = $add(x, $set1(a[c0 + c]));
                        }
                        // SAFETY: rows r0..r0 + B of column c0 + c are writable (the
                        // caller's contract).
                        unsafe { $store(dst.add(offsets[c0 + c] + r0), x) };
                    }
                }
            }
        }
    };
}

transposer!(
    transpose_f32,
    f32,
    "avx",
    8,
    columns_f32,
    scalar::transpose,
    (
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    )
);
transposer!(
    transpose_f64,
    f64,
    "avx",
    4,
    columns_f64,
    scalar::transpose,
    (
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_set1_pd,
        _mm256_add_pd,
        _mm256_storeu_pd
    )
);

// 16 × 16 blocks: whole cache lines read from the weights and written to the packed
// blocks (`deep`'s weights packed in 87 µs rather than 105 in 8 × 8 blocks, `pack_speed`;
// `deep` and `conv1` 1.02× faster at 1 thread).
transposer!(
    transpose_f32_avx512,
    f32,
    "avx512f,avx",
    16,
    columns_f32x16,
    transpose_f32,
    (
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    )
);

pub const F32_AVX512: RowKernel<f32> =
    RowKernel::new(32, 14, "avx512-14x32", f32_avx512, transpose_f32_avx512);
pub const F64_AVX512: RowKernel<f64> =
    RowKernel::new(16, 14, "avx512-14x16", f64_avx512, transpose_f64);
pub const F32_AVX2: RowKernel<f32> = RowKernel::new(16, 6, "avx2-6x16", f32_avx2, transpose_f32);
pub const F64_AVX2: RowKernel<f64> = RowKernel::new(8, 6, "avx2-6x8", f64_avx2, transpose_f64);
pub const F32_AVX512_NARROW: RowKernel<f32> = RowKernel::new(
    16,
    14,
    "avx512-14x16",
    f32_avx512_narrow,
    transpose_f32_avx512,
);
pub const F64_AVX512_NARROW: RowKernel<f64> =
    RowKernel::new(8, 14, "avx512-14x8", f64_avx512_narrow, transpose_f64);
pub const F32_AVX2_NARROW: RowKernel<f32> =
    RowKernel::new(8, 12, "avx2-12x8", f32_avx2_narrow, transpose_f32);
pub const F64_AVX2_NARROW: RowKernel<f64> =
    RowKernel::new(4, 12, "avx2-12x4", f64_avx2_narrow, transpose_f64);
