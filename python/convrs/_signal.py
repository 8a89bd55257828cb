"""convolve2d and correlate2d: drop-in replacements for ``scipy.signal``'s."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

# dtypes the Rust core computes (integers in their own type, wrapping like SciPy).
_NATIVE = frozenset(
    np.dtype(t)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
              np.uint64, np.float32, np.float64, np.complex64, np.complex128)
)
# SciPy accepts these too; Rust has no such types, so NumPy computes them.
_LONG = frozenset(np.dtype(t) for t in (np.longdouble, np.clongdouble)) - _NATIVE

_MODES = {"valid": "valid", "same": "same", "full": "full"}
_BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap",
               "symm": "symm", "symmetric": "symm"}


def _inputs_swap_needed(mode: Any, shape1: tuple, shape2: tuple) -> bool:
    """SciPy's rule: in 'valid' mode the larger input becomes ``in1``."""
    if mode != "valid":
        return False
    ok1 = all(a >= b for a, b in zip(shape1, shape2))
    ok2 = all(b >= a for a, b in zip(shape1, shape2))
    if not (ok1 or ok2):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every dimension"
        )
    return not ok1


def _lookup(table: dict, key: Any, message: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise ValueError(message) from None


def _result_dtype(a: np.ndarray, k: np.ndarray, name: str) -> np.dtype:
    try:
        dtype = np.promote_types(a.dtype, k.dtype)
    except TypeError:
        dtype = None
    if dtype is not None:
        dtype = dtype.newbyteorder("=")
    if dtype not in _NATIVE and dtype not in _LONG:
        raise ValueError(f"{name} not available for this type.")
    return dtype


def _fill_array(fillvalue: Any, dtype: np.dtype) -> np.ndarray:
    """``fillvalue`` as a one-element array of ``dtype``, with SciPy's rules: a direct
    conversion (safe casts only for arrays), else an error after going through complex,
    which also reproduces SciPy's warnings."""
    if type(fillvalue) is int and fillvalue == 0:  # the default, converted directly
        return np.zeros(1, dtype)
    try:
        if isinstance(fillvalue, np.ndarray):
            if not np.can_cast(fillvalue.dtype, dtype, "safe"):
                raise TypeError
            fill = fillvalue.astype(dtype)
        else:
            fill = np.array(fillvalue, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        np.asarray(np.array(fillvalue, dtype=np.complex128)).astype(dtype)
        raise ValueError("could not cast `fillvalue` directly to the output type "
                         "(it was first converted to complex).") from None
    if fill.size == 0:
        raise ValueError("`fillvalue` cannot be an empty array.")
    if fill.size != 1:
        raise ValueError("`fillvalue` must be scalar or an array with one element.")
    return fill.reshape(1)


def _filter2d_numpy(a: np.ndarray, k: np.ndarray, mode: str, boundary: str,
                    fill: np.ndarray, flip: bool) -> np.ndarray:
    """Long double fallback: pad by the boundary rule, then sum shifted slices."""
    (h, w), (kh, kw) = a.shape, k.shape
    if mode == "full":
        ho, wo, top, left = h + kh - 1, w + kw - 1, kh - 1, kw - 1
    elif mode == "same":
        ho, wo = h, w
        top, left = (kh // 2, kw // 2) if flip else ((kh - 1) // 2, (kw - 1) // 2)
    else:
        ho, wo, top, left = h - kh + 1, w - kw + 1, 0, 0
    if ho < 0 or wo < 0:
        raise ValueError("negative dimensions are not allowed")
    out = np.zeros((ho, wo), dtype=a.dtype)
    if out.size == 0 or k.size == 0:
        return out
    if flip:
        k = k[::-1, ::-1]
    widths = ((top, ho + kh - 1 - h - top), (left, wo + kw - 1 - w - left))
    if boundary == "fill":
        padded = np.pad(a, widths, mode="constant", constant_values=fill[0])
    elif a.size == 0:
        raise ValueError(
            "in1 is empty: boundary 'wrap' and 'symm' need at least one element to repeat")
    else:
        padded = np.pad(a, widths, mode="wrap" if boundary == "wrap" else "symmetric")
    for r in range(kh):
        for s in range(kw):
            out += k[r, s] * padded[r:r + ho, s:s + wo]
    return out


def _filter2d(in1: Any, in2: Any, mode: Any, boundary: Any, fillvalue: Any,
              flip: bool) -> np.ndarray:
    name = "convolve2d" if flip else "correlate2d"
    a = np.asarray(in1)
    k = np.asarray(in2)
    if not a.ndim == k.ndim == 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays")
    swapped = _inputs_swap_needed(mode, a.shape, k.shape)
    if swapped:
        a, k = k, a
    mode = _lookup(_MODES, mode, "Acceptable mode flags are 'valid', 'same', or 'full'.")
    boundary = _lookup(_BOUNDARIES, boundary,
                       "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), "
                       "and 'symmetric' (or 'symm').")
    if not flip:
        k = k.conj()
    # SciPy's C layer always reports this name, also for correlate2d.
    dtype = _result_dtype(a, k, "convolve2d")
    fill = _fill_array(fillvalue, dtype) if boundary == "fill" else np.zeros(1, dtype)
    a = np.ascontiguousarray(a, dtype=dtype)
    k = np.ascontiguousarray(k, dtype=dtype)
    if dtype in _LONG:
        out = _filter2d_numpy(a, k, mode, boundary, fill, flip)
    else:
        out = _core.filter2d(a, k, flip, mode, boundary, fill)
    if swapped and not flip:
        out = out[::-1, ::-1]
    return out


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: Any = 0) -> np.ndarray:
    """Convolve two 2-D arrays, exactly like ``scipy.signal.convolve2d``.

    The kernel ``in2`` is flipped (true convolution). Integers are computed in their own
    dtype with SciPy's wrap-around; every dtype SciPy accepts is accepted, and the ones
    it rejects (bool, float16, object, ...) raise ``ValueError`` as there.

    Large float kernels (from about 13x13 on images a few times larger; float32, float64
    and the complex types) are computed by FFT on tiles, with an error of about 1e-6
    (float32) / 1e-14 (float64) relative to ``max|out|`` (more precisely, a small multiple
    of eps times ``max|in1| * sum|in2|``), not per element: outputs much smaller than the
    largest one lose relative accuracy. Smaller kernels, integers, and inputs holding
    inf, NaN or values near overflow use the direct sum.

    Parameters
    ----------
    in1, in2 : array_like
        2-D inputs; in ``"valid"`` mode the larger one is used as the image.
    mode : {"full", "valid", "same"}
    boundary : {"fill", "pad", "wrap", "circular", "symm", "symmetric"}
        ``wrap`` and ``symm`` repeat the image periodically, also for kernels larger
        than the image.
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``; converted to the result dtype
        as SciPy converts it (a complex value for a real result raises ``ValueError``).

    Returns
    -------
    numpy.ndarray
        The promoted dtype of ``in1`` and ``in2``.
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, flip=True)


def correlate2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
                fillvalue: Any = 0) -> np.ndarray:
    """Cross-correlate two 2-D arrays, exactly like ``scipy.signal.correlate2d``.

    The kernel is not flipped (what CNN layers compute) and is conjugated when complex.

    Large float kernels are computed by FFT, with an error of about 1e-6 (float32) /
    1e-14 (float64) relative to ``max|out|``, as described in :func:`convolve2d`.

    Parameters
    ----------
    in1, in2 : array_like
        2-D inputs; in ``"valid"`` mode the larger one is used as the image (and the result
        reversed, as SciPy does).
    mode : {"full", "valid", "same"}
    boundary : {"fill", "pad", "wrap", "circular", "symm", "symmetric"}
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``.

    Returns
    -------
    numpy.ndarray
        The promoted dtype of ``in1`` and ``in2``.
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, flip=False)
