//! `_core.im2col` / `_core.col2im` on normalised 4-D / 3-D arrays.

use numpy::{Element, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{empty, has_dtype, shape_of, typed};
use crate::geometry::{Padding, Window, WindowArgs};
use crate::workspace::checked_product;

/// `(kernel_size, dilation, padding, stride)` as the Python layer passes them.
type WinArgs = ((i64, i64), (i64, i64), (i64, i64), (i64, i64));

fn window(
    kernel: (i64, i64),
    dilation: (i64, i64),
    padding: (i64, i64),
    stride: (i64, i64),
    h: usize,
    w: usize,
) -> PyResult<Window> {
    WindowArgs {
        kernel: [kernel.0, kernel.1],
        stride: [stride.0, stride.1],
        dilation: [dilation.0, dilation.1],
        padding: Padding::Explicit([padding.0, padding.0, padding.1, padding.1]),
    }
    .resolve(h, w, "kernel_size")
    .map_err(super::to_pyerr)
}

/// `torch.nn.functional.unfold` of an `(N, C, H, W)` array.
#[pyfunction]
#[pyo3(signature = (input, kernel_size, dilation, padding, stride))]
pub fn im2col<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    kernel_size: (i64, i64),
    dilation: (i64, i64),
    padding: (i64, i64),
    stride: (i64, i64),
) -> PyResult<Bound<'py, PyAny>> {
    fn run<'py, T: Element + Copy + Default + Send + Sync>(
        py: Python<'py>,
        input: &Bound<'py, PyAny>,
        win_args: WinArgs,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = typed::<T>(input, "input")?;
        let [n, c, h, w] = shape_of::<4, T>(&x, "input")?;
        let win = window(win_args.0, win_args.1, win_args.2, win_args.3, h, w)?;
        let rows =
            checked_product(&[c, win.kh, win.kw], "im2col result").map_err(super::to_pyerr)?;
        let l =
            checked_product(&[win.h_out, win.w_out], "im2col result").map_err(super::to_pyerr)?;
        checked_product(&[n, rows, l], "im2col result").map_err(super::to_pyerr)?;
        let y = empty::<T>(py, &[n, rows, l])?;
        {
            let x_ro = x.readonly();
            let mut y_rw = y.readwrite();
            let xs = x_ro
                .as_slice()
                .map_err(|_| PyValueError::new_err("input must be C-contiguous"))?;
            let ys = y_rw
                .as_slice_mut()
                .map_err(|_| PyValueError::new_err("result must be C-contiguous"))?;
            super::detached(py, || crate::unfold::im2col(xs, n * c, h, w, &win, ys))?;
        }
        Ok(y.into_any())
    }
    let args = (kernel_size, dilation, padding, stride);
    if has_dtype::<f32>(input) {
        run::<f32>(py, input, args)
    } else if has_dtype::<f64>(input) {
        run::<f64>(py, input, args)
    } else {
        Err(PyTypeError::new_err(
            "input must be a float32 or float64 array",
        ))
    }
}

/// `torch.nn.functional.fold` of an `(N, C·kh·kw, L)` array into `(N, C, H, W)`.
#[pyfunction]
#[pyo3(signature = (cols, output_size, kernel_size, dilation, padding, stride))]
pub fn col2im<'py>(
    py: Python<'py>,
    cols: &Bound<'py, PyAny>,
    output_size: (i64, i64),
    kernel_size: (i64, i64),
    dilation: (i64, i64),
    padding: (i64, i64),
    stride: (i64, i64),
) -> PyResult<Bound<'py, PyAny>> {
    fn run<'py, T: Element + Copy + Default + Send + Sync + std::ops::Add<Output = T>>(
        py: Python<'py>,
        cols: &Bound<'py, PyAny>,
        output_size: (i64, i64),
        win_args: WinArgs,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = typed::<T>(cols, "cols")?;
        let [n, rows, l] = shape_of::<3, T>(&x, "cols")?;
        if output_size.0 < 1 || output_size.1 < 1 {
            return Err(PyValueError::new_err(format!(
                "output_size must be positive, got {output_size:?}"
            )));
        }
        let (h, w) = (output_size.0 as usize, output_size.1 as usize);
        let win = window(win_args.0, win_args.1, win_args.2, win_args.3, h, w)?;
        let taps = win.kh * win.kw;
        if rows % taps != 0 {
            return Err(PyValueError::new_err(format!(
                "cols.shape[1] ({rows}) must be divisible by the product of kernel_size ({taps})"
            )));
        }
        // Checked: a huge output_size must not wrap around to a matching block count.
        let blocks = checked_product(&[win.h_out, win.w_out], "col2im output_size")
            .map_err(super::to_pyerr)?;
        if l != blocks {
            return Err(PyValueError::new_err(format!(
                "cols.shape[2] ({l}) must equal the number of sliding blocks ({} x {} = \
                 {blocks}) for output_size={output_size:?}",
                win.h_out, win.w_out,
            )));
        }
        let c = rows / taps;
        checked_product(&[n, c, h, w], "col2im result").map_err(super::to_pyerr)?;
        let y = empty::<T>(py, &[n, c, h, w])?;
        {
            let x_ro = x.readonly();
            let mut y_rw = y.readwrite();
            let xs = x_ro
                .as_slice()
                .map_err(|_| PyValueError::new_err("cols must be C-contiguous"))?;
            let ys = y_rw
                .as_slice_mut()
                .map_err(|_| PyValueError::new_err("result must be C-contiguous"))?;
            super::detached(py, || crate::unfold::col2im(xs, n * c, h, w, &win, ys))?;
        }
        Ok(y.into_any())
    }
    let args = (kernel_size, dilation, padding, stride);
    if has_dtype::<f32>(cols) {
        run::<f32>(py, cols, output_size, args)
    } else if has_dtype::<f64>(cols) {
        run::<f64>(py, cols, output_size, args)
    } else {
        Err(PyTypeError::new_err(
            "cols must be a float32 or float64 array",
        ))
    }
}
