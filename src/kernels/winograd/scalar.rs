//! The readable reference of the Winograd F(4×4, 3×3) transforms. Every level runs this
//! same code: the x86 sets compile it inside `#[target_feature]` functions, where the
//! loops below (each over tiles or channels laid out contiguously) vectorise. Multiplies
//! and adds are separate operations (no FMA contraction), so every level gives the same
//! bits.

use super::{POINTS, TILE, WINDOW};
use crate::kernels::ConvFloat;

/// `Bᵀ d` for one window column or row `d`: the input transform's 1-D step.
#[inline(always)]
fn input_1d<T: ConvFloat>(d: [T; 6]) -> [T; 6] {
    let (two, four, five) = (T::of(2.0), T::of(4.0), T::of(5.0));
    let a = d[4] - four * d[2];
    let b = d[3] - four * d[1];
    let c = d[4] - d[2];
    let e = two * (d[3] - d[1]);
    [
        four * d[0] - five * d[2] + d[4],
        a + b,
        a - b,
        c + e,
        c - e,
        four * d[1] - five * d[3] + d[5],
    ]
}

/// `Aᵀ m` for one column or row `m` of products: the output transform's 1-D step.
#[inline(always)]
fn output_1d<T: ConvFloat>(m: [T; 6]) -> [T; 4] {
    let (two, four, eight) = (T::of(2.0), T::of(4.0), T::of(8.0));
    let (s, d) = (m[1] + m[2], m[1] - m[2]);
    let (s2, d2) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + s + s2,
        d + two * d2,
        s + four * s2,
        d + eight * d2 + m[5],
    ]
}

/// `G g` for one kernel column or row `g`, in f64 (the fractions round once, in the final
/// conversion).
#[inline(always)]
fn filter_1d(g: [f64; 3]) -> [f64; 6] {
    let (even, odd) = (g[0] + g[2], g[1]);
    let (even_q, odd_h) = (0.25 * g[0] + g[2], 0.5 * g[1]);
    [
        0.25 * g[0],
        -(even + odd) / 6.0,
        -(even - odd) / 6.0,
        (even_q + odd_h) / 6.0,
        (even_q - odd_h) / 6.0,
        g[2],
    ]
}

// The transforms' row arrays are written out by these two macros, not built with
// `std::array::from_fn`: LLVM does not always inline that, and out of line it hides the
// rows' lengths from the loops over tiles, which then lose their vectorisation (seen once
// as `r3x3f64` 2.12 → 2.76 ms, after an unrelated change moved the crate's split into
// codegen units).

/// `[body(i) for i in the listed indices]`, written out.
macro_rules! each {
    (|$i:ident| $body:expr; $($n:literal),+) => {
        [$({
            let $i = $n;
            $body
        }),+]
    };
}

/// Binds each `$row` to the next `n`-element mutable row of `buf`, `pitch` apart from
/// element `first`.
macro_rules! rows_mut {
    ($buf:expr, $first:expr, $pitch:expr, $n:expr; $($row:ident),+) => {
        let rest = &mut $buf[$first..];
        $(
            let (row, rest) = rest.split_at_mut(($pitch).min(rest.len()));
            let $row = &mut row[..$n];
        )+
        let _ = rest;
    };
}

/// See [`super::WinogradKernels::gather`].
#[inline(always)]
pub fn gather_windows<T: ConvFloat>(
    rows: [&[T]; WINDOW],
    col0: isize,
    n: usize,
    seg: &mut [T],
    win: &mut [T],
    pitch: usize,
) {
    // Each row's columns col0 .. col0 + 4n + 4 (two more than the windows reach), zero
    // outside the row, then split by column modulo 4: loops of four-element groups,
    // which vectorise as interleaved loads.
    let seg = &mut seg[..4 * n + 4];
    for (r, row) in rows.iter().enumerate() {
        let width = row.len() as isize;
        let lo = (-col0).clamp(0, seg.len() as isize) as usize;
        let hi = (width - col0).clamp(lo as isize, seg.len() as isize) as usize;
        seg[..lo].fill(T::ZERO);
        seg[hi..].fill(T::ZERO);
        if lo < hi {
            seg[lo..hi].copy_from_slice(&row[(col0 + lo as isize) as usize..][..hi - lo]);
        }
        rows_mut!(win, r * WINDOW * pitch, pitch, n; w0, w1, w2, w3, w4, w5);
        let phases = w0
            .iter_mut()
            .zip(w1.iter_mut())
            .zip(w2.iter_mut())
            .zip(w3.iter_mut());
        for (q, (((a, b), c), d)) in seg.chunks_exact(4).zip(phases) {
            (*a, *b, *c, *d) = (q[0], q[1], q[2], q[3]);
        }
        for (q, (e, f)) in seg[4..]
            .chunks_exact(4)
            .zip(w4.iter_mut().zip(w5.iter_mut()))
        {
            (*e, *f) = (q[0], q[1]);
        }
    }
}

/// See [`super::WinogradKernels::input`].
#[inline(always)]
pub fn input_tiles<T: ConvFloat>(win: &mut [T], count: usize, v: &mut [T], pitch: usize) {
    let win = &mut win[..POINTS * count];
    // Down the window columns, in place: w[(i·6 + j)·count + t] = (Bᵀ d)[i][j].
    for j in 0..WINDOW {
        rows_mut!(win, j * count, WINDOW * count, count; d0, d1, d2, d3, d4, d5);
        for t in 0..count {
            let out = input_1d([d0[t], d1[t], d2[t], d3[t], d4[t], d5[t]]);
            (d0[t], d1[t], d2[t], d3[t], d4[t], d5[t]) =
                (out[0], out[1], out[2], out[3], out[4], out[5]);
        }
    }
    // Along the rows, into V.
    for i in 0..WINDOW {
        let e: [&[T]; WINDOW] =
            each!(|j| &win[(i * WINDOW + j) * count..][..count]; 0, 1, 2, 3, 4, 5);
        rows_mut!(v, i * WINDOW * pitch, pitch, count; v0, v1, v2, v3, v4, v5);
        for t in 0..count {
            let out = input_1d([e[0][t], e[1][t], e[2][t], e[3][t], e[4][t], e[5][t]]);
            (v0[t], v1[t], v2[t], v3[t], v4[t], v5[t]) =
                (out[0], out[1], out[2], out[3], out[4], out[5]);
        }
    }
}

/// See [`super::WinogradKernels::output`].
#[inline(always)]
pub fn output_tiles<T: ConvFloat>(
    m: &[T],
    pitch: usize,
    count: usize,
    bias: T,
    scratch: &mut [T],
    y: &mut [T],
) {
    let tmp = &mut scratch[..TILE * WINDOW * count];
    // Down the columns: tmp[(i·6 + j)·count + t] = (Aᵀ M)[i][j] of tile t.
    for j in 0..WINDOW {
        let col: [&[T]; WINDOW] =
            each!(|i| &m[(i * WINDOW + j) * pitch..][..count]; 0, 1, 2, 3, 4, 5);
        rows_mut!(tmp, j * count, WINDOW * count, count; o0, o1, o2, o3);
        for t in 0..count {
            let out = output_1d([
                col[0][t], col[1][t], col[2][t], col[3][t], col[4][t], col[5][t],
            ]);
            (o0[t], o1[t], o2[t], o3[t]) = (out[0], out[1], out[2], out[3]);
        }
    }
    // Along the rows, plus the bias: y[(i·4 + j)·count + t].
    for i in 0..TILE {
        let e: [&[T]; WINDOW] =
            each!(|j| &tmp[(i * WINDOW + j) * count..][..count]; 0, 1, 2, 3, 4, 5);
        rows_mut!(y, i * TILE * count, count, count; y0, y1, y2, y3);
        for t in 0..count {
            let out = output_1d([e[0][t], e[1][t], e[2][t], e[3][t], e[4][t], e[5][t]]);
            (y0[t], y1[t], y2[t], y3[t]) =
                (out[0] + bias, out[1] + bias, out[2] + bias, out[3] + bias);
        }
    }
}

/// See [`super::WinogradKernels::scatter`].
#[inline(always)]
pub fn scatter_tiles<T: ConvFloat>(y: &[T], pitch: usize, n: usize, rows: [&mut [T]; TILE]) {
    for (i, dst) in rows.into_iter().enumerate() {
        let cols: [&[T]; TILE] = each!(|j| &y[(i * TILE + j) * pitch..][..n]; 0, 1, 2, 3);
        // Whole tiles as groups of four (interleaved stores), then the cut one.
        let whole = dst.len() / TILE;
        let (body, tail) = dst.split_at_mut(TILE * whole);
        let tiles = cols[0].iter().zip(cols[1]).zip(cols[2]).zip(cols[3]);
        for (q, (((&a, &b), &c), &d)) in body.chunks_exact_mut(TILE).zip(tiles) {
            (q[0], q[1], q[2], q[3]) = (a, b, c, d);
        }
        for (j, v) in tail.iter_mut().enumerate() {
            *v = cols[j][whole];
        }
    }
}

/// See [`super::WinogradKernels::filter`].
#[inline(always)]
pub fn filter_tiles<T: ConvFloat>(
    w: &[T],
    cg: usize,
    scratch: &mut [f64],
    u: &mut [T],
    pitch: usize,
) {
    // Tap-major copy, then the two 1-D steps over every channel at once.
    let (taps, cols) = scratch[..27 * cg].split_at_mut(9 * cg);
    for (c, k) in w[..9 * cg].chunks_exact(9).enumerate() {
        for (rs, &v) in k.iter().enumerate() {
            taps[rs * cg + c] = v.to_f64();
        }
    }
    // cols[(i·3 + s)·cg + c] = (G g)[i][s].
    for s in 0..3 {
        let g: [&[f64]; 3] = each!(|r| &taps[(r * 3 + s) * cg..][..cg]; 0, 1, 2);
        for c in 0..cg {
            let out = filter_1d([g[0][c], g[1][c], g[2][c]]);
            for (i, v) in out.into_iter().enumerate() {
                cols[(i * 3 + s) * cg + c] = v;
            }
        }
    }
    for i in 0..WINDOW {
        let h: [&[f64]; 3] = each!(|s| &cols[(i * 3 + s) * cg..][..cg]; 0, 1, 2);
        rows_mut!(u, i * WINDOW * pitch, pitch, cg; u0, u1, u2, u3, u4, u5);
        let dst = [u0, u1, u2, u3, u4, u5];
        for c in 0..cg {
            let out = filter_1d([h[0][c], h[1][c], h[2][c]]);
            for (j, v) in out.into_iter().enumerate() {
                dst[j][c] = T::of(v);
            }
        }
    }
}
