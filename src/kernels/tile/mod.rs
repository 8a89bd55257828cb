//! The implicit-GEMM tile microkernel shared by the direct and im2col algorithms.
//!
//! One call computes an `mr × nc` tile
//! `C[i][j] = Σ_{k < kt} A[i][k] · B[offs[k] + j]`:
//! row `i` of `A` is given by a pointer (the weights of one output channel, read in place
//! from the OIHW array, or a zero row past the last channel), and row `k` of the `B`
//! operand starts `offs[k]` elements after `b`. For the direct algorithm
//! `offs` lists the shifts of each (channel, tap) inside a padded input band, so `B` is read
//! in place; for im2col `B` is a packed column panel, `width` columns wide (one or more
//! tiles), and `offs[k] = k · width`, packed by [`TileKernel::pack_window`].
//!
//! Each level has two kernels: a wide one (several output channels per tile) and a
//! one-row one, for groups with fewer output channels than the wide kernel's `mr`;
//! [`TileKernels::for_rows`] chooses between them.

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
    bias: *const T,
);

/// Signature of a panel packer; see [`TileKernel::pack_window`] for the contract.
pub type PackFn<T> = unsafe fn(
    dst: *mut T,
    ld: usize,
    rows: usize,
    len: usize,
    src: *const T,
    src_len: usize,
    start: isize,
    shift: usize,
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
    pack: PackFn<T>,
}

impl<T> TileKernel<T> {
    pub const fn new(
        mr: usize,
        nc: usize,
        name: &'static str,
        func: TileFn<T>,
        narrow_nc: usize,
        narrow: TileFn<T>,
        pack: PackFn<T>,
    ) -> Self {
        TileKernel {
            mr,
            nc,
            name,
            func,
            narrow_nc,
            narrow,
            pack,
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
    /// as one longer call, so splitting the reduction this way changes no bit). A non-null
    /// `bias` holds `mr` values, `bias[i]` added to row `i`'s finished sums as they are
    /// stored (one rounding after the sum, as a separate pass would).
    ///
    /// # Safety
    /// `a` points to `mr` pointers to `kt` readable elements each, `offs` to `kt` offsets such that
    /// `b + offs[k] + j` is readable for every `k < kt`, `j < nc`, and `c` to `mr · ldc`
    /// writable (and, with `accumulate`, initialised) elements with `ldc >= nc`, not
    /// overlapping `a` or `b`; `bias` is null or points to `mr` readable elements.
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
        bias: *const T,
    ) {
        debug_assert!(ldc >= self.nc);
        // SAFETY: forwarded contract; `func` was chosen for a level this CPU supports.
        unsafe { (self.func)(kt, a, b, offs, c, ldc, accumulate, bias) }
    }

    /// Packs `rows` rows of `len` elements of a `B` panel, row `s` at `dst[s·ld..]`, from
    /// one input row: element `t` of row `s` is `src[start + s·shift + t]`, zero where that
    /// index is outside `src` (the padding). For im2col at unit stride these are the `kw`
    /// taps of one kernel row over one output-row segment: runs of a few vectors, for
    /// which a call into the C library's `memcpy` costs more than the copy, so this is a
    /// call-free vector loop at the kernel's instruction set.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_window(
        &self,
        dst: &mut [T],
        ld: usize,
        rows: usize,
        len: usize,
        src: &[T],
        start: isize,
        shift: usize,
    ) {
        if rows == 0 || len == 0 {
            return;
        }
        // Every row inside `dst`, and every index start + s·shift + t representable.
        let extent = (rows - 1).checked_mul(ld).and_then(|v| v.checked_add(len));
        assert!(
            extent.is_some_and(|e| e <= dst.len()),
            "panel rows outside dst"
        );
        let reach = (rows - 1)
            .checked_mul(shift)
            .and_then(|v| v.checked_add(len))
            .and_then(|v| isize::try_from(v).ok())
            .and_then(|v| start.checked_add(v));
        assert!(reach.is_some(), "window index overflow");
        // SAFETY: the rows are inside `dst` and `src` holds `src.len()` readable elements
        // (the kernel reads only indices inside it); the indices do not overflow (checked
        // above); `pack` was chosen for a level this CPU supports.
        unsafe {
            (self.pack)(
                dst.as_mut_ptr(),
                ld,
                rows,
                len,
                src.as_ptr(),
                src.len(),
                start,
                shift,
            )
        }
    }
}

/// The kernels of one element type at one level: `wide` blocks several output channels
/// per tile (each `B` load feeds `mr` FMAs), `row` computes one channel over more
/// positions (one FMA per `B` load, but no zero rows).
#[derive(Clone, Copy)]
pub struct TileKernels<T> {
    pub wide: TileKernel<T>,
    pub row: TileKernel<T>,
    /// Time per computed row of `row` relative to `wide`, at the same reduction length and
    /// positions. Measured on Zen 5 (1 thread) with 3×3 conv2d layers of 1 to 12 output
    /// channels per group, direct and im2col; for the scalar set, from `kernel_peak`.
    row_cost: f64,
}

impl<T> TileKernels<T> {
    /// The kernel for groups of `rows` output channels: the wide kernel computes them in
    /// blocks of `mr`, zero rows included; the one-row kernel computes only them, each at
    /// `row_cost`.
    pub fn for_rows(&self, rows: usize) -> TileKernel<T>
    where
        T: Copy,
    {
        let wide_rows = rows.next_multiple_of(self.wide.mr);
        if (rows as f64) * self.row_cost < wide_rows as f64 {
            self.row
        } else {
            self.wide
        }
    }

    /// Both kernels and their narrow variants, for tests.
    pub fn all(&self) -> [TileKernel<T>; 4]
    where
        T: Copy,
    {
        [
            self.wide,
            self.wide.narrowed(),
            self.row,
            self.row.narrowed(),
        ]
    }
}

pub fn kernels_f32(level: SimdLevel) -> TileKernels<f32> {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => TileKernels {
            wide: x86::F32_AVX512,
            row: x86::F32_AVX512_ROW,
            row_cost: 1.75,
        },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => TileKernels {
            wide: x86::F32_AVX2,
            row: x86::F32_AVX2_ROW,
            row_cost: 1.4,
        },
        _ => TileKernels {
            wide: scalar::F32,
            row: scalar::F32_ROW,
            row_cost: 1.1,
        },
    }
}

pub fn kernels_f64(level: SimdLevel) -> TileKernels<f64> {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => TileKernels {
            wide: x86::F64_AVX512,
            row: x86::F64_AVX512_ROW,
            row_cost: 1.75,
        },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => TileKernels {
            wide: x86::F64_AVX2,
            row: x86::F64_AVX2_ROW,
            row_cost: 1.4,
        },
        _ => TileKernels {
            wide: scalar::F64,
            row: scalar::F64_ROW,
            row_cost: 1.1,
        },
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
        // One call of `steps` reduction steps from step `k0` (`rows` point at it) into `c`.
        let run =
            |steps: usize, rows: &[*const T], k0: usize, c: &mut [T], acc: bool, bias: &[T]| {
                assert!(k0 + steps <= kt && rows.len() == mr && c.len() == mr * ldc);
                assert!(bias.is_empty() || bias.len() == mr);
                let bias = if bias.is_empty() {
                    std::ptr::null()
                } else {
                    bias.as_ptr()
                };
                // SAFETY: every row holds `steps` weights from its pointer, `b + offs[k] + j`
                // lies in `b` for every step and j < nc, `c` holds `mr` rows of `ldc`, and a
                // non-empty `bias` one value per row.
                unsafe {
                    kern.run(
                        steps,
                        rows.as_ptr(),
                        b.as_ptr(),
                        offs.as_ptr().add(k0),
                        c.as_mut_ptr(),
                        ldc,
                        acc,
                        bias,
                    )
                }
            };
        let mut c = vec![T::default(); mr * ldc];
        run(kt, &rows, 0, &mut c, false, &[]);
        for i in 0..mr {
            for j in 0..nc {
                let want: f64 = (0..kt)
                    .map(|k| from(a[i * kt + k]) * from(b[offs[k] as usize + j]))
                    .sum();
                assert_eq!(from(c[i * ldc + j]), want, "{} at ({i},{j})", kern.name);
            }
        }
        // With a bias: the same sums, each plus its row's bias in one more rounding.
        let bias: Vec<T> = (0..mr).map(|i| to(i as f64 / 7.0 - 0.3)).collect();
        let mut with_bias = vec![T::default(); mr * ldc];
        run(kt, &rows, 0, &mut with_bias, false, &bias);
        for i in 0..mr {
            for j in 0..nc {
                let want = from(to(from(c[i * ldc + j]) + from(bias[i])));
                let got = from(with_bias[i * ldc + j]);
                assert!(got == want, "{} bias at ({i},{j})", kern.name);
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
        run(kt, &rows, 0, &mut whole, false, &[]);
        run(k1, &rows, 0, &mut split, false, &[]);
        run(kt - k1, &later, k1, &mut split, true, &[]);
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

    fn check_pack<T>(kern: TileKernel<T>, to: fn(f64) -> T)
    where
        T: Copy + PartialEq + std::fmt::Debug,
    {
        let guard = to(-1.0);
        for src_len in [0, 1, 5, 17, 40] {
            let src: Vec<T> = (0..src_len).map(|i| to(i as f64 + 1.0)).collect();
            for len in 0..45 {
                for start in -(len as isize) - 3..src_len as isize + 3 {
                    for (rows, shift) in [(1, 0), (3, 1), (2, 5), (4, 2)] {
                        // Rows inside a larger buffer whose other elements stay untouched.
                        let ld = len + 3;
                        let mut dst = vec![guard; 2 + rows * ld + 20];
                        kern.pack_window(&mut dst[2..], ld, rows, len, &src, start, shift);
                        let want = |i: usize| {
                            let (s, t) = (i.wrapping_sub(2) / ld, i.wrapping_sub(2) % ld);
                            if i < 2 || s >= rows || t >= len {
                                return guard;
                            }
                            let at = start + (s * shift + t) as isize;
                            usize::try_from(at)
                                .ok()
                                .and_then(|at| src.get(at))
                                .map_or(to(0.0), |&x| x)
                        };
                        for (i, &got) in dst.iter().enumerate() {
                            assert_eq!(
                                got,
                                want(i),
                                "{} src {src_len} len {len} start {start} rows {rows} at {i}",
                                kern.name
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_packer_matches_the_definition() {
        for level in available_levels() {
            for kern in kernels_f32(level).all() {
                check_pack(kern, |v| v as f32);
            }
            for kern in kernels_f64(level).all() {
                check_pack(kern, |v| v);
            }
        }
    }

    #[test]
    fn few_channels_per_group_take_the_row_kernel() {
        for level in available_levels() {
            let set = kernels_f32(level);
            let mr = set.wide.mr;
            assert_eq!(set.row.mr, 1);
            // One channel (depthwise): the wide kernel would compute mr − 1 zero rows.
            assert_eq!(set.for_rows(1).mr, 1, "{level:?}");
            // Full blocks waste nothing: the wide kernel shares each B load.
            for rows in [mr, 2 * mr, 64] {
                assert_eq!(set.for_rows(rows).mr, mr, "{level:?} rows {rows}");
            }
            assert_eq!(kernels_f64(level).for_rows(1).mr, 1, "{level:?}");
        }
    }

    #[test]
    fn every_level_matches_the_definition() {
        for level in available_levels() {
            for kern in kernels_f32(level).all() {
                check(kern, |v| v as f32, |v| v as f64);
            }
            for kern in kernels_f64(level).all() {
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
        let kernels = available_levels().into_iter().map(kernels_f32);
        for k in kernels.flat_map(|set| [set.wide, set.row]) {
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
                        std::ptr::null(),
                    )
                };
            }
            let s = t.elapsed().as_secs_f64();
            let gf = 2.0 * (kt * k.mr * k.nc * reps) as f64 / s / 1e9;
            println!("{} {gf:.1} GF/s", k.name);
        }
    }
}
