//! AVX2+FMA and AVX-512 tile kernels: `MR` broadcast weights × `NV` vectors of `B`, all
//! accumulators in registers (AVX-512: 24 of 32 zmm; AVX2: 12 of 16 ymm), one FMA chain
//! per accumulator.

use std::arch::x86_64::*;

use super::TileKernel;

pub const F32_AVX512: TileKernel<f32> =
    TileKernel::new(8, 48, "avx512-8x48", f32_avx512, 16, f32_avx512_narrow);
pub const F64_AVX512: TileKernel<f64> =
    TileKernel::new(8, 24, "avx512-8x24", f64_avx512, 8, f64_avx512_narrow);
pub const F32_AVX2: TileKernel<f32> =
    TileKernel::new(6, 16, "avx2-6x16", f32_avx2, 8, f32_avx2_narrow);
pub const F64_AVX2: TileKernel<f64> =
    TileKernel::new(6, 8, "avx2-6x8", f64_avx2, 4, f64_avx2_narrow);

/// Expands to one `#[target_feature]` entry point plus its register-blocked body. The
/// body is a macro, not an `#[inline(always)]` generic, so that every intrinsic is
/// compiled inside the target_feature function.
macro_rules! tile_kernel {
    ($name:ident, $t:ty, $features:literal, $mr:expr, $nv:expr, $lanes:expr,
     $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        /// # Safety
        /// See `TileKernel::run`; additionally the CPU must support the enabled features
        /// (guaranteed by `simd::level`).
        #[target_feature(enable = $features)]
        unsafe fn $name(
            kt: usize,
            a: *const *const $t,
            b: *const $t,
            offs: *const isize,
            c: *mut $t,
            ldc: usize,
            accumulate: bool,
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
            for i in 0..MR {
                for j in 0..NV {
                    // SAFETY: the caller guarantees `MR` rows of `ldc >= NV·lanes` elements.
                    unsafe { $store(c.add(i * ldc + j * $lanes), acc[i][j]) };
                }
            }
        }
    };
}

/// The full-width kernel and its one-vector (`NV = 1`) narrow variant.
macro_rules! tile_kernels {
    ($name:ident, $narrow:ident, $t:ty, $features:literal, $mr:expr, $nv:expr, $lanes:expr,
     $($op:ident),*) => {
        tile_kernel!($name, $t, $features, $mr, $nv, $lanes, $($op),*);
        tile_kernel!($narrow, $t, $features, $mr, 1, $lanes, $($op),*);
    };
}

tile_kernels!(
    f32_avx512,
    f32_avx512_narrow,
    f32,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    8,
    3,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);
tile_kernels!(
    f64_avx512,
    f64_avx512_narrow,
    f64,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    8,
    3,
    8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_storeu_pd
);
tile_kernels!(
    f32_avx2,
    f32_avx2_narrow,
    f32,
    "avx2,fma",
    6,
    2,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);
tile_kernels!(
    f64_avx2,
    f64_avx2_narrow,
    f64,
    "avx2,fma",
    6,
    2,
    4,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_storeu_pd
);
