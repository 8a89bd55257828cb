//! The row algorithm: direct convolution one output row at a time, output channels
//! along the vector lanes (see [`RowKernel`]). The input is copied once into a
//! zero-padded band of rows per task (of column strips on wide images), the weights once
//! per call into blocks of `v` output channels (or, where a block serves one task alone,
//! by that task); kernel rows that fall in the top or bottom padding are left out (the
//! kernels sum the band's zeros in the left and right padding: see `kernels::rows`).
//! Unlike the band algorithm in `direct`, no lane computes a halo column or a position
//! past the end of the image, which matters most on narrow images and strided layers.

use std::ops::Range;

use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::kernels::rows::{RowArgs, RowKernel};
use crate::kernels::ConvFloat;
use crate::threading::{for_each_task, SharedOut};
use crate::workspace::{elems_per_line, try_reserved};

use super::scratch::Scratch;
use super::tiles::Split;

/// Padded input band of one task. Every call reads `kh · channels` short runs of it, one
/// per channel plane, so it must stay in L2: from L3 (`big`'s 1026-wide rows gave bands
/// of 6 rows in 2 MiB) the latency of those scattered reads made the call 12-17 % slower
/// than the band algorithm. Wide images are cut into column strips (`strip_cols`).
const BAND_BYTES: usize = 1 << 20;
/// Packed weights of the output-channel blocks that one sweep of the band serves, where
/// the band does not fit in half the L2 cache: each output row is computed for every
/// block of the group before the next row, so that the band is read from L3 once per
/// group rather than once per block, and the input rows of an output row stay in cache
/// across its blocks (interleaved on the 2-vCPU AMD EPYC with 512 KiB of L2, 1 thread:
/// `r3x3` 1-4 % faster, `s2` 1-2 %, `big` 2-7 %; 2 threads within 1.5 %). Small enough
/// that the group's weights stay in L2. Where the band fits, one block per sweep is
/// faster: every output row then goes to half as many channel planes at a time (on the
/// Xeon with 2 MiB of L2, `r3x3b8` 0.90× the time at 1 thread, 0.95× at 2, `r3x3` 0.96×;
/// `conv1` and `big` within noise).
const GROUP_BYTES: usize = 256 << 10;
/// Fewest output rows per band for which the row algorithm is chosen: shorter bands
/// re-copy their halo rows too often.
pub const MIN_BAND_ROWS: usize = 8;

/// Where weight tap `a = (c, i, s)` of an OIHW row goes in a packed block, whose taps
/// are `(i, c, s)` vectors of `v` output channels.
fn tap_offsets(g: &ConvGeometry, v: usize) -> Result<Vec<usize>> {
    let (cg, kt) = (g.c_in_per_group(), g.c_in_per_group() * g.kh * g.kw);
    let mut offsets = try_reserved(kt, "packed tap order")?;
    offsets.extend((0..kt).map(|a| {
        let (ci, s) = (a / g.kw, a % g.kw);
        (((ci % g.kh) * cg + ci / g.kh) * g.kw + s) * v
    }));
    Ok(offsets)
}

/// Packs block `blk` of `v` output channels of group `gi` into `dst` (`kt · v`),
/// `[kernel row][channel][kernel column][v]`, zeros past the group's last channel.
fn pack_block<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &RowKernel<T>,
    w: &[T],
    offsets: &[usize],
    (gi, blk): (usize, usize),
    dst: &mut [T],
) {
    let (kg, v) = (g.c_out_per_group(), kern.v);
    let channels = (kg - blk * v).min(v);
    if channels < v {
        dst.fill(T::ZERO);
    }
    let rows = source_rows(g, w, gi, blk * v..blk * v + channels);
    kern.pack(rows, offsets, dst);
}

/// The OIHW weights of output channels `channels` of group `gi`.
fn source_rows<'w, T>(g: &ConvGeometry, w: &'w [T], gi: usize, channels: Range<usize>) -> &'w [T] {
    let kt = g.c_in_per_group() * g.kh * g.kw;
    let first = gi * g.c_out_per_group() + channels.start;
    &w[first * kt..][..channels.len() * kt]
}

/// The weights of every group as packed blocks (see [`pack_block`]), in parallel tasks.
fn pack_weights<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &RowKernel<T>,
    w: &[T],
    offsets: &[usize],
    threads: usize,
) -> Result<Scratch<T>> {
    let (v, kt) = (kern.v, offsets.len());
    let blocks = g.c_out_per_group().div_ceil(v);
    // `pack_block` writes every element of its block (zeros past the last channel), so
    // the buffer is not zeroed first (a memset of 590 KB for `s2`).
    let mut packed = Scratch::overwritable(g.groups * blocks * kt * v, "packed weights")?;
    let out = SharedOut::new(&mut packed);
    for_each_task(g.groups * blocks, threads, |t| {
        // SAFETY: block `t` of the packed array belongs to this task alone.
        let dst = unsafe { out.slice_mut(t * kt * v, kt * v) };
        pack_block(g, kern, w, offsets, (t / blocks, t % blocks), dst);
        Ok(())
    })?;
    Ok(packed)
}

/// Weight blocks of `block_bytes` each that one sweep of a band of `band_bytes` serves,
/// a row at a time: one where the band fits in half the L2 cache, else as many as fit
/// `GROUP_BYTES`, at least one.
fn blocks_per_group(block_bytes: usize, band_bytes: usize) -> usize {
    if band_bytes.saturating_mul(2) <= crate::cache::l2_bytes() {
        return 1;
    }
    (GROUP_BYTES / block_bytes.max(1)).max(1)
}

/// Kernel rows `lo..hi` of output row `p` that read input rows rather than padding.
fn live_kernel_rows(g: &ConvGeometry, p: usize) -> (usize, usize) {
    let top = p * g.sh; // padded row of kernel row 0
    let lo = g.pad_top.saturating_sub(top).div_ceil(g.dh).min(g.kh);
    let hi = (g.pad_top + g.h)
        .saturating_sub(top)
        .div_ceil(g.dh)
        .min(g.kh);
    (lo, hi.max(lo))
}

/// Elements per band row: the input row with its left and right padding.
fn pitch(g: &ConvGeometry) -> usize {
    g.pad_left + g.w + g.pad_right
}

/// Elements per band row of a strip of `cols` output columns: the padded columns they read.
fn strip_pitch(g: &ConvGeometry, cols: usize) -> usize {
    (cols - 1) * g.sw + (g.kw - 1) * g.dw + 1
}

/// Output rows per band of `pitch`-wide rows: as many as fit `BAND_BYTES` with their halo,
/// at least one.
fn rows_fitting(g: &ConvGeometry, pitch: usize, elem: usize) -> usize {
    let per_row = g.c_in_per_group() * pitch * elem;
    let rows_in = BAND_BYTES / per_row.max(1);
    let halo = g.dh * (g.kh - 1);
    (rows_in.saturating_sub(halo + 1) / g.sh + 1).min(g.h_out)
}

/// Output columns per strip. Whole rows when a band of them holds `STRIP_ROWS` output
/// rows (or all of them); on wide images, column strips narrow enough for that, of
/// about equal width in whole cache lines, so that the band stays in L2 (see
/// `BAND_BYTES`). Strips narrower than `MIN_STRIP_COLS` are not cut (many channels on a
/// narrow image): each strip re-copies its halo columns and runs kernel calls no wider
/// than itself, and such layers were not measured; they keep whole rows, whose short
/// bands leave them to the band algorithm as before strips existed.
fn strip_cols(g: &ConvGeometry, elem: usize) -> usize {
    const STRIP_ROWS: usize = 2 * MIN_BAND_ROWS;
    const MIN_STRIP_COLS: usize = 64;
    let rows = STRIP_ROWS.min(g.h_out);
    if rows_fitting(g, pitch(g), elem) >= rows {
        return g.w_out;
    }
    let rows_in = (rows - 1) * g.sh + g.dh * (g.kh - 1) + 1;
    let max_pitch = BAND_BYTES / (g.c_in_per_group() * rows_in * elem).max(1);
    let Some(room) = max_pitch.checked_sub((g.kw - 1) * g.dw + 1) else {
        return g.w_out;
    };
    let cols = (room / g.sw + 1).min(g.w_out);
    if cols < MIN_STRIP_COLS {
        return g.w_out;
    }
    // Strips a whole number of cache lines wide, so that where output rows start on a
    // line (results do), every strip's row pieces do too and its stores do not straddle
    // lines (`big`: 205 → 208 columns, 0.95× the time at 1 thread and 0.98× at 2, six
    // alternating processes per build).
    let strips = g.w_out.div_ceil(cols);
    let line = elems_per_line(elem);
    g.w_out.div_ceil(strips).next_multiple_of(line).min(g.w_out)
}

/// Output rows per band (of the strips [`strip_cols`] chooses), at least one.
pub fn band_rows(g: &ConvGeometry, elem: usize) -> usize {
    let cols = strip_cols(g, elem);
    let pitch = if cols == g.w_out {
        pitch(g)
    } else {
        strip_pitch(g, cols)
    };
    rows_fitting(g, pitch, elem)
}

pub fn conv2d<T: ConvFloat>(
    g: &ConvGeometry,
    kern: &RowKernel<T>,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    threads: usize,
) -> Result<()> {
    let v = kern.v;
    let (cg, kg) = (g.c_in_per_group(), g.c_out_per_group());
    let kt = cg * g.kh * g.kw;
    let elem = std::mem::size_of::<T>();
    let cols = strip_cols(g, elem);
    let strips = g.w_out.div_ceil(cols);
    let pitch = if strips == 1 {
        pitch(g)
    } else {
        strip_pitch(g, cols)
    };
    let max_rows = band_rows(g, elem);
    let bands = g.h_out.div_ceil(max_rows);
    // Short bands split by rows give each thread few rows per weight block, and every
    // thread then streams all the weights (at 2 threads `deep` was 8 % slower than the
    // band algorithm that way): below 16 rows, give threads output-channel blocks.
    let prefer_oc = g.h_out / bands < 16;
    let split = Split::choose(g, threads, bands, g.h_out, v, prefer_oc);
    let rows_per_task = g.h_out.div_ceil(split.m_chunks);
    let offsets = tap_offsets(g, v)?;
    // When every weight block serves one task alone, that task packs it just before
    // using it, into a buffer that stays in its cache, instead of all blocks going
    // through memory first (`deep` 6 % faster at 1 thread, 12-19 % at 2).
    let shared = if g.n == 1 && split.m_chunks == 1 {
        None
    } else {
        Some(pack_weights(g, kern, w, &offsets, threads)?)
    };
    let plane_out = g.h_out * g.w_out;
    let out = SharedOut::new(y);
    for_each_task(split.tasks(g), threads, |t| {
        let (n, gi, m_chunk, oc_range) = split.task(g, t, v);
        let p0 = m_chunk * rows_per_task;
        if p0 >= g.h_out || oc_range.is_empty() {
            return Ok(());
        }
        let p1 = (p0 + rows_per_task).min(g.h_out);
        let rows_in = (p1 - p0 - 1) * g.sh + g.dh * (g.kh - 1) + 1;
        let x_group = &x[(n * g.c_in + gi * cg) * g.h * g.w..][..cg * g.h * g.w];
        let mut row_buf = Scratch::<T>::zeroed(g.w_out * v, "output row")?;
        // Offset of each channel's output row from the block's first.
        let mut channel_rows = try_reserved(v, "output row offsets")?;
        channel_rows.extend((0..v).map(|j| j * plane_out));
        let blocks = oc_range.start / v..oc_range.end.div_ceil(v);
        let band_bytes = cg * rows_in * pitch * elem;
        let per_group = blocks_per_group(kt * v * elem, band_bytes)
            .min(blocks.len())
            .max(1);
        let mut own = match shared {
            Some(_) => None,
            None => Some(Scratch::<T>::overwritable(
                per_group * kt * v,
                "packed weights",
            )?),
        };
        for q_a in (0..g.w_out).step_by(cols) {
            let width = cols.min(g.w_out - q_a);
            let band = fill(g, x_group, [p0 * g.sh, rows_in], q_a * g.sw, pitch)?;
            let calls = Calls::new(width, kern.rmax);
            // The farthest element any call reads: last channel, band row and column.
            let last = (cg - 1) * rows_in * pitch
                + (rows_in - 1) * pitch
                + (width - 1) * g.sw
                + (g.kw - 1) * g.dw;
            assert!(last < band.len());
            for first in blocks.clone().step_by(per_group) {
                let group = first..(first + per_group).min(blocks.end);
                // The weights this task packs next (the next group's, or the first
                // group's for the next strip), which the group's kernel calls ask into
                // L2 a piece each: from L3, packing a group took as long as copying it
                // from memory (`deep`: 2.4 MB, 6 % of its call).
                let mut upcoming: &[T] = &[];
                if let Some(own) = own.as_deref_mut() {
                    for (blk, dst) in group.clone().zip(own.chunks_exact_mut(kt * v)) {
                        pack_block(g, kern, w, &offsets, (gi, blk), dst);
                    }
                    let next = if group.end < blocks.end {
                        Some(group.end)
                    } else {
                        (q_a + cols < g.w_out).then_some(blocks.start)
                    };
                    if let Some(nf) = next {
                        let end = (nf + per_group).min(blocks.end);
                        upcoming = source_rows(g, w, gi, nf * v..(end * v).min(kg));
                    }
                }
                let per_call = upcoming
                    .len()
                    .div_ceil((p1 - p0) * group.len() * calls.count);
                let mut upcoming = upcoming.chunks(per_call.max(1));
                for p in p0..p1 {
                    let (lo, hi) = live_kernel_rows(g, p);
                    // With every kernel row in the padding, the row is the bias alone.
                    let live_calls = if hi > lo { calls.count } else { 0 };
                    for (i, blk) in group.clone().enumerate() {
                        let w_blk = match (shared.as_deref(), own.as_deref()) {
                            (Some(packed), _) => {
                                &packed[(gi * kg.div_ceil(v) + blk) * kt * v..][..kt * v]
                            }
                            (None, Some(own)) => &own[i * kt * v..][..kt * v],
                            (None, None) => {
                                unreachable!("a task without shared weights packs its own")
                            }
                        };
                        if live_calls == 0 {
                            row_buf.fill(T::ZERO);
                        }
                        for k in 0..live_calls {
                            let [q0, r] = calls.call(k);
                            let args = RowArgs {
                                x: band[((p - p0) * g.sh + lo * g.dh) * pitch + q0 * g.sw..]
                                    .as_ptr(),
                                kh_step: g.dh * pitch,
                                channel: rows_in * pitch,
                                kw_step: g.dw,
                                pos_step: g.sw,
                                kh: hi - lo,
                                channels: cg,
                                kw: g.kw,
                                w: w_blk[lo * cg * g.kw * v..].as_ptr(),
                                ahead: upcoming.next().unwrap_or(&[]) as *const [T],
                                out: row_buf[q0 * v..].as_mut_ptr(),
                            };
                            // SAFETY: every read is inside the band (the farthest was
                            // checked above) and the block's weights; `ahead` is a piece
                            // of `w`; the results fit the row buffer.
                            unsafe { kern.run(r, &args) };
                        }
                        let k0 = gi * kg + blk * v;
                        let channels = &channel_rows[..v.min(oc_range.end - blk * v)];
                        let start = (n * g.c_out + k0) * plane_out + p * g.w_out + q_a;
                        let dst = out.ptr_at(start, (channels.len() - 1) * plane_out + width);
                        let add = bias.map(|b| &b[k0..k0 + channels.len()]);
                        // SAFETY: this task alone writes channels oc_range of rows p0..p1,
                        // and `ptr_at` checked that the last channel's row lies in the
                        // output.
                        unsafe { kern.store(&row_buf, width, channels, add, dst) };
                    }
                }
            }
        }
        Ok(())
    })
}

/// The zero-padded rows `r0..r0 + rows` (padded coordinates) of every channel of one
/// image and group, `pitch` columns from padded column `c0`, written front to back.
fn fill<T: ConvFloat>(
    g: &ConvGeometry,
    x_group: &[T],
    [r0, rows]: [usize; 2],
    c0: usize,
    pitch: usize,
) -> Result<Scratch<T>> {
    let mut band = Scratch::with_capacity(g.c_in_per_group() * rows * pitch, "input band")?;
    let [left, copied] = band_columns(g, c0, pitch);
    let from = c0.saturating_sub(g.pad_left);
    for c in 0..g.c_in_per_group() {
        let x_c = &x_group[c * g.h * g.w..][..g.h * g.w];
        for r in r0..r0 + rows {
            match r.checked_sub(g.pad_top).filter(|&s| s < g.h) {
                Some(s) => {
                    band.extend_zeros(left);
                    band.extend_from_slice(&x_c[s * g.w + from..][..copied]);
                    band.extend_zeros(pitch - left - copied);
                }
                None => band.extend_zeros(pitch),
            }
        }
    }
    Ok(band)
}

/// The columns of a band row `pitch` wide from padded column `c0`: `left` zeros, then
/// `copied` input columns (from input column `c0 − pad_left`), then zeros up to the pitch.
fn band_columns(g: &ConvGeometry, c0: usize, pitch: usize) -> [usize; 2] {
    let left = g.pad_left.saturating_sub(c0).min(pitch);
    let from = c0.saturating_sub(g.pad_left);
    let copied = g.w.saturating_sub(from).min(pitch - left);
    [left, copied]
}

/// The kernel calls along a band row of `width` output positions: as few as `rmax`
/// positions per call allow, their sizes differing by one at most. A short last call has
/// too few accumulators to hide the FMA latency: at AVX2's 6 positions per call, `r3x3`'s
/// 56 went into 9 calls of 6 and one of 2, whose 4 accumulators run the FMAs at half rate;
/// evenly, 6 calls of 6 and 4 of 5 (`r3x3` 3.5-4 % faster at 1 thread, interleaved).
#[derive(Clone, Copy)]
struct Calls {
    width: usize,
    count: usize,
}

impl Calls {
    fn new(width: usize, rmax: usize) -> Self {
        Calls {
            width,
            count: width.div_ceil(rmax).max(1),
        }
    }

    /// Call `k`'s first position and number of positions.
    fn call(self, k: usize) -> [usize; 2] {
        let start = |k: usize| k * self.width / self.count;
        [start(k), start(k + 1) - start(k)]
    }
}

#[cfg(test)]
mod tests {
    use super::Calls;

    #[test]
    fn calls_tile_the_row_evenly() {
        for rmax in [1, 4, 6, 12, 14] {
            for width in 1..200 {
                let calls = Calls::new(width, rmax);
                assert_eq!(calls.count, width.div_ceil(rmax));
                let sizes: Vec<[usize; 2]> = (0..calls.count).map(|k| calls.call(k)).collect();
                let mut next = 0;
                for &[q0, r] in &sizes {
                    assert_eq!(q0, next, "width {width} rmax {rmax}");
                    assert!((1..=rmax).contains(&r), "width {width} rmax {rmax}: {r}");
                    next += r;
                }
                assert_eq!(next, width);
                let (min, max) = (
                    sizes.iter().map(|s| s[1]).min(),
                    sizes.iter().map(|s| s[1]).max(),
                );
                assert!(
                    max.unwrap() - min.unwrap() <= 1,
                    "width {width} rmax {rmax}"
                );
            }
        }
    }
}
