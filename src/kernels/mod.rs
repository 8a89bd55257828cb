//! Compute kernels, organised by algorithm (`tile`: the implicit-GEMM microkernel behind
//! both conv2d algorithms; `planar`: the single-channel 2-D correlation behind
//! `convolve2d`/`correlate2d` and depthwise conv2d), then by instruction set. Each
//! algorithm's `mod.rs` is its one dispatch point; its `scalar.rs` is the readable reference.

pub mod planar;
pub mod tile;

use std::ops::{Add, Mul};

use crate::simd::SimdLevel;

/// The floating-point types conv2d computes in.
pub trait ConvFloat:
    planar::PlanarElem
    + Copy
    + Default
    + PartialEq
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Mul<Output = Self>
{
    const ZERO: Self;
    /// The implicit-GEMM microkernel for this type at `level`.
    fn tile_kernel(level: SimdLevel) -> tile::TileKernel<Self>;
}

impl ConvFloat for f32 {
    const ZERO: f32 = 0.0;
    fn tile_kernel(level: SimdLevel) -> tile::TileKernel<f32> {
        tile::select_f32(level)
    }
}

impl ConvFloat for f64 {
    const ZERO: f64 = 0.0;
    fn tile_kernel(level: SimdLevel) -> tile::TileKernel<f64> {
        tile::select_f64(level)
    }
}
