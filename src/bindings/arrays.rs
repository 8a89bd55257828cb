//! Array plumbing shared by the bindings: typed views, result allocation, `out=` checks.

use numpy::{Element, PyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Whether `arr` is an array of element type `T`. Dispatch uses this rather than
/// [`typed`], whose error message (formatting the dtype) would cost microseconds per miss.
pub fn has_dtype<T: Element>(arr: &Bound<'_, PyAny>) -> bool {
    arr.cast::<PyArrayDyn<T>>().is_ok()
}

/// `arr` as a typed array, or a `TypeError` naming `what`.
pub fn typed<'py, T: Element>(
    arr: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    arr.cast::<PyArrayDyn<T>>().cloned().map_err(|_| {
        let dtype = arr
            .cast::<PyUntypedArray>()
            .map(|a| a.dtype().to_string())
            .unwrap_or_else(|_| arr.get_type().to_string());
        PyTypeError::new_err(format!(
            "{what} has dtype {dtype}, expected {}",
            std::any::type_name::<T>()
        ))
    })
}

/// A new, uninitialised C-contiguous result from `numpy.empty`, so that a size that
/// cannot be allocated raises numpy's own `MemoryError`.
pub fn empty<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let dtype = numpy::dtype::<T>(py);
    let arr = py
        .import("numpy")?
        .call_method1("empty", (PyTuple::new(py, shape)?, dtype))?;
    Ok(arr.cast_into::<PyArrayDyn<T>>()?)
}

/// The result array: `out` after checking it, or a new one.
pub fn result<'py, T: Element>(
    py: Python<'py>,
    out: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let Some(out) = out else {
        return empty(py, shape);
    };
    let untyped = out.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "out must be a numpy.ndarray, got {}",
            out.get_type()
        ))
    })?;
    let arr = out.cast::<PyArrayDyn<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "out has dtype {}, but the result dtype is {}",
            untyped.dtype(),
            numpy::dtype::<T>(py)
        ))
    })?;
    if arr.shape() != shape {
        return Err(PyValueError::new_err(format!(
            "out has shape {:?}, but the result has shape {:?}",
            arr.shape(),
            shape
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(PyValueError::new_err("out must be C-contiguous"));
    }
    if !arr
        .getattr("flags")?
        .getattr("writeable")?
        .extract::<bool>()?
    {
        return Err(PyValueError::new_err("out must be writeable"));
    }
    Ok(arr.clone())
}

/// The shape of a normalised input as a fixed-size array, or a `ValueError`.
pub fn shape_of<const D: usize, T: Element>(
    arr: &Bound<'_, PyArrayDyn<T>>,
    what: &str,
) -> PyResult<[usize; D]> {
    arr.shape().try_into().map_err(|_| {
        PyValueError::new_err(format!("{what} must be {D}-D, got shape {:?}", arr.shape()))
    })
}
