//! The implicit-GEMM tile microkernel shared by the direct and im2col algorithms.
//!
//! One call computes an `mr × nc` tile
//! `C[i][j] = Σ_{k < kt} A[k·mr + i] · B[offs[k] + j]`:
//! `A` holds `mr` output channels of packed weights, interleaved per reduction step, and
//! row `k` of the `B` operand starts `offs[k]` elements after `b`. For the direct algorithm
//! `offs` lists the shifts of each (channel, tap) inside a padded input band, so `B` is read
//! in place; for im2col `B` is a packed column panel and `offs[k] = k · nc`.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::simd::SimdLevel;

/// Signature of a tile microkernel; see [`TileKernel::run`] for the contract.
pub type TileFn<T> =
    unsafe fn(kt: usize, a: *const T, b: *const T, offs: *const isize, c: *mut T, ldc: usize);

#[derive(Clone, Copy)]
pub struct TileKernel<T> {
    /// Output channels per tile (rows of `A`).
    pub mr: usize,
    /// Output positions per tile (columns of `B`).
    pub nc: usize,
    pub name: &'static str,
    func: TileFn<T>,
}

impl<T> TileKernel<T> {
    pub const fn new(mr: usize, nc: usize, name: &'static str, func: TileFn<T>) -> Self {
        TileKernel { mr, nc, name, func }
    }

    /// Computes one tile and overwrites `c[i·ldc + j]` for `i < mr`, `j < nc`.
    ///
    /// # Safety
    /// `a` points to `kt · mr` readable elements, `offs` to `kt` offsets such that
    /// `b + offs[k] + j` is readable for every `k < kt`, `j < nc`, and `c` to `mr · ldc`
    /// writable elements with `ldc >= nc`, not overlapping `a` or `b`.
    #[inline]
    pub unsafe fn run(
        &self,
        kt: usize,
        a: *const T,
        b: *const T,
        offs: *const isize,
        c: *mut T,
        ldc: usize,
    ) {
        debug_assert!(ldc >= self.nc);
        // SAFETY: forwarded contract; `func` was chosen for a level this CPU supports.
        unsafe { (self.func)(kt, a, b, offs, c, ldc) }
    }
}

pub fn select_f32(level: SimdLevel) -> TileKernel<f32> {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::F32_AVX512,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::F32_AVX2,
        _ => scalar::F32,
    }
}

pub fn select_f64(level: SimdLevel) -> TileKernel<f64> {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::F64_AVX512,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::F64_AVX2,
        _ => scalar::F64,
    }
}

/// Every kernel this CPU can run, for tests that must cover each dispatch path.
pub fn available_levels() -> Vec<SimdLevel> {
    let best = crate::simd::detected();
    [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Neon,
    ]
    .into_iter()
    .filter(|&l| crate::simd::capped(best, Some(l)) == l)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(kern: TileKernel<T>, to: fn(f64) -> T, from: fn(T) -> f64)
    where
        T: Copy + Default,
    {
        let (mr, nc, kt) = (kern.mr, kern.nc, 37usize);
        let a: Vec<T> = (0..kt * mr)
            .map(|i| to(((i * 7) % 13) as f64 - 6.0))
            .collect();
        let pitch = nc + 5;
        let b: Vec<T> = (0..kt * pitch + nc)
            .map(|i| to(((i * 5) % 11) as f64 - 5.0))
            .collect();
        // Rows in a scrambled order with odd shifts, as the direct algorithm produces.
        let offs: Vec<isize> = (0..kt)
            .map(|k| (((k * 17) % kt) * pitch + k % 3) as isize)
            .collect();
        let ldc = nc + 3;
        let mut c = vec![T::default(); mr * ldc];
        unsafe {
            kern.run(
                kt,
                a.as_ptr(),
                b.as_ptr(),
                offs.as_ptr(),
                c.as_mut_ptr(),
                ldc,
            )
        };
        for i in 0..mr {
            for j in 0..nc {
                let want: f64 = (0..kt)
                    .map(|k| from(a[k * mr + i]) * from(b[offs[k] as usize + j]))
                    .sum();
                assert_eq!(from(c[i * ldc + j]), want, "{} at ({i},{j})", kern.name);
            }
        }
    }

    #[test]
    fn every_level_matches_the_definition() {
        for level in available_levels() {
            check(select_f32(level), |v| v as f32, |v| v as f64);
            check(select_f64(level), |v| v, |v| v);
        }
    }
}
