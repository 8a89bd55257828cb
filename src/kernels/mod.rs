//! Compute kernels, organised by algorithm (`tile`: the implicit-GEMM microkernel behind
//! both conv2d algorithms; `winograd`: the F(4×4, 3×3) transforms; `planar`: the single-channel 2-D correlation behind
//! `convolve2d`/`correlate2d` and depthwise conv2d), then by instruction set. Each
//! algorithm's `mod.rs` is its one dispatch point; its `scalar.rs` is the readable reference.

pub mod planar;
pub mod rows;
pub mod tile;
pub mod winograd;

use std::ops::{Add, Mul, Sub};

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
    + Sub<Output = Self>
{
    const ZERO: Self;
    /// `v` rounded to this type.
    fn of(v: f64) -> Self;
    /// This value in f64 (exact).
    fn to_f64(self) -> f64;
    /// The implicit-GEMM microkernel for this type at `level`, for groups of `rows` output
    /// channels.
    fn tile_kernel(level: SimdLevel, rows: usize) -> tile::TileKernel<Self>;
    /// The channel-blocked row microkernels for this type at `level`.
    fn row_kernels(level: SimdLevel) -> rows::RowKernels<Self>;
}

impl ConvFloat for f32 {
    const ZERO: f32 = 0.0;
    fn of(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn tile_kernel(level: SimdLevel, rows: usize) -> tile::TileKernel<f32> {
        tile::kernels_f32(level).for_rows(rows)
    }
    fn row_kernels(level: SimdLevel) -> rows::RowKernels<f32> {
        rows::kernels_f32(level)
    }
}

impl ConvFloat for f64 {
    const ZERO: f64 = 0.0;
    fn of(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn tile_kernel(level: SimdLevel, rows: usize) -> tile::TileKernel<f64> {
        tile::kernels_f64(level).for_rows(rows)
    }
    fn row_kernels(level: SimdLevel) -> rows::RowKernels<f64> {
        rows::kernels_f64(level)
    }
}
