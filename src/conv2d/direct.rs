//! Direct convolution from NCHW input, no im2col: per band of output rows, the input is
//! copied once into a zero-padded, phase-split band (one plane per input channel and
//! stride phase), and every (channel, tap) becomes a constant shift inside that band.
//! Output positions run over the band's flattened rows, pitch `w_out + halo`; the `halo`
//! columns per row are computed and dropped.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::try_zeroed;

use super::tiles::{run_tiles, PackedWeights, Split};

/// Bytes of padded input band each task keeps hot (about half of a 1 MiB L2).
const BAND_BYTES: usize = 512 * 1024;

/// Phase-split layout of one band of the padded input.
struct BandLayout {
    /// Stride phases actually used by some tap, along rows and columns.
    row_phases: Vec<usize>,
    col_phases: Vec<usize>,
    /// Extra phase rows / columns needed below / right of each output row / column.
    halo_rows: usize,
    pitch: usize,
}

impl BandLayout {
    fn new(g: &ConvGeometry) -> Self {
        let used = |k: usize, d: usize, s: usize| {
            let mut v: Vec<usize> = (0..k).map(|r| (r * d) % s).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        BandLayout {
            row_phases: used(g.kh, g.dh, g.sh),
            col_phases: used(g.kw, g.dw, g.sw),
            halo_rows: g.dh * (g.kh - 1) / g.sh,
            pitch: g.w_out + g.dw * (g.kw - 1) / g.sw,
        }
    }

    fn planes_per_channel(&self) -> usize {
        self.row_phases.len() * self.col_phases.len()
    }

    /// Output rows per band so that a band stays within `BAND_BYTES`.
    fn max_rows(&self, g: &ConvGeometry, elem: usize) -> usize {
        let row_bytes = g.c_in_per_group() * self.planes_per_channel() * self.pitch * elem;
        (BAND_BYTES / row_bytes.max(1))
            .saturating_sub(self.halo_rows)
            .clamp(1, g.h_out.max(1))
    }

    /// Shift of each (channel, tap) inside a band of `rows` output rows.
    fn offsets(&self, g: &ConvGeometry, rows: usize) -> Vec<isize> {
        let plane = (rows + self.halo_rows) * self.pitch;
        let pos = |v: &[usize], x: usize| v.iter().position(|&p| p == x).unwrap_or(0);
        let mut offs = Vec::with_capacity(g.c_in_per_group() * g.kh * g.kw);
        for c in 0..g.c_in_per_group() {
            for r in 0..g.kh {
                let (a, i) = ((r * g.dh) % g.sh, (r * g.dh) / g.sh);
                for s in 0..g.kw {
                    let (b, j) = ((s * g.dw) % g.sw, (s * g.dw) / g.sw);
                    let p = (c * self.row_phases.len() + pos(&self.row_phases, a))
                        * self.col_phases.len()
                        + pos(&self.col_phases, b);
                    offs.push((p * plane + i * self.pitch + j) as isize);
                }
            }
        }
        offs
    }

    /// Copies input rows for output rows `p0..p0 + rows` of one image and group into `band`
    /// (zeroed beforehand), phase-split and padded.
    fn fill<T: ConvFloat>(
        &self,
        g: &ConvGeometry,
        x_group: &[T],
        p0: usize,
        rows: usize,
        band: &mut [T],
    ) {
        let plane = (rows + self.halo_rows) * self.pitch;
        let mut dst = 0;
        for c in 0..g.c_in_per_group() {
            let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
            for &a in &self.row_phases {
                for &b in &self.col_phases {
                    for i in 0..rows + self.halo_rows {
                        let pr = g.sh * (p0 + i) + a;
                        let Some(src_r) = pr.checked_sub(g.pad_top).filter(|&r| r < g.h) else {
                            continue;
                        };
                        let x_row = &x_c[src_r * g.w..(src_r + 1) * g.w];
                        let d_row = &mut band[dst + i * self.pitch..dst + (i + 1) * self.pitch];
                        for (j, d) in d_row.iter_mut().enumerate() {
                            if let Some(col) =
                                (g.sw * j + b).checked_sub(g.pad_left).filter(|&q| q < g.w)
                            {
                                *d = x_row[col];
                            }
                        }
                    }
                    dst += plane;
                }
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
    let layout = BandLayout::new(g);
    let max_rows = layout.max_rows(g, std::mem::size_of::<T>());
    let split = Split::choose(g, threads, g.h_out.div_ceil(max_rows), g.h_out, kern.mr);
    let rows_per_band = g.h_out.div_ceil(split.m_chunks);
    let packed: Vec<PackedWeights<T>> = (0..g.groups)
        .map(|gi| PackedWeights::pack(w, g, gi, kern.mr))
        .collect::<Result<_>>()?;
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, band_idx, oc_range) = split.task(g, t, kern.mr);
        let p0 = band_idx * rows_per_band;
        if p0 >= g.h_out || oc_range.is_empty() {
            return Ok(());
        }
        let rows = rows_per_band.min(g.h_out - p0);
        let offs = layout.offsets(g, rows);
        let plane = (rows + layout.halo_rows) * layout.pitch;
        // Slack past the last plane: the last tile reads up to `nc` positions beyond the
        // band's final row, plus the widest tap shift.
        let len = cg * layout.planes_per_channel() * plane + layout.pitch + kern.nc;
        let mut band = try_zeroed::<T>(len, "input band")?;
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        layout.fill(g, x_group, p0, rows, &mut band);
        let m_len = rows * layout.pitch;
        let pitch = layout.pitch;
        run_tiles(
            kern,
            &packed[gi],
            oc_range,
            &offs,
            m_len,
            &mut band,
            |m0, _| m0,
            |oc, m0, row| {
                let k = gi * kg + oc;
                let add = bias.map_or(T::ZERO, |b| b[k]);
                let y_k = ((n * g.c_out + k) * g.h_out + p0) * g.w_out;
                let mut j = 0;
                while j < row.len() && m0 + j < m_len {
                    let (p, q) = ((m0 + j) / pitch, (m0 + j) % pitch);
                    let seg = (pitch - q).min(row.len() - j);
                    if q < g.w_out {
                        let len = seg.min(g.w_out - q);
                        // SAFETY: this task alone writes output channel k, rows p0..p0+rows.
                        unsafe { out.write_row(y_k + p * g.w_out + q, &row[j..j + len], add) };
                    }
                    j += seg;
                }
            },
        )
    })
}
