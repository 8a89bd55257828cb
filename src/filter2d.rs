//! `scipy.signal.convolve2d` / `correlate2d` on one plane: the boundary rule builds a
//! padded copy of `in1`, after which every mode is a "valid" correlation with `in2`
//! (flipped for convolution), done by the planar kernel.

use crate::error::{value_error, Result};
use crate::kernels::planar::{PlanarElem, Plane, PlaneMut};
use crate::simd::SimdLevel;
use crate::threading::{for_each_task, threads_for_work, SharedOut};
use crate::workspace::{checked_product, try_zeroed};

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
    pub fn parse(name: &str) -> Result<Boundary> {
        match name {
            "fill" | "pad" => Ok(Boundary::Fill),
            "wrap" | "circular" => Ok(Boundary::Wrap),
            "symm" | "symmetric" => Ok(Boundary::Symm),
            _ => value_error(
                "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and 'symmetric' (or 'symm').",
            ),
        }
    }
}

/// Output extent and padding before the first input row/column along one axis.
/// Mirrors SciPy's index arithmetic: for convolution `same` centres on `(k-1)/2` from
/// the far side, for correlation from the near side.
fn axis(len: usize, k: usize, mode: Mode, flip: bool) -> Result<(usize, usize)> {
    Ok(match mode {
        Mode::Full => (len + k - 1, k - 1),
        Mode::Same => (len, if flip { k / 2 } else { (k - 1) / 2 }),
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

/// Index into `0..len` of padded position `i - before` under `boundary`, `None` for fill.
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

/// `out = convolve2d(in1, in2)` (flip) or `correlate2d(in1, in2)` (no flip; `in2` already
/// conjugated by the caller where that matters), for non-empty inputs.
#[allow(clippy::too_many_arguments)]
pub fn filter2d<T: PlanarElem>(
    in1: &[T],
    s1: [usize; 2],
    in2: &[T],
    s2: [usize; 2],
    flip: bool,
    mode: Mode,
    boundary: Boundary,
    fill: T,
    out: &mut [T],
    level: SimdLevel,
) -> Result<()> {
    let (ho, top) = axis(s1[0], s2[0], mode, flip)?;
    let (wo, left) = axis(s1[1], s2[1], mode, flip)?;
    assert_eq!(out.len(), ho * wo);
    if out.is_empty() {
        return Ok(());
    }
    let wp = wo + s2[1] - 1;
    let kernel: Vec<T> = if flip {
        in2.iter().rev().copied().collect()
    } else {
        in2.to_vec()
    };
    // Padded rows are built per band of output rows, so the padded copy never exceeds a
    // band and each task owns its band.
    let flops = 2.0 * (ho * wo) as f64 * (s2[0] * s2[1]) as f64;
    let threads = threads_for_work(flops);
    let band_rows = ho
        .div_ceil((threads * 4).min(ho))
        .max(1)
        .min((1 << 22) / wp.max(1))
        .max(1);
    let bands = ho.div_ceil(band_rows);
    checked_product(&[band_rows + s2[0], wp], "padded plane")?;
    let func = T::planar_kernel(level);
    let shared = SharedOut::new(out);
    for_each_task(bands, threads, |b| {
        let p0 = b * band_rows;
        let rows = band_rows.min(ho - p0);
        let mut padded = try_zeroed::<T>((rows + s2[0] - 1) * wp, "padded plane")?;
        for i in 0..rows + s2[0] - 1 {
            let dst = &mut padded[i * wp..(i + 1) * wp];
            match source_index((p0 + i) as isize - top as isize, s1[0], boundary) {
                None => dst.fill(fill),
                Some(r) => {
                    let src = &in1[r * s1[1]..(r + 1) * s1[1]];
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = source_index(j as isize - left as isize, s1[1], boundary)
                            .map_or(fill, |c| src[c]);
                    }
                }
            }
        }
        // SAFETY: band b alone writes output rows p0..p0 + rows.
        let out_band = unsafe { shared.slice_mut(p0 * wo, rows * wo) };
        func(
            Plane {
                data: &padded,
                rows: rows + s2[0] - 1,
                cols: wp,
                ld: wp,
            },
            Plane {
                data: &kernel,
                rows: s2[0],
                cols: s2[1],
                ld: s2[1],
            },
            PlaneMut {
                data: out_band,
                rows,
                cols: wo,
                ld: wo,
            },
        );
        Ok(())
    })?;
    Ok(())
}
