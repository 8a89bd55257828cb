//! Single-channel "valid" 2-D correlation on an already padded plane:
//! `out[p][q] = Σ_{r<kh, s<kw} k[r][s] · x[p + r][q + s]` for `p < ho`, `q < wo`.
//!
//! It serves `convolve2d`/`correlate2d` (every mode and boundary becomes a valid
//! correlation of a padded plane) and depthwise conv2d. Integers wrap exactly as SciPy's
//! do, because the sum is computed in the element type with wrapping arithmetic.

mod scalar;

use crate::simd::SimdLevel;

/// A plane of `rows × cols` elements, rows `ld` apart.
#[derive(Clone, Copy)]
pub struct Plane<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

/// A writable plane.
pub struct PlaneMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

/// Signature of a planar kernel: `out = valid_correlate(x, k)`; `out` must be
/// `(x.rows - k.rows + 1) × (x.cols - k.cols + 1)`.
pub type PlanarFn<T> = fn(x: Plane<'_, T>, k: Plane<'_, T>, out: PlaneMut<'_, T>);

/// Element types of the planar kernel, with the arithmetic SciPy uses for them.
pub trait PlanarElem: Copy + Default + Send + Sync + 'static {
    /// `acc + a·b` (wrapping for integers).
    fn mul_add(acc: Self, a: Self, b: Self) -> Self;
    /// The kernel for this type at `level`.
    fn planar_kernel(_level: SimdLevel) -> PlanarFn<Self> {
        scalar::correlate_valid::<Self>
    }
}

macro_rules! wrapping_elem {
    ($($t:ty),*) => {$(
        impl PlanarElem for $t {
            #[inline(always)]
            fn mul_add(acc: Self, a: Self, b: Self) -> Self {
                acc.wrapping_add(a.wrapping_mul(b))
            }
        }
    )*};
}
wrapping_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

impl PlanarElem for f32 {
    #[inline(always)]
    fn mul_add(acc: Self, a: Self, b: Self) -> Self {
        acc + a * b
    }
}

impl PlanarElem for f64 {
    #[inline(always)]
    fn mul_add(acc: Self, a: Self, b: Self) -> Self {
        acc + a * b
    }
}

/// Checks the shape contract of [`PlanarFn`] once, so kernels may index unchecked.
pub fn check_shapes<T>(x: &Plane<'_, T>, k: &Plane<'_, T>, out: &PlaneMut<'_, T>) -> bool {
    fn fits<T>(len: usize, rows: usize, cols: usize, ld: usize) -> bool {
        rows == 0 || cols == 0 || (ld >= cols && (rows - 1) * ld + cols <= len)
    }
    x.rows >= k.rows
        && x.cols >= k.cols
        && out.rows == x.rows - k.rows + 1
        && out.cols == x.cols - k.cols + 1
        && fits::<T>(x.data.len(), x.rows, x.cols, x.ld)
        && fits::<T>(k.data.len(), k.rows, k.cols, k.ld)
        && fits::<T>(out.data.len(), out.rows, out.cols, out.ld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_wraps_like_scipy() {
        // scipy.signal.correlate2d(np.array([[200, 100]], np.uint8), np.array([[2, 3]], np.uint8), 'valid')
        // == (200*2 + 100*3) mod 256 == 700 mod 256 == 188
        let x = [200u8, 100];
        let k = [2u8, 3];
        let mut out = [0u8];
        let f = u8::planar_kernel(crate::simd::level());
        f(
            Plane {
                data: &x,
                rows: 1,
                cols: 2,
                ld: 2,
            },
            Plane {
                data: &k,
                rows: 1,
                cols: 2,
                ld: 2,
            },
            PlaneMut {
                data: &mut out,
                rows: 1,
                cols: 1,
                ld: 1,
            },
        );
        assert_eq!(out[0], 188);
    }
}
