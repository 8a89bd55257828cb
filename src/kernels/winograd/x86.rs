//! The transforms compiled for AVX2 + FMA and for AVX-512: the scalar reference's code,
//! inlined into `#[target_feature]` functions so that its loops over tiles and channels
//! vectorise at that width.

use super::{scalar, TILE, WINDOW};
use crate::kernels::ConvFloat;

macro_rules! compiled_for {
    ($features:literal, $gather:ident, $input:ident, $output:ident, $scatter:ident,
     $filter:ident) => {
        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $features)]
        pub unsafe fn $gather<T: ConvFloat>(
            rows: [&[T]; WINDOW],
            col0: isize,
            n: usize,
            seg: &mut [T],
            win: &mut [T],
            pitch: usize,
        ) {
            scalar::gather_windows(rows, col0, n, seg, win, pitch)
        }

        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $features)]
        pub unsafe fn $input<T: ConvFloat>(win: &mut [T], count: usize, v: &mut [T], pitch: usize) {
            scalar::input_tiles(win, count, v, pitch)
        }

        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $features)]
        pub unsafe fn $output<T: ConvFloat>(
            m: &[T],
            pitch: usize,
            count: usize,
            bias: T,
            scratch: &mut [T],
            y: &mut [T],
        ) {
            scalar::output_tiles(m, pitch, count, bias, scratch, y)
        }

        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $features)]
        pub unsafe fn $scatter<T: ConvFloat>(
            y: &[T],
            pitch: usize,
            n: usize,
            rows: [&mut [T]; TILE],
        ) {
            scalar::scatter_tiles(y, pitch, n, rows)
        }

        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $features)]
        pub unsafe fn $filter<T: ConvFloat>(
            w: &[T],
            cg: usize,
            scratch: &mut [f64],
            u: &mut [T],
            pitch: usize,
        ) {
            scalar::filter_tiles(w, cg, scratch, u, pitch)
        }
    };
}

compiled_for!(
    "avx2,fma",
    gather_avx2,
    input_avx2,
    output_avx2,
    scatter_avx2,
    filter_avx2
);
compiled_for!(
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma",
    gather_avx512,
    input_avx512,
    output_avx512,
    scatter_avx512,
    filter_avx512
);
