//! The padded, phase-split input band of the direct algorithm: for a band of output rows
//! (and, for wide images, a strip of output columns), one plane per input channel and
//! stride phase, in which every (channel, tap) is a constant shift. The im2col algorithm
//! packs the panels of strided layers from such a band too.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::ConvFloat;

use super::scratch::Scratch;

/// Padded input band of one task: small enough to stay in a 1 MiB L2 next to the
/// weights, since every tile reads its rows from there (a band streamed from L3 halves
/// the kernel's speed).
pub const BAND_BYTES: usize = 512 * 1024;
/// Output rows of a band when the image is too wide for a full-width band: column strips
/// of at least this many rows keep the re-copied halo (and the per-row waste) small.
const STRIP_ROWS: usize = 8;

/// Phase-split layout of one band of the padded input.
pub struct BandLayout {
    /// Stride phases actually used by some tap, along rows.
    pub row_phases: Vec<usize>,
    /// Column offset of each column plane: plane element `j` holds padded input column
    /// `sw·(q0 + j) + offset`. Either the stride phases used by some tap (taps then shift
    /// along the plane's rows, which needs `halo_cols`), or one plane per column tap
    /// (`per_tap_cols`: no shift, no halo).
    pub col_planes: Vec<usize>,
    pub per_tap_cols: bool,
    /// Extra phase rows / columns needed below / right of each output row / column.
    pub halo_rows: usize,
    pub halo_cols: usize,
}

impl BandLayout {
    pub fn new(g: &ConvGeometry) -> Self {
        let halo_cols = g.dw * (g.kw - 1) / g.sw;
        // The halo columns are computed and dropped; on narrow images (deep layers) they
        // cost more than copying the band once per column tap, which needs none. The
        // copies cost `kw` band elements per output position and channel against
        // `kh·kw·K/groups` FMAs, so only groups with a full block of output channels.
        let per_tap_cols =
            halo_cols * 20 > g.w_out + halo_cols && g.c_out_per_group() >= 8 && g.kw > 1;
        BandLayout {
            row_phases: used_phases(g.kh, g.dh, g.sh),
            col_planes: if per_tap_cols {
                (0..g.kw).map(|s| s * g.dw).collect()
            } else {
                used_phases(g.kw, g.dw, g.sw)
            },
            per_tap_cols,
            halo_rows: g.dh * (g.kh - 1) / g.sh,
            halo_cols: if per_tap_cols { 0 } else { halo_cols },
        }
    }

    /// The layout of the im2col panels' strided windows: column planes `w_out` wide whose
    /// element `j` is input column `sw·j + φ`, for each phase φ some tap reads (the
    /// padding left of the image is not stored), rows as in [`BandLayout::new`]. Output
    /// column `q` of tap `s` then reads element `q + b` of phase φ's plane (`(b, φ)` from
    /// [`unpadded_tap`]), so a tap's windows over consecutive output positions are one run of
    /// the flattened plane; where the element leaves the plane's row, the run reads the
    /// neighbouring row, which the packer zeroes. So every input column of a phase must
    /// lie within the plane's width: `None` where one does not (layers whose last input
    /// columns no output reads, as unpadded ones often have).
    pub fn unpadded_columns(g: &ConvGeometry) -> Option<Self> {
        let phases = sorted_set((0..g.kw).map(|s| unpadded_tap(g, s).1));
        if phases
            .iter()
            .any(|&f| g.w.saturating_sub(f).div_ceil(g.sw) > g.w_out)
        {
            return None;
        }
        Some(BandLayout {
            row_phases: used_phases(g.kh, g.dh, g.sh),
            col_planes: phases.iter().map(|&f| f + g.pad_left).collect(),
            per_tap_cols: false,
            halo_rows: g.dh * (g.kh - 1) / g.sh,
            halo_cols: 0,
        })
    }

    /// Output rows of a full-width band that fits `budget` bytes with its halo rows.
    pub fn full_width_rows(&self, g: &ConvGeometry, budget: usize, elem: usize) -> usize {
        (self.plane_elems(g, budget, elem) / (g.w_out + self.halo_cols))
            .saturating_sub(self.halo_rows)
    }

    /// Elements per plane of a band that fits `budget` bytes.
    fn plane_elems(&self, g: &ConvGeometry, budget: usize, elem: usize) -> usize {
        budget / (g.c_in_per_group() * self.planes_per_channel() * elem).max(1)
    }

    pub fn planes_per_channel(&self) -> usize {
        self.row_phases.len() * self.col_planes.len()
    }

    /// Output rows and columns of a band that fits `BAND_BYTES`: full-width bands where
    /// they can hold `STRIP_ROWS` rows, else column strips of equal width.
    pub fn band_shape(&self, g: &ConvGeometry, elem: usize) -> (usize, usize) {
        // Per-tap planes hold `kw` copies of each row: a band up to twice the budget
        // (still inside L2; the tiles read it in chunks of channels) keeps narrow images
        // in one band rather than short ones that re-copy their halo rows.
        let budget = if self.per_tap_cols {
            2 * BAND_BYTES
        } else {
            BAND_BYTES
        };
        let full_rows = self.full_width_rows(g, budget, elem);
        if full_rows >= STRIP_ROWS.min(g.h_out) {
            return (full_rows.min(g.h_out), g.w_out);
        }
        let rows = STRIP_ROWS.min(g.h_out);
        let cols = (self.plane_elems(g, budget, elem) / (rows + self.halo_rows))
            .saturating_sub(self.halo_cols)
            .clamp(32.min(g.w_out), g.w_out);
        (rows, g.w_out.div_ceil(g.w_out.div_ceil(cols)))
    }

    /// The number of channel `c`'s plane of row phase `row_phase` and column offset
    /// `col_plane` (one of `row_phases` and of `col_planes`).
    pub fn plane(&self, c: usize, row_phase: usize, col_plane: usize) -> usize {
        let pos = |v: &[usize], x: usize| v.iter().position(|&p| p == x).unwrap_or(0);
        (c * self.row_phases.len() + pos(&self.row_phases, row_phase)) * self.col_planes.len()
            + pos(&self.col_planes, col_plane)
    }

    /// Shift of each (channel, tap) inside a band of `rows` output rows and `pitch`.
    pub fn offsets(&self, g: &ConvGeometry, rows: usize, pitch: usize) -> Vec<isize> {
        let plane = (rows + self.halo_rows) * pitch;
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
                    offs.push((self.plane(c, a, b) * plane + i * pitch + j) as isize);
                }
            }
        }
        offs
    }

    /// The padded, phase-split band for output rows `p0..p0 + rows` and columns
    /// `q0..q0 + cols` of one image and group, followed by `slack` zeros. Written front
    /// to back in one pass, so nothing is zeroed twice.
    #[allow(clippy::too_many_arguments)]
    pub fn fill<T: ConvFloat>(
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

/// The distinct values of `(i·d) mod s` for `i < k`, ascending: the stride phases that
/// taps `d` apart read.
fn used_phases(k: usize, d: usize, s: usize) -> Vec<usize> {
    sorted_set((0..k).map(|i| (i * d) % s))
}

fn sorted_set(values: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = values.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Where column tap `s` reads, in unpadded coordinates: output column `q` reads input
/// column `sw·(q + b) + φ`, returned as `(b, φ)` with `0 <= φ < sw`.
pub fn unpadded_tap(g: &ConvGeometry, s: usize) -> (isize, usize) {
    // Geometry extents are below 2^31, so these signed offsets cannot overflow.
    let v = (s * g.dw) as isize - g.pad_left as isize;
    let sw = g.sw as isize;
    (v.div_euclid(sw), v.rem_euclid(sw) as usize)
}

/// Appends `src[0], src[step], …` (`n` elements) to `band`; `src` holds at least
/// `(n − 1)·step + 1` elements.
pub fn gather<T: ConvFloat>(band: &mut Scratch<T>, src: &[T], step: usize, n: usize) {
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
