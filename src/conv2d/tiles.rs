//! What the direct and im2col algorithms share: packed weights, the tile loop around the
//! microkernel, the output handle tasks write through, and the split into tasks.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::workspace::try_zeroed;

/// The weights of one group, `mr` output channels at a time, interleaved per reduction
/// step: `data[(blk · kt + k) · mr + i] = w[blk·mr + i][k]` (zero past the last channel).
pub struct PackedWeights<T> {
    pub data: Vec<T>,
    /// Reduction length `C_in/groups · kh · kw`, in (channel, row, column) order.
    pub kt: usize,
    pub mr: usize,
    pub channels: usize,
}

impl<T: ConvFloat> PackedWeights<T> {
    pub fn pack(w: &[T], g: &ConvGeometry, group: usize, mr: usize) -> Result<Self> {
        let kt = g.c_in_per_group() * g.kh * g.kw;
        let channels = g.c_out_per_group();
        let blocks = channels.div_ceil(mr);
        let mut data = try_zeroed(blocks * kt * mr, "packed weights")?;
        let first = group * channels;
        for oc in 0..channels {
            let src = &w[(first + oc) * kt..(first + oc + 1) * kt];
            let (blk, i) = (oc / mr, oc % mr);
            for (k, &v) in src.iter().enumerate() {
                data[(blk * kt + k) * mr + i] = v;
            }
        }
        Ok(PackedWeights {
            data,
            kt,
            mr,
            channels,
        })
    }

    fn block(&self, blk: usize) -> &[T] {
        &self.data[blk * self.kt * self.mr..(blk + 1) * self.kt * self.mr]
    }
}

/// Runs the microkernel over output channels `oc_range` (starting at a multiple of `mr`,
/// relative to the group) and positions `0..m_len` in steps of `nc`. `prepare(m0, b)`
/// readies the `B` operand of the tile starting at `m0` in `b` and returns the index that
/// `offs` are relative to; `store(oc, m0, row)` receives one finished tile row
/// (`row.len() == nc`).
#[allow(clippy::too_many_arguments)]
pub fn run_tiles<T: ConvFloat>(
    kern: &TileKernel<T>,
    pw: &PackedWeights<T>,
    oc_range: std::ops::Range<usize>,
    offs: &[isize],
    m_len: usize,
    b: &mut [T],
    mut prepare: impl FnMut(usize, &mut [T]) -> usize,
    mut store: impl FnMut(usize, usize, &[T]),
) -> Result<()> {
    let (mr, nc) = (kern.mr, kern.nc);
    assert_eq!(pw.mr, mr);
    assert_eq!(offs.len(), pw.kt);
    let (min_off, max_off) = offs
        .iter()
        .fold((0isize, 0isize), |(lo, hi), &o| (lo.min(o), hi.max(o)));
    let mut tile = try_zeroed::<T>(mr * nc, "output tile")?;
    let mut m0 = 0;
    while m0 < m_len {
        let base = prepare(m0, b);
        // The microkernel reads b[base + offs[k] + j] for j < nc: check the whole range
        // once per tile, which makes the unchecked reads below sound.
        assert!(
            base as isize + min_off >= 0
                && base as isize + max_off + nc as isize <= b.len() as isize
        );
        for blk in (oc_range.start / mr)..oc_range.end.div_ceil(mr) {
            // SAFETY: weights have kt·mr elements, the B range was checked above, and the
            // tile is an owned mr × nc buffer.
            unsafe {
                kern.run(
                    pw.kt,
                    pw.block(blk).as_ptr(),
                    b.as_ptr().add(base),
                    offs.as_ptr(),
                    tile.as_mut_ptr(),
                    nc,
                )
            };
            for i in 0..mr.min(pw.channels - blk * mr) {
                store(blk * mr + i, m0, &tile[i * nc..(i + 1) * nc]);
            }
        }
        m0 += nc;
    }
    Ok(())
}

/// How a problem is split into tasks: every image × group × `m_chunks` ranges of output
/// positions × `oc_chunks` ranges of output channels. Never the reduction, so results do
/// not depend on the split.
#[derive(Clone, Copy, Debug)]
pub struct Split {
    pub m_chunks: usize,
    pub oc_chunks: usize,
}

impl Split {
    /// Enough tasks to keep `threads` busy, preferring whole images, then position ranges
    /// (`max_m_chunks` at most), then channel blocks of `mr`.
    pub fn choose(
        g: &ConvGeometry,
        threads: usize,
        min_m_chunks: usize,
        max_m_chunks: usize,
        mr: usize,
    ) -> Split {
        let outer = g.n * g.groups;
        let mut m_chunks = min_m_chunks.max(1);
        let mut oc_chunks = 1;
        if threads > 1 && outer < 2 * threads {
            let want = (2 * threads).div_ceil(outer.max(1));
            m_chunks = m_chunks.max(want.min(max_m_chunks));
            if outer * m_chunks < threads {
                oc_chunks = (threads.div_ceil(outer * m_chunks))
                    .min(g.c_out_per_group().div_ceil(mr))
                    .max(1);
            }
        }
        Split {
            m_chunks: m_chunks.min(max_m_chunks).max(1),
            oc_chunks,
        }
    }

    pub fn tasks(&self, g: &ConvGeometry) -> usize {
        g.n * g.groups * self.m_chunks * self.oc_chunks
    }

    /// `(image, group, m chunk, oc range)` of task `t`; the oc range is in multiples of `mr`.
    pub fn task(
        &self,
        g: &ConvGeometry,
        t: usize,
        mr: usize,
    ) -> (usize, usize, usize, std::ops::Range<usize>) {
        let oc_chunk = t % self.oc_chunks;
        let rest = t / self.oc_chunks;
        let m_chunk = rest % self.m_chunks;
        let rest = rest / self.m_chunks;
        let (group, image) = (rest % g.groups, rest / g.groups);
        let blocks = g.c_out_per_group().div_ceil(mr);
        let lo = blocks * oc_chunk / self.oc_chunks * mr;
        let hi = (blocks * (oc_chunk + 1) / self.oc_chunks * mr).min(g.c_out_per_group());
        (image, group, m_chunk, lo..hi)
    }
}
