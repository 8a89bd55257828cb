//! The FFT path of `convolve2d`/`correlate2d` for float dtypes (overlap-save on tiles).
//!
//! Each tile's padded input is written by the same `Layout::pad_rows` as the direct
//! path's bands, straight into the real or imaginary parts of the tile, so every mode and
//! boundary is handled in one place; two blocks that need no padding (most of a large
//! image) are copied in one pass as whole complex values. Real images put two tiles in
//! one complex transform (real and imaginary parts: the kernel is real, so the two
//! results do not mix) and read both back in one pass; complex images use one tile per
//! transform. Tasks own a range of tiles and one workspace, so memory is bounded by the
//! tile size per thread.
//!
//! The error is relative to the scale of the whole tile (about `eps · log2(n) · max|x| ·
//! Σ|k|`), not to each output element. Inputs whose sums could overflow in the spectrum,
//! or that hold infinities or NaNs (which the transform would spread over a whole tile),
//! are left to the direct kernel.

use rustfft::num_complex::Complex;

use super::spectral::{Engine, FftFloat, Workspace};
use super::tiling::Grid;
use super::{Layout, PadRow};
use crate::error::Result;
use crate::simd::SimdLevel;
use crate::threading::{for_each_task, holds_for_chunks, threads_for_work, SharedOut};

/// Whether every value stays far enough below overflow: the transform sums up to
/// `points · max|x| · Σ|k|`. Non-finite values fail the comparison.
fn safe<'a, T: FftFloat>(
    values: impl IntoIterator<Item = &'a T>,
    kernel: impl IntoIterator<Item = &'a T>,
    points: usize,
) -> bool {
    let l1 = kernel.into_iter().fold(T::zero(), |a, &v| a + v.abs());
    let finite = l1 <= T::MAX; // false for NaN and infinity
    if !finite {
        return false;
    }
    let bound = T::from_usize(4 * points).unwrap_or_else(T::one) * (l1 + T::one());
    let lim = T::MAX / bound;
    // Without an early exit the scan vectorises; NaN fails `<=`, as it should.
    values.into_iter().fold(true, |ok, v| ok & (v.abs() <= lim))
}

/// The real or imaginary parts of one row of a tile.
struct Part<'a, T> {
    row: &'a mut [Complex<T>],
    im: bool,
}

impl<T: Copy> Part<'_, T> {
    fn at(&mut self, j: usize) -> &mut T {
        let c = &mut self.row[j];
        if self.im {
            &mut c.im
        } else {
            &mut c.re
        }
    }
}

impl<T: Copy> PadRow<T> for Part<'_, T> {
    fn fill(&mut self, range: std::ops::Range<usize>, v: T) {
        for j in range {
            *self.at(j) = v;
        }
    }
    fn copy(&mut self, at: usize, values: &[T]) {
        let row = &mut self.row[at..at + values.len()];
        if self.im {
            row.iter_mut().zip(values).for_each(|(c, &v)| c.im = v);
        } else {
            row.iter_mut().zip(values).for_each(|(c, &v)| c.re = v);
        }
    }
    fn set(&mut self, j: usize, v: T) {
        *self.at(j) = v;
    }
}

impl Layout {
    /// Copies the padded input of output block `b` (`[p0, rows, q0, cols]`) into the real
    /// (`im == false`) or imaginary parts of the zeroed `tile`, `n1` wide. Returns the
    /// number of input rows used.
    fn pad_tile<T: FftFloat>(
        &self,
        src: &[T],
        fill: T,
        b: [usize; 4],
        tile: &mut [Complex<T>],
        n1: usize,
        im: bool,
    ) -> usize {
        let part = |row| Part { row, im };
        self.pad_rows(src, fill, b, tile.chunks_exact_mut(n1).map(part));
        b[1] + self.s2[0] - 1
    }

    /// Threads for the FFT path: as many as the direct algorithm's work would get.
    fn fft_threads(&self) -> usize {
        threads_for_work(2.0 * (self.ho * self.wo * self.s2[0] * self.s2[1]) as f64)
    }

    /// Whether [`safe`] holds for every value of `input` and `extra` (the fill values),
    /// with the input scanned in one chunk per thread: the scan reads all of it before any
    /// tile starts, and on one thread it was a serial 3 % of a 2048² call.
    pub(super) fn fft_safe<T: FftFloat>(
        &self,
        input: &[T],
        extra: &[T],
        kernel: &[T],
        points: usize,
    ) -> bool {
        safe(extra, kernel, points)
            && holds_for_chunks(input, self.fft_threads(), |part| safe(part, kernel, points))
    }

    /// Runs `unit(u, workspace)` for every `u < units` over the thread pool; each task
    /// allocates one workspace.
    fn for_each_unit<T, F>(&self, engine: &Engine<T>, units: usize, run: F) -> Result<()>
    where
        T: FftFloat,
        F: Fn(usize, &mut Workspace<T>) + Sync + Send,
    {
        let threads = self.fft_threads();
        let tasks = if threads == 1 { 1 } else { 2 * threads }.min(units);
        let per = units.div_ceil(tasks.max(1));
        for_each_task(units.div_ceil(per.max(1)), threads, |t| {
            let mut ws = engine.workspace()?;
            for u in t * per..((t + 1) * per).min(units) {
                run(u, &mut ws);
            }
            Ok(())
        })
    }

    /// The real FFT path: `out` (`ho × wo`) = valid correlation of the padded `src` with
    /// the `kh × kw` `kernel` (already flipped for convolution).
    pub(super) fn real_fft<T: FftFloat>(
        &self,
        grid: Grid,
        src: &[T],
        fill: T,
        kernel: &[T],
        out: &mut [T],
        level: SimdLevel,
    ) -> Result<()> {
        let engine = Engine::new(grid.n, self.s2, kernel, &[], level)?;
        let (n1, size) = (grid.n[1], [self.ho, self.wo]);
        let shared = SharedOut::new(out);
        self.for_each_unit(&engine, grid.count().div_ceil(2), |u, ws| {
            ws.tile.fill(Complex::default());
            let a = grid.block(2 * u, size);
            let b = (2 * u + 1 < grid.count()).then(|| grid.block(2 * u + 1, size));
            let rows_in =
                self.pad_parts((src, fill, a), b.map(|b| (src, fill, b)), &mut ws.tile, n1);
            let rows_out = a[1].max(b.map_or(0, |b| b[1]));
            engine.correlate(ws, rows_in, rows_out);
            for (r, t) in ws.tile.chunks_exact(n1).take(rows_out).enumerate() {
                // SAFETY: tiles are disjoint blocks of the output and each is written
                // by one task only; these are row r of this unit's one or two blocks.
                let row = |[p0, rows, q0, cols]: [usize; 4]| {
                    (r < rows).then(|| unsafe { shared.slice_mut((p0 + r) * self.wo + q0, cols) })
                };
                match (row(a), b.and_then(row)) {
                    (Some(oa), Some(ob)) if oa.len() == ob.len() => {
                        for ((oa, ob), t) in oa.iter_mut().zip(ob.iter_mut()).zip(t) {
                            (*oa, *ob) = (t.re, t.im);
                        }
                    }
                    (oa, ob) => {
                        for (o, t) in oa.into_iter().flatten().zip(t) {
                            *o = t.re;
                        }
                        for (o, t) in ob.into_iter().flatten().zip(t) {
                            *o = t.im;
                        }
                    }
                }
            }
        })
    }

    /// Copies the padded input `re` reads (a source, its fill value and an output block
    /// `[p0, rows, q0, cols]`) into the real parts of the zeroed `tile`, `n1` wide, and
    /// that of `im` into the imaginary parts. Returns the number of input rows used.
    fn pad_parts<T: FftFloat>(
        &self,
        re: (&[T], T, [usize; 4]),
        im: Option<(&[T], T, [usize; 4])>,
        tile: &mut [Complex<T>],
        n1: usize,
    ) -> usize {
        let (kh, kw, w) = (self.s2[0], self.s2[1], self.s1[1]);
        let (a, b) = (re.2, im.map(|im| im.2));
        match b.map(|b| (b, self.inside(a), self.inside(b))) {
            // Two blocks of one shape that need no padding (most of a large image): whole
            // complex values in one pass, rather than each part in a pass of its own.
            Some((b, Some(sa), Some(sb))) if (a[1], a[3]) == (b[1], b[3]) => {
                let (x, y) = (re.0, im.map_or(re.0, |im| im.0));
                let (rows, wb) = (a[1] + kh - 1, a[3] + kw - 1);
                for (i, t) in tile.chunks_exact_mut(n1).take(rows).enumerate() {
                    let (xr, yr) = (&x[sa + i * w..][..wb], &y[sb + i * w..][..wb]);
                    for ((t, &x), &y) in t[..wb].iter_mut().zip(xr).zip(yr) {
                        *t = Complex::new(x, y);
                    }
                }
                rows
            }
            _ => {
                let rows_re = self.pad_tile(re.0, re.1, a, tile, n1, false);
                let rows_im = im.map_or(0, |(src, fill, b)| {
                    self.pad_tile(src, fill, b, tile, n1, true)
                });
                rows_re.max(rows_im)
            }
        }
    }

    /// The complex FFT path on split planes (`re`, `im`) of the padded input and kernel;
    /// `out` holds interleaved `(re, im)` pairs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn complex_fft<T: FftFloat>(
        &self,
        grid: Grid,
        src: (&[T], &[T]),
        fill: (T, T),
        kernel: (&[T], &[T]),
        out: &mut [T],
        level: SimdLevel,
    ) -> Result<()> {
        let engine = Engine::new(grid.n, self.s2, kernel.0, kernel.1, level)?;
        let (n1, size) = (grid.n[1], [self.ho, self.wo]);
        let shared = SharedOut::new(out);
        self.for_each_unit(&engine, grid.count(), |t, ws| {
            ws.tile.fill(Complex::default());
            let b @ [p0, rows, q0, cols] = grid.block(t, size);
            let (re, im) = ((src.0, fill.0, b), (src.1, fill.1, b));
            let rows_in = self.pad_parts(re, Some(im), &mut ws.tile, n1);
            engine.correlate(ws, rows_in, rows);
            for (r, t) in ws.tile.chunks_exact(n1).take(rows).enumerate() {
                // SAFETY: as in `real_fft`.
                let o = unsafe { shared.slice_mut(2 * ((p0 + r) * self.wo + q0), 2 * cols) };
                for (o, t) in o.chunks_exact_mut(2).zip(t) {
                    o[0] = t.re;
                    o[1] = t.im;
                }
            }
        })
    }
}
