//! conv2d: validated geometry in, NCHW result out. Chooses the algorithm and the kernel set.

mod band;
mod depthwise;
mod direct;
mod im2col;
mod rows;
mod scratch;
mod tiles;
mod winograd;

use crate::error::{value_error, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::winograd::WinogradKernels;
use crate::kernels::ConvFloat;
use crate::simd::SimdLevel;
use crate::threading::{holds_for_chunks, threads_for_work};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Auto,
    Direct,
    Im2col,
    Winograd,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Algorithm> {
        match name {
            "auto" => Ok(Algorithm::Auto),
            "direct" => Ok(Algorithm::Direct),
            "im2col" => Ok(Algorithm::Im2col),
            "winograd" => Ok(Algorithm::Winograd),
            _ => value_error(format!(
                "algorithm must be 'auto', 'direct', 'im2col' or 'winograd'; got {name:?}"
            )),
        }
    }
}

/// The concrete path a call takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Depthwise,
    Direct,
    Rows,
    Im2col,
    Winograd,
}

/// What the row algorithm's kernel for a layer asks of it: its output channels per block,
/// and the shortest reduction (taps per output) for which it beats the band algorithm.
#[derive(Clone, Copy, Debug)]
struct RowFit {
    lanes: usize,
    min_taps: usize,
}

impl RowFit {
    /// The two-vector kernel of `lanes` channels: 144 taps (3×3 over 16 channels was 5 %
    /// faster than the band algorithm; a 1×1 over 128 channels, whose input the band
    /// algorithm uses as it is, 11 % slower; 5×5 over 3 channels into 32, 6 % slower).
    fn wide(lanes: usize) -> RowFit {
        RowFit {
            lanes,
            min_taps: 144,
        }
    }

    /// For groups of `channels` output channels at `level`. The one-vector kernel, whose
    /// alternative is a band algorithm computing half-empty tiles, pays from 64 taps
    /// (AVX-512 float32, one thread: 5×5 over 3 channels into 16, `cifar`, 1.5-5.6 %
    /// faster, on 112×112 7 %; 3×3 over 32 channels into 16, 7-10 %; AVX2 with 8
    /// channels 15-20 %).
    fn of<T: ConvFloat>(level: SimdLevel, channels: usize) -> RowFit {
        let kernels = T::row_kernels(level);
        let lanes = kernels.for_channels(channels).v;
        if lanes < kernels.wide.v {
            RowFit {
                lanes,
                min_taps: 64,
            }
        } else {
            RowFit::wide(lanes)
        }
    }
}

fn choose(g: &ConvGeometry, algo: Algorithm, row: RowFit, elem: usize) -> Path {
    match algo {
        // Depthwise at unit stride is a set of planar correlations: the planar kernel is a
        // direct algorithm, and far faster than one-channel GEMM tiles.
        Algorithm::Direct | Algorithm::Auto if depthwise::applies(g) => Path::Depthwise,
        Algorithm::Winograd => Path::Winograd,
        // 2.25 multiplies per output and channel instead of 9 (float64 only: see
        // `winograd::suits`).
        Algorithm::Auto if winograd::suits(g, elem) => Path::Winograd,
        Algorithm::Direct | Algorithm::Auto if rows_suit(g, row, elem) => Path::Rows,
        Algorithm::Direct => Path::Direct,
        Algorithm::Im2col => Path::Im2col,
        // The direct algorithm's band spans the whole dilated kernel; when that extent
        // dwarfs both the input and the output (huge dilations), im2col's per-tile panel
        // is the only bounded workspace.
        Algorithm::Auto if direct_band_is_disproportionate(g) => Path::Im2col,
        // The direct algorithm copies 1×1 unit-stride inputs once without padding and
        // every other shape into a padded band once; im2col copies each input kh·kw times.
        Algorithm::Auto => Path::Direct,
    }
}

/// Whether the row algorithm (output channels along the lanes) should replace the band
/// algorithm (positions along the lanes) for a direct convolution with `lanes` output
/// channels per row-kernel block. It packs the weights on every call and transposes each
/// output row on its way out; in exchange it computes no halo column, no tail lane and no
/// padded kernel row. Measured (AVX-512, one thread): `r3x3` 3-5 %, `deep` 4-6 %, `s2`
/// 8-12 %, `conv1` 4-7 % faster. It needs:
/// - full blocks of output channels (a partial block computes zero lanes);
/// - a reduction long enough to pay for the transposed store (see [`RowFit`]), and more
///   than one tap per channel below 144 taps (the band algorithm uses a 1×1 layer's
///   input without padding or halo);
/// - enough positions to pay for packing the weights, which costs about as much as
///   computing 16 positions (64 positions were 6-10 % slower, 100 were 6 % faster);
/// - padding no wider than the input, since every band row carries it;
/// - bands of several rows that fit L2, in column strips on wide images (`big` in whole
///   rows, 2 MiB bands in L3, was 12-17 % slower; in strips as fast at 1 thread and
///   1.11× faster at 2).
fn rows_suit(g: &ConvGeometry, row: RowFit, elem: usize) -> bool {
    let kt = g.c_in_per_group() * g.kh * g.kw;
    g.c_out_per_group().is_multiple_of(row.lanes)
        && kt >= row.min_taps
        && (kt >= 144 || g.kh * g.kw > 1)
        && g.n * g.h_out * g.w_out >= 96
        && g.pad_left + g.pad_right <= g.w
        && g.pad_top + g.pad_bottom <= g.h
        && rows::band_rows(g, elem) >= rows::MIN_BAND_ROWS.min(g.h_out)
}

/// Whether the direct algorithm's padded band would be far larger than the input and
/// output it serves: its rows are `w_out + dw·(kw−1)/sw` long and a band carries
/// `dh·(kh−1)/sh` halo rows, both unbounded in the dilation.
fn direct_band_is_disproportionate(g: &ConvGeometry) -> bool {
    let pitch = g.w_out + g.dw * (g.kw - 1) / g.sw;
    let halo_rows = g.dh * (g.kh - 1) / g.sh;
    pitch > 4 * (g.w + g.w_out) + 256 || halo_rows > 4 * (g.h + g.h_out) + 256
}

/// Computes `y = conv2d(x, w) + bias` on contiguous NCHW `x`, OIHW `w` and NCHW `y`.
pub fn conv2d<T: ConvFloat>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    algo: Algorithm,
    level: SimdLevel,
) -> Result<()> {
    let [n, c, h, wd] = [g.n, g.c_in, g.h, g.w];
    assert_eq!(x.len(), n * c * h * wd, "input length");
    assert_eq!(
        w.len(),
        g.c_out * g.c_in_per_group() * g.kh * g.kw,
        "weight length"
    );
    assert_eq!(
        y.len(),
        g.output_shape().iter().product::<usize>(),
        "output length"
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c_out, "bias length");
    }
    if algo == Algorithm::Winograd && !winograd::applies(g) {
        return value_error(format!(
            "algorithm='winograd' needs a 3x3 kernel with stride 1 and dilation 1; got a \
             {}x{} kernel, stride ({}, {}), dilation ({}, {})",
            g.kh, g.kw, g.sh, g.sw, g.dh, g.dw
        ));
    }
    if y.is_empty() {
        return Ok(());
    }
    if g.c_in_per_group() == 0 {
        // Nothing to reduce over: the result is the bias, broadcast.
        let plane = g.h_out * g.w_out;
        for (i, v) in y.iter_mut().enumerate() {
            *v = bias.map_or(T::ZERO, |b| b[(i / plane) % g.c_out]);
        }
        return Ok(());
    }
    conv2d_on(g, x, w, bias, y, algo, level, threads_for_work(g.flops()))
}

/// [`conv2d`] on `threads` threads, after the checks and special cases.
#[allow(clippy::too_many_arguments)]
fn conv2d_on<T: ConvFloat>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    algo: Algorithm,
    level: SimdLevel,
    threads: usize,
) -> Result<()> {
    let (row, elem) = (
        RowFit::of::<T>(level, g.c_out_per_group()),
        std::mem::size_of::<T>(),
    );
    let mut path = choose(g, algo, row, elem);
    // Winograd's transforms mix every input of a 6×6 window into all 16 outputs of its
    // tile, so one inf or NaN would spread to outputs whose sums never see it: such
    // data takes the direct algorithm, which leaves them where the definition puts them.
    let finite = |v: &[T]| holds_for_chunks(v, threads, all_finite);
    if path == Path::Winograd && !(finite(x) && finite(w)) {
        path = choose(g, Algorithm::Direct, row, elem);
    }
    run_path(g, x, w, bias, y, path, level, threads)
}

/// Whether every value is finite: `v · 0` is ±0 for finite `v` and NaN otherwise, summed
/// in eight independent lanes so that the loop vectorises.
fn all_finite<T: ConvFloat>(v: &[T]) -> bool {
    let mut acc = [T::ZERO; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = *a + x * T::ZERO;
        }
    }
    acc.iter().chain(rest).all(|&a| a * T::ZERO == T::ZERO)
}

/// [`conv2d_on`] on a given path.
#[allow(clippy::too_many_arguments)]
fn run_path<T: ConvFloat>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    path: Path,
    level: SimdLevel,
    threads: usize,
) -> Result<()> {
    let kern = T::tile_kernel(level, g.c_out_per_group());
    match path {
        Path::Depthwise => depthwise::conv2d(g, x, w, bias, y, threads, level),
        Path::Direct => direct::conv2d(g, &kern, x, w, bias, y, threads),
        Path::Rows => {
            let row_kernel = T::row_kernels(level).for_channels(g.c_out_per_group());
            rows::conv2d(g, &row_kernel, x, w, bias, y, threads)
        }
        Path::Im2col => im2col::conv2d(g, &kern, x, w, bias, y, threads),
        Path::Winograd => {
            let wino = WinogradKernels::for_level(level);
            winograd::conv2d(g, &kern, &wino, x, w, bias, y, threads)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;
    use crate::kernels::tile::available_levels;

    /// Deterministic pseudo-random numbers in [-1, 1).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn unit(&mut self) -> f64 {
            (self.next() as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        }
    }

    /// The definition, in f64: every output is the dot product of its zero-padded,
    /// strided, dilated receptive field with the kernel of its group.
    fn reference(g: &ConvGeometry, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
        let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
        let mut y = vec![0.0; g.output_shape().iter().product()];
        for n in 0..g.n {
            for k in 0..g.c_out {
                let gi = k / kg;
                for p in 0..g.h_out {
                    for q in 0..g.w_out {
                        let mut acc = bias.map_or(0.0, |b| b[k]);
                        for c in 0..cg {
                            for r in 0..g.kh {
                                for s in 0..g.kw {
                                    let row = (p * g.sh + r * g.dh) as isize - g.pad_top as isize;
                                    let col = (q * g.sw + s * g.dw) as isize - g.pad_left as isize;
                                    if row < 0
                                        || col < 0
                                        || row >= g.h as isize
                                        || col >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.c_in + gi * cg + c) * g.h + row as usize)
                                        * g.w
                                        + col as usize;
                                    acc += x[xi] * w[((k * cg + c) * g.kh + r) * g.kw + s];
                                }
                            }
                        }
                        y[((n * g.c_out + k) * g.h_out + p) * g.w_out + q] = acc;
                    }
                }
            }
        }
        y
    }

    fn random_geometry(rng: &mut Lcg, case: usize) -> ConvGeometry {
        loop {
            let groups = [1, 1, 1, 2, 3][rng.below(5)];
            let (mut cg, mut kg) = (
                rng.below(10) + usize::from(!case.is_multiple_of(11)),
                rng.below(19) + 1,
            );
            let (mut kh, mut kw) = (rng.below(5) + 1, rng.below(5) + 1);
            let mut stride = [rng.below(3) as i64 + 1, rng.below(3) as i64 + 1];
            let mut dilation = [1i64, 1];
            let mut pad = [0i64; 4].map(|_| rng.below(4) as i64);
            let mut groups = groups;
            match case % 6 {
                0 => {
                    (kh, kw) = (1, 1);
                    if rng.below(2) == 0 {
                        (pad, stride) = ([0; 4], [1, 1]);
                    }
                }
                1 => (groups, cg, kg) = (rng.below(8) + 1, 1, 1), // depthwise
                2 => stride = [rng.below(4) as i64 + 3, rng.below(4) as i64 + 3],
                3 => dilation = [rng.below(3) as i64 + 1, rng.below(3) as i64 + 1],
                4 => (pad, stride) = ([0; 4], [1, 1]),
                _ => {}
            }
            let n = rng.below(3) + usize::from(!case.is_multiple_of(7));
            let (h, w) = (rng.below(30) + 1, rng.below(60) + 1);
            let g = ConvGeometry::new(
                [n, cg * groups, h, w],
                [kg * groups, cg, kh, kw],
                stride,
                Padding::Explicit(pad),
                dilation,
                groups as i64,
            );
            if let Ok(g) = g {
                return g;
            }
        }
    }

    fn check<T: ConvFloat>(to: fn(f64) -> T, from: fn(T) -> f64, eps: f64, cases: usize) {
        let mut rng = Lcg(42);
        for case in 0..cases {
            let g = random_geometry(&mut rng, case);
            let xs: Vec<f64> = (0..g.n * g.c_in * g.h * g.w).map(|_| rng.unit()).collect();
            let ws: Vec<f64> = (0..g.c_out * g.c_in_per_group() * g.kh * g.kw)
                .map(|_| rng.unit())
                .collect();
            let bs: Vec<f64> = (0..g.c_out).map(|_| rng.unit()).collect();
            // Round inputs to T first so the reference sees exactly what convrs sees.
            let (x, w, b): (Vec<T>, Vec<T>, Vec<T>) = (
                xs.iter().map(|&v| to(v)).collect(),
                ws.iter().map(|&v| to(v)).collect(),
                bs.iter().map(|&v| to(v)).collect(),
            );
            let back = |v: &[T]| v.iter().map(|&t| from(t)).collect::<Vec<f64>>();
            let with_bias = case % 2 == 0;
            let want = reference(
                &g,
                &back(&x),
                &back(&w),
                with_bias.then(|| back(&b)).as_deref(),
            );
            let red = (g.c_in_per_group() * g.kh * g.kw).max(1) as f64;
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let tol = eps * scale * red.sqrt();
            // Within `slack · tol` of the reference, and the bits of the first thread count
            // run.
            let agree = |what: String, y: Vec<T>, first: &mut Option<Vec<T>>, slack: f64| {
                let tol = slack * tol;
                for (i, (&got, &r)) in y.iter().zip(&want).enumerate() {
                    let err = (from(got) - r).abs();
                    assert!(err <= tol, "{g:?} {what}: y[{i}] = {} want {r}", from(got));
                }
                match first {
                    None => *first = Some(y),
                    Some(f) => assert!(
                        f.iter()
                            .zip(&y)
                            .all(|(a, b)| from(*a).to_bits() == from(*b).to_bits()),
                        "{g:?} {what}: changed bits"
                    ),
                }
            };
            for level in available_levels() {
                let winograd = winograd::applies(&g).then_some(Algorithm::Winograd);
                let algos = [Algorithm::Auto, Algorithm::Direct, Algorithm::Im2col];
                for algo in algos.into_iter().chain(winograd) {
                    // Winograd's transforms: 16 times the rounding of the direct sum.
                    let slack = if algo == Algorithm::Winograd {
                        16.0
                    } else {
                        1.0
                    };
                    let mut first: Option<Vec<T>> = None;
                    for threads in [1, 2, 3] {
                        let mut y = vec![to(f64::NAN); want.len()];
                        let bias = with_bias.then_some(&b[..]);
                        if y.is_empty() {
                            continue;
                        }
                        // Same special cases as `conv2d`.
                        conv2d(&g, &x, &w, bias, &mut y, algo, level).unwrap();
                        let mut y_t = vec![to(f64::NAN); want.len()];
                        if g.c_in_per_group() == 0 {
                            y_t.clone_from(&y);
                        } else {
                            conv2d_on(&g, &x, &w, bias, &mut y_t, algo, level, threads).unwrap();
                        }
                        agree(
                            format!("{algo:?} {level:?} threads {threads}"),
                            y_t,
                            &mut first,
                            slack,
                        );
                    }
                }
                // Both direct algorithms on every shape, whichever `choose` prefers.
                if y_len_ok(&g) {
                    for path in [Path::Direct, Path::Rows] {
                        let mut first: Option<Vec<T>> = None;
                        for threads in [1, 2, 3] {
                            let mut y = vec![to(f64::NAN); want.len()];
                            let bias = with_bias.then_some(&b[..]);
                            run_path(&g, &x, &w, bias, &mut y, path, level, threads).unwrap();
                            agree(
                                format!("{path:?} {level:?} threads {threads}"),
                                y,
                                &mut first,
                                1.0,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Random input, weights and bias for `g`, and the reference result with the bias.
    fn random_problem(rng: &mut Lcg, g: &ConvGeometry) -> [Vec<f64>; 4] {
        let mut values = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.unit()).collect() };
        let x = values(g.n * g.c_in * g.h * g.w);
        let w = values(g.c_out * g.c_in_per_group() * g.kh * g.kw);
        let b = values(g.c_out);
        let want = reference(g, &x, &w, Some(&b));
        [x, w, b, want]
    }

    /// Shapes every path runs on: a non-empty result with channels to reduce over.
    fn y_len_ok(g: &ConvGeometry) -> bool {
        g.output_shape().iter().product::<usize>() > 0 && g.c_in_per_group() > 0
    }

    #[test]
    fn f32_matches_reference_at_every_level_algorithm_and_thread_count() {
        check::<f32>(|v| v as f32, |v| v as f64, 2e-6, 160);
    }

    #[test]
    fn f64_matches_reference_at_every_level_algorithm_and_thread_count() {
        check::<f64>(|v| v, |v| v, 1e-14, 160);
    }

    /// The row algorithm computes several weight blocks per sweep of its band where the
    /// band does not fit in half the L2 cache, one where it does: both orders give the
    /// reference's result, bit for bit the same, with the task's own packed weights (one
    /// image) and shared ones (two), in column strips and at several thread counts.
    #[test]
    fn row_algorithm_alike_with_and_without_block_groups() {
        use std::sync::atomic::Ordering::Relaxed;
        let mut rng = Lcg(5);
        #[rustfmt::skip]
        let layers = [
            ([1, 12, 19, 23], [80, 12, 3, 3], 1),
            ([2, 5, 17, 30], [70, 5, 3, 2], 2),
            ([1, 24, 9, 2000], [40, 24, 3, 3], 1),
        ];
        for (xs, ws, stride) in layers {
            let pad = Padding::Explicit([1; 4]);
            let g = ConvGeometry::new(xs, ws, [stride; 2], pad, [1, 1], 1).unwrap();
            let [x, w, b, want] = random_problem(&mut rng, &g);
            for level in available_levels() {
                let mut first: Option<Vec<f64>> = None;
                for (l2, threads) in [(64 << 10, 1), (1 << 30, 1), (64 << 10, 3), (1 << 30, 2)] {
                    crate::cache::TEST_L2_BYTES.store(l2, Relaxed);
                    let mut y = vec![f64::NAN; want.len()];
                    run_path(&g, &x, &w, Some(&b), &mut y, Path::Rows, level, threads).unwrap();
                    crate::cache::TEST_L2_BYTES.store(0, Relaxed);
                    for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            (a - e).abs() <= 1e-12,
                            "{g:?} {level:?} L2 {l2} at {i}: {a} {e}"
                        );
                    }
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert!(
                            f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{g:?} {level:?} L2 {l2} threads {threads}: changed bits"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn row_algorithm_where_measured_faster() {
        let geo = |x: [usize; 4], w: [usize; 4], stride: i64, groups: i64| {
            let pad = Padding::Explicit([(w[2] / 2) as i64; 4]);
            ConvGeometry::new(x, w, [stride, stride], pad, [1, 1], groups).unwrap()
        };
        // r3x3, r3x3b8, deep, s2, conv1 and big (in column strips); not a 64-position
        // layer (packing its weights costs more than the halo lanes), a 128-channel 1×1
        // (short reduction), cifar with 32 channels or 4096 channels on 14×14 (a band of
        // whole rows holds 2 rows, and strips would be 2 columns wide).
        #[rustfmt::skip]
        let layers = [
            ([1, 64, 56, 56], [64, 64, 3, 3], 1, Path::Rows),
            ([8, 64, 56, 56], [64, 64, 3, 3], 1, Path::Rows),
            ([1, 256, 14, 14], [256, 256, 3, 3], 1, Path::Rows),
            ([1, 128, 56, 56], [128, 128, 3, 3], 2, Path::Rows),
            ([1, 256, 8, 8], [256, 256, 3, 3], 1, Path::Direct),
            ([1, 3, 224, 224], [64, 3, 7, 7], 2, Path::Rows),
            ([1, 128, 28, 28], [128, 128, 1, 1], 1, Path::Direct),
            ([64, 3, 32, 32], [32, 3, 5, 5], 1, Path::Direct),
            ([1, 64, 1024, 1024], [64, 64, 3, 3], 1, Path::Rows),
            ([1, 4096, 14, 14], [64, 4096, 3, 3], 1, Path::Direct),
        ];
        for (x, w, stride, want) in layers {
            let g = geo(x, w, stride, 1);
            assert_eq!(
                choose(&g, Algorithm::Auto, RowFit::wide(32), 4),
                want,
                "{g:?}"
            );
        }
        // cifar (16 channels: the one-vector kernel), not a 1×1 layer of 64 channels.
        let narrow = RowFit {
            lanes: 16,
            min_taps: 64,
        };
        let cifar = geo([64, 3, 32, 32], [16, 3, 5, 5], 1, 1);
        assert_eq!(choose(&cifar, Algorithm::Auto, narrow, 4), Path::Rows);
        let pw = geo([1, 64, 56, 56], [16, 64, 1, 1], 1, 1);
        assert_eq!(choose(&pw, Algorithm::Auto, narrow, 4), Path::Direct);
        // `direct` picks it too; `im2col` never does.
        let r3x3 = geo([1, 64, 56, 56], [64, 64, 3, 3], 1, 1);
        assert_eq!(
            choose(&r3x3, Algorithm::Direct, RowFit::wide(32), 4),
            Path::Rows
        );
        assert_eq!(
            choose(&r3x3, Algorithm::Im2col, RowFit::wide(32), 4),
            Path::Im2col
        );
    }

    #[test]
    fn winograd_over_blocks_groups_padding_and_threads() {
        let mut rng = Lcg(11);
        #[rustfmt::skip]
        let cases = [
            // (input, weight, padding [top, bottom, left, right], groups)
            ([2, 16, 37, 61], [20, 16, 3, 3], [1, 1, 1, 1], 1),
            ([1, 24, 30, 33], [40, 12, 3, 3], [1, 0, 1, 2], 2),
            ([1, 3, 5, 4], [2, 3, 3, 3], [2, 0, 0, 3], 1),
            ([1, 2, 0, 5], [3, 2, 3, 3], [2, 2, 0, 0], 1),
            ([1, 32, 40, 150], [33, 32, 3, 3], [1, 1, 1, 1], 1),
            ([3, 4, 9, 3], [5, 4, 3, 3], [0, 0, 0, 0], 1),
            // One block of tiles: the threads split its output channels.
            ([1, 16, 9, 9], [40, 16, 3, 3], [1, 1, 1, 1], 1),
        ];
        for (shape, wshape, pad, groups) in cases {
            let g = ConvGeometry::new(
                shape,
                wshape,
                [1, 1],
                Padding::Explicit(pad),
                [1, 1],
                groups,
            )
            .unwrap();
            let [x, w, b, want] = random_problem(&mut rng, &g);
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            for level in available_levels() {
                let (mut first, mut first32): (Option<Vec<f64>>, Option<Vec<f32>>) = (None, None);
                for threads in [1, 2, 3, 5] {
                    let mut y = vec![f64::NAN; want.len()];
                    run_path(&g, &x, &w, Some(&b), &mut y, Path::Winograd, level, threads).unwrap();
                    let mut y32 = vec![f32::NAN; want.len()];
                    run_path(
                        &g,
                        &x32,
                        &w32,
                        Some(&b32),
                        &mut y32,
                        Path::Winograd,
                        level,
                        threads,
                    )
                    .unwrap();
                    for ((&got, &got32), &r) in y.iter().zip(&y32).zip(&want) {
                        assert!((got - r).abs() <= 1e-13 * scale, "{g:?} {level:?} f64");
                        // Inputs rounded to f32 move the exact result by up to ~1e-6 too.
                        assert!(
                            (got32 as f64 - r).abs() <= 2e-5 * scale,
                            "{g:?} {level:?} f32"
                        );
                    }
                    match (&first, &first32) {
                        (Some(f), Some(f32)) => {
                            assert!(f == &y && f32 == &y32, "{g:?} threads {threads}")
                        }
                        _ => (first, first32) = (Some(y), Some(y32)),
                    }
                }
            }
        }
    }

    #[test]
    fn winograd_only_for_3x3_unit_stride_and_float64_in_auto() {
        let layer = |c: usize, side: usize| {
            let pad = Padding::Same;
            ConvGeometry::new([1, c, side, side], [c, c, 3, 3], [1, 1], pad, [1, 1], 1).unwrap()
        };
        let geo = |w: [usize; 4], stride: i64, dilation: i64| {
            let pad = Padding::Same;
            ConvGeometry::new([1, 32, 24, 24], w, [stride; 2], pad, [dilation; 2], 1)
        };
        let r3 = geo([32, 32, 3, 3], 1, 1).unwrap();
        assert_eq!(
            choose(&r3, Algorithm::Auto, RowFit::wide(8), 8),
            Path::Winograd
        );
        assert_ne!(
            choose(&r3, Algorithm::Auto, RowFit::wide(16), 4),
            Path::Winograd
        );
        assert_eq!(
            choose(&r3, Algorithm::Winograd, RowFit::wide(16), 4),
            Path::Winograd
        );
        assert_eq!(
            choose(&layer(256, 28), Algorithm::Auto, RowFit::wide(8), 8),
            Path::Winograd
        );
        // Too few channels, too few tiles per pass over the transformed kernels (`deep`
        // in float64: 16), or transformed kernels too large (72 MiB) for it to pay.
        let pad = Padding::Same;
        let thin = ConvGeometry::new([1, 8, 24, 24], [32, 8, 3, 3], [1, 1], pad, [1, 1], 1);
        let others = [thin.unwrap(), layer(256, 14), layer(32, 20), layer(512, 28)];
        for g in others {
            assert_ne!(
                choose(&g, Algorithm::Auto, RowFit::wide(8), 8),
                Path::Winograd,
                "{g:?}"
            );
        }
        for g in [
            geo([32, 32, 5, 5], 1, 1),
            geo([32, 32, 3, 3], 2, 1),
            geo([32, 32, 3, 3], 1, 2),
        ] {
            let g = g.unwrap();
            assert_ne!(
                choose(&g, Algorithm::Auto, RowFit::wide(8), 8),
                Path::Winograd
            );
            let (x, w) = (vec![0.0; 32 * 576], vec![0.0; 32 * 32 * g.kh * g.kw]);
            let mut y = vec![0.0; g.output_shape().iter().product()];
            let err = conv2d(
                &g,
                &x,
                &w,
                None,
                &mut y,
                Algorithm::Winograd,
                SimdLevel::Scalar,
            );
            assert!(err.unwrap_err().to_string().contains("winograd"), "{g:?}");
        }
    }

    #[test]
    fn winograd_leaves_non_finite_inputs_where_the_definition_puts_them() {
        let g = ConvGeometry::new(
            [1, 16, 24, 24],
            [16, 16, 3, 3],
            [1, 1],
            Padding::Same,
            [1, 1],
            1,
        )
        .unwrap();
        assert_eq!(
            choose(&g, Algorithm::Auto, RowFit::wide(8), 8),
            Path::Winograd
        );
        // In the input's first and last chunk of a 2- or 3-thread scan, and in the weights.
        let (first, last, weight) = (3 * 576 + 5 * 24 + 6, 15 * 576 + 20 * 24 + 23, 5 * 144 + 7);
        let cases = [
            (f64::NAN, first, false),
            (f64::INFINITY, first, false),
            (f64::NAN, last, false),
            (f64::INFINITY, weight, true),
            (f64::NAN, weight, true),
        ];
        for (bad, at, in_weights) in cases {
            let (mut x, mut w) = (vec![0.5; 16 * 576], vec![0.25; 16 * 16 * 9]);
            if in_weights {
                w[at] = bad;
            } else {
                x[at] = bad;
            }
            let want = reference(&g, &x, &w, None);
            assert!(want.iter().any(|r| r.is_finite()) && want.iter().any(|r| !r.is_finite()));
            for level in available_levels() {
                for threads in [1, 2, 3] {
                    let mut y = vec![0.0; want.len()];
                    conv2d_on(&g, &x, &w, None, &mut y, Algorithm::Auto, level, threads).unwrap();
                    for (got, r) in y.iter().zip(&want) {
                        assert!(
                            got.is_finite() == r.is_finite(),
                            "{bad} at {at} {level:?} {threads}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn huge_strides_and_dilations() {
        // Geometries whose span dwarfs the data: im2col must gather column by column.
        let cases = [
            (
                [1, 2, 1, 1],
                [2, 2, 1, 1],
                [1, 1 << 30],
                Padding::Same,
                [1, 1],
                Algorithm::Auto,
            ),
            (
                [1, 2, 1, 1],
                [2, 2, 1, 1],
                [1, 1 << 30],
                Padding::Same,
                [1, 1],
                Algorithm::Im2col,
            ),
            (
                [1, 3, 3, 3],
                [2, 3, 1, 2],
                [1, 1],
                Padding::Explicit([0, 0, 1 << 20, 0]),
                [1, 1 << 20],
                Algorithm::Im2col,
            ),
        ];
        for (shape, wshape, stride, pad, dilation, algo) in cases {
            let g = ConvGeometry::new(shape, wshape, stride, pad, dilation, 1).unwrap();
            let x: Vec<f64> = (0..shape.iter().product())
                .map(|i| i as f64 - 3.0)
                .collect();
            let w: Vec<f64> = (0..wshape.iter().product())
                .map(|i| 2.0 - i as f64)
                .collect();
            let want = reference(&g, &x, &w, None);
            for level in available_levels() {
                let mut y = vec![f64::NAN; want.len()];
                conv2d(&g, &x, &w, None, &mut y, algo, level).unwrap();
                assert_eq!(y, want, "{g:?} {algo:?} {level:?}");
            }
        }
    }

    #[test]
    fn layers_larger_than_one_tile_split_across_threads() {
        // Shapes that take several bands, tile groups, channel blocks and tasks.
        let mut rng = Lcg(7);
        #[rustfmt::skip]
        let cases = [
            // (input, weight, stride, padding, dilation, groups)
            ([2, 16, 37, 61], [20, 16, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            ([1, 24, 30, 33], [40, 12, 3, 3], [2, 2], [1, 0, 1, 2], [1, 1], 2),
            ([1, 3, 50, 47], [17, 3, 7, 7], [2, 2], [3, 3, 3, 3], [1, 1], 1),
            ([1, 40, 9, 100], [33, 40, 1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
            ([3, 5, 20, 20], [9, 5, 5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 1),
            // Narrow outputs with wide channels (one band plane per column tap): a
            // partial oc block, strides, dilation, groups.
            ([1, 64, 9, 13], [80, 64, 3, 3], [2, 1], [1, 1, 0, 2], [1, 1], 1),
            ([2, 128, 7, 6], [192, 64, 3, 2], [1, 1], [1, 1, 1, 1], [1, 1], 2),
            ([1, 16, 10, 15], [24, 16, 3, 5], [1, 2], [1, 1, 2, 2], [1, 1], 1),
            ([1, 12, 11, 14], [16, 12, 3, 3], [2, 3], [2, 1, 2, 3], [2, 2], 1),
            // Row algorithm: several bands of a wide image, two blocks of 32 channels,
            // rows longer than one call; strided and dilated.
            ([1, 64, 40, 300], [64, 64, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            ([2, 32, 33, 45], [64, 32, 3, 3], [2, 2], [1, 1, 1, 1], [2, 1], 1),
        ];
        for (shape, wshape, stride, pad, dilation, groups) in cases {
            let g = ConvGeometry::new(
                shape,
                wshape,
                stride,
                Padding::Explicit(pad),
                dilation,
                groups,
            )
            .unwrap();
            let [x, w, b, want] = random_problem(&mut rng, &g);
            for level in available_levels() {
                for path in [Path::Direct, Path::Rows, Path::Im2col] {
                    let mut first: Option<Vec<f64>> = None;
                    for threads in [1, 2, 3, 5] {
                        let mut y = vec![f64::NAN; want.len()];
                        run_path(&g, &x, &w, Some(&b), &mut y, path, level, threads).unwrap();
                        for (&got, &r) in y.iter().zip(&want) {
                            assert!((got - r).abs() <= 1e-12 * (1.0 + r.abs()), "{g:?} {path:?}");
                        }
                        match &first {
                            None => first = Some(y),
                            Some(f) => assert!(f == &y, "{g:?} {path:?} threads {threads}"),
                        }
                    }
                }
            }
        }
    }
}
