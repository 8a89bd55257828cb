//! im2col + GEMM: for each run of output positions (one or more tiles of `nc`), the
//! receptive fields are packed as the columns of a `kt × width` panel
//! (`kt = C_in/groups · kh · kw`), which the microkernel multiplies with the weights. Only
//! one panel per task exists at a time, never the whole im2col matrix; strided layers
//! pack it from a phase-split band of a few output rows' input (see `band`).

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::try_reserved;

use super::band::{gather, unpadded_tap, BandLayout, BAND_BYTES};
use super::scratch::Scratch;
use super::tiles::{
    compute_tiles, gcd, zero_row, GroupWeights, Offsets, Split, TileOut, TileRows, TileRun,
};

/// Panel bytes that stay in L1 for the kernel, which reads the panel right after it is
/// packed. A short reduction (depthwise and other small groups) makes one tile's panel
/// tiny, and then the per-panel work (the output-row segments, the calls into the packer
/// and the tile loop) rivals the arithmetic: such panels span as many tiles as fit here
/// (measured on the depthwise and 2- and 4-channel group layers: 8 and 128 KiB were
/// slower).
const PANEL_BYTES: usize = 32 * 1024;

/// Fewest columns of a panel, where a quarter of the L2 cache holds them. Every panel
/// costs a packing call per (channel, kernel row), whose fixed cost a one-tile panel of a
/// long reduction (`r3x3`: 576 rows of 48 columns) paid for a few vectors each. With at
/// least 192 columns (AVX-512 Xeon, interleaved calls, 1 / 2 threads): `r3x3f64`'s im2col
/// 0.90 / 0.91× the time, `r3x3`'s 0.94 / 0.94×, `conv1`'s 0.92 / 0.87×, `s2`'s 0.96 /
/// 0.95×; at AVX2 (16-column tiles) `r3x3`'s 0.76× and `deep`'s 0.85× at 1 thread; `pw`,
/// `cifar` and `dw` within 2 %. `deep`'s one AVX-512 tile is 442 KiB already: two were
/// 1.04× slower.
const MIN_PANEL_COLS: usize = 192;

/// Tiles per panel for tiles of `tile_bytes` (`nc` columns): as many as fit
/// `PANEL_BYTES`, or `MIN_PANEL_COLS` columns' worth as far as a quarter of the L2 cache
/// holds them, at least one.
fn tiles_per_panel(tile_bytes: usize, nc: usize) -> usize {
    let in_l1 = PANEL_BYTES / tile_bytes.max(1);
    let wanted = MIN_PANEL_COLS.div_ceil(nc);
    let in_l2 = crate::cache::l2_bytes() / 4 / tile_bytes.max(1);
    in_l1.max(wanted.min(in_l2)).max(1)
}

/// An output-row segment of a panel: first panel column, output row, output column and
/// length.
type Segment = (usize, usize, usize, usize);

/// Packs panels of one task: the geometry and kernel, with the buffers reused from
/// panel to panel.
struct PanelPacker<'a, T: 'static> {
    g: &'a ConvGeometry,
    kern: &'a TileKernel<T>,
    strided: &'a StridedTaps,
    phased: Option<&'a PhasedWindows>,
    /// The phase-split band of a strided layer, its first output row and its rows.
    band: Option<(Scratch<T>, usize, usize)>,
    segs: Vec<Segment>,
    edges: Vec<usize>,
    /// The first output column, covered positions and width of the panel `edges` was
    /// listed for.
    edges_of: Option<(usize, usize, usize)>,
    /// The gathered phase of an input row, for strided layers without a band.
    phase: Option<Scratch<T>>,
}

impl<'a, T: ConvFloat> PanelPacker<'a, T> {
    /// A packer for panels `width` positions wide.
    fn new(
        g: &'a ConvGeometry,
        kern: &'a TileKernel<T>,
        strided: &'a StridedTaps,
        phased: Option<&'a PhasedWindows>,
        width: usize,
    ) -> Result<Self> {
        // Room for a panel's segments and the usual edges (one per segment and tap at
        // each end) up front: grown push by push, they were a few reallocations in each
        // of `dw`'s 256 tasks.
        let segs = width.div_ceil(g.w_out.max(1)) + 1;
        Ok(PanelPacker {
            g,
            kern,
            strided,
            phased,
            band: None,
            segs: try_reserved(segs, "im2col panel segments")?,
            edges: try_reserved(2 * g.kw * segs, "im2col panel edges")?,
            edges_of: None,
            phase: match (g.sw, phased) {
                (2.., None) => Some(Scratch::with_capacity(g.w + g.kw, "im2col phase row")?),
                _ => None,
            },
        })
    }

    /// Packs columns `m0..m0 + width` (flattened output positions, zeros from `m_end` on)
    /// of the im2col matrix of one image and group into `panel` (`kt × width`,
    /// row-major). The panel's split into output-row segments is the same for every
    /// panel row, so it is computed once. Each panel row of a segment is a run of one
    /// input row (every `sw`-th element), zeros where the run leaves the input; at unit
    /// stride the `kw` runs of a kernel row are one call into the kernel's packer, and
    /// where output rows are as wide as input rows, or the layer is strided and its
    /// phase-split band holds rows as wide as output rows, one call covers every segment.
    fn pack(
        &mut self,
        x_group: &[T],
        m0: usize,
        m_end: usize,
        width: usize,
        panel: &mut [T],
    ) -> Result<()> {
        let (g, kern) = (self.g, self.kern);
        self.segs.clear();
        let (mut p, mut q) = (m0 / g.w_out, m0 % g.w_out);
        let mut j = 0;
        while j < width && m0 + j < m_end {
            let seg = (g.w_out - q).min(width - j).min(m_end - m0 - j);
            self.segs.push((j, p, q, seg));
            j += seg;
            (p, q) = if q + seg == g.w_out {
                (p + 1, 0)
            } else {
                (p, q + seg)
            };
        }
        let covered = j;
        // At unit strides with as many output as input columns, consecutive output
        // positions read consecutive elements of the flattened input plane: a kernel row's
        // taps over the whole panel are then one long run each instead of one short run per
        // output-row segment (with the edge list and the unzeroed buffers, `dw`'s im2col
        // 1.62 → 1.12 ms and `cifar`'s 2.87 → 2.49 ms, interleaved runs at 1 thread).
        let flat = g.sh == 1 && g.sw == 1 && g.w_out == g.w;
        if let (Some(phased), true) = (self.phased, covered > 0) {
            self.cover_rows(phased, x_group, m0 / g.w_out, (m0 + covered - 1) / g.w_out)?;
        }
        // The edges depend only on the segments' columns: panels from the same output
        // column with as many positions share them (`dw`'s full panels are 16 whole
        // rows; its im2col 0.94× the time with the list made once per panel shape).
        let edges_of = Some((m0 % g.w_out, covered, width));
        if (flat || self.band.is_some()) && self.edges_of != edges_of {
            self.list_row_edges(width);
            self.edges_of = edges_of;
        }
        // Geometry extents are below 2^31, so these signed offsets cannot overflow.
        let pad_left = g.pad_left as isize;
        for c in 0..g.c_in_per_group() {
            let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
            for r in 0..g.kh {
                let k0 = (c * g.kh + r) * g.kw;
                let taps = &mut panel[k0 * width..(k0 + g.kw) * width];
                if flat {
                    // Position m, tap s reads input element m + (r·dh − pad_top)·w + s·dw
                    // − pad_left of the plane: outside it above and below the image, and
                    // in the neighbouring row where the tap leaves the row sideways
                    // (zeroed after the copy).
                    let above = (r * g.dh) as isize - g.pad_top as isize;
                    let start = m0 as isize + above * g.w as isize - pad_left;
                    kern.pack_window(taps, width, g.kw, covered, x_c, start, g.dw);
                } else if let (Some(phased), Some((band, p0, rows))) = (self.phased, &self.band) {
                    let band = (&band[..], *p0, *rows);
                    let strided = self.strided;
                    phased.pack(kern, strided, taps, width, covered, band, m0, (g, c, r));
                } else {
                    self.pack_segments(taps, width, r, x_c);
                }
                for &at in &self.edges {
                    taps[at] = T::ZERO;
                }
                if covered < width {
                    let rest = width - covered;
                    kern.pack_window(&mut taps[covered..], width, g.kw, rest, &[], 0, 0);
                }
            }
        }
        Ok(())
    }

    /// Makes the band hold output rows `first..=last`: a new one from `first` on where
    /// it does not, of as many rows as fit the budget.
    fn cover_rows(
        &mut self,
        phased: &PhasedWindows,
        x_group: &[T],
        first: usize,
        last: usize,
    ) -> Result<()> {
        if let Some((_, p0, rows)) = self.band {
            if p0 <= first && last < p0 + rows {
                return Ok(());
            }
        }
        let g = self.g;
        self.band = None;
        let rows = phased.rows.max(last + 1 - first).min(g.h_out - first);
        let band = phased.layout.fill(g, x_group, first, rows, 0, g.w_out, 0)?;
        self.band = Some((band, first, rows));
        Ok(())
    }

    /// The elements of a kernel row's taps (offsets into its `kw` panel rows) that a
    /// window over the whole panel takes from a neighbouring row, to be zeroed: output
    /// column q of tap s reads column q + b of its plane's row (b = s·dw − pad_left for
    /// the input planes at unit stride, ⌊(s·dw − pad_left) / sw⌋ for a phase plane; both
    /// rows `w_out` wide), outside the row for q < −b and for q ≥ w_out − b. The same for
    /// every kernel row and channel of a panel, and for panels from the same output
    /// column with as many positions, so listed once for each such panel shape (zeroing
    /// them per kernel row, segment by segment, took 20 % of `dw`'s im2col).
    fn list_row_edges(&mut self, width: usize) {
        let g = self.g;
        self.edges.clear();
        for s in 0..g.kw {
            let (b, _) = unpadded_tap(g, s);
            let w_out = g.w_out as isize;
            let left = (-b).clamp(0, w_out) as usize;
            let right = (w_out - b).clamp(left as isize, w_out) as usize;
            if left == 0 && right == g.w_out {
                continue;
            }
            for &(j, _, q, len) in &self.segs {
                let lo = left.saturating_sub(q).min(len);
                let hi = right.saturating_sub(q).clamp(lo, len);
                let at = s * width + j;
                for t in (0..lo).chain(hi..len) {
                    self.edges.push(at + t);
                }
            }
        }
    }

    /// Packs a kernel row's taps segment by segment, each from its input row.
    fn pack_segments(&mut self, taps: &mut [T], width: usize, r: usize, x_c: &[T]) {
        let (g, kern) = (self.g, self.kern);
        // Geometry extents are below 2^31, so these signed offsets cannot overflow.
        let pad_left = g.pad_left as isize;
        let mut phase = self.phase.as_mut();
        for &(j, p, q, len) in &self.segs {
            // Outside the input rows the segment reads from an empty row: zeros.
            let x_row = (p * g.sh + r * g.dh)
                .checked_sub(g.pad_top)
                .filter(|&v| v < g.h)
                .map_or(&[][..], |row| &x_c[row * g.w..(row + 1) * g.w]);
            if let Some(phase) = phase.as_deref_mut() {
                let seg = (j, q, len);
                self.strided.pack(kern, taps, width, seg, x_row, phase);
            } else {
                // Tap s, element t reads input column q + s·dw + t − pad_left.
                let start = q as isize - pad_left;
                kern.pack_window(&mut taps[j..], width, g.kw, len, x_row, start, g.dw);
            }
        }
    }
}

/// The taps of one kernel row at stride `sw > 1`, by phase. Tap `s`, element `t` of an
/// output-row segment from output column `q` reads input column `q·sw − pad_left + s·dw +
/// t·sw`: one phase (the column mod `sw`) of the row, at consecutive elements of it. So
/// each phase the taps use is gathered once into a buffer, and its taps (every `step`-th,
/// `shift` phase elements apart) are contiguous windows of it, packed in one
/// `pack_window` call: `conv1`'s seven strided gathers of `len` elements per kernel row
/// become two of `len + 3` and vector copies (its im2col 4.05 → 3.06 ms).
struct StridedTaps {
    sw: usize,
    pad_left: usize,
    step: usize,
    shift: usize,
    /// Per phase class: first tap, its offset in the phase (in phase elements), the
    /// phase and the number of taps.
    classes: Vec<(usize, usize, usize, usize)>,
}

impl StridedTaps {
    fn new(g: &ConvGeometry) -> Self {
        let common = gcd(g.sw, g.dw);
        let step = g.sw / common;
        let classes = (0..step.min(g.kw))
            .map(|s0| {
                (
                    s0,
                    s0 * g.dw / g.sw,
                    s0 * g.dw % g.sw,
                    (g.kw - s0).div_ceil(step),
                )
            })
            .collect();
        StridedTaps {
            sw: g.sw,
            pad_left: g.pad_left,
            step,
            shift: g.dw / common,
            classes,
        }
    }

    /// Packs the taps over one segment (first panel column `j`, output column `q`, `len`
    /// positions) into `taps`, the kernel row's panel rows; `phase` is a reusable buffer.
    #[allow(clippy::too_many_arguments)]
    fn pack<T: ConvFloat>(
        &self,
        kern: &TileKernel<T>,
        taps: &mut [T],
        width: usize,
        (j, q, len): (usize, usize, usize),
        x_row: &[T],
        phase: &mut Scratch<T>,
    ) {
        // Geometry extents are below 2^31, so these signed offsets cannot overflow.
        let base = (q * self.sw) as isize - self.pad_left as isize;
        for &(s0, a0, ph, count) in &self.classes {
            // Phase element i is input column first + i·sw; the taps read i < need.
            let first = base + ph as isize;
            let need = a0 + (count - 1) * self.shift + len;
            // Divisions only at the row's ends, not per segment and class (`s2`'s im2col
            // 2 % faster).
            let i_lo = if first >= 0 {
                0
            } else {
                first.unsigned_abs().div_ceil(self.sw).min(need)
            };
            let inside = (first + ((need - 1) * self.sw) as isize) < x_row.len() as isize;
            let i_hi = if inside {
                need
            } else {
                (x_row.len() as isize - first)
                    .max(0)
                    .unsigned_abs()
                    .div_ceil(self.sw)
                    .clamp(i_lo, need)
            };
            phase.clear();
            if i_hi > i_lo {
                let from = (first + (i_lo * self.sw) as isize).unsigned_abs();
                gather(phase, &x_row[from..], self.sw, i_hi - i_lo);
            }
            let start = a0 as isize - i_lo as isize;
            let dst = &mut taps[s0 * width + j..];
            kern.pack_window(dst, self.step * width, count, len, phase, start, self.shift);
        }
    }
}

/// Strided layers whose taps are windows of a phase-split band with rows `w_out` wide
/// (see [`BandLayout::unpadded_columns`]): each (channel, kernel row, phase class) of a
/// panel is one `pack_window` call over every output-row segment, where the segment by
/// segment gathers made 30 % of `s2`'s im2col.
struct PhasedWindows {
    layout: BandLayout,
    /// Output rows per band.
    rows: usize,
}

impl PhasedWindows {
    fn new(g: &ConvGeometry, elem: usize) -> Option<Self> {
        if g.sh == 1 && g.sw == 1 {
            return None;
        }
        let layout = BandLayout::unpadded_columns(g)?;
        let rows = layout.full_width_rows(g, BAND_BYTES, elem).max(1);
        Some(PhasedWindows { layout, rows })
    }

    /// Packs kernel row `r` of channel `c` over the panel's first `covered` positions
    /// (from `m0`) into `taps`, its `kw` panel rows, from `band` (output rows `p0..p0 +
    /// rows`). Output position m = p·w_out + q, tap s reads row p + ⌊r·dh / sh⌋ − p0 of
    /// the plane of row phase (r·dh) mod sh, element q + ⌊(s·dw − pad_left) / sw⌋; taps
    /// of one class share the plane and lie `shift` elements apart.
    #[allow(clippy::too_many_arguments)]
    fn pack<T: ConvFloat>(
        &self,
        kern: &TileKernel<T>,
        strided: &StridedTaps,
        taps: &mut [T],
        width: usize,
        covered: usize,
        (band, p0, rows): (&[T], usize, usize),
        m0: usize,
        (g, c, r): (&ConvGeometry, usize, usize),
    ) {
        let l = &self.layout;
        let plane_len = (rows + l.halo_rows) * g.w_out;
        // Geometry extents are below 2^31, so these signed offsets cannot overflow.
        let down = ((r * g.dh) / g.sh) as isize - p0 as isize;
        for &(s0, _, _, count) in &strided.classes {
            let (b, phase) = unpadded_tap(g, s0);
            let plane = l.plane(c, (r * g.dh) % g.sh, phase + g.pad_left);
            let src = &band[plane * plane_len..(plane + 1) * plane_len];
            let start = m0 as isize + down * g.w_out as isize + b;
            let dst = &mut taps[s0 * width..];
            let ld = strided.step * width;
            kern.pack_window(dst, ld, count, covered, src, start, strided.shift);
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
    // A plane of few tiles splits unevenly into position chunks (`deep`'s 196 positions
    // are 4 whole tiles and a partial one, 3 of them for one of two threads); channel
    // chunks then balance the threads at the price of each packing every panel (at 2
    // threads `deep`'s im2col 1.03 → 0.83 ms; `s2`, `r3x3` and `conv1`, whose planes hold
    // 17 and more tiles, were 1.18-1.34× slower split so).
    let uneven = threads > 1 && tiles.div_ceil(threads) * threads * 20 > tiles * 23;
    let split = Split::choose(g, threads, 1, tiles, mr, uneven);
    let tiles_per_chunk = tiles.div_ceil(split.m_chunks);
    // Position chunks start at the whole tile nearest to an even share of the positions:
    // `deep`'s 196 positions in 48-wide tiles split 96 + 100 between two threads rather
    // than 144 + 52 (its im2col at 2 threads 1.53-1.73× auto before).
    let chunk_start = |chunk: usize| {
        if chunk >= split.m_chunks {
            plane_out
        } else {
            ((chunk * plane_out / split.m_chunks + nc / 2) / nc * nc).min(plane_out)
        }
    };
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let kt = cg * g.kh * g.kw;
    let zero = zero_row::<T>(kt)?;
    let packed: Vec<GroupWeights<'_, T>> = (0..g.groups)
        .map(|gi| GroupWeights::new(w, &zero, g, gi))
        .collect();
    let tile_bytes = kt.saturating_mul(nc * std::mem::size_of::<T>());
    let per_panel = tiles_per_panel(tile_bytes, nc).clamp(1, tiles_per_chunk);
    let width = per_panel * nc;
    let offs = Offsets::new((0..kt).map(|k| (k * width) as isize).collect());
    let strided = StridedTaps::new(g);
    let phased = PhasedWindows::new(g, std::mem::size_of::<T>());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, chunk, oc_range) = split.task(g, t, mr);
        let (m_lo, m_hi) = (chunk_start(chunk), chunk_start(chunk + 1));
        if m_lo >= m_hi || oc_range.is_empty() {
            return Ok(());
        }
        let mut panel = Scratch::<T>::overwritable(kt * width, "im2col panel")?;
        let mut packer = PanelPacker::new(g, kern, &strided, phased.as_ref(), width)?;
        let blocks = oc_range.start / mr..oc_range.end.div_ceil(mr);
        let dest = TileRows::new(&out, bias, gi * kg, oc_range, mr, nc);
        let tile_len = blocks.len() * mr * nc;
        let mut ctile = Scratch::<T>::overwritable(per_panel * tile_len, "output tiles")?;
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        let mut m0 = m_lo;
        while m0 < m_hi {
            let len = width.min(m_hi - m0);
            let nt = len.div_ceil(nc);
            packer.pack(x_group, m0, m_hi, width, &mut panel)?;
            // A panel's tiles are runs of the output planes: whole ones go straight there.
            let whole = len / nc;
            if whole > 0 {
                // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
                unsafe {
                    dest.compute_into_planes(
                        kern,
                        &packed[gi],
                        (&panel, 0, &offs),
                        whole,
                        n * g.c_out,
                        plane_out,
                        m0,
                    )?
                };
            }
            if whole < nt {
                compute_tiles(
                    kern,
                    &packed[gi],
                    blocks.clone(),
                    &panel,
                    whole * nc,
                    nt - whole,
                    len - (nt - 1) * nc,
                    &offs,
                    TileOut::Buffer(&mut ctile),
                );
                let runs = TileRun::contiguous(m0 + whole * nc, nt - whole, nc, m_hi);
                // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
                unsafe { dest.store_tiles(&ctile, tile_len, runs, n * g.c_out, plane_out) };
            }
            m0 += width;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;

    /// Every tap of a kernel row is in exactly one phase class, at the phase and phase
    /// offset of its input column: tap s reads column q·sw − pad_left + s·dw + t·sw, which
    /// is element (s·dw) / sw + t of phase (s·dw) mod sw from column q·sw − pad_left.
    #[test]
    fn strided_taps_partition_the_kernel_row_by_phase() {
        for sw in 2..6i64 {
            for dw in 1..6i64 {
                for kw in 1..8usize {
                    let g = ConvGeometry::new(
                        [1, 1, 4, 200],
                        [1, 1, 1, kw],
                        [1, sw],
                        Padding::Explicit([0; 4]),
                        [1, dw],
                        1,
                    )
                    .unwrap();
                    let taps = StridedTaps::new(&g);
                    let mut seen = vec![0; kw];
                    for &(s0, a0, ph, count) in &taps.classes {
                        for m in 0..count {
                            let s = s0 + m * taps.step;
                            assert!(s < kw, "sw {sw} dw {dw} kw {kw}: tap {s}");
                            seen[s] += 1;
                            let col = s * g.dw;
                            assert_eq!((ph, a0 + m * taps.shift), (col % g.sw, col / g.sw));
                        }
                    }
                    assert!(
                        seen.iter().all(|&k| k == 1),
                        "sw {sw} dw {dw} kw {kw}: {seen:?}"
                    );
                }
            }
        }
    }
}
