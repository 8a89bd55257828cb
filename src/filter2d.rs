//! `scipy.signal.convolve2d` / `correlate2d` on one plane: the boundary rule builds a
//! padded copy of `in1`, after which every mode is a "valid" correlation with `in2`
//! (flipped for convolution), done by the planar kernel. Complex inputs are four real
//! correlations of the real and imaginary planes.
//!
//! The padded copy is built per band of a few output rows, small enough to stay in cache
//! while the kernel reads it, so the copy costs no extra memory traffic and the workspace
//! is bounded whatever the image size.
//!
//! Float dtypes with large kernels take the FFT path instead (`fft`: overlap-save on
//! tiles padded by the same `Layout::pad_rows`; `spectral`: the tile transform;
//! `tiling`: tile sizes and the measured crossover). Integers never do.

mod fft;
mod spectral;
mod tiling;

pub use spectral::FftFloat;

use crate::error::{value_error, Result};
use crate::kernels::planar::{PlanarElem, PlanarFn, Plane, PlaneMut, Stores};
use crate::simd::SimdLevel;
use crate::threading::{for_each_task, threads_for_work, SharedOut};
use crate::workspace::{checked_product, try_reserved, try_zeroed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Same,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    Fill,
    Wrap,
    Symm,
}

impl Mode {
    pub fn parse(name: &str) -> Result<Mode> {
        match name {
            "full" => Ok(Mode::Full),
            "same" => Ok(Mode::Same),
            "valid" => Ok(Mode::Valid),
            _ => value_error("Acceptable mode flags are 'valid', 'same', or 'full'."),
        }
    }
}

impl Boundary {
    /// The canonical names only: the Python layer has already resolved SciPy's aliases
    /// (`pad`, `circular`, `symmetric`) and raised SciPy's message for unknown ones.
    pub fn parse(name: &str) -> Result<Boundary> {
        match name {
            "fill" => Ok(Boundary::Fill),
            "wrap" => Ok(Boundary::Wrap),
            "symm" => Ok(Boundary::Symm),
            _ => value_error(format!(
                "boundary must be 'fill', 'wrap' or 'symm'; got {name:?}"
            )),
        }
    }
}

/// Output extent and padding before the first input row/column along one axis.
/// Mirrors SciPy's index arithmetic: for convolution `same` centres on `(k-1)/2` from
/// the far side, for correlation from the near side. SciPy sizes the result by the
/// formula even when an input is empty, and NumPy rejects a negative extent.
fn axis(len: usize, k: usize, mode: Mode, flip: bool) -> Result<(usize, usize)> {
    Ok(match mode {
        Mode::Full => match (len + k).checked_sub(1) {
            Some(n) => (n, k.saturating_sub(1)),
            None => return value_error("negative dimensions are not allowed"),
        },
        Mode::Same => (len, if flip { k / 2 } else { k.saturating_sub(1) / 2 }),
        Mode::Valid => {
            if len < k {
                return value_error(
                    "For 'valid' mode, one must be at least as large as the other in every dimension",
                );
            }
            (len - k + 1, 0)
        }
    })
}

/// Index into `0..len` of padded position `i`, `None` for fill. Wrap and symmetric
/// extend periodically however far `i` lies outside (as SciPy 1.17 does, also for
/// kernels larger than the image).
#[inline]
fn source_index(i: isize, len: usize, boundary: Boundary) -> Option<usize> {
    let n = len as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match boundary {
        Boundary::Fill => None,
        Boundary::Wrap => Some(i.rem_euclid(n) as usize),
        Boundary::Symm => {
            let m = i.rem_euclid(2 * n);
            Some(if m < n { m } else { 2 * n - 1 - m } as usize)
        }
    }
}

/// A row of a padded block as [`Layout::pad_rows`] writes it: a slice of the element
/// type, or one part of a row of complex values (the FFT path's tiles).
trait PadRow<T> {
    fn fill(&mut self, range: std::ops::Range<usize>, v: T);
    fn copy(&mut self, at: usize, values: &[T]);
    fn set(&mut self, j: usize, v: T);
}

impl<T: Copy> PadRow<T> for &mut [T] {
    fn fill(&mut self, range: std::ops::Range<usize>, v: T) {
        self[range].fill(v);
    }
    fn copy(&mut self, at: usize, values: &[T]) {
        self[at..at + values.len()].copy_from_slice(values);
    }
    fn set(&mut self, j: usize, v: T) {
        self[j] = v;
    }
}

/// The output shape of `filter2d` for these inputs.
pub fn output_shape(
    in1: [usize; 2],
    in2: [usize; 2],
    mode: Mode,
    flip: bool,
) -> Result<[usize; 2]> {
    let (h, _) = axis(in1[0], in2[0], mode, flip)?;
    let (w, _) = axis(in1[1], in2[1], mode, flip)?;
    Ok([h, w])
}

/// Everything about one call that the bands share.
struct Layout {
    s1: [usize; 2],
    s2: [usize; 2],
    ho: usize,
    wo: usize,
    top: usize,
    left: usize,
    /// Padded row length.
    wp: usize,
    boundary: Boundary,
}

impl Layout {
    fn new(
        s1: [usize; 2],
        s2: [usize; 2],
        mode: Mode,
        flip: bool,
        boundary: Boundary,
    ) -> Result<Layout> {
        let (ho, top) = axis(s1[0], s2[0], mode, flip)?;
        let (wo, left) = axis(s1[1], s2[1], mode, flip)?;
        let wp = wo + s2[1] - 1;
        checked_product(&[ho + s2[0], wp], "padded plane")?;
        Ok(Layout {
            s1,
            s2,
            ho,
            wo,
            top,
            left,
            wp,
            boundary,
        })
    }

    /// Where the padded input of output block `[p0, rows, q0, cols]` starts in `src`, when
    /// all of it lies inside the input (no padding to fill in).
    fn inside(&self, [p0, rows, q0, cols]: [usize; 4]) -> Option<usize> {
        let (r0, c0) = (p0.checked_sub(self.top)?, q0.checked_sub(self.left)?);
        let fits =
            r0 + rows + self.s2[0] - 1 <= self.s1[0] && c0 + cols + self.s2[1] - 1 <= self.s1[1];
        fits.then_some(r0 * self.s1[1] + c0)
    }

    /// Fills `dst` with the padded input that output rows `p0..p0 + rows`, columns
    /// `q0..q0 + cols` read: `rows + kh - 1` rows of `cols + kw - 1` elements, `ld` apart.
    #[allow(clippy::too_many_arguments)]
    fn pad_block<T: Copy>(
        &self,
        src: &[T],
        fill: T,
        p0: usize,
        rows: usize,
        q0: usize,
        cols: usize,
        dst: &mut [T],
        ld: usize,
    ) {
        self.pad_rows(src, fill, [p0, rows, q0, cols], dst.chunks_exact_mut(ld));
    }

    /// [`Layout::pad_block`] into any rows (`dst` yields at least `rows + kh - 1` of them,
    /// each at least `cols + kw - 1` long) of the block `[p0, rows, q0, cols]`.
    fn pad_rows<T: Copy, R: PadRow<T>>(
        &self,
        src: &[T],
        fill: T,
        [p0, rows, q0, cols]: [usize; 4],
        dst: impl Iterator<Item = R>,
    ) {
        let (h, w) = (self.s1[0], self.s1[1]);
        let wb = cols + self.s2[1] - 1;
        // Padded columns `lo..hi` come straight from one input row.
        let lo = self.left.saturating_sub(q0).min(wb);
        let hi = (self.left + w).saturating_sub(q0).min(wb).max(lo);
        for (i, mut d) in dst.take(rows + self.s2[0] - 1).enumerate() {
            match source_index((p0 + i) as isize - self.top as isize, h, self.boundary) {
                None => d.fill(0..wb, fill),
                Some(r) => {
                    let s = &src[r * w..(r + 1) * w];
                    if hi > lo {
                        d.copy(lo, &s[q0 + lo - self.left..q0 + hi - self.left]);
                    }
                    for j in (0..lo).chain(hi..wb) {
                        let c = (q0 + j) as isize - self.left as isize;
                        d.set(j, source_index(c, w, self.boundary).map_or(fill, |c| s[c]));
                    }
                }
            }
        }
    }

    /// Output rows `p0..p0 + rows` into `out` (`rows × wo`). The interior, where every
    /// tap lies inside `src`, is read in place; only the border is copied with padding
    /// (into `scratch`, grown to what the copies need, at most `(rows + kh - 1) ·
    /// pitch(wp)` elements), so the bulk of a large image costs no extra memory traffic
    /// and the scratch is not zeroed beyond the few rows and columns the border needs.
    #[allow(clippy::too_many_arguments)]
    fn correlate_rows<T: Copy + Default>(
        &self,
        func: PlanarFn<T>,
        src: &[T],
        fill: T,
        k: &[T],
        p0: usize,
        rows: usize,
        out: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        let (kh, kw) = (self.s2[0], self.s2[1]);
        let (h, w) = (self.s1[0], self.s1[1]);
        let kplane = Plane {
            data: k,
            rows: kh,
            cols: kw,
            ld: kw,
        };
        let wo = self.wo;
        let padded =
            |scratch: &mut Vec<T>, out: &mut [T], pa: usize, n: usize, q0: usize, cols: usize| {
                if n == 0 || cols == 0 {
                    return;
                }
                let wb = cols + kw - 1;
                let ld = pitch::<T>(wb);
                let len = (n + kh - 1) * ld;
                if scratch.len() < len {
                    // Within the capacity `for_each_band` reserved: never reallocates.
                    scratch.resize(len, T::default());
                }
                self.pad_block(src, fill, pa, n, q0, cols, scratch, ld);
                func(
                    Plane {
                        data: &scratch[..len],
                        rows: n + kh - 1,
                        cols: wb,
                        ld,
                    },
                    kplane,
                    PlaneMut {
                        data: &mut out[(pa - p0) * wo + q0..],
                        rows: n,
                        cols,
                        ld: wo,
                    },
                    T::default(),
                );
            };
        // Interior rows and columns: p - top >= 0 and p - top + kh <= h (likewise q).
        let inner = |lo: usize, len: usize, k: usize, n: usize| {
            let a = lo.min(n);
            (a, (len + lo + 1).saturating_sub(k).min(n).max(a))
        };
        let (r_lo, r_hi) = inner(self.top, h, kh, self.ho);
        let (c_lo, c_hi) = inner(self.left, w, kw, wo);
        let end = p0 + rows;
        let a = r_lo.clamp(p0, end);
        let b = r_hi.clamp(a, end);
        // Rows a multiple of 1 KiB apart share L1 sets; a tall kernel's window of such
        // rows would evict itself, so those images go through the (re-pitched) copy.
        let aliasing = (w * size_of::<T>()).is_multiple_of(1024) && kh + 5 > 12;
        if c_hi == c_lo || aliasing {
            padded(scratch, out, p0, rows, 0, wo);
            return;
        }
        padded(scratch, out, p0, a - p0, 0, wo);
        padded(scratch, out, b, end - b, 0, wo);
        if b > a {
            padded(scratch, out, a, b - a, 0, c_lo);
            padded(scratch, out, a, b - a, c_hi, wo - c_hi);
            let start = (a - self.top) * w + (c_lo - self.left);
            func(
                Plane {
                    data: &src[start..],
                    rows: b - a + kh - 1,
                    cols: c_hi - c_lo + kw - 1,
                    ld: w,
                },
                kplane,
                PlaneMut {
                    data: &mut out[(a - p0) * wo + c_lo..],
                    rows: b - a,
                    cols: c_hi - c_lo,
                    ld: wo,
                },
                T::default(),
            );
        }
    }

    /// The threads a direct correlation with `kernel_area` taps per output runs on.
    fn threads(&self, kernel_area: usize) -> usize {
        threads_for_work(2.0 * (self.ho * self.wo) as f64 * kernel_area as f64)
    }

    /// Splits the output rows into tasks, and each task into bands whose padded copy
    /// stays within a cache-sized budget. Each task reserves (without initialising) one
    /// scratch buffer of `scratch(band_rows)` elements and calls `run(&mut scratch, p0,
    /// rows)` per band; `run` may grow it up to that capacity.
    fn for_each_band<T, S, F>(&self, kernel_area: usize, scratch: S, run: F) -> Result<()>
    where
        T: Copy + Default,
        S: Fn(usize) -> usize + Sync + Send,
        F: Fn(&mut Vec<T>, usize, usize) -> Result<()> + Sync + Send,
    {
        const BAND_BYTES: usize = 256 << 10;
        let threads = self.threads(kernel_area);
        // A few tasks per thread balance uneven progress; one thread needs only one.
        let tasks = if threads == 1 { 1 } else { threads * 4 }.min(self.ho);
        let per_task = self.ho.div_ceil(tasks);
        let row_bytes = scratch(1).saturating_sub(scratch(0)).max(1) * size_of::<T>();
        // At least twice the kernel height, so the halo copied with each band costs at
        // most half again the band itself.
        let band = (BAND_BYTES / row_bytes)
            .saturating_sub(self.s2[0] - 1)
            .max(2 * self.s2[0])
            .max(6)
            .min(per_task);
        checked_product(&[scratch(band), size_of::<T>()], "band workspace")?;
        for_each_task(self.ho.div_ceil(per_task), threads, |t| {
            let (start, end) = (t * per_task, ((t + 1) * per_task).min(self.ho));
            let mut buf = try_reserved::<T>(scratch(band), "band workspace")?;
            let mut p0 = start;
            while p0 < end {
                let rows = band.min(end - p0);
                run(&mut buf, p0, rows)?;
                p0 += rows;
            }
            Ok(())
        })
    }
}

/// Row pitch of a padded copy `cols` wide: one cache line more when the rows would
/// otherwise be a multiple of 1 KiB apart (see `correlate_rows`).
fn pitch<T>(cols: usize) -> usize {
    let bytes = cols * size_of::<T>();
    if bytes.is_multiple_of(1024) {
        cols + 64 / size_of::<T>().max(1)
    } else {
        cols
    }
}

fn flipped<T: Copy>(k: &[T], flip: bool) -> Vec<T> {
    if flip {
        k.iter().rev().copied().collect()
    } else {
        k.to_vec()
    }
}

/// One `convolve2d` / `correlate2d` problem: shapes of `in1` and `in2`, whether `in2`
/// is flipped (convolution), the mode and the boundary rule.
#[derive(Clone, Copy, Debug)]
pub struct Filter2d {
    pub s1: [usize; 2],
    pub s2: [usize; 2],
    pub flip: bool,
    pub mode: Mode,
    pub boundary: Boundary,
}

impl Filter2d {
    /// The result's shape.
    pub fn output_shape(&self) -> Result<[usize; 2]> {
        output_shape(self.s1, self.s2, self.mode, self.flip)
    }

    /// Shape checks shared by the real and complex paths. `Ok(None)` means the result is
    /// already complete (empty, or all zeros for an empty kernel, as SciPy returns).
    fn layout(&self, out_len: usize) -> Result<Option<Layout>> {
        let l = Layout::new(self.s1, self.s2, self.mode, self.flip, self.boundary)?;
        assert_eq!(out_len, l.ho * l.wo, "filter2d output has the wrong size");
        if out_len == 0 || self.s2.contains(&0) {
            return Ok(None);
        }
        if self.s1.contains(&0) && self.boundary != Boundary::Fill {
            // SciPy divides by the zero extent here and crashes; refuse instead.
            return value_error(
                "in1 is empty: boundary 'wrap' and 'symm' need at least one element to repeat",
            );
        }
        Ok(Some(l))
    }

    /// `out = convolve2d(in1, in2)` (flip) or `correlate2d(in1, in2)` (no flip; `in2`
    /// already conjugated by the caller where that matters), for C-contiguous planes.
    pub fn real<T: PlanarElem>(
        &self,
        in1: &[T],
        in2: &[T],
        fill: T,
        out: &mut [T],
        level: SimdLevel,
    ) -> Result<()> {
        let Some(l) = self.layout(out.len())? else {
            out.fill(T::default());
            return Ok(());
        };
        let kernel = flipped(in2, self.flip);
        let area = self.s2[0] * self.s2[1];
        let stores = Stores::for_thread_share(size_of_val(out) / l.threads(area));
        let func = T::planar_kernel(level, stores);
        let shared = SharedOut::new(out);
        let kh = self.s2[0];
        l.for_each_band(
            area,
            |band| (band + kh - 1) * pitch::<T>(l.wp),
            |padded: &mut Vec<T>, p0, rows| {
                // SAFETY: this band alone writes output rows p0..p0 + rows.
                let out_band = unsafe { shared.slice_mut(p0 * l.wo, rows * l.wo) };
                l.correlate_rows(func, in1, fill, &kernel, p0, rows, out_band, padded);
                Ok(())
            },
        )
    }

    /// [`Filter2d::real`] for float dtypes: large kernels on large enough images go
    /// through the FFT (see `tiling::choose`), with an error relative to the output's
    /// scale rather than exact per element.
    pub fn float<T: FftFloat>(
        &self,
        in1: &[T],
        in2: &[T],
        fill: T,
        out: &mut [T],
        level: SimdLevel,
    ) -> Result<()> {
        if let (Some(l), Some(grid)) = (self.layout(out.len())?, self.fft_grid::<T>(false, level)) {
            if l.fft_safe(in1, &[fill], in2, grid.n[0] * grid.n[1]) {
                return l.real_fft(grid, in1, fill, &flipped(in2, self.flip), out, level);
            }
        }
        self.real(in1, in2, fill, out, level)
    }

    /// The FFT tiling for this problem, or `None` when the direct kernel is faster.
    fn fft_grid<T>(&self, complex: bool, level: SimdLevel) -> Option<tiling::Grid> {
        let [ho, wo] = self.output_shape().ok()?;
        tiling::choose([ho, wo], self.s2, size_of::<T>() == 8, complex, level)
    }

    /// The complex counterpart of [`Filter2d::float`] on interleaved `(re, im)` pairs:
    /// `(a + ib)⋆(c + id) = (a⋆c − b⋆d) + i(a⋆d + b⋆c)`, four real planar correlations,
    /// or one complex FFT correlation for large kernels.
    pub fn complex<T: FftFloat>(
        &self,
        in1: &[T],
        in2: &[T],
        fill: (T, T),
        out: &mut [T],
        level: SimdLevel,
    ) -> Result<()> {
        let Some(l) = self.layout(out.len() / 2)? else {
            out.fill(T::default());
            return Ok(());
        };
        let split =
            |v: &[T], part: usize| -> Vec<T> { v.iter().skip(part).step_by(2).copied().collect() };
        let (re1, im1) = (split(in1, 0), split(in1, 1));
        let kre = flipped(&split(in2, 0), self.flip);
        let kim = flipped(&split(in2, 1), self.flip);
        if let Some(grid) = self.fft_grid::<T>(true, level) {
            if l.fft_safe(in1, &[fill.0, fill.1], in2, grid.n[0] * grid.n[1]) {
                return l.complex_fft(grid, (&re1, &im1), fill, (&kre, &kim), out, level);
            }
        }
        // The four planes of a band are read back at once.
        let func = T::planar_kernel(level, Stores::Cached);
        let shared = SharedOut::new(out);
        let kh = self.s2[0];
        l.for_each_band(
            4 * kh * self.s2[1],
            |band| (band + kh - 1) * pitch::<T>(l.wp),
            |padded: &mut Vec<T>, p0, rows| {
                let n = rows * l.wo;
                let mut planes = try_zeroed::<T>(4 * n, "complex band planes")?;
                let (ac, rest) = planes.split_at_mut(n);
                let (bd, rest) = rest.split_at_mut(n);
                let (ad, bc) = rest.split_at_mut(n);
                l.correlate_rows(func, &re1, fill.0, &kre, p0, rows, ac, padded);
                l.correlate_rows(func, &im1, fill.1, &kim, p0, rows, bd, padded);
                l.correlate_rows(func, &re1, fill.0, &kim, p0, rows, ad, padded);
                l.correlate_rows(func, &im1, fill.1, &kre, p0, rows, bc, padded);
                // SAFETY: this band alone writes output rows p0..p0 + rows.
                let out_band = unsafe { shared.slice_mut(2 * p0 * l.wo, 2 * n) };
                for (i, o) in out_band.chunks_exact_mut(2).enumerate() {
                    o[0] = ac[i] - bd[i];
                    o[1] = ad[i] + bc[i];
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_boundaries_reach_past_one_period() {
        assert_eq!(source_index(-5, 2, Boundary::Wrap), Some(1));
        assert_eq!(source_index(7, 3, Boundary::Wrap), Some(1));
        // symmetric: ... 1 0 | 0 1 | 1 0 | 0 1 ...
        assert_eq!(source_index(-1, 2, Boundary::Symm), Some(0));
        assert_eq!(source_index(-3, 2, Boundary::Symm), Some(1));
        assert_eq!(source_index(5, 2, Boundary::Symm), Some(1));
        assert_eq!(source_index(-1, 2, Boundary::Fill), None);
    }

    #[test]
    fn empty_shapes_follow_scipy() {
        assert_eq!(output_shape([0, 3], [2, 2], Mode::Full, true), Ok([1, 4]));
        assert!(output_shape([0, 3], [0, 2], Mode::Full, true).is_err());
        let mut out = vec![0.0f64; 4];
        let mut p = Filter2d {
            s1: [0, 3],
            s2: [2, 2],
            flip: true,
            mode: Mode::Full,
            boundary: Boundary::Fill,
        };
        p.real(&[], &[1.0; 4], 5.0, &mut out, SimdLevel::Scalar)
            .unwrap();
        assert_eq!(out, vec![20.0; 4]);
        p.boundary = Boundary::Wrap;
        assert!(p
            .real(&[], &[1.0; 4], 5.0, &mut out, SimdLevel::Scalar)
            .is_err());
    }
}
