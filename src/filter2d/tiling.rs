//! Whether a float `convolve2d`/`correlate2d` goes through the FFT, and with which tiles.
//!
//! The output is cut into a grid of tiles; each tile's `n0 × n1` transform yields
//! `(n0 − kh + 1) × (n1 − kw + 1)` outputs (overlap-save). Transform sizes have only the
//! factors 2, 3 and 5, and a tile holds at most `MAX_TILE` points so that it and its
//! column buffers stay in L2. The grid minimising the modelled transform cost wins, and
//! the FFT is used only when that cost is below the direct kernel's.

use crate::simd::SimdLevel;

/// At most this many points per tile (a 512 × 512 tile is 2 MiB of complex f32).
const MAX_TILE: usize = 1 << 18;

/// A grid of equal tiles covering an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Transform size per axis.
    pub n: [usize; 2],
    /// Outputs per tile per axis (`n − k + 1`).
    pub v: [usize; 2],
    /// Tiles per axis.
    pub tiles: [usize; 2],
}

impl Grid {
    /// Output rows `p0..p0 + rows` and columns `q0..q0 + cols` of tile `t` (row-major
    /// order) of an `out` output: `[p0, rows, q0, cols]`.
    pub fn block(&self, t: usize, out: [usize; 2]) -> [usize; 4] {
        let (p0, q0) = (
            (t / self.tiles[1]) * self.v[0],
            (t % self.tiles[1]) * self.v[1],
        );
        [
            p0,
            self.v[0].min(out[0] - p0),
            q0,
            self.v[1].min(out[1] - q0),
        ]
    }

    pub fn count(&self) -> usize {
        self.tiles[0] * self.tiles[1]
    }
}

fn smooth(mut n: usize) -> bool {
    for p in [2, 3, 5] {
        while n % p == 0 {
            n /= p;
        }
    }
    n == 1
}

/// Candidate transform sizes for an axis of `out` outputs and a kernel of `k` taps:
/// `(n, tiles)` for each smooth `n` up to the first that covers the axis in one tile.
fn axis_sizes(out: usize, k: usize) -> Vec<(usize, usize)> {
    let mut sizes = Vec::new();
    let mut n = k.max(2);
    while n <= MAX_TILE {
        if smooth(n) {
            let v = n - k + 1;
            sizes.push((n, out.div_ceil(v)));
            if v >= out {
                break;
            }
        }
        n += 1;
    }
    sizes
}

/// The cheapest grid for an `out` output and a `k` kernel, with its cost in
/// nanoseconds per complex tile transform pair, estimated (see `FFT_NS`).
pub fn best_grid(out: [usize; 2], k: [usize; 2]) -> Option<(Grid, f64)> {
    let (a, b) = (axis_sizes(out[0], k[0]), axis_sizes(out[1], k[1]));
    let mut best: Option<(Grid, f64)> = None;
    for &(n0, t0) in &a {
        for &(n1, t1) in &b {
            if n0 * n1 > MAX_TILE {
                continue;
            }
            let points = (n0 * n1) as f64;
            let cost = (t0 * t1) as f64 * points * points.log2();
            if best.is_none_or(|(_, c)| cost < c) {
                let grid = Grid {
                    n: [n0, n1],
                    v: [n0 - k[0] + 1, n1 - k[1] + 1],
                    tiles: [t0, t1],
                };
                best = Some((grid, cost));
            }
        }
    }
    best
}

/// Modelled time units of one complex multiply-accumulate-free transform step, in
/// nanoseconds per `points · log2(points)` of a forward + inverse tile correlation,
/// measured on Zen 5 with rustfft's AVX code (the scalar planner is ~3× slower).
fn fft_ns(double: bool, level: SimdLevel) -> f64 {
    let base = if double { 0.60 } else { 0.33 };
    match level {
        SimdLevel::Scalar => 3.0 * base,
        _ => base,
    }
}

/// Nanoseconds per multiply-add of the direct planar kernel at `level` (measured).
fn direct_ns(double: bool, level: SimdLevel) -> f64 {
    let base = match level {
        SimdLevel::Avx512 => 1.0 / 120.0,
        SimdLevel::Avx2 | SimdLevel::Neon => 1.0 / 60.0,
        SimdLevel::Scalar => 1.0 / 8.0,
    };
    if double {
        2.0 * base
    } else {
        base
    }
}

/// The grid to use for an `out` output of a `k` kernel, or `None` when the direct kernel
/// is expected to be faster. `complex` inputs cost four direct correlations but one
/// complex tile; real tiles are transformed two at a time (as real and imaginary parts).
pub fn choose(
    out: [usize; 2],
    k: [usize; 2],
    double: bool,
    complex: bool,
    level: SimdLevel,
) -> Option<Grid> {
    if out.contains(&0) || k.contains(&0) {
        return None;
    }
    let (grid, cost) = best_grid(out, k)?;
    let fft = cost * fft_ns(double, level) * if complex { 1.0 } else { 0.5 };
    let macs = (out[0] * out[1]) as f64 * (k[0] * k[1]) as f64;
    let direct = macs * direct_ns(double, level) * if complex { 4.0 } else { 1.0 };
    (fft < direct).then_some(grid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_the_output_with_smooth_sizes() {
        for (out, k) in [
            ([2048, 2048], [31, 31]),
            ([512, 300], [11, 63]),
            ([7, 1000], [7, 1]),
        ] {
            let (g, _) = best_grid(out, k).unwrap();
            for a in 0..2 {
                assert!(smooth(g.n[a]) && g.n[a] * g.n[1 - a] <= MAX_TILE);
                assert_eq!(g.v[a], g.n[a] - k[a] + 1);
                assert!(g.v[a] * g.tiles[a] >= out[a] && g.v[a] * (g.tiles[a] - 1) < out[a]);
            }
        }
    }

    #[test]
    fn small_kernels_stay_direct() {
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            assert_eq!(choose([2048, 2048], [3, 3], false, false, level), None);
        }
        assert!(choose([2048, 2048], [31, 31], false, false, SimdLevel::Avx512).is_some());
    }
}
