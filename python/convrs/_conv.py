"""conv2d, im2col and col2im: normalise arguments, call the Rust core once."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._args import as_array, contiguous, float_result_type, integer, pair
from ._args import padding as padding_arg

_PadArg = Any


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: _PadArg = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    algorithm: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """2-D convolution layer (cross-correlation), with ``torch.nn.functional.conv2d`` semantics.

    ``y[n, k, p, q] = bias[k] + sum_{c, r, s} x_pad[n, c, p*sh + r*dh, q*sw + s*dw] * w[k, c, r, s]``
    over the input channels ``c`` of ``k``'s group: for each output pixel, the sum of the
    element-wise product of the kernel and the receptive field, i.e. one dot product.

    Parameters
    ----------
    input : array_like
        ``(N, C_in, H, W)``, or ``(C_in, H, W)`` for an unbatched result ``(C_out, H_out, W_out)``.
    weight : array_like
        ``(C_out, C_in // groups, kH, kW)``.
    bias : array_like, optional
        ``(C_out,)``.
    stride, dilation : int or (int, int)
        Each >= 1.
    padding : int, (int, int), ((int, int), (int, int)), "valid" or "same"
        Zero padding. ``"same"`` gives ``H_out = ceil(H / stride)`` with the odd padding
        element at the bottom/right.
    groups : int
        Divides ``C_in`` and ``C_out``; ``groups == C_in`` is a depthwise convolution.
    algorithm : {"auto", "direct", "im2col", "winograd"}
        All give the same result to floating-point tolerance. ``"auto"`` chooses the
        fastest for the shape: for float64 3x3 layers at stride 1 and dilation 1 with at
        least 16 input and output channels per group, 36 or more 4x4 output tiles per
        image (about 24x24 outputs) and transformed kernels of at most 24 MiB
        (``36 * C_in/groups * C_out`` values), that is ``"winograd"``
        (F(4x4, 3x3): 2.25 multiplies per output and channel instead of 9, error about
        1e-14 of the largest output). ``"winograd"`` takes only 3x3 kernels at stride 1
        and dilation 1 (``ValueError`` otherwise); in float32 its error is about 20 times
        the direct sum's (a few 1e-6 of the largest output), so ``"auto"`` never chooses
        it for float32.
    out : numpy.ndarray, optional
        C-contiguous array of the result's shape and dtype, filled and returned.

    Returns
    -------
    numpy.ndarray
        ``result_type(input, weight, bias, float32)``: float32 or float64.
    """
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    b = None if bias is None else as_array(bias, "bias")
    dtype = float_result_type({"input": x, "weight": w, "bias": b})
    if x.ndim not in (3, 4):
        raise ValueError(f"input must be (N, C_in, H, W) or (C_in, H, W); got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"weight must be (C_out, C_in // groups, kH, kW); got shape {w.shape}")
    if b is not None and b.ndim != 1:
        raise ValueError(f"bias must be (C_out,); got shape {b.shape}")
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a str, got {type(algorithm).__name__}")
    batched = x.ndim == 4
    out4 = None
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        # The arrays as converted, not as given: a memoryview or other buffer of ``out``'s
        # memory is an alias too.
        for name, arg in (("input", x), ("weight", w), ("bias", b)):
            if arg is not None and np.shares_memory(out, arg):
                raise ValueError(f"out shares memory with {name}")
        if out.ndim != x.ndim:
            raise ValueError(f"out must be {x.ndim}-D like the result; got shape {out.shape}")
        out4 = out if batched else out[np.newaxis]
    result = _core.conv2d(
        contiguous(x if batched else x[np.newaxis], dtype),
        contiguous(w, dtype),
        contiguous(b, dtype),
        pair(stride, "stride"),
        padding_arg(padding),
        pair(dilation, "dilation"),
        integer(groups, "groups"),
        algorithm,
        out4,
    )
    if out is not None:
        return out
    return result if batched else result[0]



def _unfold_args(kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> tuple:
    return (
        pair(kernel_size, "kernel_size"),
        pair(dilation, "dilation"),
        pair(padding, "padding"),
        pair(stride, "stride"),
    )


def _float_input(value: Any, name: str) -> np.ndarray:
    a = as_array(value, name)
    return contiguous(a, float_result_type({name: a}))  # type: ignore[return-value]


def im2col(
    input: Any,
    kernel_size: int | tuple[int, int],
    dilation: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    stride: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Extract sliding receptive fields as columns, like ``torch.nn.functional.unfold``.

    Parameters
    ----------
    input : array_like
        ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    kernel_size, dilation, padding, stride : int or (int, int)

    Returns
    -------
    numpy.ndarray
        ``(N, C*kH*kW, L)`` (or ``(C*kH*kW, L)``), ``L = H_out * W_out``; rows ordered by
        (channel, kernel row, kernel column). ``weight.reshape(C_out, -1) @ im2col(x, k)``
        is the convolution.
    """
    x = _float_input(input, "input")
    if x.ndim not in (3, 4):
        raise ValueError(f"input must be (N, C, H, W) or (C, H, W); got shape {x.shape}")
    args = _unfold_args(kernel_size, dilation, padding, stride)
    if x.ndim == 3:
        return _core.im2col(x[np.newaxis], *args)[0]
    return _core.im2col(x, *args)


def col2im(
    cols: Any,
    output_size: int | tuple[int, int],
    kernel_size: int | tuple[int, int],
    dilation: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    stride: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Sum sliding columns back into an image, like ``torch.nn.functional.fold``.

    Parameters
    ----------
    cols : array_like
        ``(N, C*kH*kW, L)`` or unbatched ``(C*kH*kW, L)``.
    output_size : int or (int, int)
        ``(H, W)`` of the result.
    kernel_size, dilation, padding, stride : int or (int, int)

    Returns
    -------
    numpy.ndarray
        ``(N, C, H, W)`` (or ``(C, H, W)``); overlapping entries are summed.
    """
    c = _float_input(cols, "cols")
    if c.ndim not in (2, 3):
        raise ValueError(f"cols must be (N, C*kH*kW, L) or (C*kH*kW, L); got shape {c.shape}")
    size = pair(output_size, "output_size")
    args = _unfold_args(kernel_size, dilation, padding, stride)
    if c.ndim == 2:
        return _core.col2im(c[np.newaxis], size, *args)[0]
    return _core.col2im(c, size, *args)
