//! Single-channel "valid" 2-D correlation on an already padded plane:
//! `out[p][q] = init + Σ_{r<kh, s<kw} k[r][s] · x[p + r][q + s]` for `p < ho`, `q < wo`
//! (`init` is depthwise conv2d's bias, zero for `correlate2d`).
//!
//! It serves `convolve2d`/`correlate2d` (every mode and boundary becomes a valid
//! correlation of a padded plane) and depthwise conv2d. Integers wrap exactly as SciPy's
//! do, because the sum is computed in the element type with wrapping arithmetic.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

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

/// How a planar kernel writes its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stores {
    /// Through the caches, for outputs that are read again soon or fit in them.
    Cached,
    /// Whole cache lines with non-temporal stores where the rows allow it (float kernels
    /// on x86; the others store as `Cached`): for outputs much larger than the caches,
    /// whose lines would otherwise be fetched only to be overwritten and then evicted.
    Streaming,
}

impl Stores {
    /// The stores for a thread that writes `bytes` of output: streaming once that share
    /// is twice a core's L2 (1 MiB here). `convolve2d` measured 1.1-2.4× faster with
    /// 2-16 MiB per thread at 1 and 2 threads (compute-bound kernels within ±3 %), and
    /// 4-11 % slower at 1 MiB per thread, whose lines a later row block or the next call
    /// would have found in L2.
    pub fn for_thread_share(bytes: usize) -> Stores {
        const STREAM_BYTES: usize = 2 << 20;
        if bytes >= STREAM_BYTES {
            Stores::Streaming
        } else {
            Stores::Cached
        }
    }
}

/// Signature of a planar kernel: `out = init + valid_correlate(x, k)`; `out` must be
/// `(x.rows - k.rows + 1) × (x.cols - k.cols + 1)`.
pub type PlanarFn<T> = fn(x: Plane<'_, T>, k: Plane<'_, T>, out: PlaneMut<'_, T>, init: T);

/// Element types of the planar kernel, with the arithmetic SciPy uses for them.
pub trait PlanarElem: Copy + Default + Send + Sync + 'static {
    /// `acc + a·b` (wrapping for integers).
    fn mul_add(acc: Self, a: Self, b: Self) -> Self;
    /// The kernel for this type at `level`, writing its output as `stores` says.
    fn planar_kernel(_level: SimdLevel, _stores: Stores) -> PlanarFn<Self> {
        scalar::correlate_valid::<Self>
    }
}

/// Whether `level` has an x86 kernel set, and whether it is the AVX-512 one.
#[cfg(target_arch = "x86_64")]
fn x86_level(level: SimdLevel) -> Option<bool> {
    match level {
        SimdLevel::Avx512 => Some(true),
        SimdLevel::Avx2 => Some(false),
        _ => None,
    }
}

macro_rules! wrapping_elem {
    ($($t:ty),*) => {$(
        impl PlanarElem for $t {
            #[inline(always)]
            fn mul_add(acc: Self, a: Self, b: Self) -> Self {
                acc.wrapping_add(a.wrapping_mul(b))
            }
            fn planar_kernel(level: SimdLevel, _stores: Stores) -> PlanarFn<Self> {
                #[cfg(target_arch = "x86_64")]
                if let Some(avx512) = x86_level(level) {
                    return x86::int_kernel::<Self>(avx512);
                }
                let _ = level;
                scalar::correlate_valid::<Self>
            }
        }
    )*};
}
wrapping_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_elem {
    ($($t:ty => $kernel:ident),*) => {$(
        impl PlanarElem for $t {
            #[inline(always)]
            fn mul_add(acc: Self, a: Self, b: Self) -> Self {
                acc + a * b
            }
            fn planar_kernel(level: SimdLevel, stores: Stores) -> PlanarFn<Self> {
                #[cfg(target_arch = "x86_64")]
                if let Some(avx512) = x86_level(level) {
                    return x86::$kernel(avx512, stores);
                }
                let _ = (level, stores);
                scalar::correlate_valid::<Self>
            }
        }
    )*};
}
float_elem!(f32 => f32_kernel, f64 => f64_kernel);

/// Checks the shape contract of [`PlanarFn`] once, so kernels may index unchecked.
pub fn check_shapes<T>(x: &Plane<'_, T>, k: &Plane<'_, T>, out: &PlaneMut<'_, T>) -> bool {
    fn fits(len: usize, rows: usize, cols: usize, ld: usize) -> bool {
        rows == 0 || cols == 0 || (ld >= cols && (rows - 1) * ld + cols <= len)
    }
    x.rows >= k.rows
        && x.cols >= k.cols
        && out.rows == x.rows - k.rows + 1
        && out.cols == x.cols - k.cols + 1
        && fits(x.data.len(), x.rows, x.cols, x.ld)
        && fits(k.data.len(), k.rows, k.cols, k.ld)
        && fits(out.data.len(), out.rows, out.cols, out.ld)
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
        let f = u8::planar_kernel(crate::simd::level(), Stores::Cached);
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
            0,
        );
        assert_eq!(out[0], 188);
    }

    /// Every level's kernel, with either kind of stores, equals the definition (exact:
    /// small integers in floats) on shapes that exercise full blocks, row tails and
    /// masked column tails, with row pitches larger than the width, no slack after the
    /// inputs, and the whole output buffer compared (a stray write shows). Outputs with a
    /// pitch of whole cache lines start at several offsets from a line, so that
    /// streaming kernels run their cached strip up to the first line-aligned column and
    /// streamed blocks after it (or, when that column lies past the row, cached stores
    /// only).
    fn check_levels<T: PlanarElem + PartialEq + std::fmt::Debug>(to: fn(i64) -> T) {
        let line = 64 / size_of::<T>();
        for level in crate::kernels::tile::available_levels() {
            for stores in [Stores::Cached, Stores::Streaming] {
                let f = T::planar_kernel(level, stores);
                for (ho, wo, kh, kw) in [
                    (1, 1, 1, 1),
                    (7, 70, 3, 3),
                    (13, 33, 5, 2),
                    (6, 64, 1, 7),
                    (20, 131, 11, 4),
                    (2, 5, 9, 17),
                    (9, 40, 2, 3),
                    (5, 17, 3, 1),
                    (11, 50, 4, 6),
                    (9, 77, 5, 5),
                    (3, 9, 5, 2),
                    // Tails of 1 to 4 vectors for every lane count.
                    (4, 61, 3, 3),
                    (7, 29, 2, 5),
                    (3, 125, 4, 1),
                ] {
                    let lined = usize::next_multiple_of(wo, line);
                    for (ldo, shift) in [(wo + 2, 0), (lined, 0), (lined, 1), (lined, line - 3)] {
                        let what = format!("{level:?} {stores:?}");
                        check_one(f, to, [ho, wo, kh, kw], ldo, shift % line, &what);
                    }
                }
            }
        }
    }

    /// `f` against the reference on one shape, the output `ldo` apart and starting
    /// `shift` elements after a cache line.
    fn check_one<T: PlanarElem + PartialEq + std::fmt::Debug>(
        f: PlanarFn<T>,
        to: fn(i64) -> T,
        [ho, wo, kh, kw]: [usize; 4],
        ldo: usize,
        shift: usize,
        what: &str,
    ) {
        let (rows, cols) = (ho + kh - 1, wo + kw - 1);
        let (ldx, ldk) = (cols + 3, kw + 1);
        let x: Vec<T> = (0..(rows - 1) * ldx + cols)
            .map(|i| to((i as i64 * 7919) % 23 - 11))
            .collect();
        let k: Vec<T> = (0..(kh - 1) * ldk + kw)
            .map(|i| to((i as i64 * 31) % 9 - 4))
            .collect();
        let len = (ho - 1) * ldo + wo;
        let mut got = vec![to(99); len + 128];
        let start = got.as_ptr().align_offset(64) + shift;
        let mut want = got.clone();
        let planes = |data| Plane {
            data,
            rows,
            cols,
            ld: ldx,
        };
        let kplane = |data| Plane {
            data,
            rows: kh,
            cols: kw,
            ld: ldk,
        };
        let outs = |data| PlaneMut {
            data,
            rows: ho,
            cols: wo,
            ld: ldo,
        };
        f(
            planes(&x),
            kplane(&k),
            outs(&mut got[start..start + len]),
            to(3),
        );
        scalar::correlate_valid(
            planes(&x),
            kplane(&k),
            outs(&mut want[start..start + len]),
            to(3),
        );
        assert_eq!(
            got, want,
            "{what} {ho}x{wo} k{kh}x{kw} ldo {ldo} shift {shift}"
        );
    }

    #[test]
    fn every_level_matches_the_reference() {
        check_levels::<f32>(|v| v as f32);
        check_levels::<f64>(|v| v as f64);
        check_levels::<i32>(|v| v as i32);
        check_levels::<u8>(|v| v as u8);
        check_levels::<i16>(|v| v as i16);
        check_levels::<u64>(|v| v as u64);
    }
}

#[cfg(test)]
mod peak {
    use super::*;
    /// Throughput of the float kernels (`cargo test --release -- --ignored --nocapture`):
    /// a plane that fits in L2, and one as large as a 512 × 512 image.
    #[test]
    #[ignore]
    fn planar_peak() {
        fn run<T: PlanarElem + From<f32>>(name: &str, rows: usize, cols: usize, kk: usize) {
            let level = crate::simd::level();
            let f = T::planar_kernel(level, Stores::Cached);
            let (xr, xc) = (rows + kk - 1, cols + kk - 1);
            let x = vec![T::from(1.0); xr * xc];
            let k = vec![T::from(0.5); kk * kk];
            let mut out = vec![T::from(0.0); rows * cols];
            let reps = (4e9 / (2.0 * (rows * cols * kk * kk) as f64)) as usize + 1;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                f(
                    Plane {
                        data: &x,
                        rows: xr,
                        cols: xc,
                        ld: xc,
                    },
                    Plane {
                        data: &k,
                        rows: kk,
                        cols: kk,
                        ld: kk,
                    },
                    PlaneMut {
                        data: &mut out,
                        rows,
                        cols,
                        ld: cols,
                    },
                    T::from(0.0),
                );
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let gf = 2.0 * (rows * cols * kk * kk) as f64 / s / 1e9;
            println!("{name} {rows}x{cols} k{kk}: {:.1} us {gf:.1} GF/s", s * 1e6);
        }
        for kk in [3, 5] {
            run::<f32>("f32", 60, 256, kk);
            run::<f32>("f32", 510, 510, kk);
            run::<f64>("f64", 60, 128, kk);
            run::<f64>("f64", 510, 510, kk);
        }
    }
}
