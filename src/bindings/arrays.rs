//! Array plumbing shared by the bindings: typed views, result allocation, `out=` checks.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyTuple};

use crate::workspace::{line_elems, CACHE_LINE};

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
/// cannot be allocated raises numpy's own `MemoryError`. Its data starts on a cache line:
/// numpy's allocator aligns to 16 bytes, and the kernels store whole vectors, which then
/// straddle two lines where a row of the result starts on a line (with results on a
/// line, at 1 thread: `pw` 0.94× the time, `cifar` 0.96×, `conv1` 0.97×, `r3x3` 0.98×).
/// It is a view of a buffer up to one line longer, which it keeps alive as its `base`.
pub fn empty<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let dtype = numpy::dtype::<T>(py);
    let elem = std::mem::size_of::<T>().max(1);
    let spare = line_elems::<T>() - 1;
    let too_large = || PyMemoryError::new_err(format!("result of shape {shape:?} is too large"));
    let len = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    let buf = py
        .import("numpy")?
        .call_method1(
            "empty",
            (len.checked_add(spare).ok_or_else(too_large)?, dtype),
        )?
        .cast_into::<PyArrayDyn<T>>()?;
    let addr = buf.data() as usize;
    let to_line = (CACHE_LINE - addr % CACHE_LINE) % CACHE_LINE;
    let first = if to_line.is_multiple_of(elem) {
        to_line / elem
    } else {
        0
    };
    let arr = buf
        .get_item(PySlice::new(py, first as isize, (first + len) as isize, 1))?
        .call_method1("reshape", (PyTuple::new(py, shape)?,))?;
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
