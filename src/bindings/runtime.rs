//! Thread count and SIMD level.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// The number of worker threads one call may use.
#[pyfunction]
pub fn get_num_threads() -> usize {
    crate::threading::num_threads()
}

/// Sets the number of worker threads one call may use (1 to 1024).
#[pyfunction]
pub fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    let value = match n.extract::<i64>() {
        Ok(v) => v,
        // An int beyond i64 is a bad value like any other out-of-range count, not the
        // OverflowError pyo3's conversion would raise.
        Err(e) if e.is_instance_of::<PyOverflowError>(n.py()) => {
            return Err(PyValueError::new_err(format!(
                "n must be an integer between 1 and {}; got {n}",
                crate::threading::MAX_THREADS
            )))
        }
        Err(_) => {
            return Err(PyTypeError::new_err(format!(
                "n must be an int, got {}",
                n.get_type().name()?
            )))
        }
    };
    crate::threading::set_num_threads(value).map_err(super::to_pyerr)
}

/// The instruction set the kernels use: "avx512", "avx2", "neon" or "scalar".
#[pyfunction]
pub fn simd_level() -> &'static str {
    crate::simd::level().name()
}
