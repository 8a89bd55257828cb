//! Reference row kernel: the definition, in plain loops. Also the fallback on CPUs
//! without a SIMD set.

use std::ops::Add;

use super::{RowArgs, RowKernel};

/// Output channels per block and most positions per call.
const V: usize = 8;
const RMAX: usize = 4;

pub const F32: RowKernel<f32> = RowKernel::new(V, RMAX, "scalar-4x8", run::<f32>, transpose::<f32>);
pub const F64: RowKernel<f64> = RowKernel::new(V, RMAX, "scalar-4x8", run::<f64>, transpose::<f64>);

/// The transpose's definition: the reference, and the vector versions' blocks narrower
/// than a vector.
///
/// # Safety
/// See [`super::TransposeFn`].
pub unsafe fn transpose<T: Copy + Add<Output = T>>(
    src: &[T],
    ld: usize,
    rows: usize,
    offsets: &[usize],
    add: Option<&[T]>,
    dst: *mut T,
) {
    for (c, &offset) in offsets.iter().enumerate() {
        let add_c = add.map(|a| a[c]);
        for r in 0..rows {
            let x = src[r * ld + c];
            // SAFETY: the caller guarantees that this element is writable and exclusive.
            unsafe { *dst.add(offset + r) = add_c.map_or(x, |a| x + a) };
        }
    }
}

/// # Safety
/// See [`RowKernel::run`].
unsafe fn run<T>(r: usize, a: &RowArgs<T>)
where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    let mut acc = [[T::default(); V]; RMAX];
    let mut w = a.w;
    for i in 0..a.kh {
        for c in 0..a.channels {
            for s in 0..a.kw {
                // SAFETY: the caller guarantees `v` weights per tap and every input the
                // sum names.
                let wv = unsafe { std::slice::from_raw_parts(w, V) };
                let x = unsafe { a.x.add(i * a.kh_step + c * a.channel + s * a.kw_step) };
                for (p, acc_p) in acc.iter_mut().enumerate().take(r) {
                    let xp = unsafe { *x.add(p * a.pos_step) };
                    for (acc_po, &w_o) in acc_p.iter_mut().zip(wv) {
                        *acc_po = *acc_po + xp * w_o;
                    }
                }
                w = unsafe { w.add(V) };
            }
        }
    }
    // SAFETY: the caller guarantees `r · v` writable results.
    let out = unsafe { std::slice::from_raw_parts_mut(a.out, r * V) };
    for (dst, acc_p) in out.chunks_exact_mut(V).zip(&acc) {
        dst.copy_from_slice(acc_p);
    }
}
