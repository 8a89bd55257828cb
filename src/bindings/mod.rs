//! The Python extension module `convrs._core`. Each function takes arrays the Python layer
//! has already normalised (native byte order, C-contiguous, one dtype), validates what the
//! core needs, releases the GIL for the computation and maps `ConvError` to Python.

mod arrays;
mod conv2d;
mod filter2d;
mod runtime;
mod unfold;

use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::error::ConvError;

pub(crate) fn to_pyerr(e: ConvError) -> PyErr {
    match e {
        ConvError::Value(m) => PyValueError::new_err(m),
        ConvError::Type(m) => PyTypeError::new_err(m),
        ConvError::Memory(m) => PyMemoryError::new_err(m),
    }
}

/// Runs `f` with the GIL released. A panic is a bug in convrs; it surfaces as a
/// `RuntimeError` instead of unwinding into Python.
///
/// A daemon thread whose computation ends while the interpreter finalizes needs nothing
/// here: CPython < 3.14 would `pthread_exit` it inside `PyEval_RestoreThread`, but
/// pyo3-ffi's wrapper of that call parks such a thread for good instead of letting the
/// forced unwind run our destructors without the GIL (checked by
/// `tests/test_runtime.py::test_interpreter_exits_cleanly_*`).
pub(crate) fn detached<F>(py: Python<'_>, f: F) -> PyResult<()>
where
    F: FnOnce() -> crate::error::Result<()> + Send,
{
    let result = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match result {
        Ok(r) => r.map_err(to_pyerr),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(PyRuntimeError::new_err(format!(
                "internal error in convrs (please report): {msg}"
            )))
        }
    }
}

#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::conv2d::conv2d;
    #[pymodule_export]
    use super::filter2d::filter2d;
    #[pymodule_export]
    use super::runtime::{get_num_threads, set_num_threads, simd_level};
    #[pymodule_export]
    use super::unfold::{col2im, im2col};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // Report bad environment settings at import, where the user can see them.
        crate::simd::cap_from_env().map_err(super::to_pyerr)?;
        crate::threading::threads_from_env().map_err(super::to_pyerr)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
