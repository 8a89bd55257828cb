//! Valid 2-D correlation of one `n0 × n1` complex tile with a fixed kernel by FFT:
//! `out = IFFT2(FFT2(tile) · G)` where `G` is the spectrum of the kernel stored reversed
//! (`g[-r mod n0][-s mod n1] = k[r][s]`), so the circular product is the correlation
//! `Σ k[r][s] · x[p + r][q + s]`, free of wrap-around for `p ≤ n0 − kh`, `q ≤ n1 − kw`.
//!
//! Rows are transformed in place; columns in blocks of a few, gathered into a contiguous
//! buffer, multiplied by `G` and transformed back before being scattered, so the tile's
//! spectrum is never stored transposed. `G` (scaled by `1/(n0 n1)`) is computed once per
//! call and shared by every tile and thread.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftDirection, FftNum, FftPlanner, FftPlannerScalar};

use crate::error::Result;
use crate::simd::SimdLevel;
use crate::workspace::try_zeroed;

/// Columns transformed together: enough that each gathered row segment fills a cache line.
const COL_BLOCK: usize = 8;

/// Floating-point types with an FFT path.
pub trait FftFloat: crate::kernels::planar::PlanarElem + FftNum + PartialOrd {
    /// The largest finite value.
    const MAX: Self;
}

impl FftFloat for f32 {
    const MAX: f32 = f32::MAX;
}

impl FftFloat for f64 {
    const MAX: f64 = f64::MAX;
}

/// rustfft's default planner picks AVX (or SSE/NEON) code by itself at run time, which
/// would bypass the `CONVRS_SIMD` cap; at the scalar level its scalar planner is used so
/// that `CONVRS_SIMD=scalar` really runs (and tests) scalar code.
enum Planner<T: FftNum> {
    Auto(FftPlanner<T>),
    Scalar(FftPlannerScalar<T>),
}

impl<T: FftNum> Planner<T> {
    fn new(level: SimdLevel) -> Self {
        match level {
            SimdLevel::Scalar => Planner::Scalar(FftPlannerScalar::new()),
            _ => Planner::Auto(FftPlanner::new()),
        }
    }

    fn plan(&mut self, len: usize, dir: FftDirection) -> Arc<dyn Fft<T>> {
        match self {
            Planner::Auto(p) => p.plan_fft(len, dir),
            Planner::Scalar(p) => p.plan_fft(len, dir),
        }
    }
}

/// The transforms and kernel spectrum for one call.
pub struct Engine<T: FftNum> {
    n: [usize; 2],
    row_fwd: Arc<dyn Fft<T>>,
    row_inv: Arc<dyn Fft<T>>,
    col_fwd: Arc<dyn Fft<T>>,
    col_inv: Arc<dyn Fft<T>>,
    /// `G / (n0 n1)`, column-major: `spectrum[c * n0 + r]`.
    spectrum: Vec<Complex<T>>,
}

/// Per-task buffers.
pub struct Workspace<T> {
    /// The tile, row-major `n0 × n1`.
    pub tile: Vec<Complex<T>>,
    cols: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

impl<T: FftFloat> Engine<T> {
    /// Plans transforms of `n[0] × n[1]` tiles and transforms the `kh × kw` kernel given
    /// by its real and imaginary parts (`im` empty for a real kernel).
    pub fn new(n: [usize; 2], k: [usize; 2], re: &[T], im: &[T], level: SimdLevel) -> Result<Self> {
        let mut planner = Planner::new(level);
        let mut engine = Engine {
            n,
            row_fwd: planner.plan(n[1], FftDirection::Forward),
            row_inv: planner.plan(n[1], FftDirection::Inverse),
            col_fwd: planner.plan(n[0], FftDirection::Forward),
            col_inv: planner.plan(n[0], FftDirection::Inverse),
            spectrum: Vec::new(),
        };
        let mut ws = engine.workspace()?;
        let scale = T::one() / T::from_usize(n[0] * n[1]).unwrap_or_else(T::one);
        for r in 0..k[0] {
            for s in 0..k[1] {
                let i = r * k[1] + s;
                let v = Complex::new(re[i], im.get(i).copied().unwrap_or_else(T::zero));
                ws.tile[((n[0] - r) % n[0]) * n[1] + (n[1] - s) % n[1]] = v * scale;
            }
        }
        let mut spectrum = try_zeroed::<Complex<T>>(n[0] * n[1], "FFT kernel spectrum")?;
        engine.rows(&mut ws.tile, n[0], true, &mut ws.scratch);
        for c0 in (0..n[1]).step_by(COL_BLOCK) {
            let b = COL_BLOCK.min(n[1] - c0);
            let cols = &mut spectrum[c0 * n[0]..(c0 + b) * n[0]];
            gather(&ws.tile, n, c0, b, cols);
            engine.col_fwd.process_with_scratch(cols, &mut ws.scratch);
        }
        engine.spectrum = spectrum;
        Ok(engine)
    }

    pub fn workspace(&self) -> Result<Workspace<T>> {
        let scratch = [&self.row_fwd, &self.row_inv, &self.col_fwd, &self.col_inv]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Ok(Workspace {
            tile: try_zeroed(self.n[0] * self.n[1], "FFT tile")?,
            cols: try_zeroed(COL_BLOCK * self.n[0], "FFT tile")?,
            scratch: try_zeroed(scratch, "FFT scratch")?,
        })
    }

    /// Transforms the first `rows` rows of `tile` in place.
    fn rows(
        &self,
        tile: &mut [Complex<T>],
        rows: usize,
        forward: bool,
        scratch: &mut [Complex<T>],
    ) {
        let f = if forward {
            &self.row_fwd
        } else {
            &self.row_inv
        };
        f.process_with_scratch(&mut tile[..rows * self.n[1]], scratch);
    }

    /// Replaces `ws.tile` by its correlation with the kernel; rows `rows_in..` of the tile
    /// must be zero, and only rows `..rows_out` of the result are computed.
    pub fn correlate(&self, ws: &mut Workspace<T>, rows_in: usize, rows_out: usize) {
        let n = self.n;
        self.rows(&mut ws.tile, rows_in, true, &mut ws.scratch);
        for c0 in (0..n[1]).step_by(COL_BLOCK) {
            let b = COL_BLOCK.min(n[1] - c0);
            let cols = &mut ws.cols[..b * n[0]];
            gather(&ws.tile, n, c0, b, cols);
            self.col_fwd.process_with_scratch(cols, &mut ws.scratch);
            for (v, g) in cols.iter_mut().zip(&self.spectrum[c0 * n[0]..]) {
                *v = *v * *g;
            }
            self.col_inv.process_with_scratch(cols, &mut ws.scratch);
            scatter(cols, n, c0, b, rows_out, &mut ws.tile);
        }
        self.rows(&mut ws.tile, rows_out, false, &mut ws.scratch);
    }
}

/// Columns `c0..c0 + b` of the row-major `n[0] × n[1]` `tile`, one after another.
fn gather<T: Copy>(
    tile: &[Complex<T>],
    n: [usize; 2],
    c0: usize,
    b: usize,
    cols: &mut [Complex<T>],
) {
    if let Some(mut block) = full_block(cols, n[0], b) {
        // A whole block: the column count is a constant, so the loop over it unrolls.
        for (r, row) in tile.chunks_exact(n[1]).enumerate() {
            for (col, &v) in block.iter_mut().zip(&row[c0..c0 + COL_BLOCK]) {
                col[r] = v;
            }
        }
        return;
    }
    for (r, row) in tile.chunks_exact(n[1]).enumerate() {
        for (j, &v) in row[c0..c0 + b].iter().enumerate() {
            cols[j * n[0] + r] = v;
        }
    }
}

/// The first `rows` rows of `b` gathered columns back into columns `c0..c0 + b` of `tile`.
fn scatter<T: Copy>(
    cols: &mut [Complex<T>],
    n: [usize; 2],
    c0: usize,
    b: usize,
    rows: usize,
    tile: &mut [Complex<T>],
) {
    if let Some(block) = full_block(cols, n[0], b) {
        for (r, row) in tile.chunks_exact_mut(n[1]).take(rows).enumerate() {
            for (v, col) in row[c0..c0 + COL_BLOCK].iter_mut().zip(&block) {
                *v = col[r];
            }
        }
        return;
    }
    for (r, row) in tile.chunks_exact_mut(n[1]).take(rows).enumerate() {
        for (j, v) in row[c0..c0 + b].iter_mut().enumerate() {
            *v = cols[j * n[0] + r];
        }
    }
}

/// `cols` as `COL_BLOCK` columns of `n0` when it holds a whole block (`b == COL_BLOCK`).
fn full_block<T>(cols: &mut [T], n0: usize, b: usize) -> Option<[&mut [T]; COL_BLOCK]> {
    if b != COL_BLOCK {
        return None;
    }
    let mut it = cols.chunks_exact_mut(n0);
    let block: [Option<&mut [T]>; COL_BLOCK] = std::array::from_fn(|_| it.next());
    // Every column exists when `cols` holds `COL_BLOCK · n0` elements.
    if block.iter().any(Option::is_none) {
        return None;
    }
    Some(block.map(|c| c.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FFT correlation equals the definition on a tile with row and column tails.
    #[test]
    fn matches_direct_correlation() {
        let (n, k) = ([12usize, 10usize], [3usize, 4usize]);
        let x: Vec<f64> = (0..n[0] * n[1])
            .map(|i| ((i * 37) % 11) as f64 - 5.0)
            .collect();
        let kr: Vec<f64> = (0..k[0] * k[1])
            .map(|i| ((i * 7) % 5) as f64 - 2.0)
            .collect();
        let ki: Vec<f64> = (0..k[0] * k[1])
            .map(|i| ((i * 3) % 4) as f64 - 1.5)
            .collect();
        for level in [SimdLevel::Scalar, crate::simd::level()] {
            let e = Engine::new(n, k, &kr, &ki, level).unwrap();
            let mut ws = e.workspace().unwrap();
            for (t, &v) in ws.tile.iter_mut().zip(&x) {
                *t = Complex::new(v, -v);
            }
            let (ho, wo) = (n[0] - k[0] + 1, n[1] - k[1] + 1);
            e.correlate(&mut ws, n[0], ho);
            for p in 0..ho {
                for q in 0..wo {
                    let mut want = Complex::new(0.0, 0.0);
                    for r in 0..k[0] {
                        for s in 0..k[1] {
                            let xv = x[(p + r) * n[1] + q + s];
                            let kv = Complex::new(kr[r * k[1] + s], ki[r * k[1] + s]);
                            want += kv * Complex::new(xv, -xv);
                        }
                    }
                    let got = ws.tile[p * n[1] + q];
                    assert!((got - want).norm() < 1e-9, "{level:?} {p} {q} {got} {want}");
                }
            }
        }
    }
}
