//! The implicit-GEMM tile microkernel shared by the direct and im2col algorithms.
//!
//! One call computes an `mr × nc` tile
//! `C[i][j] = Σ_{k < kt} A[i][k] · B[offs[k] + j]`:
//! row `i` of `A` is given by a pointer (the weights of one output channel, read in place
//! from the OIHW array, or a zero row past the last channel), and row `k` of the `B`
//! operand starts `offs[k]` elements after `b`. For the direct algorithm
//! `offs` lists the shifts of each (channel, tap) inside a padded input band, so `B` is read
//! in place; for im2col `B` is a packed column panel and `offs[k] = k · nc`.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::simd::SimdLevel;

/// Signature of a tile microkernel; see [`TileKernel::run`] for the contract.
pub type TileFn<T> = unsafe fn(
    kt: usize,
    a: *const *const T,
    b: *const T,
    offs: *const isize,
    c: *mut T,
    ldc: usize,
    accumulate: bool,
);

#[derive(Clone, Copy)]
pub struct TileKernel<T> {
    /// Output channels per tile (rows of `A`).
    pub mr: usize,
    /// Output positions per tile (columns of `B`).
    pub nc: usize,
    pub name: &'static str,
    func: TileFn<T>,
    /// A kernel for the same `mr` and `narrow_nc` positions (one vector), for the last,
    /// partial tile of a row of tiles: it computes fewer positions that are then dropped.
    pub narrow_nc: usize,
    narrow: TileFn<T>,
}

impl<T> TileKernel<T> {
    pub const fn new(
        mr: usize,
        nc: usize,
        name: &'static str,
        func: TileFn<T>,
        narrow_nc: usize,
        narrow: TileFn<T>,
    ) -> Self {
        TileKernel {
            mr,
            nc,
            name,
            func,
            narrow_nc,
            narrow,
        }
    }

    /// This kernel's narrow variant as a kernel of its own (`nc == narrow_nc`).
    pub fn narrowed(&self) -> Self {
        TileKernel {
            nc: self.narrow_nc,
            func: self.narrow,
            ..*self
        }
    }

    /// Computes one tile and overwrites `c[i·ldc + j]` for `i < mr`, `j < nc`; with
    /// `accumulate`, the sum continues from the values already in `c` (the same FMA chain
    /// as one longer call, so splitting the reduction this way changes no bit).
    ///
    /// # Safety
    /// `a` points to `mr` pointers to `kt` readable elements each, `offs` to `kt` offsets such that
    /// `b + offs[k] + j` is readable for every `k < kt`, `j < nc`, and `c` to `mr · ldc`
    /// writable (and, with `accumulate`, initialised) elements with `ldc >= nc`, not
    /// overlapping `a` or `b`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        kt: usize,
        a: *const *const T,
        b: *const T,
        offs: *const isize,
        c: *mut T,
        ldc: usize,
        accumulate: bool,
    ) {
        debug_assert!(ldc >= self.nc);
        // SAFETY: forwarded contract; `func` was chosen for a level this CPU supports.
        unsafe { (self.func)(kt, a, b, offs, c, ldc, accumulate) }
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
        let rows: Vec<*const T> = (0..mr).map(|i| a[i * kt..].as_ptr()).collect();
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
                rows.as_ptr(),
                b.as_ptr(),
                offs.as_ptr(),
                c.as_mut_ptr(),
                ldc,
                false,
            )
        };
        for i in 0..mr {
            for j in 0..nc {
                let want: f64 = (0..kt)
                    .map(|k| from(a[i * kt + k]) * from(b[offs[k] as usize + j]))
                    .sum();
                assert_eq!(from(c[i * ldc + j]), want, "{} at ({i},{j})", kern.name);
            }
        }
        // The same reduction in two calls, the second continuing from the first, must
        // give the same bits (non-integer data so that rounding happens).
        let a: Vec<T> = (0..kt * mr)
            .map(|i| to((((i * 7) % 13) as f64 - 6.0) / 3.0))
            .collect();
        let rows: Vec<*const T> = (0..mr).map(|i| a[i * kt..].as_ptr()).collect();
        let k1 = 13;
        let later: Vec<*const T> = (0..mr).map(|i| a[i * kt + k1..].as_ptr()).collect();
        let mut whole = vec![T::default(); mr * ldc];
        let mut split = vec![T::default(); mr * ldc];
        unsafe {
            kern.run(
                kt,
                rows.as_ptr(),
                b.as_ptr(),
                offs.as_ptr(),
                whole.as_mut_ptr(),
                ldc,
                false,
            );
            kern.run(
                k1,
                rows.as_ptr(),
                b.as_ptr(),
                offs.as_ptr(),
                split.as_mut_ptr(),
                ldc,
                false,
            );
            kern.run(
                kt - k1,
                later.as_ptr(),
                b.as_ptr(),
                offs.as_ptr().add(k1),
                split.as_mut_ptr(),
                ldc,
                true,
            );
        }
        for i in 0..mr {
            for j in 0..nc {
                assert!(
                    from(whole[i * ldc + j]) == from(split[i * ldc + j]),
                    "{} split at ({i},{j})",
                    kern.name
                );
            }
        }
    }

    #[test]
    fn every_level_matches_the_definition() {
        for level in available_levels() {
            for kern in [select_f32(level), select_f32(level).narrowed()] {
                check(kern, |v| v as f32, |v| v as f64);
            }
            for kern in [select_f64(level), select_f64(level).narrowed()] {
                check(kern, |v| v, |v| v);
            }
        }
    }
}

#[cfg(test)]
mod peak {
    use super::*;
    /// Throughput with `B` in L1 (`cargo test --release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn kernel_peak() {
        for k in available_levels().into_iter().map(select_f32) {
            let kt = 256;
            let a = vec![1.0f32; kt * k.mr];
            let rows: Vec<*const f32> = (0..k.mr).map(|i| a[i * kt..].as_ptr()).collect();
            let b = vec![1.0f32; 4096];
            let offs: Vec<isize> = (0..kt).map(|i| ((i % 16) * 64 + i % 3) as isize).collect();
            let mut c = vec![0f32; k.mr * k.nc];
            let reps = 200000;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                unsafe {
                    k.run(
                        kt,
                        rows.as_ptr(),
                        b.as_ptr(),
                        offs.as_ptr(),
                        c.as_mut_ptr(),
                        k.nc,
                        false,
                    )
                };
            }
            let s = t.elapsed().as_secs_f64();
            let gf = 2.0 * (kt * k.mr * k.nc * reps) as f64 / s / 1e9;
            println!("{} {gf:.1} GF/s", k.name);
        }
    }
}
