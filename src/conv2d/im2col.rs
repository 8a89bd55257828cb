//! im2col + GEMM: for each run of output positions (one or more tiles of `nc`), the
//! receptive fields are packed as the columns of a `kt × width` panel
//! (`kt = C_in/groups · kh · kw`), which the microkernel multiplies with the weights. Only
//! one panel per task exists at a time, never the whole im2col matrix.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};

use super::scratch::Scratch;
use super::tiles::{compute_tiles, GroupWeights, Offsets, Split, TileRows, TileRun};

/// Largest panel, in bytes, when it spans several tiles. A short reduction (depthwise and
/// other small groups) makes one tile's panel tiny, and then the per-panel work (the
/// output-row segments, the calls into the packer and the tile loop) rivals the
/// arithmetic: such panels span several tiles instead, as many as stay in L1 for the
/// kernel, which reads the panel right after it is packed (measured on the depthwise and
/// 2- and 4-channel group layers: 8 and 128 KiB were slower).
const PANEL_BYTES: usize = 32 * 1024;

/// An output-row segment of a panel: first panel column, output row, output column and
/// length.
type Segment = (usize, usize, usize, usize);

/// Packs columns `m0..m0 + width` (flattened output positions, zeros from `m_end` on) of
/// the im2col matrix of one image and group into `panel` (`kt × width`, row-major). The
/// panel's split into output-row segments is the same for every panel row, so it is
/// computed once. Each panel row of a segment is a run of one input row (every `sw`-th
/// element), zeros where the run leaves the input; at unit stride the `kw` runs of a
/// kernel row are one call into the kernel's packer.
#[allow(clippy::too_many_arguments)]
fn pack_panel<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &TileKernel<T>,
    x_group: &[T],
    m0: usize,
    m_end: usize,
    width: usize,
    panel: &mut [T],
    segs: &mut Vec<Segment>,
) {
    segs.clear();
    let (mut p, mut q) = (m0 / g.w_out, m0 % g.w_out);
    let mut j = 0;
    while j < width && m0 + j < m_end {
        let seg = (g.w_out - q).min(width - j).min(m_end - m0 - j);
        segs.push((j, p, q, seg));
        j += seg;
        (p, q) = if q + seg == g.w_out {
            (p + 1, 0)
        } else {
            (p, q + seg)
        };
    }
    let covered = j;
    // Geometry extents are below 2^31, so these signed offsets cannot overflow.
    let pad_left = g.pad_left as isize;
    for c in 0..g.c_in_per_group() {
        let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.kh {
            let k0 = (c * g.kh + r) * g.kw;
            let taps = &mut panel[k0 * width..(k0 + g.kw) * width];
            for &(j, p, q, len) in segs.iter() {
                // Outside the input rows the segment reads from an empty row: zeros.
                let x_row = (p * g.sh + r * g.dh)
                    .checked_sub(g.pad_top)
                    .filter(|&v| v < g.h)
                    .map_or(&[][..], |row| &x_c[row * g.w..(row + 1) * g.w]);
                if g.sw == 1 {
                    // Tap s, element t reads input column q + s·dw + t − pad_left.
                    let start = q as isize - pad_left;
                    kern.pack_window(&mut taps[j..], width, g.kw, len, x_row, start, g.dw);
                    continue;
                }
                for s in 0..g.kw {
                    let to = &mut taps[s * width + j..s * width + j + len];
                    // Element t reads padded column first + t·sw; those inside the row
                    // are one run lo..hi, copied without a per-element bounds check (the
                    // element-by-element check made `conv1`'s im2col 1.8× `auto`).
                    let first = q * g.sw + s * g.dw;
                    let lo = g.pad_left.saturating_sub(first).div_ceil(g.sw).min(len);
                    let hi = (g.pad_left + x_row.len())
                        .saturating_sub(first)
                        .div_ceil(g.sw)
                        .clamp(lo, len);
                    to[..lo].fill(T::ZERO);
                    to[hi..].fill(T::ZERO);
                    if hi > lo {
                        let row = &x_row[first + lo * g.sw - g.pad_left..];
                        for (v, &x) in to[lo..hi].iter_mut().zip(row.iter().step_by(g.sw)) {
                            *v = x;
                        }
                    }
                }
            }
            if covered < width {
                kern.pack_window(
                    &mut taps[covered..],
                    width,
                    g.kw,
                    width - covered,
                    &[],
                    0,
                    0,
                );
            }
        }
    }
}

pub fn conv2d<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &TileKernel<T>,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    threads: usize,
) -> Result<()> {
    let (mr, nc) = (kern.mr, kern.nc);
    let plane_out = g.h_out * g.w_out;
    let tiles = plane_out.div_ceil(nc);
    let split = Split::choose(g, threads, 1, tiles, mr, false);
    let tiles_per_chunk = tiles.div_ceil(split.m_chunks);
    let packed: Vec<GroupWeights<'_, T>> = (0..g.groups)
        .map(|gi| GroupWeights::new(w, g, gi))
        .collect::<Result<_>>()?;
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let kt = cg * g.kh * g.kw;
    let tile_bytes = kt.saturating_mul(nc * std::mem::size_of::<T>());
    let per_panel = (PANEL_BYTES / tile_bytes).clamp(1, tiles_per_chunk);
    let width = per_panel * nc;
    let offs = Offsets::new((0..kt).map(|k| (k * width) as isize).collect());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, chunk, oc_range) = split.task(g, t, mr);
        let m_lo = chunk * tiles_per_chunk * nc;
        if m_lo >= plane_out || oc_range.is_empty() {
            return Ok(());
        }
        let m_hi = ((chunk + 1) * tiles_per_chunk * nc).min(plane_out);
        let mut panel = Scratch::<T>::zeroed(kt * width, "im2col panel")?;
        let mut segs = Vec::new();
        let mut runs = Vec::with_capacity(per_panel);
        let blocks = oc_range.start / mr..oc_range.end.div_ceil(mr);
        let dest = TileRows::new(&out, bias, gi * kg, oc_range, mr, nc);
        let tile_len = blocks.len() * mr * nc;
        let mut ctile = Scratch::<T>::zeroed(per_panel * tile_len, "output tiles")?;
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        let mut m0 = m_lo;
        while m0 < m_hi {
            let len = width.min(m_hi - m0);
            let nt = len.div_ceil(nc);
            pack_panel(g, kern, x_group, m0, m_hi, width, &mut panel, &mut segs);
            compute_tiles(
                kern,
                &packed[gi],
                blocks.clone(),
                &panel,
                0,
                nt,
                len - (nt - 1) * nc,
                &offs,
                &mut ctile,
            );
            runs.clear();
            runs.extend(TileRun::contiguous(m0, nt, nc, m_hi));
            // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
            unsafe { dest.store_tiles(&ctile, tile_len, &runs, n * g.c_out, plane_out) };
            m0 += width;
        }
        Ok(())
    })
}
