//! The channel-blocked row microkernel behind conv2d's row algorithm.
//!
//! One call computes `r` consecutive output positions of one output row for a block of
//! `v` output channels: `out[p·v + o] = Σ_{i, c, s} x[i·kh_step + c·channel + s·kw_step +
//! p·pos_step] · w[((i·c_count + c)·kw + s)·v + o]`. Output channels run along the vector
//! lanes (the weights are packed `[kernel row][channel][kernel column][v]`, one vector
//! load per tap) and positions are broadcast from the padded input, so no lane is
//! wasted on a short row or a halo, positions may be strided, and a kernel row that
//! falls in the padding is left out by starting and ending the reduction elsewhere.
//! Kernel columns that fall in the column padding at the ends of a row are not: the
//! kernel sums the padded band's zeros there, as PyTorch's explicit zero padding does.
//! Bodies that left those taps out (a range of live positions per kernel column, tested
//! at the first and last three positions of a call) made 1-thread `deep` 1.09-1.18×
//! slower, `s2` 1.12×, float64 `deep` and `s2` 1.17× and `cifar` (16 output channels)
//! 1.24× on an AVX-512 Xeon, and `deep` 1.14-1.35× at AVX2 on an AMD EPYC, for the
//! 1-5 % of multiply-adds they saved.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::simd::SimdLevel;

/// The operands of one call; see [`RowKernel::run`].
pub struct RowArgs<T> {
    /// Input value of the first kernel row, channel 0, kernel column 0, position 0.
    pub x: *const T,
    /// Input strides between kernel rows, channels, kernel columns and positions.
    pub kh_step: usize,
    pub channel: usize,
    pub kw_step: usize,
    pub pos_step: usize,
    /// Kernel rows, channels and kernel columns to sum over.
    pub kh: usize,
    pub channels: usize,
    pub kw: usize,
    /// Packed weights of the first kernel row: `kh · channels · kw` vectors of `v`.
    pub w: *const T,
    /// Data that a later call reads (the next weights to pack), to be asked into L2 a
    /// cache line per channel step, so that its transfer overlaps this call's
    /// arithmetic; a hint, which the scalar kernel ignores. Empty for none.
    pub ahead: *const [T],
    /// `r · v` results, position-major.
    pub out: *mut T,
}

/// Signature of a row microkernel: `r` (1..=`rmax`) positions.
pub type RowFn<T> = unsafe fn(r: usize, a: &RowArgs<T>);

/// Signature of a block transpose: `dst[offsets[c] + r] = src[r·ld + c] (+ add[c])` for
/// every column `c < offsets.len()` and row `r < rows`. It packs the weights (rows are
/// output channels, columns taps) and stores each output row (rows are positions,
/// columns output channels, plus the bias).
///
/// # Safety
/// `src` holds `(rows − 1)·ld + offsets.len()` elements, `add` (if any) at least
/// `offsets.len()`; every `dst + offsets[c] + r` is writable, not aliased and not in `src`.
pub type TransposeFn<T> =
    unsafe fn(src: &[T], ld: usize, rows: usize, offsets: &[usize], add: Option<&[T]>, dst: *mut T);

#[derive(Clone, Copy)]
pub struct RowKernel<T> {
    /// Output channels per block (vector lanes × vectors).
    pub v: usize,
    /// Most positions per call.
    pub rmax: usize,
    pub name: &'static str,
    func: RowFn<T>,
    transpose: TransposeFn<T>,
}

impl<T> RowKernel<T> {
    pub const fn new(
        v: usize,
        rmax: usize,
        name: &'static str,
        func: RowFn<T>,
        transpose: TransposeFn<T>,
    ) -> Self {
        RowKernel {
            v,
            rmax,
            name,
            func,
            transpose,
        }
    }

    /// Packs the weights of one block: `rows` holds `channels <= v` rows of
    /// `kt = offsets.len()` weights, and tap `a` of row `j` goes to `dst[offsets[a] + j]`
    /// (lanes past `channels` are left as they are). A transpose, which at the vector
    /// width runs at memory speed where the element-by-element gather of the reference
    /// spent a sixth of `deep`'s call.
    pub fn pack(&self, rows: &[T], offsets: &[usize], dst: &mut [T]) {
        let kt = offsets.len();
        assert!(kt > 0 && rows.len().is_multiple_of(kt) && rows.len() / kt <= self.v);
        let channels = rows.len() / kt;
        assert!(
            offsets.iter().all(|&o| o + channels <= dst.len()),
            "packed tap outside dst"
        );
        // SAFETY: `rows` is `channels · kt` long and every written element lies in `dst`
        // (both checked above); `transpose` was chosen for a level this CPU supports.
        unsafe { (self.transpose)(rows, kt, channels, offsets, None, dst.as_mut_ptr()) }
    }

    /// Stores `positions` results of one output row: `row` holds them position-major,
    /// `v` channels each, and channel `j < offsets.len()` goes to
    /// `dst + offsets[j] + 0..positions`, plus `bias[j]`.
    ///
    /// # Safety
    /// Every `dst + offsets[j] + q` (`q < positions`) is writable, not aliased and not
    /// in `row`.
    pub unsafe fn store(
        &self,
        row: &[T],
        positions: usize,
        offsets: &[usize],
        bias: Option<&[T]>,
        dst: *mut T,
    ) {
        if positions == 0 || offsets.is_empty() {
            return;
        }
        assert!(offsets.len() <= self.v && row.len() >= positions * self.v);
        assert!(bias.is_none_or(|b| b.len() >= offsets.len()));
        // SAFETY: `row` and `bias` are long enough (checked above), `dst` is the
        // caller's; `transpose` was chosen for a level this CPU supports.
        unsafe { (self.transpose)(row, self.v, positions, offsets, bias, dst) }
    }

    /// Computes `r` positions into `a.out` (overwritten).
    ///
    /// # Safety
    /// `1 <= r <= rmax`; every input element the sum names is readable, `a.w` holds
    /// `a.kh · a.channels · a.kw · v` readable elements, `a.ahead` is a live slice, and
    /// `a.out` `r · v` writable ones.
    #[inline]
    pub unsafe fn run(&self, r: usize, a: &RowArgs<T>) {
        assert!((1..=self.rmax).contains(&r));
        // SAFETY: forwarded contract; `func` was chosen for a level this CPU supports.
        unsafe { (self.func)(r, a) }
    }
}

/// The row kernels of one type at one level: `wide` computes blocks of two vectors of
/// output channels, `narrow` blocks of one vector (the scalar level has one kernel, both).
#[derive(Clone, Copy)]
pub struct RowKernels<T> {
    pub wide: RowKernel<T>,
    pub narrow: RowKernel<T>,
}

impl<T: Copy> RowKernels<T> {
    /// The kernel for groups of `channels` output channels: the narrow one where they
    /// fill its blocks but not the wide one's (16 channels at AVX-512 float32), which
    /// would compute zero lanes; otherwise the wide one.
    pub fn for_channels(&self, channels: usize) -> RowKernel<T> {
        if !channels.is_multiple_of(self.wide.v) && channels.is_multiple_of(self.narrow.v) {
            self.narrow
        } else {
            self.wide
        }
    }
}

pub fn kernels_f32(level: SimdLevel) -> RowKernels<f32> {
    let (wide, narrow) = match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => (x86::F32_AVX512, x86::F32_AVX512_NARROW),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => (x86::F32_AVX2, x86::F32_AVX2_NARROW),
        _ => (scalar::F32, scalar::F32),
    };
    RowKernels { wide, narrow }
}

pub fn kernels_f64(level: SimdLevel) -> RowKernels<f64> {
    let (wide, narrow) = match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => (x86::F64_AVX512, x86::F64_AVX512_NARROW),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => (x86::F64_AVX2, x86::F64_AVX2_NARROW),
        _ => (scalar::F64, scalar::F64),
    };
    RowKernels { wide, narrow }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tile::available_levels;

    /// One kernel against the definition for every call size, at a position stride and
    /// kernel width of no body of their own and at each that has one.
    fn check<T: Copy + Default>(kern: RowKernel<T>, to: fn(f64) -> T, from: fn(T) -> f64) {
        for (pos_step, kw) in [(3, 3), (1, 3), (2, 3), (1, 5), (2, 7)] {
            check_shape(kern, to, from, pos_step, kw);
        }
    }

    fn check_shape<T: Copy + Default>(
        kern: RowKernel<T>,
        to: fn(f64) -> T,
        from: fn(T) -> f64,
        pos_step: usize,
        kw: usize,
    ) {
        let v = kern.v;
        let (kh, channels) = (2, 3);
        // Every (kernel row, channel, column, position) names its own element: positions
        // span less than a column step (14 at most, 3 apart), columns less than a channel.
        let (kh_step, channel, kw_step) = (1000, 331, 41);
        let w: Vec<T> = (0..kh * channels * kw * v)
            .map(|i| to(((i * 5) % 17) as f64 - 8.0))
            .collect();
        let x: Vec<T> = (0..2100)
            .map(|i| to(((i * 7) % 23) as f64 - 11.0))
            .collect();
        let at = |i: usize, c: usize, s: usize, p: usize| {
            i * kh_step + c * channel + s * kw_step + p * pos_step
        };
        for r in 1..=kern.rmax {
            let mut out = vec![to(f64::NAN); r * v];
            let a = RowArgs {
                x: x.as_ptr(),
                kh_step,
                channel,
                kw_step,
                pos_step,
                kh,
                channels,
                kw,
                w: w.as_ptr(),
                ahead: &[],
                out: out.as_mut_ptr(),
            };
            // SAFETY: the largest index read is within x (checked here) and `out` holds
            // `r · v` results.
            assert!(at(kh - 1, channels - 1, kw - 1, r - 1) < x.len());
            unsafe { kern.run(r, &a) };
            for p in 0..r {
                for o in 0..v {
                    let want: f64 = taps(kh, channels, kw, r)
                        .filter(|&(_, _, _, q)| q == p)
                        .map(|(i, c, s, q)| {
                            from(x[at(i, c, s, q)]) * from(w[((i * channels + c) * kw + s) * v + o])
                        })
                        .sum();
                    assert_eq!(
                        from(out[p * v + o]),
                        want,
                        "{} r {r} stride {pos_step} kw {kw} p {p} o {o}",
                        kern.name
                    );
                }
            }
        }
    }

    /// Every (kernel row, channel, kernel column, position), in summation order.
    fn taps(
        kh: usize,
        channels: usize,
        kw: usize,
        r: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        (0..kh).flat_map(move |i| {
            (0..channels)
                .flat_map(move |c| (0..kw).flat_map(move |s| (0..r).map(move |p| (i, c, s, p))))
        })
    }

    /// Every packer against the definition, on blocks with and without whole 8 × 8
    /// (4 × 4) blocks of rows and taps, and lanes past the channels left untouched.
    fn check_pack<T: Copy + PartialEq + std::fmt::Debug>(kern: RowKernel<T>, to: fn(f64) -> T) {
        let v = kern.v;
        for kt in [1, 3, 8, 13, 36, 75] {
            // A tap order like the packed one: a stride that is coprime to `kt`.
            let step = (1..).map(|s| 2 * s + 1).find(|s| gcd(*s, kt) == 1).unwrap();
            let targets: Vec<usize> = (0..kt).map(|a| (a * step + 1) % kt).collect();
            let offsets: Vec<usize> = targets.iter().map(|t| t * v).collect();
            for channels in [1, 3, 4, 7, 8, 9, v - 1, v].into_iter().filter(|&c| c <= v) {
                let rows: Vec<T> = (0..channels * kt).map(|i| to(i as f64)).collect();
                let mut dst = vec![to(-1.0); kt * v];
                kern.pack(&rows, &offsets, &mut dst);
                for a in 0..kt {
                    for j in 0..v {
                        let want = if j < channels {
                            rows[j * kt + a]
                        } else {
                            to(-1.0)
                        };
                        let at = targets[a] * v + j;
                        assert_eq!(dst[at], want, "{} kt {kt} channels {channels}", kern.name);
                    }
                }
            }
        }
    }

    /// Every output-row store against the definition: rows with and without whole
    /// blocks of positions and channels, with and without a bias, the gaps between the
    /// channels' rows untouched.
    fn check_store<T>(kern: RowKernel<T>, to: fn(f64) -> T)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::ops::Add<Output = T>,
    {
        let v = kern.v;
        for positions in [1, 3, 4, 7, 8, 9, 14, 17, 56] {
            let row: Vec<T> = (0..positions * v).map(|i| to(i as f64)).collect();
            let bias: Vec<T> = (0..v).map(|j| to(1000.0 * (j + 1) as f64)).collect();
            let pitch = positions + 5;
            for channels in [1, 3, 4, 7, 8, 9, v - 1, v].into_iter().filter(|&c| c <= v) {
                let offsets: Vec<usize> = (0..channels).map(|j| 2 + j * pitch).collect();
                for add in [None, Some(&bias[..channels])] {
                    let mut dst = vec![to(-1.0); channels * pitch + 2];
                    // SAFETY: channel j's positions lie in `dst` at 2 + j·pitch.., apart.
                    unsafe { kern.store(&row, positions, &offsets, add, dst.as_mut_ptr()) };
                    for (i, &got) in dst.iter().enumerate() {
                        let (j, q) = ((i.max(2) - 2) / pitch, (i.max(2) - 2) % pitch);
                        let want = if i < 2 || j >= channels || q >= positions {
                            to(-1.0)
                        } else {
                            let x = row[q * v + j];
                            add.map_or(x, |b| x + b[j])
                        };
                        assert_eq!(got, want, "{} positions {positions} at {i}", kern.name);
                    }
                }
            }
        }
    }

    #[test]
    fn every_store_matches_the_definition() {
        for level in available_levels() {
            for (k32, k64) in both(level) {
                check_store(k32, |v| v as f32);
                check_store(k64, |v| v);
            }
        }
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    #[test]
    fn every_packer_matches_the_definition() {
        for level in available_levels() {
            for (k32, k64) in both(level) {
                check_pack(k32, |v| v as f32);
                check_pack(k64, |v| v);
            }
        }
    }

    #[test]
    fn every_level_matches_the_definition() {
        for level in available_levels() {
            for (k32, k64) in both(level) {
                check(k32, |v| v as f32, |v| v as f64);
                check(k64, |v| v, |v| v);
            }
        }
    }

    /// The wide and the narrow kernels of both types at `level`.
    fn both(level: SimdLevel) -> [(RowKernel<f32>, RowKernel<f64>); 2] {
        let (k32, k64) = (kernels_f32(level), kernels_f64(level));
        [(k32.wide, k64.wide), (k32.narrow, k64.narrow)]
    }

    #[test]
    fn the_narrow_kernel_takes_groups_of_one_vector() {
        for level in available_levels() {
            let k = kernels_f32(level);
            assert_eq!(k.for_channels(2 * k.wide.v).name, k.wide.name);
            assert_eq!(k.for_channels(k.narrow.v).name, k.narrow.name);
            assert_eq!(k.for_channels(3 * k.narrow.v).v, k.narrow.v);
            assert_eq!(k.for_channels(7).name, k.wide.name);
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    /// Time to pack `deep`'s weights (256 × 256 × 3 × 3) at every level
    /// (`cargo test --release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn pack_speed() {
        let (k, cg, kh, kw) = (256usize, 256usize, 3usize, 3usize);
        let kt = cg * kh * kw;
        let w: Vec<f32> = (0..k * kt).map(|i| (i % 97) as f32).collect();
        for level in crate::kernels::tile::available_levels() {
            let kern = kernels_f32(level).wide;
            let v = kern.v;
            let offsets: Vec<usize> = (0..kt)
                .map(|a| {
                    let (ci, s) = (a / kw, a % kw);
                    (((ci % kh) * cg + ci / kh) * kw + s) * v
                })
                .collect();
            let mut dst = vec![0f32; kt * v];
            let reps = 200;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                for blk in 0..k / v {
                    kern.pack(&w[blk * v * kt..][..v * kt], &offsets, &mut dst);
                }
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let gbs = (k * kt * 4) as f64 / s / 1e9;
            println!("{} pack {:.1} us, {gbs:.1} GB/s read", kern.name, s * 1e6);
        }
    }
}

#[cfg(test)]
mod peak {
    use super::*;
    /// Throughput of the wide float32 kernel at every level on a 3×3 reduction over
    /// 16, 64 and 256 channels (9, 36 and 147 KiB of weights per block at AVX2), the
    /// input an interior band row of `r3x3`'s shape (`cargo test --release -- --ignored
    /// --nocapture row_peak`).
    #[test]
    #[ignore]
    fn row_peak() {
        for level in crate::kernels::tile::available_levels() {
            let kern = kernels_f32(level).wide;
            for cg in [16usize, 64, 256] {
                let (kh, kw, pitch, rows) = (3usize, 3usize, 58usize, 3usize);
                let x = vec![1f32; cg * rows * pitch];
                // Weights from a cache line on, as the row algorithm packs them.
                let line = crate::workspace::line_elems::<f32>();
                let w_buf = vec![0.5f32; kh * cg * kw * kern.v + line];
                let w = &w_buf[w_buf.as_ptr().align_offset(crate::workspace::CACHE_LINE)..];
                let mut out = vec![0f32; kern.rmax * kern.v];
                let calls = 56 / kern.rmax;
                let reps = 2000 * 16 / cg;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    for k in 0..calls {
                        let a = RowArgs {
                            x: x[k * kern.rmax..].as_ptr(),
                            kh_step: pitch,
                            channel: rows * pitch,
                            kw_step: 1,
                            pos_step: 1,
                            kh,
                            channels: cg,
                            kw,
                            w: w.as_ptr(),
                            ahead: &[],
                            out: out.as_mut_ptr(),
                        };
                        // SAFETY: the last call reads up to column 56 + 2 < pitch of the
                        // last channel's last row; weights and results are sized above.
                        unsafe { kern.run(kern.rmax, &a) };
                    }
                }
                let s = t.elapsed().as_secs_f64();
                let flops = 2.0 * (reps * calls * kern.rmax * kern.v * kh * kw * cg) as f64;
                println!("{} {cg} channels: {:.1} GF/s", kern.name, flops / s / 1e9);
            }
        }
    }
}
