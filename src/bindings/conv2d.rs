//! `_core.conv2d`: the CNN layer on normalised NCHW arrays.

use numpy::{Element, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{has_dtype, result, shape_of, typed};
use crate::conv2d::Algorithm;
use crate::geometry::{ConvGeometry, Padding};
use crate::kernels::ConvFloat;

/// Padding in one of the forms the Python layer passes on.
#[derive(FromPyObject)]
pub enum PaddingArg {
    Explicit((i64, i64, i64, i64)),
    Named(String),
}

impl PaddingArg {
    fn resolve(self) -> PyResult<Padding> {
        match self {
            PaddingArg::Explicit((t, b, l, r)) => Ok(Padding::Explicit([t, b, l, r])),
            PaddingArg::Named(s) if s == "same" => Ok(Padding::Same),
            PaddingArg::Named(s) if s == "valid" => Ok(Padding::Valid),
            PaddingArg::Named(s) => Err(PyValueError::new_err(format!(
                "padding must be an int, a pair, a pair of pairs, 'valid' or 'same'; got {s:?}"
            ))),
        }
    }
}

/// conv2d on a 4-D input; every array already has the result dtype.
#[pyfunction]
#[pyo3(signature = (input, weight, bias, stride, padding, dilation, groups, algorithm, out))]
#[allow(clippy::too_many_arguments)]
pub fn conv2d<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    stride: (i64, i64),
    padding: PaddingArg,
    dilation: (i64, i64),
    groups: i64,
    algorithm: &str,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let algorithm = Algorithm::parse(algorithm).map_err(super::to_pyerr)?;
    let padding = padding.resolve()?;
    let args = Args {
        stride: [stride.0, stride.1],
        padding,
        dilation: [dilation.0, dilation.1],
        groups,
        algorithm,
    };
    if has_dtype::<f32>(input) {
        typed_conv2d::<f32>(py, input, weight, bias, &args, out)
    } else if has_dtype::<f64>(input) {
        typed_conv2d::<f64>(py, input, weight, bias, &args, out)
    } else {
        Err(PyTypeError::new_err(
            "input must be a float32 or float64 array",
        ))
    }
}

struct Args {
    stride: [i64; 2],
    padding: Padding,
    dilation: [i64; 2],
    groups: i64,
    algorithm: Algorithm,
}

fn typed_conv2d<'py, T: ConvFloat + Element>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    args: &Args,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let x = typed::<T>(input, "input")?;
    let w = typed::<T>(weight, "weight")?;
    let b = bias.map(|b| typed::<T>(b, "bias")).transpose()?;
    let g = ConvGeometry::new(
        shape_of::<4, T>(&x, "input")?,
        shape_of::<4, T>(&w, "weight")?,
        args.stride,
        args.padding,
        args.dilation,
        args.groups,
    )
    .map_err(super::to_pyerr)?;
    if let Some(b) = &b {
        if b.shape() != [g.c_out] {
            return Err(PyValueError::new_err(format!(
                "bias must have shape ({},), got {:?}",
                g.c_out,
                b.shape()
            )));
        }
    }
    let y = result::<T>(py, out, &g.output_shape())?;
    {
        let (x_ro, w_ro) = (x.readonly(), w.readonly());
        let b_ro = b.as_ref().map(|b| b.readonly());
        let mut y_rw = y.readwrite();
        let not_contiguous = |_| PyValueError::new_err("conv2d arrays must be C-contiguous");
        let xs = x_ro.as_slice().map_err(not_contiguous)?;
        let ws = w_ro.as_slice().map_err(not_contiguous)?;
        let bs = b_ro
            .as_ref()
            .map(|b| b.as_slice())
            .transpose()
            .map_err(not_contiguous)?;
        let ys = y_rw.as_slice_mut().map_err(not_contiguous)?;
        let level = crate::simd::level();
        super::detached(py, || {
            crate::conv2d::conv2d(&g, xs, ws, bs, ys, args.algorithm, level)
        })?;
    }
    Ok(y.into_any())
}
