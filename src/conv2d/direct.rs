//! Direct convolution from NCHW input, no im2col: per band of output rows (and, for wide
//! images, strip of output columns), the input is copied once into a zero-padded,
//! phase-split band (one plane per input channel and stride phase), and every
//! (channel, tap) becomes a constant shift inside that band. Output positions run over
//! the band's flattened rows, pitch `cols + halo`; the `halo` columns per row are computed
//! and dropped.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::line_elems;

use super::band::BandLayout;
use super::scratch::Scratch;
use super::tiles::{
    compute_tiles, tiles_per_group, zero_row, GroupWeights, Offsets, Split, TileOut, TileRows,
    TileRun,
};

/// 1×1 kernels at unit stride without padding: the input already is the `B` operand, one
/// row per input channel, which `pointwise` copies a group of tiles at a time.
fn input_is_b_operand(g: &ConvGeometry) -> bool {
    g.kh == 1
        && g.kw == 1
        && g.sh == 1
        && g.sw == 1
        && g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0
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
    let zero = zero_row::<T>(g.c_in_per_group() * g.kh * g.kw)?;
    let packed: Vec<GroupWeights<'_, T>> = (0..g.groups)
        .map(|gi| GroupWeights::new(w, &zero, g, gi))
        .collect();
    if input_is_b_operand(g) {
        return pointwise(g, kern, &packed, x, bias, y, threads);
    }
    let (mr, nc) = (kern.mr, kern.nc);
    let layout = BandLayout::new(g);
    let (max_rows, max_cols) = layout.band_shape(g, std::mem::size_of::<T>());
    let strips = g.w_out.div_ceil(max_cols);
    let bands = g.h_out.div_ceil(max_rows);
    // Short bands re-read their halo and waste part of their last tile: below 16 rows,
    // give threads output-channel blocks instead.
    let prefer_oc = g.h_out / bands < 16;
    // Position chunks are (row band, column strip) pairs; threads may split rows further.
    let split = Split::choose(g, threads, bands * strips, g.h_out * strips, mr, prefer_oc);
    let rows_per_band = g.h_out.div_ceil(split.m_chunks / strips);
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, m_chunk, oc_range) = split.task(g, t, mr);
        let (p0, q0) = (
            (m_chunk / strips) * rows_per_band,
            (m_chunk % strips) * max_cols,
        );
        if p0 >= g.h_out || q0 >= g.w_out || oc_range.is_empty() {
            return Ok(());
        }
        let (rows, cols) = (rows_per_band.min(g.h_out - p0), max_cols.min(g.w_out - q0));
        let pitch = cols + layout.halo_cols;
        let offs = Offsets::new(layout.offsets(g, rows, pitch));
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        // Slack past the last plane: the last tile reads up to `nc` positions beyond the
        // band's final row, plus the widest tap shift.
        let band = layout.fill(g, x_group, p0, rows, q0, cols, pitch + nc)?;
        let blocks = oc_range.start / mr..oc_range.end.div_ceil(mr);
        let dest = TileRows::new(&out, bias, gi * kg, oc_range, mr, nc);
        let m_len = rows * pitch;
        let tiles = m_len.div_ceil(nc);
        let group = tiles_per_group(kern, blocks.len());
        // Without halo columns, a full-width band's tiles are runs of the output planes:
        // whole ones go straight there, and the buffer only holds the others.
        let whole_tiles = if layout.halo_cols == 0 && cols == g.w_out {
            m_len / nc
        } else {
            0
        };
        let buffered = group.min(tiles - whole_tiles);
        let mut ctile = Scratch::<T>::zeroed(buffered * blocks.len() * mr * nc, "output tiles")?;
        let plane_out = g.h_out * g.w_out;
        let mut runs = Vec::new();
        let mut t0 = 0;
        while t0 < whole_tiles {
            let nt = group.min(whole_tiles - t0);
            // SAFETY: this task alone writes channels oc_range, rows p0..p0+rows.
            unsafe {
                dest.compute_into_planes(
                    kern,
                    &packed[gi],
                    (&band, t0 * nc, &offs),
                    nt,
                    n * g.c_out,
                    plane_out,
                    p0 * g.w_out + t0 * nc,
                )?
            };
            t0 += nt;
        }
        while t0 < tiles {
            let nt = group.min(tiles - t0);
            // Only the band's last tile is partial.
            let last_len = nc.min(m_len - (t0 + nt - 1) * nc);
            compute_tiles(
                kern,
                &packed[gi],
                blocks.clone(),
                &band,
                t0 * nc,
                nt,
                last_len,
                &offs,
                TileOut::Buffer(&mut ctile),
            );
            // Tile t covers flattened band positions m0..m_end: one segment per band row,
            // of which the first `cols` columns are output.
            runs.clear();
            for t in 0..nt {
                let m0 = (t0 + t) * nc;
                let m_end = (m0 + nc).min(m_len);
                let mut m = m0;
                while m < m_end {
                    let (p, q) = (m / pitch, m % pitch);
                    let seg = (pitch - q).min(m_end - m);
                    if q < cols {
                        runs.push(TileRun {
                            t,
                            j: m - m0,
                            len: seg.min(cols - q),
                            at: (p0 + p) * g.w_out + q0 + q,
                        });
                    }
                    m += seg;
                }
            }
            let tile_len = blocks.len() * mr * nc;
            // SAFETY: this task alone writes channels oc_range, rows p0..p0+rows, columns
            // q0..q0+cols.
            unsafe {
                dest.store_tiles(
                    &ctile,
                    tile_len,
                    runs.iter().copied(),
                    n * g.c_out,
                    plane_out,
                )
            };
            t0 += nt;
        }
        Ok(())
    })
}

/// Most bytes of input per panel of the 1×1 path: `pw`'s groups of 11 tiles take 45 KiB;
/// few output channels would otherwise make groups of hundreds of tiles.
const PANEL_BYTES: usize = 128 << 10;

/// Elements between channels of a panel of `run` positions: an odd number of cache lines,
/// so that a tile's rows of all channels fall into different sets of the L1 cache.
/// Read in place, the planes of a 56×56 layer (12 544 bytes apart) put a tile's 64
/// channels into 16 of the 64 sets of a 32 KiB 8-way L1, and those of a 48×64 or 64×64
/// one (multiples of 4 KiB) into one; through the panel, `pw` ran 1.15× faster at 1 and
/// 2 threads, 64 channels of 64×64 1.4×, of 48×64 1.35×, of 56×57 (planes already spread)
/// the same (interleaved, AMD EPYC, AVX2).
fn panel_pitch<T>(run: usize) -> usize {
    let line = line_elems::<T>();
    let lines = run.div_ceil(line);
    (lines | 1) * line
}

/// The 1×1 case of [`input_is_b_operand`]: each group of whole tiles is copied into a
/// panel whose channels are an odd number of cache lines apart (see [`panel_pitch`]), and
/// so is the last, partial tile of each plane.
fn pointwise<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &TileKernel<T>,
    packed: &[GroupWeights<'_, T>],
    x: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    threads: usize,
) -> Result<()> {
    let (mr, nc) = (kern.mr, kern.nc);
    let plane = g.h * g.w;
    debug_assert_eq!(plane, g.h_out * g.w_out);
    let tiles = plane.div_ceil(nc);
    let split = Split::choose(g, threads, 1, tiles, mr, false);
    let tiles_per_chunk = tiles.div_ceil(split.m_chunks);
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, chunk, oc_range) = split.task(g, t, mr);
        let m_lo = chunk * tiles_per_chunk * nc;
        if m_lo >= plane || oc_range.is_empty() {
            return Ok(());
        }
        let m_hi = ((chunk + 1) * tiles_per_chunk * nc).min(plane);
        let x_group = &x[(n * g.c_in + gi * cg) * plane..(n * g.c_in + (gi + 1) * cg) * plane];
        let blocks = oc_range.start / mr..oc_range.end.div_ceil(mr);
        let dest = TileRows::new(&out, bias, gi * kg, oc_range, mr, nc);
        // Groups of tiles whose panel fits `PANEL_BYTES` (at least one tile).
        let panel_tiles = PANEL_BYTES / (cg * nc * std::mem::size_of::<T>()).max(1);
        let group = tiles_per_group(kern, blocks.len()).min(panel_tiles.max(1));
        let ld = panel_pitch::<T>(group * nc);
        let offs = Offsets::new((0..cg).map(|c| (c * ld) as isize).collect());
        let mut m0 = m_lo;
        let mut panel = Scratch::<T>::zeroed(cg * ld, "input panel")?;
        let copy_to_panel = |panel: &mut [T], m0: usize, len: usize| {
            for c in 0..cg {
                panel[c * ld..][..len].copy_from_slice(&x_group[c * plane + m0..][..len]);
            }
        };
        // Whole tiles inside the plane go through the panel straight to the output planes.
        while m0 + nc <= m_hi {
            let nt = group.min((m_hi - m0) / nc);
            copy_to_panel(&mut panel, m0, nt * nc);
            // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
            unsafe {
                dest.compute_into_planes(
                    kern,
                    &packed[gi],
                    (&panel, 0, &offs),
                    nt,
                    n * g.c_out,
                    plane,
                    m0,
                )?
            };
            m0 += nt * nc;
        }
        if m0 < m_hi {
            // Writing a whole tile would run past the output planes: the last, partial
            // tile goes through the panel (its lanes past the plane's end compute
            // whatever an earlier group left there, and are never stored) and a tile
            // buffer.
            copy_to_panel(&mut panel, m0, m_hi - m0);
            let mut ctile = Scratch::<T>::zeroed(blocks.len() * mr * nc, "output tiles")?;
            let buffer = TileOut::Buffer(&mut ctile);
            compute_tiles(
                kern,
                &packed[gi],
                blocks.clone(),
                &panel,
                0,
                1,
                m_hi - m0,
                &offs,
                buffer,
            );
            let runs = TileRun::contiguous(m0, 1, nc, m_hi);
            let tile_len = blocks.len() * mr * nc;
            // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
            unsafe { dest.store_tiles(&ctile, tile_len, runs, n * g.c_out, plane) };
        }
        Ok(())
    })
}
