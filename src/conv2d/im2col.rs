//! im2col + GEMM: for each tile of `nc` output positions, the receptive fields are packed
//! as the columns of a `kt × nc` panel (`kt = C_in/groups · kh · kw`), which the
//! microkernel multiplies with the packed weights. Only one panel per task exists at a
//! time, never the whole im2col matrix.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::try_zeroed;

use super::tiles::{run_tiles, PackedWeights, Split};

/// Packs columns `m0..m0 + nc` (flattened output positions, clipped at `m_end`) of the
/// im2col matrix of one image and group into `panel` (`kt × nc`, row-major).
fn pack_panel<T: ConvFloat>(
    g: &ConvGeometry,
    x_group: &[T],
    m0: usize,
    m_end: usize,
    nc: usize,
    panel: &mut [T],
) {
    let mut k = 0;
    for c in 0..g.c_in_per_group() {
        let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let dst = &mut panel[k * nc..(k + 1) * nc];
                for (j, d) in dst.iter_mut().enumerate() {
                    let m = m0 + j;
                    *d = T::ZERO;
                    if m >= m_end {
                        continue;
                    }
                    let (p, q) = (m / g.w_out, m % g.w_out);
                    let row = (p * g.sh + r * g.dh)
                        .checked_sub(g.pad_top)
                        .filter(|&v| v < g.h);
                    let col = (q * g.sw + s * g.dw)
                        .checked_sub(g.pad_left)
                        .filter(|&v| v < g.w);
                    if let (Some(row), Some(col)) = (row, col) {
                        *d = x_c[row * g.w + col];
                    }
                }
                k += 1;
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
    let nc = kern.nc;
    let plane_out = g.h_out * g.w_out;
    let tiles = plane_out.div_ceil(nc);
    let split = Split::choose(g, threads, 1, tiles, kern.mr);
    let tiles_per_chunk = tiles.div_ceil(split.m_chunks);
    let packed: Vec<PackedWeights<T>> = (0..g.groups)
        .map(|gi| PackedWeights::pack(w, g, gi, kern.mr))
        .collect::<Result<_>>()?;
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let kt = cg * g.kh * g.kw;
    let offs: Vec<isize> = (0..kt).map(|k| (k * nc) as isize).collect();
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, chunk, oc_range) = split.task(g, t, kern.mr);
        let m_lo = chunk * tiles_per_chunk * nc;
        if m_lo >= plane_out || oc_range.is_empty() {
            return Ok(());
        }
        let m_hi = ((chunk + 1) * tiles_per_chunk * nc).min(plane_out);
        let mut panel = try_zeroed::<T>(kt * nc, "im2col panel")?;
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        run_tiles(
            kern,
            &packed[gi],
            oc_range,
            &offs,
            m_hi - m_lo,
            &mut panel,
            |m0, panel| {
                pack_panel(g, x_group, m_lo + m0, m_hi, nc, panel);
                0
            },
            |oc, m0, row| {
                let k = gi * kg + oc;
                let add = bias.map_or(T::ZERO, |b| b[k]);
                let len = row.len().min(m_hi - m_lo - m0);
                // SAFETY: this task alone writes output channel k, positions m_lo..m_hi.
                unsafe {
                    out.write_row((n * g.c_out + k) * plane_out + m_lo + m0, &row[..len], add)
                };
            },
        )
    })
}
