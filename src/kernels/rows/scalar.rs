//! Reference row kernel: the definition, in plain loops. Also the fallback on CPUs
//! without a SIMD set.

use std::ops::Range;

use super::{RowArgs, RowKernel};

/// Output channels per block and most positions per call.
const V: usize = 8;
const RMAX: usize = 4;

pub const F32: RowKernel<f32> = RowKernel::new(V, RMAX, "scalar-4x8", run::<f32>, pack::<f32>);
pub const F64: RowKernel<f64> = RowKernel::new(V, RMAX, "scalar-4x8", run::<f64>, pack::<f64>);

/// See [`RowKernel::pack`].
fn pack<T: Copy>(rows: &[T], targets: &[usize], v: usize, dst: &mut [T]) {
    let kt = targets.len();
    pack_part(rows, targets, v, dst, 0..rows.len() / kt, 0..kt);
}

/// The packer's definition for rows `js` and taps `taps` of the block: the reference,
/// and the edges the vector packers leave over.
pub fn pack_part<T: Copy>(
    rows: &[T],
    targets: &[usize],
    v: usize,
    dst: &mut [T],
    js: Range<usize>,
    taps: Range<usize>,
) {
    let kt = targets.len();
    for j in js {
        let row = &rows[j * kt..][..kt];
        for a in taps.clone() {
            dst[targets[a] * v + j] = row[a];
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
