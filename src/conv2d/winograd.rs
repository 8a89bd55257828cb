//! Winograd F(4×4, 3×3) for 3×3 kernels at unit stride and dilation: the output planes
//! are cut into 4×4 tiles, and each tile's 6×6 input window and each kernel go through
//! the transforms of [`crate::kernels::winograd`]; the 36 products summed over the input
//! channels are 36 matrix products per block of tiles, which run on the tile microkernel
//! (output channels × input channels times input channels × tiles). 2.25 multiplies per
//! output and input channel instead of 9.
//!
//! A task is one block of `tb` tiles (flattened over the tile rows) of one image and
//! group (and, when there are fewer blocks than threads, a share of its output
//! channels): it transforms the block's windows into `V[ξ][c][t]`, computes
//! `M[ξ][k][t] = Σ_c U[ξ][k][c] · V[ξ][c][t]`, and transforms `M` back into the
//! output. The kernels' transform `U` is computed once per call.

use crate::error::{ConvError, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::winograd::{WinogradKernels, POINTS, TILE, WINDOW};
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::checked_product;

use super::scratch::Scratch;
use super::tiles::{compute_tiles, zero_row, GroupWeights, Offsets, PlaneRows, TileOut};

/// Bytes of a block's transformed inputs and products together, which the matrix
/// products stream through: half of a 1 MiB L2.
const BLOCK_BYTES: usize = 512 * 1024;

/// Whether the geometry is one this algorithm computes: a 3×3 kernel at unit stride
/// and dilation (any padding, batch, groups).
pub fn applies(g: &ConvGeometry) -> bool {
    [g.kh, g.kw] == [3, 3] && [g.sh, g.sw, g.dh, g.dw] == [1, 1, 1, 1]
}

/// Whether `auto` should choose it for elements of `elem` bytes: float64 only (its
/// float32 error is about 20 times the direct sum's), enough channels for the matrix
/// products to outweigh the transforms, and enough tiles per image for each pass over
/// the transformed kernels `U` (36/9 times the weights, read once per block of tiles)
/// to pay. Measured at 1 and 2 threads against the direct algorithm (float64, 3×3,
/// padding 1): 56×56 outputs 1.03-1.08× (16 channels), 2.1-2.4× (128 and 256 channels);
/// 28×28 (49 tiles) 1.37-1.55× (64 channels), 1.11-1.36× (256), 0.59-1.00× (512: `U` is
/// 72 MiB); 14×14 (16 tiles) 0.80-1.08× (64, 128 channels), 0.15-0.27× (512); 8×8
/// 0.45×.
pub fn suits(g: &ConvGeometry, elem: usize) -> bool {
    const MIN_TILES: usize = 36;
    const MAX_U_BYTES: usize = 24 << 20;
    let tiles = g.h_out.div_ceil(TILE) * g.w_out.div_ceil(TILE);
    let u_bytes = (POINTS * elem).saturating_mul(g.c_in_per_group().saturating_mul(g.c_out));
    elem == 8
        && applies(g)
        && g.c_in_per_group() >= 16
        && g.c_out_per_group() >= 16
        && tiles >= MIN_TILES
        && u_bytes <= MAX_U_BYTES
}

/// A run of tiles of one tile row inside a block: its first tile's index in the block,
/// tile row, first tile column, count.
#[derive(Clone, Copy)]
struct Run {
    at: usize,
    row: usize,
    col: usize,
    n: usize,
}

/// The runs of tiles `t0..t0 + count` of planes `tiles_w` tiles wide.
fn runs(t0: usize, count: usize, tiles_w: usize) -> impl Iterator<Item = Run> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= count {
            return None;
        }
        let t = t0 + at;
        let run = Run {
            at,
            row: t / tiles_w,
            col: t % tiles_w,
            n: (tiles_w - t % tiles_w).min(count - at),
        };
        at += run.n;
        Some(run)
    })
}

#[allow(clippy::too_many_arguments)]
pub fn conv2d<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &TileKernel<T>,
    wino: &WinogradKernels<T>,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    threads: usize,
) -> Result<()> {
    debug_assert!(applies(g));
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let (mr, nc) = (kern.mr, kern.nc);
    let kp = kg.next_multiple_of(mr);
    let tiles_w = g.w_out.div_ceil(TILE);
    let tiles = g.h_out.div_ceil(TILE) * tiles_w;
    let elem = std::mem::size_of::<T>();
    // Tiles per block: whole microkernel tiles, as many as keep V and M within
    // BLOCK_BYTES, no more than the plane has.
    let per_tile = POINTS * (cg + kp) * elem;
    let tb = (BLOCK_BYTES / per_tile.saturating_mul(nc))
        .max(1)
        .min(tiles.div_ceil(nc))
        * nc;
    let blocks = tiles.div_ceil(tb);
    let u = transform_filters(g, wino, w, threads)?;
    // U[ξ] of group gi: kg rows of cg, 36·cg apart.
    let zero = zero_row::<T>(cg)?;
    let weights: Vec<GroupWeights<'_, T>> = (0..g.groups * POINTS)
        .map(|i| {
            let (gi, xi) = (i / POINTS, i % POINTS);
            let u_group = &u[gi * kg * POINTS * cg..][..kg * POINTS * cg];
            GroupWeights::from_rows(&u_group[xi * cg..], &zero, cg, POINTS * cg, kg)
        })
        .collect();
    let offs = Offsets::new((0..cg).map(|c| (c * tb) as isize).collect());
    // One point's V and M, and a cache line more: the 36 rows each transform writes or
    // reads at once are then not all a multiple of 4 KiB apart (store-to-load aliasing).
    let line = 64 / elem;
    let v_step = checked_product(&[cg, tb], "Winograd input tiles")? + line;
    let m_step = checked_product(&[kp, tb], "Winograd products")? + line;
    let v_len = checked_product(&[POINTS, v_step], "Winograd input tiles")?;
    let m_len = checked_product(&[POINTS, m_step], "Winograd products")?;
    let buf_len = POINTS.max(TILE * (WINDOW + TILE)) * tb;
    let seg_len = WinogradKernels::<T>::segment_len(tiles_w);
    let task_len = [m_len, buf_len, seg_len]
        .iter()
        .try_fold(v_len, |a, &b| a.checked_add(b))
        .ok_or_else(|| ConvError::Memory("the Winograd workspace is too large".into()))?;
    let plane_in = g.h * g.w;
    let plane_out = g.h_out * g.w_out;
    // Fewer blocks than threads (small images): the threads share each block's output
    // channels too, each transforming the block's input itself.
    let kb = kp / mr;
    let per_block = (threads / (g.n * g.groups * blocks).max(1)).clamp(1, kb);
    let out = SharedOut::new(y);
    for_each_task(g.n * g.groups * blocks * per_block, threads, |task| {
        let (part, rest) = (task % per_block, task / per_block);
        let (blk, rest) = (rest % blocks, rest / blocks);
        let (gi, n) = (rest % g.groups, rest / g.groups);
        let k_blocks = kb * part / per_block..kb * (part + 1) / per_block;
        let k_lo = k_blocks.start * mr;
        let k_hi = (k_blocks.end * mr).min(kg);
        let t0 = blk * tb;
        let count = tb.min(tiles - t0);
        // One buffer for the task (a thread keeps only a few between calls): V, M, the
        // windows (then the back-transform's rows and outputs) and a row segment.
        let mut task_buf = Scratch::<T>::overwritable(task_len, "Winograd workspace")?;
        let (v, rest) = task_buf.split_at_mut(v_len);
        let (m, rest) = rest.split_at_mut(m_len);
        let (blk_buf, seg) = rest.split_at_mut(buf_len);
        // V[ξ][c][t]: each channel's windows, gathered run by run, transformed at once.
        let x_group = &x[(n * g.c_in + gi * cg) * plane_in..][..cg * plane_in];
        for c in 0..cg {
            // Empty when the input has no rows or columns: every window is padding.
            let x_c = &x_group[c * plane_in..(c + 1) * plane_in];
            for run in runs(t0, count, tiles_w) {
                let top = (run.row * TILE) as isize - g.pad_top as isize;
                let rows: [&[T]; WINDOW] = std::array::from_fn(|r| {
                    let i = top + r as isize;
                    if (0..g.h as isize).contains(&i) {
                        &x_c[i as usize * g.w..][..g.w]
                    } else {
                        &[]
                    }
                });
                let col0 = (run.col * TILE) as isize - g.pad_left as isize;
                wino.gather(rows, col0, run.n, seg, &mut blk_buf[run.at..], count);
            }
            wino.input(blk_buf, count, &mut v[c * tb..], v_step);
        }
        // M[ξ] = U[ξ] · V[ξ], one matrix product per point.
        let ntiles = count.div_ceil(nc);
        for xi in 0..POINTS {
            compute_tiles(
                kern,
                &weights[gi * POINTS + xi],
                k_blocks.clone(),
                &v[xi * v_step..][..cg * tb],
                0,
                ntiles,
                count - (ntiles - 1) * nc,
                &offs,
                TileOut::Planes(PlaneRows::matrix(&mut m[xi * m_step..][..kp * tb], tb)),
            );
        }
        // Back to the output planes, channel by channel (M's rows start at k_lo).
        let (tmp, y_tiles) = blk_buf.split_at_mut(TILE * WINDOW * count);
        for k in k_lo..k_hi {
            let add = bias.map_or(T::ZERO, |b| b[gi * kg + k]);
            wino.output(&m[(k - k_lo) * tb..], m_step, count, add, tmp, y_tiles);
            let plane = (n * g.c_out + gi * kg + k) * plane_out;
            for run in runs(t0, count, tiles_w) {
                let col = run.col * TILE;
                let len = (run.n * TILE).min(g.w_out - col);
                let rows: [&mut [T]; TILE] = std::array::from_fn(|i| {
                    let p = run.row * TILE + i;
                    if p < g.h_out {
                        // SAFETY: this task alone writes its tiles' outputs.
                        unsafe { out.slice_mut(plane + p * g.w_out + col, len) }
                    } else {
                        <&mut [T]>::default()
                    }
                });
                wino.scatter(&y_tiles[run.at..], count, run.n, rows);
            }
        }
        Ok(())
    })
}

/// `U[group][k][ξ][c]`: every kernel's transform, output channels split over the
/// threads, in a buffer the thread keeps (a fresh 1.2 MiB for `r3x3f64` on every call
/// cost page faults and, at 2 threads, the unmapping's TLB shootdowns: 13 % of it).
fn transform_filters<T: ConvFloat>(
    g: &ConvGeometry,
    wino: &WinogradKernels<T>,
    w: &[T],
    threads: usize,
) -> Result<Scratch<T>> {
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let per_channel = POINTS * cg;
    let len = checked_product(&[g.groups, kg, per_channel], "Winograd kernels")?;
    // Every element is written below.
    let mut u = Scratch::<T>::overwritable(len, "Winograd kernels")?;
    let rows = g.groups * kg;
    let tasks = threads.min(rows).max(1);
    let out = SharedOut::new(&mut u);
    for_each_task(tasks, threads, |t| {
        let len = WinogradKernels::<T>::filter_scratch_len(cg);
        let mut scratch = Scratch::<f64>::overwritable(len, "Winograd kernel columns")?;
        for row in rows * t / tasks..rows * (t + 1) / tasks {
            // SAFETY: output channel `row`'s transforms belong to this task alone.
            let u_row = unsafe { out.slice_mut(row * per_channel, per_channel) };
            wino.filter(&w[row * cg * 9..][..cg * 9], cg, &mut scratch, u_row, cg);
        }
        Ok(())
    })?;
    Ok(u)
}
