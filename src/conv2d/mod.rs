//! conv2d: validated geometry in, NCHW result out. Chooses the algorithm and the kernel set.

mod depthwise;
mod direct;
mod im2col;
mod tiles;

use crate::error::{value_error, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::ConvFloat;
use crate::simd::SimdLevel;
use crate::threading::threads_for_work;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Auto,
    Direct,
    Im2col,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Algorithm> {
        match name {
            "auto" => Ok(Algorithm::Auto),
            "direct" => Ok(Algorithm::Direct),
            "im2col" => Ok(Algorithm::Im2col),
            _ => value_error(format!(
                "algorithm must be 'auto', 'direct' or 'im2col'; got {name:?}"
            )),
        }
    }
}

/// The concrete path a call takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Depthwise,
    Direct,
    Im2col,
}

fn choose(g: &ConvGeometry, algo: Algorithm) -> Path {
    match algo {
        // Depthwise at unit stride is a set of planar correlations: the planar kernel is a
        // direct algorithm, and far faster than one-channel GEMM tiles.
        Algorithm::Direct | Algorithm::Auto if depthwise::applies(g) => Path::Depthwise,
        Algorithm::Direct => Path::Direct,
        Algorithm::Im2col => Path::Im2col,
        // 1×1 kernels need no padding copy: their panels are plain row copies.
        Algorithm::Auto if g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 => Path::Im2col,
        Algorithm::Auto => Path::Direct,
    }
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
    let threads = threads_for_work(g.flops());
    let kern = T::tile_kernel(level);
    match choose(g, algo) {
        Path::Depthwise => depthwise::conv2d(g, x, w, bias, y, threads, level),
        Path::Direct => direct::conv2d(g, &kern, x, w, bias, y, threads),
        Path::Im2col => im2col::conv2d(g, &kern, x, w, bias, y, threads),
    }
}
