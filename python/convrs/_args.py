"""Argument normalisation shared by the public functions: array coercion, dtype rules and
the int / pair / padding forms. Values are validated once, in the Rust core."""

from __future__ import annotations

import operator
from typing import Any, overload

import numpy as np

_INT_LIMIT = 2**62


def as_array(value: Any, name: str) -> np.ndarray:
    """``numpy.asarray(value)``, with failures reported against the argument ``name``."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        # Keep numpy's class: a ragged nested list is a bad shape (ValueError), an object
        # numpy cannot convert is a bad type (TypeError).
        cls = ValueError if isinstance(exc, ValueError) else TypeError
        raise cls(f"{name} must be array-like: {exc}") from None


def float_result_type(arrays: dict[str, np.ndarray | None]) -> np.dtype:
    """The conv2d dtype rule: ``result_type(*arrays, float32)``, which must be float32/64."""
    present = {k: a for k, a in arrays.items() if a is not None}
    for name, a in present.items():
        if a.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} has unsupported dtype {a.dtype}; expected a real numeric dtype "
                "(float32 or float64, or integer/bool to be promoted)"
            )
    dtype = np.result_type(*present.values(), np.float32)
    if dtype not in (np.float32, np.float64):
        names = ", ".join(f"{k}={a.dtype}" for k, a in present.items())
        raise TypeError(f"the result dtype {dtype} of ({names}) is not float32 or float64")
    return dtype


@overload
def contiguous(a: np.ndarray, dtype: np.dtype) -> np.ndarray: ...
@overload
def contiguous(a: None, dtype: np.dtype) -> None: ...
def contiguous(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """A C-contiguous, native-order array of ``dtype`` (no copy when ``a`` already is one)."""
    return None if a is None else np.ascontiguousarray(a, dtype=dtype)


def integer(value: Any, name: str) -> int:
    """``value`` as a Python int; bools and non-integers raise ``TypeError``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if not -_INT_LIMIT < v < _INT_LIMIT:
        raise ValueError(f"{name} is out of range: {v}")
    return v


def pair(value: Any, name: str) -> tuple[int, int]:
    """An int or a pair of ints as ``(h, w)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return integer(value[0], name), integer(value[1], name)
    return (integer(value, name),) * 2  # type: ignore[return-value]


def padding(value: Any) -> tuple[int, int, int, int] | str:
    """conv2d padding as ``(top, bottom, left, right)``, or the string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                "padding must be an int, a pair (ph, pw), a pair of pairs "
                f"((top, bottom), (left, right)), 'valid' or 'same'; got {value!r}"
            )
        nested = [isinstance(v, (tuple, list)) for v in value]
        if all(nested):
            (t, b), (l, r) = (pair(v, "padding") for v in value)
            return t, b, l, r
        if any(nested):
            raise ValueError(
                "padding must be a pair (ph, pw) or a pair of pairs ((top, bottom), "
                f"(left, right)), not a mix of both; got {value!r}"
            )
        ph, pw = pair(value, "padding")
        return ph, ph, pw, pw
    p = integer(value, "padding")
    return p, p, p, p
