//! `_core.filter2d`: `scipy.signal.convolve2d` / `correlate2d` on normalised 2-D arrays.

use numpy::{Complex32, Complex64, Element, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{empty, shape_of, typed};
use crate::filter2d::{output_shape, Boundary, Mode};
use crate::kernels::planar::PlanarElem;

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
    let args = Args {
        flip,
        mode,
        boundary,
    };
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if typed::<$t>(in1, "in1").is_ok() {
                return real::<$t>(py, in1, in2, args, fillvalue);
            }
        )*};
    }
    try_types!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);
    if typed::<Complex32>(in1, "in1").is_ok() {
        return complex::<Complex32, f32>(py, in1, in2, args, fillvalue);
    }
    if typed::<Complex64>(in1, "in1").is_ok() {
        return complex::<Complex64, f64>(py, in1, in2, args, fillvalue);
    }
    Err(PyTypeError::new_err("filter2d: unsupported dtype"))
}

#[derive(Clone, Copy)]
struct Args {
    flip: bool,
    mode: Mode,
    boundary: Boundary,
}

/// The inputs as typed arrays, their shapes, the fill value and a new result array.
type Prepared<'py, T> = (
    Bound<'py, PyArrayDyn<T>>,
    Bound<'py, PyArrayDyn<T>>,
    [usize; 2],
    [usize; 2],
    T,
    Bound<'py, PyArrayDyn<T>>,
);

fn prepare<'py, T: Element + Copy>(
    py: Python<'py>,
    in1: &Bound<'py, PyAny>,
    in2: &Bound<'py, PyAny>,
    args: Args,
    fillvalue: &Bound<'py, PyAny>,
) -> PyResult<Prepared<'py, T>> {
    let a = typed::<T>(in1, "in1")?;
    let k = typed::<T>(in2, "in2")?;
    let (sa, sk) = (shape_of::<2, T>(&a, "in1")?, shape_of::<2, T>(&k, "in2")?);
    let fill = typed::<T>(fillvalue, "fillvalue")?;
    let fill = fill.readonly();
    let fill = match fill.as_slice() {
        Ok([v]) => *v,
        _ => {
            return Err(PyValueError::new_err(
                "fillvalue must be a one-element array of the inputs' dtype",
            ))
        }
    };
    let shape = output_shape(sa, sk, args.mode, args.flip).map_err(super::to_pyerr)?;
    let y = empty::<T>(py, &shape)?;
    Ok((a, k, sa, sk, fill, y))
}

fn not_contiguous<E>(_: E) -> PyErr {
    PyValueError::new_err("filter2d arrays must be C-contiguous")
}

fn real<'py, T: PlanarElem + Element>(
    py: Python<'py>,
    in1: &Bound<'py, PyAny>,
    in2: &Bound<'py, PyAny>,
    args: Args,
    fillvalue: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (a, k, sa, sk, fill, y) = prepare::<T>(py, in1, in2, args, fillvalue)?;
    {
        let (a_ro, k_ro) = (a.readonly(), k.readonly());
        let mut y_rw = y.readwrite();
        let xs = a_ro.as_slice().map_err(not_contiguous)?;
        let ks = k_ro.as_slice().map_err(not_contiguous)?;
        let ys = y_rw.as_slice_mut().map_err(not_contiguous)?;
        let level = crate::simd::level();
        super::detached(py, || {
            crate::filter2d::filter2d(
                xs,
                sa,
                ks,
                sk,
                args.flip,
                args.mode,
                args.boundary,
                fill,
                ys,
                level,
            )
        })?;
    }
    Ok(y.into_any())
}

/// Complex element types seen as interleaved pairs of their real type.
trait Interleaved: Element + Copy {
    type Real: PlanarElem + std::ops::Add<Output = Self::Real> + std::ops::Sub<Output = Self::Real>;
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

fn complex<'py, C: Interleaved<Real = R>, R>(
    py: Python<'py>,
    in1: &Bound<'py, PyAny>,
    in2: &Bound<'py, PyAny>,
    args: Args,
    fillvalue: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>>
where
    R: PlanarElem + std::ops::Add<Output = R> + std::ops::Sub<Output = R>,
{
    let (a, k, sa, sk, fill, y) = prepare::<C>(py, in1, in2, args, fillvalue)?;
    {
        let (a_ro, k_ro) = (a.readonly(), k.readonly());
        let mut y_rw = y.readwrite();
        let xs = as_pairs(a_ro.as_slice().map_err(not_contiguous)?);
        let ks = as_pairs(k_ro.as_slice().map_err(not_contiguous)?);
        let ys = as_pairs_mut(y_rw.as_slice_mut().map_err(not_contiguous)?);
        let level = crate::simd::level();
        super::detached(py, || {
            crate::filter2d::filter2d_complex(
                xs,
                sa,
                ks,
                sk,
                args.flip,
                args.mode,
                args.boundary,
                fill.parts(),
                ys,
                level,
            )
        })?;
    }
    Ok(y.into_any())
}
