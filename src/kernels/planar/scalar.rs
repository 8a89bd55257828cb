//! Reference planar kernel: the definition in plain loops, for every element type.

use super::{check_shapes, PlanarElem, Plane, PlaneMut};

pub fn correlate_valid<T: PlanarElem>(
    x: Plane<'_, T>,
    k: Plane<'_, T>,
    out: PlaneMut<'_, T>,
    init: T,
) {
    correlate_valid_inline(x, k, out, init)
}

/// The body of [`correlate_valid`], inlined into the ISA-specific integer entry points so
/// that LLVM vectorises it for their instruction set.
#[inline(always)]
pub fn correlate_valid_inline<T: PlanarElem>(
    x: Plane<'_, T>,
    k: Plane<'_, T>,
    out: PlaneMut<'_, T>,
    init: T,
) {
    assert!(
        check_shapes(&x, &k, &out),
        "planar kernel called with inconsistent shapes"
    );
    for p in 0..out.rows {
        let orow = &mut out.data[p * out.ld..p * out.ld + out.cols];
        orow.fill(init);
        for r in 0..k.rows {
            let xrow = &x.data[(p + r) * x.ld..];
            for s in 0..k.cols {
                let w = k.data[r * k.ld + s];
                for (o, &xv) in orow.iter_mut().zip(&xrow[s..]) {
                    *o = T::mul_add(*o, w, xv);
                }
            }
        }
    }
}
