//! AVX-512 and AVX2+FMA planar kernels.
//!
//! Floats: a register block of `R` output rows × `NV` vectors. Each input row `i` of the
//! block's window is loaded once per tap column `s` and feeds every output row `p` whose
//! kernel row `i - p` exists, so loads per FMA stay well below one and the FMA pipes, not
//! the load ports, set the speed. Column tails use masked loads and stores, which never
//! touch memory outside the plane, so callers need no slack after their buffers.
//!
//! Integers: the reference loops compiled with the ISA enabled, which LLVM vectorises into
//! wrapping lane arithmetic (bit-exact with SciPy's wrap-around).

use std::arch::x86_64::*;

use super::{check_shapes, scalar, PlanarElem, PlanarFn, Plane, PlaneMut, Stores};

/// One ISA's vector of floats, with the few operations the kernel needs. Every method is
/// `#[inline(always)]` so it is compiled inside the `#[target_feature]` entry point.
trait Vector: Copy {
    type E: Copy;
    /// Per-vector column mask (a tail of `n` valid lanes).
    type M: Copy;
    const LANES: usize;
    unsafe fn splat(p: *const Self::E) -> Self;
    unsafe fn load(p: *const Self::E) -> Self;
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn store(self, p: *mut Self::E);
    unsafe fn mask(n: usize) -> Self::M;
    unsafe fn load_m(p: *const Self::E, m: Self::M) -> Self;
    unsafe fn store_m(self, p: *mut Self::E, m: Self::M);
    /// A non-temporal store of a whole vector to a vector-aligned `p`.
    unsafe fn stream(self, p: *mut Self::E);
}

/// Implements [`Vector`] for one register type. The mask operations are passed as
/// functions with one signature for both ISAs: `$mask(n)`, `$mload(p, m)`,
/// `$mstore(p, m, v)`; `$stream(p, v)` is the aligned non-temporal store.
macro_rules! vector {
    ($name:ident, $e:ty, $v:ty, $m:ty, $lanes:expr, $set1:ident, $load:ident,
     $fma:ident, $store:ident, $mask:ident, $mload:ident, $mstore:ident, $stream:ident) => {
        #[derive(Clone, Copy)]
        struct $name($v);
        impl Vector for $name {
            type E = $e;
            type M = $m;
            const LANES: usize = $lanes;
            #[inline(always)]
            unsafe fn splat(p: *const $e) -> Self {
                // SAFETY: the caller passes a readable element; the entry point enabled
                // this ISA (true of every method here).
                Self(unsafe { $set1(*p) })
            }
            #[inline(always)]
            unsafe fn load(p: *const $e) -> Self {
                // SAFETY: the caller guarantees LANES readable elements.
                Self(unsafe { $load(p) })
            }
            #[inline(always)]
            unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                // SAFETY: register-only instruction of the enabled ISA.
                Self(unsafe { $fma(a.0, b.0, c.0) })
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut $e) {
                // SAFETY: the caller guarantees LANES writable elements.
                unsafe { $store(p, self.0) }
            }
            #[inline(always)]
            unsafe fn mask(n: usize) -> $m {
                // SAFETY: register-only instructions of the enabled ISA.
                unsafe { $mask(n.min($lanes)) }
            }
            #[inline(always)]
            unsafe fn load_m(p: *const $e, m: $m) -> Self {
                // SAFETY: masked-off lanes are not accessed; the caller guarantees the rest.
                Self(unsafe { $mload(p, m) })
            }
            #[inline(always)]
            unsafe fn store_m(self, p: *mut $e, m: $m) {
                // SAFETY: as for `load_m`.
                unsafe { $mstore(p, m, self.0) }
            }
            #[inline(always)]
            unsafe fn stream(self, p: *mut $e) {
                // SAFETY: the caller guarantees LANES writable elements at an address
                // aligned to the vector's size.
                unsafe { $stream(p, self.0) }
            }
        }
    };
}

/// The first `n <= 16` lanes (AVX-512 masks are plain bit sets).
#[inline(always)]
unsafe fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

#[inline(always)]
unsafe fn mask8(n: usize) -> __mmask8 {
    ((1u32 << n) - 1) as __mmask8
}

#[inline(always)]
unsafe fn maskz_load_ps(p: *const f32, m: __mmask16) -> __m512 {
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the rest.
    unsafe { _mm512_maskz_loadu_ps(m, p) }
}

#[inline(always)]
unsafe fn maskz_load_pd(p: *const f64, m: __mmask8) -> __m512d {
    // SAFETY: as for `maskz_load_ps`.
    unsafe { _mm512_maskz_loadu_pd(m, p) }
}

/// AVX2 masks: lane l is active when its sign bit is set, i.e. when l < n.
#[inline(always)]
unsafe fn mask_i32x8(n: usize) -> __m256i {
    // SAFETY: register-only AVX2 instructions; callers run under AVX2.
    unsafe {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
    }
}

#[inline(always)]
unsafe fn mask_i64x4(n: usize) -> __m256i {
    // SAFETY: as for `mask_i32x8`.
    unsafe {
        let lane = _mm256_setr_epi64x(0, 1, 2, 3);
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), lane)
    }
}

vector!(
    F32x16,
    f32,
    __m512,
    __mmask16,
    16,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps,
    mask16,
    maskz_load_ps,
    _mm512_mask_storeu_ps,
    _mm512_stream_ps
);
vector!(
    F64x8,
    f64,
    __m512d,
    __mmask8,
    8,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_fmadd_pd,
    _mm512_storeu_pd,
    mask8,
    maskz_load_pd,
    _mm512_mask_storeu_pd,
    _mm512_stream_pd
);
vector!(
    F32x8,
    f32,
    __m256,
    __m256i,
    8,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps,
    mask_i32x8,
    _mm256_maskload_ps,
    _mm256_maskstore_ps,
    _mm256_stream_ps
);
vector!(
    F64x4,
    f64,
    __m256d,
    __m256i,
    4,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_fmadd_pd,
    _mm256_storeu_pd,
    mask_i64x4,
    _mm256_maskload_pd,
    _mm256_maskstore_pd,
    _mm256_stream_pd
);

/// Masks for the `NV` vectors of a block: all lanes, or the first `cols` in the tail.
#[inline(always)]
unsafe fn tail_masks<V: Vector, const NV: usize, const TAIL: bool>(cols: usize) -> [V::M; NV] {
    // SAFETY: register-only instructions of the enabled ISA.
    std::array::from_fn(|j| unsafe {
        V::mask(if TAIL {
            cols.saturating_sub(j * V::LANES)
        } else {
            V::LANES
        })
    })
}

/// `NV` consecutive vectors from `p`. A tail block has `cols.div_ceil(LANES)` vectors, so
/// only its last one is partial, and only that one goes through its mask (masked loads
/// and stores are slower than plain ones).
///
/// # Safety
/// Every unmasked lane is readable; in the tail, the first `NV − 1` vectors are whole.
#[inline(always)]
unsafe fn load_row<V: Vector, const NV: usize, const TAIL: bool>(
    p: *const V::E,
    masks: &[V::M; NV],
) -> [V; NV] {
    std::array::from_fn(|j| {
        // SAFETY: the caller's contract.
        unsafe {
            let p = p.add(j * V::LANES);
            if TAIL && j + 1 == NV {
                V::load_m(p, masks[j])
            } else {
                V::load(p)
            }
        }
    })
}

/// Stores the accumulators of an `R × NV` block (the last vector masked in the tail),
/// with non-temporal stores when `stream`.
///
/// # Safety
/// Every unmasked lane of the `R` rows, `ldo` apart from `out`, is writable; in the
/// tail, the first `NV − 1` vectors are whole. `stream` blocks are not tails and every
/// row's first vector is 64-byte aligned.
#[inline(always)]
unsafe fn store_block<V: Vector, const R: usize, const NV: usize, const TAIL: bool>(
    acc: &[[V; NV]; R],
    out: *mut V::E,
    ldo: usize,
    masks: &[V::M; NV],
    stream: bool,
) {
    for (p, acc_p) in acc.iter().enumerate() {
        for j in 0..NV {
            // SAFETY: the caller's contract.
            unsafe {
                let o = out.add(p * ldo + j * V::LANES);
                if TAIL && j + 1 == NV {
                    acc_p[j].store_m(o, masks[j]);
                } else if stream {
                    acc_p[j].stream(o);
                } else {
                    acc_p[j].store(o);
                }
            }
        }
    }
}

/// Output rows `p0..p0 + R`, columns `q..q + NV·LANES` (fewer when `TAIL`, then `cols`
/// gives how many are valid).
///
/// # Safety
/// Shapes checked by `check_shapes`; `p0 + R <= out.rows`; `q + cols <= out.cols`, and
/// `cols == NV·LANES` unless `TAIL`, then `NV == cols.div_ceil(LANES)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<V: Vector, const R: usize, const NV: usize, const TAIL: bool>(
    x: *const V::E,
    ldx: usize,
    k: *const V::E,
    kh: usize,
    kw: usize,
    ldk: usize,
    out: *mut V::E,
    ldo: usize,
    cols: usize,
    init: V::E,
    stream: bool,
) {
    // SAFETY: `init` is a readable element.
    let mut acc = [[unsafe { V::splat(&init) }; NV]; R];
    let masks = unsafe { tail_masks::<V, NV, TAIL>(cols) };
    for i in 0..R + kh - 1 {
        // SAFETY: input row i of the window is row p0 + i < x.rows.
        let xrow = unsafe { x.add(i * ldx) };
        for s in 0..kw {
            // SAFETY: column q + j·LANES + s + lane <= out.cols - 1 + kw - 1 < x.cols for
            // every valid lane; the tail masks the others off.
            let xv = unsafe { load_row::<V, NV, TAIL>(xrow.add(s), &masks) };
            // Kernel row r = i - p feeds output row p when it exists; in the middle of
            // a tall kernel every row of the block has one, and the test is skipped.
            if i + 1 >= R && i < kh {
                for (p, acc_p) in acc.iter_mut().enumerate() {
                    // SAFETY: r = i - p < kh, s < kw.
                    let w = unsafe { V::splat(k.add((i - p) * ldk + s)) };
                    for j in 0..NV {
                        acc_p[j] = unsafe { V::fma(w, xv[j], acc_p[j]) };
                    }
                }
            } else {
                for (p, acc_p) in acc.iter_mut().enumerate() {
                    if i >= p && i - p < kh {
                        // SAFETY: r = i - p < kh, s < kw.
                        let w = unsafe { V::splat(k.add((i - p) * ldk + s)) };
                        for j in 0..NV {
                            acc_p[j] = unsafe { V::fma(w, xv[j], acc_p[j]) };
                        }
                    }
                }
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_block::<V, R, NV, TAIL>(&acc, out, ldo, &masks, stream) };
}

/// [`block`] for a kernel of exactly `KH` rows (1..=5): the row loop is unrolled at
/// compile time, so which output rows each input row feeds is known statically, and the
/// `KH` weights of a tap column stay in registers (AVX-512: 24 acc + 4 inputs + 3
/// weights, or 16 + 4 + 5 in blocks of 4 rows; AVX2: 8 + 2 + 5).
///
/// # Safety
/// As for [`block`], with `kh == KH`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_short<
    V: Vector,
    const R: usize,
    const NV: usize,
    const TAIL: bool,
    const KH: usize,
>(
    x: *const V::E,
    ldx: usize,
    k: *const V::E,
    kw: usize,
    ldk: usize,
    out: *mut V::E,
    ldo: usize,
    cols: usize,
    init: V::E,
    stream: bool,
) {
    // SAFETY: `init` is a readable element.
    let mut acc = [[unsafe { V::splat(&init) }; NV]; R];
    let masks = unsafe { tail_masks::<V, NV, TAIL>(cols) };
    for s in 0..kw {
        // SAFETY: r < KH, s < kw.
        let w: [V; KH] = std::array::from_fn(|r| unsafe { V::splat(k.add(r * ldk + s)) });
        for i in 0..R + KH - 1 {
            // SAFETY: as in `block`.
            let xv = unsafe { load_row::<V, NV, TAIL>(x.add(i * ldx + s), &masks) };
            for (p, acc_p) in acc.iter_mut().enumerate() {
                if i >= p && i - p < KH {
                    for j in 0..NV {
                        acc_p[j] = unsafe { V::fma(w[i - p], xv[j], acc_p[j]) };
                    }
                }
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_block::<V, R, NV, TAIL>(&acc, out, ldo, &masks, stream) };
}

/// One block of any height, dispatching short kernels to [`block_short`].
///
/// # Safety
/// As for [`block`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn any_block<V: Vector, const R: usize, const NV: usize, const TAIL: bool>(
    x: *const V::E,
    ldx: usize,
    k: *const V::E,
    kh: usize,
    kw: usize,
    ldk: usize,
    out: *mut V::E,
    ldo: usize,
    cols: usize,
    init: V::E,
    stream: bool,
) {
    // SAFETY (all arms): forwarded contract; each arm matches `kh`.
    unsafe {
        match kh {
            1 => block_short::<V, R, NV, TAIL, 1>(x, ldx, k, kw, ldk, out, ldo, cols, init, stream),
            2 => block_short::<V, R, NV, TAIL, 2>(x, ldx, k, kw, ldk, out, ldo, cols, init, stream),
            3 => block_short::<V, R, NV, TAIL, 3>(x, ldx, k, kw, ldk, out, ldo, cols, init, stream),
            4 if R <= 4 => {
                block_short::<V, R, NV, TAIL, 4>(x, ldx, k, kw, ldk, out, ldo, cols, init, stream)
            }
            5 if R <= 4 => {
                block_short::<V, R, NV, TAIL, 5>(x, ldx, k, kw, ldk, out, ldo, cols, init, stream)
            }
            _ => block::<V, R, NV, TAIL>(x, ldx, k, kh, kw, ldk, out, ldo, cols, init, stream),
        }
    }
}

/// The first column from which every row of `out` (`ldo` elements apart) starts a cache
/// line, when non-temporal stores can write whole lines: there is such a column before
/// `cols`, and all rows share it (their pitch is a whole number of lines).
fn line_aligned_column<E>(out: *const E, ldo: usize, cols: usize) -> Option<usize> {
    let (size, addr) = (size_of::<E>(), out as usize);
    if !addr.is_multiple_of(size) || !(ldo * size).is_multiple_of(64) {
        return None;
    }
    let head = (64 - addr % 64) % 64 / size;
    (head < cols).then_some(head)
}

/// Output rows `p0..p0 + R` across the whole width. With `stream`, the full blocks'
/// stores are non-temporal.
///
/// # Safety
/// As for [`block`] without the column conditions; with `stream`, every row of `out`
/// starts a cache line.
#[inline(always)]
unsafe fn row_block<V: Vector, const R: usize, const NV: usize>(
    x: Plane<'_, V::E>,
    k: Plane<'_, V::E>,
    out: &mut PlaneMut<'_, V::E>,
    p0: usize,
    stream: bool,
    init: V::E,
) {
    // The tail's arms below give it exactly `cols.div_ceil(LANES)` vectors (which
    // `load_row` and `store_block` rely on) only while NV is at most 4; streamed full
    // blocks are whole cache lines.
    const { assert!(NV <= 4 && (NV * V::LANES * size_of::<V::E>()).is_multiple_of(64)) };
    let step = NV * V::LANES;
    let xp = unsafe { x.data.as_ptr().add(p0 * x.ld) };
    let op = unsafe { out.data.as_mut_ptr().add(p0 * out.ld) };
    let kp = k.data.as_ptr();
    let mut q = 0;
    while q + step <= out.cols {
        // SAFETY: full block inside the plane (see `block`); streamed ones start on a
        // line in every row.
        unsafe {
            any_block::<V, R, NV, false>(
                xp.add(q),
                x.ld,
                kp,
                k.rows,
                k.cols,
                k.ld,
                op.add(q),
                out.ld,
                step,
                init,
                stream,
            )
        };
        q += step;
    }
    if q < out.cols {
        // The masked tail computes only the vectors it needs: narrow planes (and the
        // one-column border strips of `filter2d`) would otherwise pay for a full block.
        let cols = out.cols - q;
        // SAFETY: column q < out.cols of rows inside the plane.
        let (x0, o0) = unsafe { (xp.add(q), op.add(q)) };
        let (kh, kw, ldx, ldk, ldo) = (k.rows, k.cols, x.ld, k.ld, out.ld);
        // SAFETY (all arms): masked tail of `cols < NV·LANES` columns, so the arm taken
        // has exactly `cols.div_ceil(LANES)` vectors, at most NV.
        unsafe {
            match cols.div_ceil(V::LANES) {
                1 => {
                    any_block::<V, R, 1, true>(x0, ldx, kp, kh, kw, ldk, o0, ldo, cols, init, false)
                }
                2 => {
                    any_block::<V, R, 2, true>(x0, ldx, kp, kh, kw, ldk, o0, ldo, cols, init, false)
                }
                3 => {
                    any_block::<V, R, 3, true>(x0, ldx, kp, kh, kw, ldk, o0, ldo, cols, init, false)
                }
                _ => any_block::<V, R, NV, true>(
                    x0, ldx, kp, kh, kw, ldk, o0, ldo, cols, init, false,
                ),
            }
        }
    }
}

/// The whole plane in blocks of `RB` rows (fewer for the last one).
///
/// # Safety
/// Shapes checked by `check_shapes`; the CPU supports `V`'s instructions; `stream` as
/// for [`row_block`].
#[inline(always)]
unsafe fn rows_in_blocks<V: Vector, const RB: usize, const NV: usize>(
    x: Plane<'_, V::E>,
    k: Plane<'_, V::E>,
    out: &mut PlaneMut<'_, V::E>,
    stream: bool,
    init: V::E,
) {
    let mut p0 = 0;
    // SAFETY (all calls): each block's rows lie inside the plane.
    while p0 + 2 * RB <= out.rows {
        unsafe { row_block::<V, RB, NV>(x, k, out, p0, stream, init) };
        p0 += RB;
    }
    while p0 < out.rows {
        // A short last block reloads its window for few rows: split the last
        // RB..2·RB rows into two blocks of about equal height instead.
        let left = out.rows - p0;
        let rows = if left > RB { left.div_ceil(2) } else { left }.min(6);
        match rows {
            1 => unsafe { row_block::<V, 1, NV>(x, k, out, p0, stream, init) },
            2 => unsafe { row_block::<V, 2, NV>(x, k, out, p0, stream, init) },
            3 => unsafe { row_block::<V, 3, NV>(x, k, out, p0, stream, init) },
            4 => unsafe { row_block::<V, 4, NV>(x, k, out, p0, stream, init) },
            5 => unsafe { row_block::<V, 5, NV>(x, k, out, p0, stream, init) },
            _ => unsafe { row_block::<V, 6, NV>(x, k, out, p0, stream, init) },
        }
        p0 += rows;
    }
}

/// The whole plane. Kernels of up to 3 rows use blocks of `RB3` rows and 4-5 rows blocks
/// of `RB5` (their weights live in registers, so the block shrinks to leave room);
/// taller kernels use 6 rows.
///
/// # Safety
/// The CPU supports `V`'s instructions; with `stream`, every row of `out` starts a cache
/// line.
#[inline(always)]
unsafe fn plane<V: Vector, const NV: usize, const RB3: usize, const RB5: usize>(
    x: Plane<'_, V::E>,
    k: Plane<'_, V::E>,
    mut out: PlaneMut<'_, V::E>,
    init: V::E,
    stream: bool,
) {
    assert!(
        check_shapes(&x, &k, &out),
        "planar kernel called with inconsistent shapes"
    );
    if out.rows == 0 || out.cols == 0 {
        return;
    }
    // SAFETY (all arms): shapes checked above.
    unsafe {
        match k.rows {
            0..=3 => rows_in_blocks::<V, RB3, NV>(x, k, &mut out, stream, init),
            4 | 5 => rows_in_blocks::<V, RB5, NV>(x, k, &mut out, stream, init),
            _ => rows_in_blocks::<V, 6, NV>(x, k, &mut out, stream, init),
        }
    }
    if stream {
        // Non-temporal stores are weakly ordered: fence them before the caller hands the
        // output to another thread or back to Python.
        // SAFETY: SSE, part of x86-64.
        unsafe { _mm_sfence() };
    }
}

/// A streaming kernel: `out` from its first line-aligned column by `run` with
/// non-temporal stores, the columns before it (less than a line) by `cached` first;
/// outputs whose rows do not all share that column go through `cached` alone.
fn streaming<E: Copy>(
    x: Plane<'_, E>,
    k: Plane<'_, E>,
    out: PlaneMut<'_, E>,
    init: E,
    cached: PlanarFn<E>,
    run: impl FnOnce(Plane<'_, E>, Plane<'_, E>, PlaneMut<'_, E>, E),
) {
    let head = line_aligned_column(out.data.as_ptr(), out.ld, out.cols);
    let Some(head) = head.filter(|_| out.rows > 0 && check_shapes(&x, &k, &out)) else {
        return cached(x, k, out, init);
    };
    let PlaneMut {
        data,
        rows,
        cols,
        ld,
    } = out;
    if head > 0 {
        let strip = PlaneMut {
            data: &mut *data,
            rows,
            cols: head,
            ld,
        };
        let x_strip = Plane {
            cols: head + k.cols - 1,
            ..x
        };
        cached(x_strip, k, strip, init);
    }
    let rest = PlaneMut {
        data: &mut data[head..],
        rows,
        cols: cols - head,
        ld,
    };
    let x_rest = Plane {
        data: &x.data[head..],
        cols: x.cols - head,
        ..x
    };
    run(x_rest, k, rest, init);
}

/// The `#[target_feature]` entry point of one ISA and type, with the generic bodies
/// above inlined into it (`run`), and its two safe faces: `$cached`, and `$streaming`
/// (see [`streaming`]). Streaming is a run-time flag, not a second compiled body: a body
/// per kind of store made the build 2.5× slower.
macro_rules! entries {
    ($t:ty, $features:literal, $v:ty, $nv:literal, $rb3:literal, $rb5:literal,
     $cached:ident, $streaming:ident) => {
        fn $cached(x: Plane<'_, $t>, k: Plane<'_, $t>, out: PlaneMut<'_, $t>, init: $t) {
            // SAFETY: only handed out by `f32_kernel`/`f64_kernel` for a level this CPU
            // supports; cached stores need nothing more.
            unsafe { $streaming::run(x, k, out, init, false) }
        }

        fn $streaming(x: Plane<'_, $t>, k: Plane<'_, $t>, out: PlaneMut<'_, $t>, init: $t) {
            streaming(x, k, out, init, $cached, |x, k, out, init| {
                // SAFETY: as for `$cached`; `streaming` passes an output whose rows all
                // start on a cache line.
                unsafe { $streaming::run(x, k, out, init, true) }
            })
        }

        mod $streaming {
            use super::*;
            #[target_feature(enable = $features)]
            pub(super) unsafe fn run(
                x: Plane<'_, $t>,
                k: Plane<'_, $t>,
                out: PlaneMut<'_, $t>,
                init: $t,
                stream: bool,
            ) {
                // SAFETY: forwarded.
                unsafe { plane::<$v, $nv, $rb3, $rb5>(x, k, out, init, stream) }
            }
        }
    };
}

entries!(
    f32,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    F32x16,
    4,
    6,
    4,
    f32_avx512,
    f32_avx512_nt
);
entries!(
    f64,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    F64x8,
    4,
    6,
    4,
    f64_avx512,
    f64_avx512_nt
);
entries!(f32, "avx2,fma", F32x8, 2, 4, 4, f32_avx2, f32_avx2_nt);
entries!(f64, "avx2,fma", F64x4, 2, 4, 4, f64_avx2, f64_avx2_nt);

pub fn f32_kernel(avx512: bool, stores: Stores) -> PlanarFn<f32> {
    match (avx512, stores) {
        (true, Stores::Cached) => f32_avx512,
        (true, Stores::Streaming) => f32_avx512_nt,
        (false, Stores::Cached) => f32_avx2,
        (false, Stores::Streaming) => f32_avx2_nt,
    }
}

pub fn f64_kernel(avx512: bool, stores: Stores) -> PlanarFn<f64> {
    match (avx512, stores) {
        (true, Stores::Cached) => f64_avx512,
        (true, Stores::Streaming) => f64_avx512_nt,
        (false, Stores::Cached) => f64_avx2,
        (false, Stores::Streaming) => f64_avx2_nt,
    }
}

#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
unsafe fn int_avx512<T: PlanarElem>(
    x: Plane<'_, T>,
    k: Plane<'_, T>,
    out: PlaneMut<'_, T>,
    init: T,
) {
    scalar::correlate_valid_inline(x, k, out, init)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn int_avx2<T: PlanarElem>(x: Plane<'_, T>, k: Plane<'_, T>, out: PlaneMut<'_, T>, init: T) {
    scalar::correlate_valid_inline(x, k, out, init)
}

fn int_avx512_fn<T: PlanarElem>(x: Plane<'_, T>, k: Plane<'_, T>, out: PlaneMut<'_, T>, init: T) {
    // SAFETY: only handed out by `int_kernel` for a level this CPU supports.
    unsafe { int_avx512(x, k, out, init) }
}

fn int_avx2_fn<T: PlanarElem>(x: Plane<'_, T>, k: Plane<'_, T>, out: PlaneMut<'_, T>, init: T) {
    // SAFETY: only handed out by `int_kernel` for a level this CPU supports.
    unsafe { int_avx2(x, k, out, init) }
}

pub fn int_kernel<T: PlanarElem>(avx512: bool) -> PlanarFn<T> {
    if avx512 {
        int_avx512_fn::<T>
    } else {
        int_avx2_fn::<T>
    }
}
