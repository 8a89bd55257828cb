//! `_core.filter2d`: `scipy.signal.convolve2d` / `correlate2d` on normalised 2-D arrays.

use numpy::{Element, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{empty, shape_of, typed};
use crate::filter2d::{output_shape, Boundary, Mode};
use crate::kernels::planar::PlanarElem;

/// `convolve2d` (`flip=True`) or `correlate2d` (`flip=False`) of two C-contiguous 2-D
/// arrays of one dtype; `fillvalue` is already of that dtype.
#[pyfunction]
#[pyo3(signature = (in1, in2, flip, mode, boundary, fillvalue))]
pub fn filter2d<'py>(
    py: Python<'py>,
    in1: &Bound<'py, PyAny>,
    in2: &Bound<'py, PyAny>,
    flip: bool,
    mode: &str,
    boundary: &str,
    fillvalue: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let mode = Mode::parse(mode).map_err(super::to_pyerr)?;
    let boundary = Boundary::parse(boundary).map_err(super::to_pyerr)?;
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if typed::<$t>(in1, "in1").is_ok() {
                return typed_filter2d::<$t>(py, in1, in2, flip, mode, boundary, fillvalue);
            }
        )*};
    }
    try_types!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);
    Err(PyTypeError::new_err("filter2d: unsupported dtype"))
}

fn typed_filter2d<'py, T: PlanarElem + Element + for<'a> FromPyObject<'a, 'py>>(
    py: Python<'py>,
    in1: &Bound<'py, PyAny>,
    in2: &Bound<'py, PyAny>,
    flip: bool,
    mode: Mode,
    boundary: Boundary,
    fillvalue: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let a = typed::<T>(in1, "in1")?;
    let k = typed::<T>(in2, "in2")?;
    let (sa, sk) = (shape_of::<2, T>(&a, "in1")?, shape_of::<2, T>(&k, "in2")?);
    let fill: T = fillvalue
        .extract()
        .map_err(|_| PyValueError::new_err("fillvalue must be a scalar of the inputs' dtype"))?;
    if sa.contains(&0) || sk.contains(&0) {
        return Err(PyValueError::new_err("in1 and in2 must not be empty"));
    }
    let shape = output_shape(sa, sk, mode, flip).map_err(super::to_pyerr)?;
    let y = empty::<T>(py, &shape)?;
    {
        let (a_ro, k_ro) = (a.readonly(), k.readonly());
        let mut y_rw = y.readwrite();
        let not_contiguous = |_| PyValueError::new_err("filter2d arrays must be C-contiguous");
        let (xs, ks) = (
            a_ro.as_slice().map_err(not_contiguous)?,
            k_ro.as_slice().map_err(not_contiguous)?,
        );
        let ys = y_rw.as_slice_mut().map_err(not_contiguous)?;
        let level = crate::simd::level();
        super::detached(py, || {
            crate::filter2d::filter2d(xs, sa, ks, sk, flip, mode, boundary, fill, ys, level)
        })?;
    }
    Ok(y.into_any())
}
