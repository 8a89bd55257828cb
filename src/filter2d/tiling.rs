//! Whether a float `convolve2d`/`correlate2d` goes through the FFT, and with which tiles.
//!
//! The output is cut into a grid of tiles; each tile's `n0 × n1` transform yields
//! `(n0 − kh + 1) × (n1 − kw + 1)` outputs (overlap-save). Transform sizes are lengths
//! rustfft handles fast (see `size_factor`), and a tile stays within `MAX_TILE_BYTES` so
//! that it stays in L2. The grid minimising the modelled transform cost wins, and
//! the FFT is used only when that cost is below the direct kernel's.

use crate::simd::SimdLevel;

/// At most this many bytes per complex tile: larger tiles fall out of L2 and run up to
/// twice slower per point (measured with rustfft's AVX code on Zen 5, 1 MiB L2).
const MAX_TILE_BYTES: usize = 7 << 18;

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

/// Relative cost per `points · log2(points)` of a transform of length `n`, or `None` for
/// lengths rustfft handles slowly. Measured: powers of two are fastest; multiples of 8
/// with up to three 3s and one 5 within 15 %; odd lengths and 5² up to 2.5× slower.
fn size_factor(n: usize) -> Option<f64> {
    let mut m = n;
    let mut count = [0; 3];
    for (c, p) in count.iter_mut().zip([2, 3, 5]) {
        while m.is_multiple_of(p) {
            m /= p;
            *c += 1;
        }
    }
    let ok = m == 1 && count[0] >= 3 && count[1] <= 3 && count[2] <= 1;
    ok.then_some(if count[0] > 0 && n.is_power_of_two() {
        0.85
    } else {
        1.0
    })
}

/// Candidate transform sizes for an axis of `out` outputs and a kernel of `k` taps:
/// `(n, tiles, size_factor)` for each fast `n` up to the first that covers the axis in
/// one tile.
fn axis_sizes(out: usize, k: usize, max_points: usize) -> Vec<(usize, usize, f64)> {
    let mut sizes = Vec::new();
    for n in k.max(8)..=max_points / 8 {
        if let Some(f) = size_factor(n) {
            let v = n - k + 1;
            sizes.push((n, out.div_ceil(v), f));
            if v >= out {
                break;
            }
        }
    }
    sizes
}

/// The cheapest grid for an `out` output and a `k` kernel of `elem`-byte reals, with its
/// cost in units of `points · log2(points)` summed over the tiles.
pub fn best_grid(out: [usize; 2], k: [usize; 2], elem: usize) -> Option<(Grid, f64)> {
    let max_points = MAX_TILE_BYTES / (2 * elem);
    let a = axis_sizes(out[0], k[0], max_points);
    let b = axis_sizes(out[1], k[1], max_points);
    let mut best: Option<(Grid, f64)> = None;
    for &(n0, t0, f0) in &a {
        for &(n1, t1, f1) in &b {
            if n0 * n1 > max_points {
                continue;
            }
            let points = (n0 * n1) as f64;
            let cost = (t0 * t1) as f64 * points * points.log2() * f0 * f1;
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

/// Nanoseconds per unit of `best_grid`'s cost for one complex tile correlation (forward
/// and inverse), measured on Zen 5 under load with rustfft's AVX code; its scalar code
/// is about 3× slower.
fn fft_ns(double: bool, level: SimdLevel) -> f64 {
    let base = if double { 0.50 } else { 0.28 };
    match level {
        SimdLevel::Scalar => 3.0 * base,
        _ => base,
    }
}

/// Nanoseconds per multiply-add of the direct planar kernel at `level` in `same` mode on
/// a large image (measured on Zen 5 under load).
fn direct_ns(double: bool, level: SimdLevel) -> f64 {
    let base = match level {
        SimdLevel::Avx512 => 1.0 / 50.0,
        SimdLevel::Avx2 | SimdLevel::Neon => 1.0 / 34.0,
        SimdLevel::Scalar => 1.0 / 4.0,
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
    // Padding the input and writing the output cost the FFT path about a nanosecond per
    // transformed point, and the tiles hold at least one point per output: kernels
    // whose direct cost per output is below that never take it, and skip the search.
    let per_point = if double { 1.5 } else { 1.0 };
    let direct_per_output =
        (k[0] * k[1]) as f64 * direct_ns(double, level) * if complex { 4.0 } else { 1.0 };
    if direct_per_output <= per_point {
        return None;
    }
    let (grid, cost) = best_grid(out, k, if double { 8 } else { 4 })?;
    let points = (grid.count() * grid.n[0] * grid.n[1]) as f64;
    let one = cost / grid.count() as f64;
    // Tiles (two real ones per transform) and the kernel's spectrum.
    let tiles = if complex { cost } else { 0.5 * cost };
    let fft = (tiles + one) * fft_ns(double, level) + points * per_point;
    let direct = (out[0] * out[1]) as f64 * direct_per_output;
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
            let (g, _) = best_grid(out, k, 8).unwrap();
            for a in 0..2 {
                assert!(size_factor(g.n[a]).is_some());
                assert!(g.n[a] * g.n[1 - a] * 16 <= MAX_TILE_BYTES);
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

    /// The shapes tests/test_signal.py uses for the FFT path do take it, at every level,
    /// so those tests cover the FFT code (and the 9x9 ones the direct kernel with SIMD, where
    /// AVX-512 keeps 11x11 direct too; without AVX-512 the FFT wins from about 11x11).
    #[test]
    fn python_test_shapes_take_the_fft_path() {
        let fft = [
            ([150, 170], [21, 19]),
            ([170, 188], [21, 19]),
            ([130, 152], [21, 19]),
            ([700, 530], [33, 29]),
            ([635, 428], [25, 40]),
            ([350, 587], [40, 25]),
            ([256, 256], [17, 17]),
            ([256, 256], [23, 23]),
            ([300, 280], [31, 31]),
            ([270, 250], [31, 31]),
        ];
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            for double in [false, true] {
                for complex in [false, true] {
                    for (out, k) in fft {
                        let g = choose(out, k, double, complex, level);
                        assert!(
                            g.is_some_and(|g| g.count() > 1 || out[0] > 200),
                            "{out:?} {k:?}"
                        );
                    }
                    if level != SimdLevel::Scalar {
                        let direct: &[usize] = if level == SimdLevel::Avx512 {
                            &[9, 11]
                        } else {
                            &[9]
                        };
                        for &ks in direct {
                            let g = choose([256, 256], [ks, ks], double, false, level);
                            assert_eq!(g, None, "{level:?} {double} {ks}");
                        }
                    }
                }
            }
        }
    }
}
