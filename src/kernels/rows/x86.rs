//! AVX2+FMA and AVX-512 row kernels: `R` broadcast positions × 2 vectors of output
//! channels, all accumulators in registers (AVX-512: up to 28 of 32 zmm; AVX2: up to 12
//! of 16 ymm), one FMA chain per accumulator.

use std::arch::x86_64::*;

use super::scalar::pack_part;
use super::{RowArgs, RowKernel};

/// Expands to a `#[target_feature]` body generic over the position count `R`, and the
/// entry point that picks `R` (a macro, not an `#[inline(always)]` generic, so that every
/// intrinsic is compiled inside the target_feature function).
macro_rules! row_kernel {
    ($name:ident, $t:ty, $features:literal, $lanes:expr, [$($r:literal)+],
     ($zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident)) => {
        /// # Safety
        /// See `RowKernel::run`; additionally the CPU must support the enabled features
        /// (guaranteed by `simd::level`).
        unsafe fn $name(r: usize, a: &RowArgs<$t>) {
            #[target_feature(enable = $features)]
            unsafe fn body<const R: usize>(a: &RowArgs<$t>) {
                let mut acc = [[$zero(); 2]; R];
                let mut w = a.w;
                for i in 0..a.kh {
                    for c in 0..a.channels {
                        // SAFETY (this block): the caller guarantees two vectors of
                        // weights per tap and every input element the sum names.
                        unsafe {
                            let mut x = a.x.add(i * a.kh_step + c * a.channel);
                            for _ in 0..a.kw {
                                let w0 = $load(w);
                                let w1 = $load(w.add($lanes));
                                for p in 0..R {
                                    let xp = $set1(*x.add(p * a.pos_step));
                                    acc[p][0] = $fma(xp, w0, acc[p][0]);
                                    acc[p][1] = $fma(xp, w1, acc[p][1]);
                                }
                                w = w.add(2 * $lanes);
                                x = x.add(a.kw_step);
                            }
                        }
                    }
                }
                for p in 0..R {
                    // SAFETY: the caller guarantees `R · 2 · lanes` writable results.
                    unsafe {
                        $store(a.out.add(2 * p * $lanes), acc[p][0]);
                        $store(a.out.add((2 * p + 1) * $lanes), acc[p][1]);
                    }
                }
            }
            match r {
                // SAFETY: forwarded contract.
                $($r => unsafe { body::<$r>(a) },)+
                _ => unreachable!("row kernel called for {r} positions"),
            }
        }
    };
}

row_kernel!(f32_avx512, f32, "avx512f,avx2,fma", 16, [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    (_mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps));
row_kernel!(f64_avx512, f64, "avx512f,avx2,fma", 8, [1 2 3 4 5 6 7 8 9 10 11 12 13 14],
    (_mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd));
row_kernel!(f32_avx2, f32, "avx2,fma", 8, [1 2 3 4 5 6],
    (_mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps));
row_kernel!(f64_avx2, f64, "avx2,fma", 4, [1 2 3 4 5 6],
    (_mm256_setzero_pd, _mm256_loadu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_storeu_pd));

/// Packs whole 8 × 8 blocks (8 rows, 8 taps) through a register transpose; the edges
/// go through the reference.
///
/// # Safety
/// See `RowKernel::pack` (whose checks hold); the CPU supports AVX.
#[target_feature(enable = "avx")]
unsafe fn pack_f32(rows: &[f32], targets: &[usize], v: usize, dst: &mut [f32]) {
    const B: usize = 8;
    let kt = targets.len();
    let channels = rows.len() / kt;
    let (full_j, full_a) = (channels / B * B, kt / B * B);
    for j0 in (0..full_j).step_by(B) {
        for a0 in (0..full_a).step_by(B) {
            // SAFETY: rows j0..j0 + 8 and taps a0..a0 + 8 lie in `rows`; tap a's vector
            // starts at targets[a]·v + j0 with targets[a] < kt and j0 + 8 <= channels <= v,
            // so it lies in `dst` (kt · v elements).
            unsafe {
                let src = rows.as_ptr().add(j0 * kt + a0);
                let r = |i: usize| _mm256_loadu_ps(src.add(i * kt));
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                let (r4, r5, r6, r7) = (r(4), r(5), r(6), r(7));
                // Pairs of rows interleaved, then quadruples, then the 128-bit halves:
                // s0 holds taps 0 and 4 of rows 0-3, s4 the same of rows 4-7, and so on.
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let taps = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                for (t, tap) in taps.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.as_mut_ptr().add(targets[a0 + t] * v + j0), tap);
                }
            }
        }
    }
    pack_part(rows, targets, v, dst, 0..full_j, full_a..kt);
    pack_part(rows, targets, v, dst, full_j..channels, 0..kt);
}

/// [`pack_f32`] for float64: 4 × 4 blocks.
///
/// # Safety
/// See `RowKernel::pack` (whose checks hold); the CPU supports AVX.
#[target_feature(enable = "avx")]
unsafe fn pack_f64(rows: &[f64], targets: &[usize], v: usize, dst: &mut [f64]) {
    const B: usize = 4;
    let kt = targets.len();
    let channels = rows.len() / kt;
    let (full_j, full_a) = (channels / B * B, kt / B * B);
    for j0 in (0..full_j).step_by(B) {
        for a0 in (0..full_a).step_by(B) {
            // SAFETY: as in `pack_f32`, with blocks of 4.
            unsafe {
                let src = rows.as_ptr().add(j0 * kt + a0);
                let r = |i: usize| _mm256_loadu_pd(src.add(i * kt));
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                // t0 holds taps 0 and 2 of rows 0-1, t1 taps 1 and 3, t2 and t3 the same
                // of rows 2-3.
                let (t0, t1) = (_mm256_unpacklo_pd(r0, r1), _mm256_unpackhi_pd(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_pd(r2, r3), _mm256_unpackhi_pd(r2, r3));
                let taps = [
                    _mm256_permute2f128_pd::<0x20>(t0, t2),
                    _mm256_permute2f128_pd::<0x20>(t1, t3),
                    _mm256_permute2f128_pd::<0x31>(t0, t2),
                    _mm256_permute2f128_pd::<0x31>(t1, t3),
                ];
                for (t, tap) in taps.into_iter().enumerate() {
                    _mm256_storeu_pd(dst.as_mut_ptr().add(targets[a0 + t] * v + j0), tap);
                }
            }
        }
    }
    pack_part(rows, targets, v, dst, 0..full_j, full_a..kt);
    pack_part(rows, targets, v, dst, full_j..channels, 0..kt);
}

pub const F32_AVX512: RowKernel<f32> = RowKernel::new(32, 14, "avx512-14x32", f32_avx512, pack_f32);
pub const F64_AVX512: RowKernel<f64> = RowKernel::new(16, 14, "avx512-14x16", f64_avx512, pack_f64);
pub const F32_AVX2: RowKernel<f32> = RowKernel::new(16, 6, "avx2-6x16", f32_avx2, pack_f32);
pub const F64_AVX2: RowKernel<f64> = RowKernel::new(8, 6, "avx2-6x8", f64_avx2, pack_f64);
