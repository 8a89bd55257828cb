//! Winograd F(4×4, 3×3) transforms (Lavin & Gray 2016) for 3×3 unit-stride correlation.
//!
//! A 6×6 input window `d` and a 3×3 kernel `g` give a 4×4 block of outputs
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: 36 multiplies instead of 144. Summed over input
//! channels, the element-wise products become 36 independent matrix products
//! `M[ξ] = U[ξ] · V[ξ]` (output channels × input channels times input channels × tiles),
//! which the conv2d algorithm runs on the tile microkernel; this module holds the
//! transforms around them:
//! - `filter`: `U = G g Gᵀ`, computed in f64 and rounded once to the element type;
//! - `gather` then `input`: the windows of each run of tiles along a tile row copied into
//!   a block of tiles, then `V = Bᵀ d B` for the whole block;
//! - `output` then `scatter`: `Y = Aᵀ M A` plus the bias for the block, then each run's
//!   outputs into the output rows, cut at the output's edge.
//!
//! The transforms' coefficients are small integers (input, output) and fractions of 6
//! and 24 (filter); their rounding makes float32 results about 20 times less accurate
//! than the direct sum (float64: about 1e-14 of the largest output), which is why conv2d
//! chooses this algorithm by itself only for float64.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::kernels::ConvFloat;
use crate::simd::SimdLevel;

/// Inputs per window side.
pub const WINDOW: usize = 6;
/// Outputs per tile side.
pub const TILE: usize = 4;
/// Transformed points per tile: the number of matrix products.
pub const POINTS: usize = WINDOW * WINDOW;

type GatherFn<T> = unsafe fn([&[T]; WINDOW], isize, usize, &mut [T], &mut [T], usize);
type InputFn<T> = unsafe fn(&mut [T], usize, &mut [T], usize);
type OutputFn<T> = unsafe fn(&[T], usize, usize, T, &mut [T], &mut [T]);
type ScatterFn<T> = unsafe fn(&[T], usize, usize, [&mut [T]; TILE]);
type FilterFn<T> = unsafe fn(&[T], usize, &mut [f64], &mut [T], usize);

/// The transforms of one element type at one level. The input and output transforms
/// work on whole blocks of tiles (every operand a contiguous run over the tiles, so they
/// vectorise fully); `gather` and `scatter` move a tile row's windows and outputs between
/// the planes and that layout.
#[derive(Clone, Copy)]
pub struct WinogradKernels<T> {
    gather: GatherFn<T>,
    input: InputFn<T>,
    output: OutputFn<T>,
    scatter: ScatterFn<T>,
    filter: FilterFn<T>,
}

macro_rules! kernel_set {
    ($gather:expr, $input:expr, $output:expr, $scatter:expr, $filter:expr) => {
        WinogradKernels {
            gather: $gather,
            input: $input,
            output: $output,
            scatter: $scatter,
            filter: $filter,
        }
    };
}

impl<T: ConvFloat> WinogradKernels<T> {
    pub fn for_level(level: SimdLevel) -> Self {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => kernel_set!(
                x86::gather_avx512::<T>,
                x86::input_avx512::<T>,
                x86::output_avx512::<T>,
                x86::scatter_avx512::<T>,
                x86::filter_avx512::<T>
            ),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => kernel_set!(
                x86::gather_avx2::<T>,
                x86::input_avx2::<T>,
                x86::output_avx2::<T>,
                x86::scatter_avx2::<T>,
                x86::filter_avx2::<T>
            ),
            _ => kernel_set!(
                scalar::gather_windows::<T>,
                scalar::input_tiles::<T>,
                scalar::output_tiles::<T>,
                scalar::scatter_tiles::<T>,
                scalar::filter_tiles::<T>
            ),
        }
    }

    /// Copies the 6×6 input windows of `n` consecutive tiles along a tile row of one
    /// channel into `win[(r·6 + j)·pitch + t]` (row `r`, column `j` of window `t`):
    /// `rows` are the windows' six input rows (an empty row stands for padding), and
    /// window `t` starts at column `col0 + 4t` (columns outside a row read zero). `seg`
    /// holds [`Self::segment_len`]`(n)` elements.
    pub fn gather(
        &self,
        rows: [&[T]; WINDOW],
        col0: isize,
        n: usize,
        seg: &mut [T],
        win: &mut [T],
        pitch: usize,
    ) {
        assert!(seg.len() >= Self::segment_len(n));
        assert!(n == 0 || (n <= pitch && win.len() >= (POINTS - 1) * pitch + n));
        // SAFETY: the level was checked against this CPU when it was chosen; the code is
        // safe Rust otherwise (every access is bounds-checked).
        unsafe { (self.gather)(rows, col0, n, seg, win, pitch) }
    }

    /// The row segment [`Self::gather`] needs for `n` tiles.
    pub fn segment_len(n: usize) -> usize {
        TILE * n + 4
    }

    /// Transforms `count` gathered windows (`win`, pitch `count`; overwritten): point
    /// `ξ` of window `t` goes to `v[ξ·pitch + t]`.
    pub fn input(&self, win: &mut [T], count: usize, v: &mut [T], pitch: usize) {
        assert!(win.len() >= POINTS * count);
        assert!(count == 0 || (count <= pitch && v.len() >= (POINTS - 1) * pitch + count));
        // SAFETY: as in `gather`.
        unsafe { (self.input)(win, count, v, pitch) }
    }

    /// Transforms the products of `count` tiles of one output channel back (point `ξ`
    /// of tile `t` is `m[ξ·pitch + t]`), plus `bias`: output row `i`, column `j` of tile
    /// `t` goes to `y[(4i + j)·count + t]`. `scratch` holds `24·count` elements.
    pub fn output(
        &self,
        m: &[T],
        pitch: usize,
        count: usize,
        bias: T,
        scratch: &mut [T],
        y: &mut [T],
    ) {
        assert!(scratch.len() >= TILE * WINDOW * count && y.len() >= TILE * TILE * count);
        assert!(count == 0 || (count <= pitch && m.len() >= (POINTS - 1) * pitch + count));
        // SAFETY: as in `gather`.
        unsafe { (self.output)(m, pitch, count, bias, scratch, y) }
    }

    /// Moves the outputs of `n` consecutive tiles along a tile row (output row `i`,
    /// column `j` of tile `t` at `y[(4i + j)·pitch + t]`) into their four output rows,
    /// `rows[i][4t + j]`, cut at each row's end (an empty row takes nothing).
    pub fn scatter(&self, y: &[T], pitch: usize, n: usize, rows: [&mut [T]; TILE]) {
        assert!(rows.iter().all(|r| r.len() <= TILE * n));
        assert!(n == 0 || (n <= pitch && y.len() >= (TILE * TILE - 1) * pitch + n));
        // SAFETY: as in `gather`.
        unsafe { (self.scatter)(y, pitch, n, rows) }
    }

    /// The f64 scratch [`Self::filter`] needs for `cg` channels: the taps, and `G g`.
    pub fn filter_scratch_len(cg: usize) -> usize {
        27 * cg
    }

    /// Transforms the 3×3 kernels of `cg` input channels of one output channel (`w`,
    /// OIHW order): point `ξ` of channel `c` goes to `u[ξ·pitch + c]`. `scratch` holds
    /// [`Self::filter_scratch_len`]`(cg)` values.
    pub fn filter(&self, w: &[T], cg: usize, scratch: &mut [f64], u: &mut [T], pitch: usize) {
        assert!(w.len() >= 9 * cg && scratch.len() >= Self::filter_scratch_len(cg));
        assert!(cg == 0 || (cg <= pitch && u.len() >= (POINTS - 1) * pitch + cg));
        // SAFETY: as in `gather`.
        unsafe { (self.filter)(w, cg, scratch, u, pitch) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tile::available_levels;

    /// Pseudo-random values in [-1, 1), rounded to `T`.
    fn values<T: ConvFloat>(n: usize, seed: u64) -> Vec<T> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                T::of((s >> 33) as f64 / (1u64 << 30) as f64 - 1.0)
            })
            .collect()
    }

    /// The transforms together against the definition, in f64: for windows along a row
    /// that starts and ends in the padding, every output of every tile equals the 3×3
    /// correlation of the zero-padded input plus the bias; and each level's transforms
    /// give the scalar reference's bits (no FMA contraction anywhere).
    fn check<T: ConvFloat>(level: SimdLevel, tol: f64) {
        let kern = WinogradKernels::<T>::for_level(level);
        let reference = WinogradKernels::<T>::for_level(SimdLevel::Scalar);
        for (width, col0, n, out_len) in
            [(23, -1, 6, 23), (8, -3, 3, 9), (40, 0, 9, 34), (5, 2, 1, 3)]
        {
            let input: Vec<Vec<T>> = (0..WINDOW).map(|r| values(width, 7 + r as u64)).collect();
            let mut rows: [&[T]; WINDOW] = std::array::from_fn(|r| &input[r][..]);
            rows[4] = &[]; // a padding row
            let g: Vec<T> = values(9, 99);
            let mut scratch = vec![0.0; WinogradKernels::<T>::filter_scratch_len(1)];
            let (mut u, mut u_ref) = (vec![T::ZERO; POINTS], vec![T::ZERO; POINTS]);
            kern.filter(&g, 1, &mut scratch, &mut u, 1);
            reference.filter(&g, 1, &mut scratch, &mut u_ref, 1);
            // Windows at offset 2 of a block of n + 3 tiles, whose other tiles are NaN.
            let (at, count) = (2, n + 3);
            let mut win = vec![T::of(f64::NAN); POINTS * count];
            let mut seg = vec![T::ZERO; WinogradKernels::<T>::segment_len(n)];
            kern.gather(rows, col0, n, &mut seg, &mut win[at..], count);
            let mut win_ref = win.clone();
            let mut v = vec![T::ZERO; POINTS * count];
            kern.input(&mut win, count, &mut v, count);
            let mut v_ref = vec![T::ZERO; POINTS * count];
            reference.input(&mut win_ref, count, &mut v_ref, count);
            let same = |a: &[T], b: &[T]| {
                a.iter()
                    .zip(b)
                    .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits())
            };
            assert!(
                same(&u, &u_ref) && same(&v, &v_ref),
                "{level:?}: transforms differ from scalar"
            );
            let m: Vec<T> = (0..POINTS * count).map(|i| u[i / count] * v[i]).collect();
            let bias = T::of(0.375);
            let mut y = vec![T::ZERO; TILE * TILE * count];
            let mut tmp = vec![T::ZERO; TILE * WINDOW * count];
            kern.output(&m, count, count, bias, &mut tmp, &mut y);
            let mut out = vec![vec![T::of(f64::NAN); out_len]; TILE];
            out[2].clear(); // a row past the output's end
            let [o0, o1, o2, o3] = &mut out[..] else {
                unreachable!()
            };
            kern.scatter(&y[at..], count, n, [o0, o1, o2, o3]);
            let x = |r: usize, col: isize| {
                usize::try_from(col)
                    .ok()
                    .and_then(|c| rows[r].get(c))
                    .map_or(0.0, |v| v.to_f64())
            };
            for (i, row) in out.iter().enumerate() {
                for (q, &got) in row.iter().enumerate() {
                    let mut want = bias.to_f64();
                    for r in 0..3 {
                        for s in 0..3 {
                            want += g[r * 3 + s].to_f64() * x(i + r, col0 + (q + s) as isize);
                        }
                    }
                    let err = (got.to_f64() - want).abs();
                    assert!(
                        err <= tol,
                        "{level:?} width {width} n {n}: y[{i}][{q}] = {} want {want}",
                        got.to_f64()
                    );
                }
            }
        }
    }

    #[test]
    fn every_level_matches_the_definition() {
        for level in available_levels() {
            check::<f32>(level, 2e-5);
            check::<f64>(level, 1e-13);
        }
    }

    #[test]
    fn filter_transform_of_many_channels_matches_one_by_one() {
        let cg = 21;
        let w: Vec<f64> = values(9 * cg, 5);
        for level in available_levels() {
            let kern = WinogradKernels::<f64>::for_level(level);
            let mut scratch = vec![0.0; WinogradKernels::<f64>::filter_scratch_len(cg)];
            let pitch = cg + 3;
            let mut u = vec![0.0; POINTS * pitch];
            kern.filter(&w, cg, &mut scratch, &mut u, pitch);
            for c in 0..cg {
                let mut one = vec![0.0; POINTS];
                kern.filter(&w[9 * c..], 1, &mut scratch, &mut one, 1);
                for xi in 0..POINTS {
                    assert_eq!(
                        u[xi * pitch + c],
                        one[xi],
                        "{level:?} channel {c} point {xi}"
                    );
                }
            }
        }
    }
}
