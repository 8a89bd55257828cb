"""convolve2d and correlate2d: drop-in replacements for ``scipy.signal``'s."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

# dtypes the Rust planar kernel computes natively (in their own type, wrapping like SciPy).
_NATIVE = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                 np.uint32, np.uint64, np.float32, np.float64)}


def _inputs_swap_needed(mode: str, shape1: tuple, shape2: tuple) -> bool:
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


def _filter2d(in1: Any, in2: Any, mode: str, boundary: str, fillvalue: Any, flip: bool) -> np.ndarray:
    name = "convolve2d" if flip else "correlate2d"
    a = np.asarray(in1)
    k = np.asarray(in2)
    if not a.ndim == k.ndim == 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays")
    swapped = _inputs_swap_needed(mode, a.shape, k.shape)
    if swapped:
        a, k = k, a
    dtype = np.promote_types(a.dtype, k.dtype)
    if dtype not in _NATIVE:
        raise ValueError(f"{name} not available for this type.")
    if not flip:
        k = np.conj(k)
    fill = np.asarray(fillvalue).astype(dtype)[()].item()
    out = _core.filter2d(
        np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(k, dtype=dtype),
        flip, mode, boundary, fill,
    )
    if swapped and not flip:
        out = np.ascontiguousarray(out[::-1, ::-1])
    return out


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: Any = 0) -> np.ndarray:
    """Convolve two 2-D arrays, exactly like ``scipy.signal.convolve2d``.

    The kernel ``in2`` is flipped (true convolution). Integers are computed in their own
    dtype with SciPy's wrap-around.

    Parameters
    ----------
    in1, in2 : array_like
        2-D inputs; in ``"valid"`` mode the larger one is used as the image.
    mode : {"full", "valid", "same"}
    boundary : {"fill", "pad", "wrap", "circular", "symm", "symmetric"}
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``.

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
