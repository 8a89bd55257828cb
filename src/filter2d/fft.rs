//! The FFT path of `convolve2d`/`correlate2d` for float dtypes (overlap-save on tiles).
//!
//! Each tile's padded input is built by the same `Layout::pad_block` as the direct
//! path's bands, so every mode and boundary is handled in one place. Real images put two
//! tiles in one complex transform (real and imaginary parts: the kernel is real, so the
//! two results do not mix); complex images use one tile per transform. Tasks own a range
//! of tiles and one workspace, so memory is bounded by the tile size per thread.
//!
//! The error is relative to the scale of the whole tile (about `eps · log2(n) · max|x| ·
//! Σ|k|`), not to each output element. Inputs whose sums could overflow in the spectrum,
//! or that hold infinities or NaNs (which the transform would spread over a whole tile),
//! are left to the direct kernel.

use rustfft::num_complex::Complex;

use super::spectral::{Engine, FftFloat, Workspace};
use super::tiling::Grid;
use super::Layout;
use crate::error::Result;
use crate::simd::SimdLevel;
use crate::threading::{for_each_task, threads_for_work, SharedOut};
use crate::workspace::try_zeroed;

/// Whether every value stays far enough below overflow: the transform sums up to
/// `points · max|x| · Σ|k|`. Non-finite values fail the comparison.
pub fn safe<'a, T: FftFloat>(
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
    values.into_iter().all(|v| v.abs() <= lim)
}

impl Layout {
    /// Copies the padded input of output block `b` (`[p0, rows, q0, cols]`) into the real
    /// (`im == false`) or imaginary parts of the zeroed `tile`, `n1` wide. Returns the
    /// number of input rows used.
    #[allow(clippy::too_many_arguments)]
    fn pad_tile<T: FftFloat>(
        &self,
        src: &[T],
        fill: T,
        b: [usize; 4],
        tile: &mut [Complex<T>],
        n1: usize,
        im: bool,
        scratch: &mut [T],
    ) -> usize {
        let (rows, wb) = (b[1] + self.s2[0] - 1, b[3] + self.s2[1] - 1);
        self.pad_block(src, fill, b[0], b[1], b[2], b[3], scratch, n1);
        for (t, s) in tile
            .chunks_exact_mut(n1)
            .zip(scratch.chunks_exact(n1))
            .take(rows)
        {
            for (t, &s) in t[..wb].iter_mut().zip(&s[..wb]) {
                if im {
                    t.im = s;
                } else {
                    t.re = s;
                }
            }
        }
        rows
    }

    /// Runs `unit(u, workspace, scratch)` for every `u < units` over the thread pool;
    /// each task allocates one workspace and one real `n0 × n1` scratch plane.
    fn for_each_unit<T, F>(
        &self,
        engine: &Engine<T>,
        grid: &Grid,
        units: usize,
        run: F,
    ) -> Result<()>
    where
        T: FftFloat,
        F: Fn(usize, &mut Workspace<T>, &mut [T]) + Sync + Send,
    {
        let flops = 2.0 * (self.ho * self.wo * self.s2[0] * self.s2[1]) as f64;
        let threads = threads_for_work(flops);
        let tasks = if threads == 1 { 1 } else { 2 * threads }.min(units);
        let per = units.div_ceil(tasks.max(1));
        for_each_task(units.div_ceil(per.max(1)), threads, |t| {
            let mut ws = engine.workspace()?;
            let mut scratch = try_zeroed::<T>(grid.n[0] * grid.n[1], "FFT tile")?;
            for u in t * per..((t + 1) * per).min(units) {
                run(u, &mut ws, &mut scratch);
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
        self.for_each_unit(
            &engine,
            &grid,
            grid.count().div_ceil(2),
            |u, ws, scratch| {
                ws.tile.fill(Complex::default());
                let parts: Vec<(bool, [usize; 4])> = [2 * u, 2 * u + 1]
                    .into_iter()
                    .filter(|&t| t < grid.count())
                    .map(|t| (t % 2 == 1, grid.block(t, size)))
                    .collect();
                let mut rows_in = 0;
                for &(im, b) in &parts {
                    rows_in =
                        rows_in.max(self.pad_tile(src, fill, b, &mut ws.tile, n1, im, scratch));
                }
                let rows_out = parts.iter().map(|p| p.1[1]).max().unwrap_or(0);
                engine.correlate(ws, rows_in, rows_out);
                for &(im, [p0, rows, q0, cols]) in &parts {
                    for (r, t) in ws.tile.chunks_exact(n1).take(rows).enumerate() {
                        // SAFETY: tiles are disjoint blocks of the output and each is written
                        // by one task only; this is one row of this tile's block.
                        let o = unsafe { shared.slice_mut((p0 + r) * self.wo + q0, cols) };
                        for (o, t) in o.iter_mut().zip(t) {
                            *o = if im { t.im } else { t.re };
                        }
                    }
                }
            },
        )
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
        self.for_each_unit(&engine, &grid, grid.count(), |t, ws, scratch| {
            ws.tile.fill(Complex::default());
            let b @ [p0, rows, q0, cols] = grid.block(t, size);
            self.pad_tile(src.0, fill.0, b, &mut ws.tile, n1, false, scratch);
            let rows_in = self.pad_tile(src.1, fill.1, b, &mut ws.tile, n1, true, scratch);
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
