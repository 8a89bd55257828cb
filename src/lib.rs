//! convrs: fast, exact 2-D convolution for NumPy users.
//!
//! The crate is a pure-Rust core (`geometry`, `conv2d`, `filter2d`, `unfold`, `kernels`,
//! `simd`, `cache`, `threading`) plus the PyO3 module `convrs._core` in `bindings`, which only
//! converts arguments and maps errors.

pub mod bindings;
pub mod cache;
pub mod conv2d;
pub mod error;
pub mod filter2d;
pub mod geometry;
pub mod kernels;
pub mod simd;
pub mod threading;
pub mod unfold;
pub mod workspace;
