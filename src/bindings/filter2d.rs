//! `_core.filter2d`: `scipy.signal.convolve2d` / `correlate2d` on normalised 2-D arrays.

use numpy::{Complex32, Complex64, Element, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{empty, has_dtype, shape_of, typed};
use crate::filter2d::{Boundary, FftFloat, Filter2d, Mode};
use crate::simd::SimdLevel;

/// `convolve2d` (`flip=True`) or `correlate2d` (`flip=False`) of two C-contiguous 2-D
/// arrays of one dtype; `fillvalue` is a one-element array of that dtype.
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
    let call = Call {
        in1,
        in2,
        fillvalue,
        flip,
        mode,
        boundary,
    };
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if has_dtype::<$t>(in1) {
                return call.run::<$t>(py, |p, x, k, fill, y, level| p.real(x, k, fill, y, level));
            }
        )*};
    }
    try_types!(i8, i16, i32, i64, u8, u16, u32, u64);
    // Float dtypes may take the FFT path for large kernels; integers never do.
    if has_dtype::<f32>(in1) {
        return call.run::<f32>(py, |p, x, k, fill, y, level| p.float(x, k, fill, y, level));
    }
    if has_dtype::<f64>(in1) {
        return call.run::<f64>(py, |p, x, k, fill, y, level| p.float(x, k, fill, y, level));
    }
    if has_dtype::<Complex32>(in1) {
        return call.run::<Complex32>(py, complex::<Complex32>);
    }
    if has_dtype::<Complex64>(in1) {
        return call.run::<Complex64>(py, complex::<Complex64>);
    }
    Err(PyTypeError::new_err("filter2d: unsupported dtype"))
}

struct Call<'a, 'py> {
    in1: &'a Bound<'py, PyAny>,
    in2: &'a Bound<'py, PyAny>,
    fillvalue: &'a Bound<'py, PyAny>,
    flip: bool,
    mode: Mode,
    boundary: Boundary,
}

fn not_contiguous<E>(_: E) -> PyErr {
    PyValueError::new_err("filter2d arrays must be C-contiguous")
}

impl<'py> Call<'_, 'py> {
    /// Checks the arrays, allocates the result and runs `compute` on their elements with
    /// the GIL released.
    fn run<T: Element + Copy>(
        &self,
        py: Python<'py>,
        compute: impl FnOnce(&Filter2d, &[T], &[T], T, &mut [T], SimdLevel) -> crate::error::Result<()>
            + Send,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = typed::<T>(self.in1, "in1")?;
        let k = typed::<T>(self.in2, "in2")?;
        let problem = Filter2d {
            s1: shape_of::<2, T>(&a, "in1")?,
            s2: shape_of::<2, T>(&k, "in2")?,
            flip: self.flip,
            mode: self.mode,
            boundary: self.boundary,
        };
        let fill = typed::<T>(self.fillvalue, "fillvalue")?;
        let fill = match fill.readonly().as_slice() {
            Ok([v]) => *v,
            _ => {
                return Err(PyValueError::new_err(
                    "fillvalue must be a one-element array of the inputs' dtype",
                ))
            }
        };
        let shape = problem.output_shape().map_err(super::to_pyerr)?;
        let y = empty::<T>(py, &shape)?;
        {
            let (a_ro, k_ro) = (a.readonly(), k.readonly());
            let mut y_rw = y.readwrite();
            let xs = a_ro.as_slice().map_err(not_contiguous)?;
            let ks = k_ro.as_slice().map_err(not_contiguous)?;
            let ys = y_rw.as_slice_mut().map_err(not_contiguous)?;
            let level = crate::simd::level();
            super::detached(py, || compute(&problem, xs, ks, fill, ys, level))?;
        }
        Ok(y.into_any())
    }
}

/// Complex element types seen as interleaved pairs of their real type.
trait Interleaved: Element + Copy {
    type Real: FftFloat;
    fn parts(self) -> (Self::Real, Self::Real);
}

impl Interleaved for Complex32 {
    type Real = f32;
    fn parts(self) -> (f32, f32) {
        (self.re, self.im)
    }
}

impl Interleaved for Complex64 {
    type Real = f64;
    fn parts(self) -> (f64, f64) {
        (self.re, self.im)
    }
}

fn as_pairs<C: Interleaved>(v: &[C]) -> &[C::Real] {
    // SAFETY: num_complex::Complex<R> is #[repr(C)] { re: R, im: R }, so a slice of n
    // complex values is exactly 2n values of R, with R's alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), 2 * v.len()) }
}

fn as_pairs_mut<C: Interleaved>(v: &mut [C]) -> &mut [C::Real] {
    // SAFETY: as for `as_pairs`; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), 2 * v.len()) }
}

fn complex<C: Interleaved>(
    p: &Filter2d,
    x: &[C],
    k: &[C],
    fill: C,
    y: &mut [C],
    level: SimdLevel,
) -> crate::error::Result<()> {
    p.complex(
        as_pairs(x),
        as_pairs(k),
        fill.parts(),
        as_pairs_mut(y),
        level,
    )
}
