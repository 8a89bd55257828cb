//! Reference tile kernel: the definition, in plain loops. Also the fallback on CPUs
//! without a SIMD set.

use super::TileKernel;

pub const F32: TileKernel<f32> = TileKernel::new(
    4,
    8,
    "scalar-4x8",
    tile::<f32, 4, 8>,
    4,
    tile::<f32, 4, 4>,
    pack::<f32>,
);
pub const F64: TileKernel<f64> = TileKernel::new(
    4,
    8,
    "scalar-4x8",
    tile::<f64, 4, 8>,
    4,
    tile::<f64, 4, 4>,
    pack::<f64>,
);
pub const F32_ROW: TileKernel<f32> = TileKernel::new(
    1,
    16,
    "scalar-1x16",
    tile::<f32, 1, 16>,
    4,
    tile::<f32, 1, 4>,
    pack::<f32>,
);
pub const F64_ROW: TileKernel<f64> = TileKernel::new(
    1,
    16,
    "scalar-1x16",
    tile::<f64, 1, 16>,
    4,
    tile::<f64, 1, 4>,
    pack::<f64>,
);

/// # Safety
/// See [`TileKernel::run`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile<T, const MR: usize, const NC: usize>(
    kt: usize,
    a: *const *const T,
    b: *const T,
    offs: *const isize,
    c: *mut T,
    ldc: usize,
    accumulate: bool,
    bias: *const T,
) where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    let mut acc = [[T::default(); NC]; MR];
    if accumulate {
        for (i, acc_i) in acc.iter_mut().enumerate() {
            // SAFETY: the caller guarantees `MR` rows of `ldc >= NC` readable elements.
            let crow = unsafe { std::slice::from_raw_parts(c.add(i * ldc), NC) };
            acc_i.copy_from_slice(crow);
        }
    }
    for k in 0..kt {
        // SAFETY: the caller guarantees `kt` offsets, `NC` readable elements at each
        // `b + offs[k]`, and `MR` rows of `kt` weights.
        let brow = unsafe { std::slice::from_raw_parts(b.offset(*offs.add(k)), NC) };
        for (i, acc_i) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let a_ik = unsafe { *(*a.add(i)).add(k) };
            for (acc_ij, &b_kj) in acc_i.iter_mut().zip(brow) {
                *acc_ij = *acc_ij + a_ik * b_kj;
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees `MR` rows of `ldc >= NC` writable elements and,
        // if `bias` is not null, `MR` biases.
        let crow = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), NC) };
        let add = (!bias.is_null()).then(|| unsafe { *bias.add(i) });
        for (c_ij, &acc_ij) in crow.iter_mut().zip(acc_i) {
            *c_ij = add.map_or(acc_ij, |add| acc_ij + add);
        }
    }
}

/// # Safety
/// See [`TileKernel::pack_window`].
#[allow(clippy::too_many_arguments)]
unsafe fn pack<T: Copy + Default>(
    dst: *mut T,
    ld: usize,
    rows: usize,
    len: usize,
    src: *const T,
    src_len: usize,
    start: isize,
    shift: usize,
) {
    // SAFETY: the caller guarantees `src_len` readable elements at `src`.
    let src = unsafe { std::slice::from_raw_parts(src, src_len) };
    for s in 0..rows {
        // SAFETY: the caller guarantees `len` writable elements at every row start.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.add(s * ld), len) };
        let i0 = start + (s * shift) as isize;
        // Row positions lead..end read src[i0 + t]; the others are padding.
        let lead = i0.min(0).unsigned_abs().min(len);
        let end = (src_len as isize - i0).clamp(lead as isize, len as isize) as usize;
        row[..lead].fill(T::default());
        if end > lead {
            row[lead..end].copy_from_slice(&src[(i0 + lead as isize) as usize..][..end - lead]);
        }
        row[end..].fill(T::default());
    }
}
