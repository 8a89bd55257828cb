//! AVX2+FMA and AVX-512 row kernels: `R` broadcast positions × 2 vectors of output
//! channels, all accumulators in registers (AVX-512: up to 28 of 32 zmm; AVX2: up to 12
//! of 16 ymm), one FMA chain per accumulator.

use std::arch::x86_64::*;

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

pub const F32_AVX512: RowKernel<f32> = RowKernel::new(32, 14, "avx512-14x32", f32_avx512);
pub const F64_AVX512: RowKernel<f64> = RowKernel::new(16, 14, "avx512-14x16", f64_avx512);
pub const F32_AVX2: RowKernel<f32> = RowKernel::new(16, 6, "avx2-6x16", f32_avx2);
pub const F64_AVX2: RowKernel<f64> = RowKernel::new(8, 6, "avx2-6x8", f64_avx2);
