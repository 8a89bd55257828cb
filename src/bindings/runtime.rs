//! Thread count and SIMD level.

use pyo3::prelude::*;

/// The number of worker threads one call may use.
#[pyfunction]
pub fn get_num_threads() -> usize {
    crate::threading::num_threads()
}

/// Sets the number of worker threads one call may use (1 to 1024).
#[pyfunction]
pub fn set_num_threads(n: i64) -> PyResult<()> {
    crate::threading::set_num_threads(n).map_err(super::to_pyerr)
}

/// The instruction set the kernels use: "avx512", "avx2", "neon" or "scalar".
#[pyfunction]
pub fn simd_level() -> &'static str {
    crate::simd::level().name()
}
