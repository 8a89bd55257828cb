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

use super::scratch::Scratch;
use super::tiles::{
    compute_tiles, tiles_per_group, GroupWeights, Offsets, Split, TileOut, TileRows, TileRun,
};

/// Padded input band of one task: small enough to stay in a 1 MiB L2 next to the
/// weights, since every tile reads its rows from there (a band streamed from L3 halves
/// the kernel's speed).
const BAND_BYTES: usize = 512 * 1024;
/// Output rows of a band when the image is too wide for a full-width band: column strips
/// of at least this many rows keep the re-copied halo (and the per-row waste) small.
const STRIP_ROWS: usize = 8;

/// Phase-split layout of one band of the padded input.
struct BandLayout {
    /// Stride phases actually used by some tap, along rows.
    row_phases: Vec<usize>,
    /// Column offset of each column plane: plane element `j` holds padded input column
    /// `sw·(q0 + j) + offset`. Either the stride phases used by some tap (taps then shift
    /// along the plane's rows, which needs `halo_cols`), or one plane per column tap
    /// (`per_tap_cols`: no shift, no halo).
    col_planes: Vec<usize>,
    per_tap_cols: bool,
    /// Extra phase rows / columns needed below / right of each output row / column.
    halo_rows: usize,
    halo_cols: usize,
}

impl BandLayout {
    fn new(g: &ConvGeometry) -> Self {
        let used = |k: usize, d: usize, s: usize| {
            let mut v: Vec<usize> = (0..k).map(|r| (r * d) % s).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let halo_cols = g.dw * (g.kw - 1) / g.sw;
        // The halo columns are computed and dropped; on narrow images (deep layers) they
        // cost more than copying the band once per column tap, which needs none. The
        // copies cost `kw` band elements per output position and channel against
        // `kh·kw·K/groups` FMAs, so only groups with a full block of output channels.
        let per_tap_cols =
            halo_cols * 20 > g.w_out + halo_cols && g.c_out_per_group() >= 8 && g.kw > 1;
        BandLayout {
            row_phases: used(g.kh, g.dh, g.sh),
            col_planes: if per_tap_cols {
                (0..g.kw).map(|s| s * g.dw).collect()
            } else {
                used(g.kw, g.dw, g.sw)
            },
            per_tap_cols,
            halo_rows: g.dh * (g.kh - 1) / g.sh,
            halo_cols: if per_tap_cols { 0 } else { halo_cols },
        }
    }

    fn planes_per_channel(&self) -> usize {
        self.row_phases.len() * self.col_planes.len()
    }

    /// Output rows and columns of a band that fits `BAND_BYTES`: full-width bands where
    /// they can hold `STRIP_ROWS` rows, else column strips of equal width.
    fn band_shape(&self, g: &ConvGeometry, elem: usize) -> (usize, usize) {
        // Per-tap planes hold `kw` copies of each row: a band up to twice the budget
        // (still inside L2; the tiles read it in chunks of channels) keeps narrow images
        // in one band rather than short ones that re-copy their halo rows.
        let budget = if self.per_tap_cols {
            2 * BAND_BYTES
        } else {
            BAND_BYTES
        };
        let per_plane = budget / (g.c_in_per_group() * self.planes_per_channel() * elem).max(1);
        let full_rows = (per_plane / (g.w_out + self.halo_cols)).saturating_sub(self.halo_rows);
        if full_rows >= STRIP_ROWS.min(g.h_out) {
            return (full_rows.min(g.h_out), g.w_out);
        }
        let rows = STRIP_ROWS.min(g.h_out);
        let cols = (per_plane / (rows + self.halo_rows))
            .saturating_sub(self.halo_cols)
            .clamp(32.min(g.w_out), g.w_out);
        (rows, g.w_out.div_ceil(g.w_out.div_ceil(cols)))
    }

    /// Shift of each (channel, tap) inside a band of `rows` output rows and `pitch`.
    fn offsets(&self, g: &ConvGeometry, rows: usize, pitch: usize) -> Vec<isize> {
        let plane = (rows + self.halo_rows) * pitch;
        let pos = |v: &[usize], x: usize| v.iter().position(|&p| p == x).unwrap_or(0);
        let mut offs = Vec::with_capacity(g.c_in_per_group() * g.kh * g.kw);
        for c in 0..g.c_in_per_group() {
            for r in 0..g.kh {
                let (a, i) = ((r * g.dh) % g.sh, (r * g.dh) / g.sh);
                for s in 0..g.kw {
                    let (b, j) = if self.per_tap_cols {
                        (s * g.dw, 0)
                    } else {
                        ((s * g.dw) % g.sw, (s * g.dw) / g.sw)
                    };
                    let p = (c * self.row_phases.len() + pos(&self.row_phases, a))
                        * self.col_planes.len()
                        + pos(&self.col_planes, b);
                    offs.push((p * plane + i * pitch + j) as isize);
                }
            }
        }
        offs
    }

    /// The padded, phase-split band for output rows `p0..p0 + rows` and columns
    /// `q0..q0 + cols` of one image and group, followed by `slack` zeros. Written front
    /// to back in one pass, so nothing is zeroed twice.
    #[allow(clippy::too_many_arguments)]
    fn fill<T: ConvFloat>(
        &self,
        g: &ConvGeometry,
        x_group: &[T],
        p0: usize,
        rows: usize,
        q0: usize,
        cols: usize,
        slack: usize,
    ) -> Result<Scratch<T>> {
        let pitch = cols + self.halo_cols;
        let planes = g.c_in_per_group() * self.planes_per_channel();
        let len = planes * (rows + self.halo_rows) * pitch + slack;
        let mut band = Scratch::with_capacity(len, "input band")?;
        for c in 0..g.c_in_per_group() {
            let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
            for &a in &self.row_phases {
                for &b in &self.col_planes {
                    // Band columns j whose source column sw·(q0 + j) + b − pad_left lies
                    // inside the input: j_lo..j_hi.
                    let c0 = g.sw * q0 + b;
                    let j_lo = g.pad_left.saturating_sub(c0).div_ceil(g.sw).min(pitch);
                    let j_hi = (g.w + g.pad_left)
                        .saturating_sub(c0)
                        .div_ceil(g.sw)
                        .clamp(j_lo, pitch);
                    for i in 0..rows + self.halo_rows {
                        let pr = g.sh * (p0 + i) + a;
                        let Some(src_r) = pr.checked_sub(g.pad_top).filter(|&r| r < g.h) else {
                            band.extend_zeros(pitch);
                            continue;
                        };
                        let x_row = &x_c[src_r * g.w..(src_r + 1) * g.w];
                        band.extend_zeros(j_lo);
                        if j_hi > j_lo {
                            let first = c0 + g.sw * j_lo - g.pad_left;
                            if g.sw == 1 {
                                band.extend_from_slice(&x_row[first..first + (j_hi - j_lo)]);
                            } else {
                                gather(&mut band, &x_row[first..], g.sw, j_hi - j_lo);
                            }
                        }
                        band.extend_zeros(pitch - j_hi);
                    }
                }
            }
        }
        band.extend_zeros(slack);
        debug_assert_eq!(band.len(), len);
        Ok(band)
    }
}

/// Appends `src[0], src[step], …` (`n` elements) to `band`; `src` holds at least
/// `(n − 1)·step + 1` elements.
fn gather<T: ConvFloat>(band: &mut Scratch<T>, src: &[T], step: usize, n: usize) {
    let start = band.len();
    band.extend_zeros(n);
    let dst = &mut band[start..];
    // A constant step lets the compiler vectorise the whole-chunk loop.
    let full = match step {
        2 => gather_chunks::<T, 2>(dst, src),
        3 => gather_chunks::<T, 3>(dst, src),
        4 => gather_chunks::<T, 4>(dst, src),
        _ => {
            let full = (src.len() / step).min(n);
            for (d, c) in dst[..full].iter_mut().zip(src.chunks_exact(step)) {
                *d = c[0];
            }
            full
        }
    };
    // The one element whose chunk the end of the row cuts short.
    if full < n {
        dst[full] = src[full * step];
    }
}

/// `dst[i] = src[i·N]` over the whole `N`-chunks of `src`; returns how many were copied.
fn gather_chunks<T: ConvFloat, const N: usize>(dst: &mut [T], src: &[T]) -> usize {
    let (chunks, _) = src.as_chunks::<N>();
    let full = chunks.len().min(dst.len());
    for (d, c) in dst[..full].iter_mut().zip(chunks) {
        *d = c[0];
    }
    full
}

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
    let packed: Vec<GroupWeights<'_, T>> = (0..g.groups)
        .map(|gi| GroupWeights::new(w, g, gi))
        .collect::<Result<_>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;

    fn layout(x: [usize; 4], w: [usize; 4], stride: [i64; 2], dilation: [i64; 2]) -> BandLayout {
        let g = ConvGeometry::new(x, w, stride, Padding::Same, dilation, 1).unwrap();
        BandLayout::new(&g)
    }

    #[test]
    fn narrow_images_copy_one_plane_per_column_tap() {
        // The deep 14×14 layer and narrow strided / dilated ones take per-tap planes and
        // no halo; wide images keep the phase planes and their halo. (The strided shape is
        // one of those `layers_larger_than_one_tile_split_across_threads` checks against
        // the reference, so both layouts are under the correctness tests.)
        let deep = layout([1, 256, 14, 14], [256, 256, 3, 3], [1, 1], [1, 1]);
        assert!(deep.per_tap_cols && deep.halo_cols == 0);
        assert_eq!(deep.col_planes, [0, 1, 2]);
        let strided = layout([1, 12, 11, 14], [16, 12, 3, 3], [2, 3], [2, 2]);
        assert!(strided.per_tap_cols);
        assert_eq!(strided.col_planes, [0, 2, 4]);
        let wide = layout([1, 64, 56, 56], [64, 64, 3, 3], [1, 1], [1, 1]);
        assert!(!wide.per_tap_cols && wide.halo_cols == 2);
        let s2 = layout([1, 64, 56, 56], [64, 64, 3, 3], [2, 2], [1, 1]);
        assert_eq!((s2.per_tap_cols, s2.col_planes.len()), (false, 2));
        // Few output channels per group: the copies would cost more than the halo.
        assert!(!layout([1, 4, 14, 14], [4, 4, 3, 3], [1, 1], [1, 1]).per_tap_cols);
    }
}
