//! im2col + GEMM: for each tile of `nc` output positions, the receptive fields are packed
//! as the columns of a `kt × nc` panel (`kt = C_in/groups · kh · kw`), which the
//! microkernel multiplies with the packed weights. Only one panel per task exists at a
//! time, never the whole im2col matrix.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};

use super::scratch::Scratch;
use super::tiles::{compute_tiles, GroupWeights, Offsets, Split, TileRows};

/// A task's scratch for [`pack_panel`].
struct PackScratch<T: 'static> {
    /// (first panel column, output row, output column, length) of each output-row
    /// segment of the tile.
    segs: Vec<(usize, usize, usize, usize)>,
    /// One padded input row segment, shared by the `kw` taps of a kernel row.
    strip: Scratch<T>,
}

impl<T: ConvFloat> PackScratch<T> {
    fn new(g: &ConvGeometry, nc: usize) -> Result<Self> {
        Ok(PackScratch {
            segs: Vec::new(),
            strip: Scratch::zeroed(strip_len(g, nc).unwrap_or(MAX_STRIP), "im2col strip")?,
        })
    }
}

/// Longest strip of input columns copied at once.
const MAX_STRIP: usize = 1 << 14;

/// Input columns one output-row segment of `len` positions spans, when small enough to
/// copy as a strip (huge strides or dilations skip from column to column instead).
fn strip_len(g: &ConvGeometry, len: usize) -> Option<usize> {
    let span = len
        .checked_sub(1)?
        .checked_mul(g.sw)?
        .checked_add((g.kw - 1).checked_mul(g.dw)?)?
        .checked_add(1)?;
    (span <= MAX_STRIP).then_some(span)
}

/// Packs columns `m0..m0 + nc` (flattened output positions, clipped at `m_end`) of the
/// im2col matrix of one image and group into `panel` (`kt × nc`, row-major). The tile's
/// split into output-row segments is the same for every panel row, so it is computed
/// once; the `kw` taps of a kernel row copy from one padded strip of the input row.
fn pack_panel<T: ConvFloat>(
    g: &ConvGeometry,
    x_group: &[T],
    m0: usize,
    m_end: usize,
    nc: usize,
    panel: &mut [T],
    scratch: &mut PackScratch<T>,
) {
    let segs = &mut scratch.segs;
    segs.clear();
    let mut j = 0;
    while j < nc && m0 + j < m_end {
        let m = m0 + j;
        let (p, q) = (m / g.w_out, m % g.w_out);
        let seg = (g.w_out - q).min(nc - j).min(m_end - m);
        segs.push((j, p, q, seg));
        j += seg;
    }
    let covered = j;
    for c in 0..g.c_in_per_group() {
        let x_c = &x_group[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.kh {
            let k0 = (c * g.kh + r) * g.kw;
            let dst = |s: usize, j: usize, len: usize| (k0 + s) * nc + j..(k0 + s) * nc + j + len;
            for &(j, p, q, len) in segs.iter() {
                let row = (p * g.sh + r * g.dh)
                    .checked_sub(g.pad_top)
                    .filter(|&v| v < g.h);
                match row {
                    None => {
                        for s in 0..g.kw {
                            panel[dst(s, j, len)].fill(T::ZERO);
                        }
                    }
                    Some(row) => {
                        let x_row = &x_c[row * g.w..(row + 1) * g.w];
                        let c0 = q * g.sw;
                        let Some(span) = strip_len(g, len) else {
                            // Output column q + t, tap s reads input column
                            // (q + t)·sw + s·dw − pad_left.
                            for s in 0..g.kw {
                                for (t, v) in panel[dst(s, j, len)].iter_mut().enumerate() {
                                    *v = ((q + t) * g.sw + s * g.dw)
                                        .checked_sub(g.pad_left)
                                        .and_then(|col| x_row.get(col))
                                        .map_or(T::ZERO, |&x| x);
                                }
                            }
                            continue;
                        };
                        // Strip element t is input column q·sw + t − pad_left.
                        let strip = &mut scratch.strip[..span];
                        let t_lo = g.pad_left.saturating_sub(c0).min(strip.len());
                        let t_hi = (g.w + g.pad_left)
                            .saturating_sub(c0)
                            .clamp(t_lo, strip.len());
                        strip[..t_lo].fill(T::ZERO);
                        strip[t_hi..].fill(T::ZERO);
                        if t_hi > t_lo {
                            let src = c0 + t_lo - g.pad_left..c0 + t_hi - g.pad_left;
                            strip[t_lo..t_hi].copy_from_slice(&x_row[src]);
                        }
                        for s in 0..g.kw {
                            let from = &strip[s * g.dw..];
                            let to = &mut panel[dst(s, j, len)];
                            if g.sw == 1 {
                                to.copy_from_slice(&from[..len]);
                            } else {
                                for (t, v) in to.iter_mut().enumerate() {
                                    *v = from[t * g.sw];
                                }
                            }
                        }
                    }
                }
            }
            for s in 0..g.kw {
                panel[dst(s, covered, nc - covered)].fill(T::ZERO);
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
    let offs = Offsets::new((0..kt).map(|k| (k * nc) as isize).collect());
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, chunk, oc_range) = split.task(g, t, mr);
        let m_lo = chunk * tiles_per_chunk * nc;
        if m_lo >= plane_out || oc_range.is_empty() {
            return Ok(());
        }
        let m_hi = ((chunk + 1) * tiles_per_chunk * nc).min(plane_out);
        let mut panel = Scratch::<T>::zeroed(kt * nc, "im2col panel")?;
        let mut scratch = PackScratch::new(g, nc)?;
        let blocks = oc_range.start / mr..oc_range.end.div_ceil(mr);
        let dest = TileRows::new(&out, bias, gi * kg, oc_range, mr, nc);
        let mut ctile = Scratch::<T>::zeroed(blocks.len() * mr * nc, "output tile")?;
        let x_group =
            &x[(n * g.c_in + gi * cg) * g.h * g.w..(n * g.c_in + (gi + 1) * cg) * g.h * g.w];
        let mut m0 = m_lo;
        while m0 < m_hi {
            pack_panel(g, x_group, m0, m_hi, nc, &mut panel, &mut scratch);
            compute_tiles(
                kern,
                &packed[gi],
                blocks.clone(),
                &panel,
                0,
                1,
                nc.min(m_hi - m0),
                &offs,
                &mut ctile,
            );
            let len = nc.min(m_hi - m0);
            // SAFETY: this task alone writes channels oc_range, positions m_lo..m_hi.
            unsafe { dest.store(&ctile, 0, len, |k| (n * g.c_out + k) * plane_out + m0) };
            m0 += nc;
        }
        Ok(())
    })
}
