//! What the direct and im2col algorithms share: weight rows, the tile loop around the
//! microkernel, the output handle tasks write through, and the split into tasks.

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::tile::TileKernel;
use crate::kernels::ConvFloat;
use crate::threading::SharedOut;
use crate::workspace::try_zeroed;

use super::scratch::Scratch;

/// The weights of one group, read in place: row `oc` (`kt` elements, in (channel, row,
/// column) order) is the OIHW weight array's row for output channel `oc` of the group.
/// Blocks of `mr` rows past the last channel use a zero row, so no packing is needed.
pub struct GroupWeights<'a, T> {
    rows: &'a [T],
    /// At least `kt` zeros, which every group of a call shares (`dw`'s 256 groups each
    /// allocated their own).
    zero: &'a [T],
    /// Reduction length `C_in/groups · kh · kw`.
    pub kt: usize,
    /// Distance between rows (`kt` but for a matrix inside a larger layout).
    pitch: usize,
    channels: usize,
}

/// Largest `mr` of any tile kernel.
const MAX_MR: usize = 16;

/// The zero row that [`GroupWeights`] of reduction length `kt` share.
pub fn zero_row<T: ConvFloat>(kt: usize) -> Result<Vec<T>> {
    try_zeroed(kt, "zero weights")
}

impl<'a, T: ConvFloat> GroupWeights<'a, T> {
    pub fn new(w: &'a [T], zero: &'a [T], g: &ConvGeometry, group: usize) -> Self {
        let kt = g.c_in_per_group() * g.kh * g.kw;
        let channels = g.c_out_per_group();
        GroupWeights::from_rows(&w[group * channels * kt..], zero, kt, kt, channels)
    }

    /// `channels` rows of `kt` elements, `pitch` apart in `rows`; `zero` holds at least
    /// `kt` zeros.
    pub fn from_rows(
        rows: &'a [T],
        zero: &'a [T],
        kt: usize,
        pitch: usize,
        channels: usize,
    ) -> Self {
        assert!(kt <= pitch && kt <= zero.len());
        let len = if channels == 0 {
            0
        } else {
            (channels - 1) * pitch + kt
        };
        GroupWeights {
            rows: &rows[..len],
            zero,
            kt,
            pitch,
            channels,
        }
    }

    /// Pointers to reduction step `k0` of the `mr` rows of block `blk`.
    fn block_rows(&self, blk: usize, mr: usize, k0: usize) -> [*const T; MAX_MR] {
        assert!(mr <= MAX_MR && k0 <= self.kt);
        let mut rows = [self.zero[k0..].as_ptr(); MAX_MR];
        for (i, row) in rows.iter_mut().enumerate().take(mr) {
            let oc = blk * mr + i;
            if oc < self.channels {
                *row = self.rows[oc * self.pitch + k0..oc * self.pitch + self.kt].as_ptr();
            }
        }
        rows
    }
}

/// Reduction steps per microkernel call. The `B` rows of one chunk (at most `KC · nc`
/// elements, far fewer for the direct algorithm whose taps share cache lines) stay in L1
/// while every output-channel block of the tile reuses them; the accumulators go through
/// the tile buffer between chunks, which changes no bit of the result.
const KC: usize = 128;

/// Row offsets of the `B` operand (see [`TileKernel`]) and their extent, for one check
/// per tile instead of one per read.
pub struct Offsets {
    pub offs: Vec<isize>,
    lo: isize,
    hi: isize,
}

impl Offsets {
    pub fn new(offs: Vec<isize>) -> Self {
        let (lo, hi) = offs
            .iter()
            .fold((0isize, 0isize), |(lo, hi), &o| (lo.min(o), hi.max(o)));
        Offsets { offs, lo, hi }
    }
}

/// Bytes of accumulator tiles one [`compute_tiles`] call keeps live (in L2), which sets
/// how many consecutive tiles share each chunk of packed weights.
const CTILE_BYTES: usize = 192 * 1024;

/// How many consecutive tiles to compute together for `blocks` output-channel blocks.
pub fn tiles_per_group<T>(kern: &TileKernel<T>, blocks: usize) -> usize {
    (CTILE_BYTES / (blocks.max(1) * kern.mr * kern.nc * std::mem::size_of::<T>())).max(1)
}

/// Where [`compute_tiles`] puts its tiles.
pub enum TileOut<'a, T> {
    /// A tile buffer, laid out `[t][block][mr][nc]` (blocks relative to the first),
    /// which [`TileRows::store_tiles`] then moves to the output with the bias.
    Buffer(&'a mut [T]),
    /// The output itself, for tiles whose rows are runs of the output planes (1×1 layers
    /// read in place, full-width direct bands without halo columns, im2col panels): row
    /// `i` of tile `t` of the `b`-th block of the call at row `b·mr + i`, column `t·nc`,
    /// with `bias[blk·mr + i]` (if any; `blk` the block's number in the group) added as
    /// the sums are stored. It saves the tile buffer's second pass over every result (at
    /// 1 thread `pw` 1.10×, `cifar` 1.05-1.08× faster). Whole blocks only, and a partial last
    /// tile only without biases (into a matrix, whose rows hold whole tiles).
    Planes(PlaneRows<'a, T>),
}

/// Rows of the output planes that one task alone writes: `rows` rows of `len` elements,
/// `ldc` apart from `at`, and the biases of the group's channels.
pub struct PlaneRows<'a, T> {
    at: *mut T,
    rows: usize,
    len: usize,
    ldc: usize,
    bias: Option<&'a [T]>,
    _rows: std::marker::PhantomData<&'a mut [T]>,
}

impl<'a, T> PlaneRows<'a, T> {
    /// # Safety
    /// The rows are writable, `len <= ldc`, and no other task accesses them while the
    /// value lives.
    unsafe fn new(at: *mut T, [rows, len, ldc]: [usize; 3], bias: Option<&'a [T]>) -> Self {
        assert!(len <= ldc);
        PlaneRows {
            at,
            rows,
            len,
            ldc,
            bias,
            _rows: std::marker::PhantomData,
        }
    }

    /// The rows of a matrix of `ldc` columns held in `buf`, without biases.
    pub fn matrix(buf: &'a mut [T], ldc: usize) -> Self {
        let rows = buf.len() / ldc.max(1);
        // SAFETY: `buf` holds `rows` whole rows of `ldc` and is borrowed mutably for 'a.
        unsafe { PlaneRows::new(buf.as_mut_ptr(), [rows, ldc, ldc], None) }
    }
}

/// Computes `tiles` consecutive tiles, tile `t` reading `b[base + t·nc..]`, for the
/// output-channel blocks `blocks` of `pw` into `out`. Only the first `last_len`
/// positions of the last tile are needed: when that saves work it is computed with the
/// narrow kernel, and the rest of its row in the buffer is left as it was. The reduction
/// runs in chunks of `KC` steps, and each chunk of one block's weights serves every tile
/// before the next block's.
#[allow(clippy::too_many_arguments)]
pub fn compute_tiles<T: ConvFloat>(
    kern: &TileKernel<T>,
    pw: &GroupWeights<'_, T>,
    blocks: std::ops::Range<usize>,
    b: &[T],
    base: usize,
    tiles: usize,
    last_len: usize,
    offs: &Offsets,
    out: TileOut<'_, T>,
) {
    let (mr, nc, kt) = (kern.mr, kern.nc, pw.kt);
    let narrow = kern.narrowed();
    // Narrow calls for the last tile, each `narrow.nc` wide and inside the tile.
    let narrow_calls = last_len.div_ceil(narrow.nc);
    let (full, narrow_calls) = if narrow_calls * narrow.nc < nc {
        (tiles - 1, narrow_calls)
    } else {
        (tiles, 0)
    };
    let nb = blocks.len();
    // The microkernel reads b[base + t·nc + offs[k] + j] for j < nc and writes mr · nc
    // elements per tile and block: check it all once. Weight rows are checked by
    // `block_rows` (every row holds kt − k0 elements from its pointer on).
    assert!(offs.offs.len() == kt && tiles > 0);
    let last = (base + (tiles - 1) * nc) as isize;
    assert!(base as isize + offs.lo >= 0 && last + offs.hi + nc as isize <= b.len() as isize);
    // Where the tiles go: first element, row pitch, biases, whether in the planes.
    let (c, ldc, bias, planes) = match out {
        TileOut::Buffer(ctile) => {
            assert!(tiles * nb * mr * nc <= ctile.len());
            (ctile.as_mut_ptr(), nc, None, false)
        }
        TileOut::Planes(p) => {
            // Narrow calls stay inside the last tile, but they add no bias.
            assert!(nb * mr <= p.rows && tiles * nc <= p.len);
            assert!(narrow_calls == 0 || p.bias.is_none());
            assert!(p.bias.is_none_or(|b| b.len() >= blocks.end * mr));
            (p.at, p.ldc, p.bias, true)
        }
    };
    // Offset of tile `t` of block `bi` from `c`.
    let tile_at = |t: usize, bi: usize| match planes {
        true => bi * mr * ldc + t * nc,
        false => (t * nb + bi) * mr * nc,
    };
    let mut k0 = 0;
    while k0 < kt {
        let kc = KC.min(kt - k0);
        for (bi, blk) in blocks.clone().enumerate() {
            let rows = pw.block_rows(blk, mr, k0);
            let add = match bias {
                Some(b) if k0 + kc == kt => b[blk * mr..].as_ptr(),
                _ => std::ptr::null(),
            };
            for t in 0..full {
                // SAFETY: the ranges of all three operands were checked above (the
                // output rows against `PlaneRows`, whose writer is this task alone), `add`
                // has `mr` biases.
                unsafe {
                    kern.run(
                        kc,
                        rows.as_ptr(),
                        b.as_ptr().add(base + t * nc),
                        offs.offs.as_ptr().add(k0),
                        c.add(tile_at(t, bi)),
                        ldc,
                        k0 > 0,
                        add,
                    )
                };
            }
            for j in 0..narrow_calls {
                let at = full * nc + j * narrow.nc;
                // SAFETY: as above; narrow calls read and write within the last tile
                // (checked whole against the destination).
                unsafe {
                    narrow.run(
                        kc,
                        rows.as_ptr(),
                        b.as_ptr().add(base + at),
                        offs.offs.as_ptr().add(k0),
                        c.add(tile_at(full, bi) + j * narrow.nc),
                        ldc,
                        k0 > 0,
                        std::ptr::null(),
                    )
                };
            }
        }
        k0 += kc;
    }
}

/// Where one task's finished tiles go: output channels `first_k + oc` for `oc` in
/// `oc_range`, whose tile rows start at row `oc − row0` of a tile (`nc` per row).
pub struct TileRows<'a, T> {
    out: &'a SharedOut<T>,
    bias: Option<&'a [T]>,
    first_k: usize,
    oc_range: std::ops::Range<usize>,
    row0: usize,
    nc: usize,
}

impl<'a, T: ConvFloat> TileRows<'a, T> {
    /// Rows for `oc_range` (starting at a multiple of `mr`) of tiles `nc` wide.
    pub fn new(
        out: &'a SharedOut<T>,
        bias: Option<&'a [T]>,
        first_k: usize,
        oc_range: std::ops::Range<usize>,
        mr: usize,
        nc: usize,
    ) -> Self {
        TileRows {
            out,
            bias,
            first_k,
            row0: oc_range.start / mr * mr,
            oc_range,
            nc,
        }
    }

    /// Writes the runs `runs` of a group of finished tiles (tile `t` at
    /// `ctile[t · tile_len..]`), plus the bias, to the output: output channel `k`'s plane
    /// starts at `(image + k) · plane` and each run at its `at` inside it. It goes one
    /// channel at a time over the whole group, so each output plane gets one long run of
    /// stores rather than pieces a tile wide interleaved over every channel. The pass is
    /// bound on output cache misses; in interleaved runs that order made `conv1`, `deep`
    /// and `s2` 5-6 % faster at 1 thread and 5-14 % at 2.
    ///
    /// # Safety
    /// No other task may access those output elements meanwhile.
    pub unsafe fn store_tiles(
        &self,
        ctile: &[T],
        tile_len: usize,
        runs: impl Iterator<Item = TileRun> + Clone,
        image: usize,
        plane: usize,
    ) {
        for oc in self.oc_range.clone() {
            let k = self.first_k + oc;
            let add = self.bias.map_or(T::ZERO, |b| b[k]);
            let row_start = (oc - self.row0) * self.nc;
            for run in runs.clone() {
                let row = &ctile[run.t * tile_len + row_start + run.j..][..run.len];
                // SAFETY: exclusive access is the caller's contract.
                unsafe { self.out.write_row((image + k) * plane + run.at, row, add) };
            }
        }
    }

    /// Computes `tiles` whole tiles (see [`compute_tiles`]) whose positions are positions
    /// `at..at + tiles·nc` of each output plane of image `image` (its first channel's plane
    /// index), straight into the planes with the bias ([`TileOut::Planes`]). A partial last
    /// block of channels (256 channels in blocks of 6 at AVX2) goes through a buffer of its
    /// own, whose `mr` rows include lanes that are no output channel: before, such a task
    /// buffered every block, and at AVX2 `pw` spent 17 % of its time storing them.
    ///
    /// # Safety
    /// No other task may access those output elements meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn compute_into_planes(
        &self,
        kern: &TileKernel<T>,
        pw: &GroupWeights<'_, T>,
        (b, base, offs): (&[T], usize, &Offsets),
        tiles: usize,
        image: usize,
        plane: usize,
        at: usize,
    ) -> Result<()> {
        let (mr, nc) = (kern.mr, kern.nc);
        let start = self.oc_range.start;
        assert!(start.is_multiple_of(mr) && self.row0 == start && nc == self.nc);
        let split = start + self.oc_range.len() / mr * mr;
        if split > start {
            let first = (image + self.first_k + start) * plane + at;
            let extent = (split - start - 1) * plane + tiles * nc;
            let ptr = self.out.ptr_at(first, extent);
            let shape = [split - start, tiles * nc, plane];
            // SAFETY: the rows lie in the output (`ptr_at` checked the last one, and a row
            // is no longer than a plane: `tiles · nc` positions from `at` inside it) and
            // are this task's alone (the caller's contract).
            let rows = unsafe { PlaneRows::new(ptr, shape, self.bias.map(|b| &b[self.first_k..])) };
            let planes = TileOut::Planes(rows);
            compute_tiles(
                kern,
                pw,
                start / mr..split / mr,
                b,
                base,
                tiles,
                nc,
                offs,
                planes,
            );
        }
        if split < self.oc_range.end {
            let mut ctile = Scratch::<T>::overwritable(tiles * mr * nc, "output tiles")?;
            let last = split / mr..split / mr + 1;
            let buffer = TileOut::Buffer(&mut ctile);
            compute_tiles(kern, pw, last, b, base, tiles, nc, offs, buffer);
            let rest = TileRows {
                oc_range: split..self.oc_range.end,
                row0: split,
                ..*self
            };
            let runs = TileRun::contiguous(at, tiles, nc, at + tiles * nc);
            // SAFETY: the caller's contract.
            unsafe { rest.store_tiles(&ctile, mr * nc, runs, image, plane) };
        }
        Ok(())
    }
}

/// Positions `j..j + len` of tile `t` in a group, which go to offset `at` of every output
/// channel's plane.
#[derive(Clone, Copy, Debug)]
pub struct TileRun {
    pub t: usize,
    pub j: usize,
    pub len: usize,
    pub at: usize,
}

impl TileRun {
    /// The runs of `tiles` consecutive tiles whose positions are contiguous in the output
    /// plane, from `m0`; the plane (or the task's part of it) ends at `m_end`.
    pub fn contiguous(
        m0: usize,
        tiles: usize,
        nc: usize,
        m_end: usize,
    ) -> impl Iterator<Item = Self> + Clone {
        (0..tiles).map(move |t| {
            let m = m0 + t * nc;
            TileRun {
                t,
                j: 0,
                len: nc.min(m_end - m),
                at: m,
            }
        })
    }
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
    /// `m_needed` position chunks per image and group (to bound the workspace), then more
    /// position chunks (`max_m_chunks` at most) or output-channel chunks (blocks of `mr`)
    /// until there are `TASKS_PER_THREAD` tasks per thread, a multiple of the thread count.
    /// Tasks are scheduled dynamically, yet one per thread is the measured best with the
    /// pool's awake helpers: every extra task zeroes its own tile buffer and, in the direct
    /// algorithm, copies its own input band with its halo (at 2 threads, two per thread
    /// made `deep` 7 % and `pw` 5 % slower).
    /// `prefer_oc` says that channel chunks are cheaper than position chunks (small
    /// images: bands re-read their halo and a short band wastes part of its last tile).
    pub fn choose(
        g: &ConvGeometry,
        threads: usize,
        m_needed: usize,
        max_m_chunks: usize,
        mr: usize,
        prefer_oc: bool,
    ) -> Split {
        const TASKS_PER_THREAD: usize = 1;
        let m_needed = m_needed.clamp(1, max_m_chunks.max(1));
        let base = g.n * g.groups * m_needed;
        let mut split = Split {
            m_chunks: m_needed,
            oc_chunks: 1,
        };
        let want = TASKS_PER_THREAD * threads;
        if threads <= 1 || base >= want {
            return split;
        }
        // Smallest factor giving at least `want` tasks, a multiple of `threads`.
        let step = threads / gcd(base, threads);
        let f = want.div_ceil(base).next_multiple_of(step);
        let oc_blocks = g.c_out_per_group().div_ceil(mr);
        let m_room = (max_m_chunks / m_needed).max(1);
        let (m_f, oc_f) = if prefer_oc && oc_blocks >= f {
            (1, f)
        } else if m_room >= f {
            (f, 1)
        } else if prefer_oc {
            (f.div_ceil(oc_blocks).min(m_room), oc_blocks)
        } else {
            (m_room, f.div_ceil(m_room).min(oc_blocks))
        };
        split.m_chunks = m_needed * m_f;
        split.oc_chunks = oc_f.max(1);
        split
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

pub(super) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
