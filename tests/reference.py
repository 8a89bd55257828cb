"""Obviously-correct float64 NumPy references for conv2d, im2col and col2im.

Written for clarity, not speed: pad explicitly, cut every kernel tap's strided window out
of the padded input, and reduce with one ``einsum``. Everything is computed in float64
from the exact values of the inputs, so the only rounding is float64's own.
"""

from __future__ import annotations

import math

import numpy as np


def as_pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def same_pads(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    """SAME_UPPER: ``out = ceil(size / stride)``; odd padding element at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, h: int, w: int, k_eff: tuple[int, int], stride: tuple[int, int]):
    """Any conv2d padding form as ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        assert padding == "same"
        return same_pads(h, k_eff[0], stride[0]) + same_pads(w, k_eff[1], stride[1])
    if isinstance(padding, (tuple, list)):
        if all(isinstance(p, (tuple, list)) for p in padding):
            (t, b), (l, r) = padding
            return int(t), int(b), int(l), int(r)
        ph, pw = as_pair(padding)
        return ph, ph, pw, pw
    p = int(padding)
    return p, p, p, p


def out_size(size: int, pad: int, k: int, dilation: int, stride: int) -> int:
    return (size + pad - dilation * (k - 1) - 1) // stride + 1


def windows(x, kernel, stride, dilation, pads, out_hw=None):
    """All receptive fields of ``x`` (N, C, H, W): ``(N, C, kh, kw, H_out, W_out)``.

    ``windows(...)[n, c, r, s, p, q] == x_pad[n, c, p*sh + r*dh, q*sw + s*dw]``.
    """
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    t, b, l, r = pads
    xp = np.zeros((n, c, h + t + b, w + l + r))
    xp[:, :, t : t + h, l : l + w] = x
    if out_hw is None:
        out_hw = (out_size(h, t + b, kh, dh, sh), out_size(w, l + r, kw, dw, sw))
    ho, wo = out_hw
    assert ho >= 0 and wo >= 0
    res = np.zeros((n, c, kh, kw, ho, wo))
    for i in range(kh):
        for j in range(kw):
            rows = xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, :]
            res[:, :, i, j] = rows[:, :, :ho, j * dw : j * dw + sw * (wo - 1) + 1 : sw][
                :, :, :, :wo
            ]
    return res


def conv2d_shape_params(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """``(pads, (H_out, W_out))`` for a conv2d problem, per the contract."""
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    sh, sw = as_pair(stride)
    dh, dw = as_pair(dilation)
    k_eff = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    pads = resolve_padding(padding, h, w, k_eff, (sh, sw))
    if padding == "same":
        out = (-(-h // sh), -(-w // sw))
    else:
        out = (
            out_size(h, pads[0] + pads[1], kh, dh, sh),
            out_size(w, pads[2] + pads[3], kw, dw, sw),
        )
    return pads, out


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, absolute=False):
    """``torch.nn.functional.conv2d`` in float64 (cross-correlation plus bias).

    With ``absolute=True`` computes ``conv(|x|, |w|) + |b|``, the magnitude that bounds the
    rounding error of any summation order.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if absolute:
        x, w = np.abs(x), np.abs(w)
    n, c, _, _ = x.shape
    k, cg, kh, kw = w.shape
    assert c % groups == 0 and k % groups == 0 and cg == c // groups
    pads, out_hw = conv2d_shape_params(x.shape, w.shape, stride, padding, dilation)
    win = windows(x, (kh, kw), as_pair(stride), as_pair(dilation), pads, out_hw)
    kg = k // groups
    y = np.zeros((n, k) + out_hw)
    for g in range(groups):
        y[:, g * kg : (g + 1) * kg] = np.einsum(
            "ncrspq,kcrs->nkpq",
            win[:, g * cg : (g + 1) * cg],
            w[g * kg : (g + 1) * kg],
        )
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        y += (np.abs(b) if absolute else b)[None, :, None, None]
    return y[0] if unbatched else y


def conv2d_by_taps(x, w, b, stride, pads, dilation, groups, out_hw):
    """conv2d by index arithmetic, without materialising the padded input: for each tap,
    gather the input pixel each output position reads (zero where it reads padding).
    Independent of :func:`conv2d`'s windows, and usable with paddings, strides and
    dilations far larger than the input."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (top, _, left, _) = as_pair(stride), as_pair(dilation), pads
    ho, wo = out_hw
    kg = k // groups
    y = np.zeros((n, k, ho, wo))
    for r in range(kh):
        rows = np.arange(ho, dtype=object) * sh + r * dh - top  # exact Python ints
        for s in range(kw):
            cols = np.arange(wo, dtype=object) * sw + s * dw - left
            vr = np.array([0 <= v < h for v in rows], dtype=bool)
            vc = np.array([0 <= v < wd for v in cols], dtype=bool)
            patch = np.zeros((n, c, ho, wo))
            if vr.any() and vc.any():
                ri = rows[vr].astype(np.int64)
                ci = cols[vc].astype(np.int64)
                patch[:, :, np.ix_(vr, vc)[0], np.ix_(vr, vc)[1]] = x[:, :, ri][:, :, :, ci]
            for g in range(groups):
                y[:, g * kg : (g + 1) * kg] += np.einsum(
                    "ncpq,kc->nkpq",
                    patch[:, g * cg : (g + 1) * cg],
                    w[g * kg : (g + 1) * kg, :, r, s],
                )
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def im2col(x, kernel_size, dilation=1, padding=0, stride=1):
    """``torch.nn.functional.unfold``: rows (c, kh, kw), columns (out row, out col)."""
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kh, kw = as_pair(kernel_size)
    ph, pw = as_pair(padding)
    win = windows(x, (kh, kw), as_pair(stride), as_pair(dilation), (ph, ph, pw, pw))
    n, c, _, _, ho, wo = win.shape
    cols = win.reshape(n, c * kh * kw, ho * wo)
    return cols[0] if unbatched else cols


def col2im(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """``torch.nn.functional.fold``: scatter-add every column entry to its source pixel."""
    cols = np.asarray(cols, dtype=np.float64)
    unbatched = cols.ndim == 2
    if unbatched:
        cols = cols[None]
    h, w = as_pair(output_size)
    kh, kw = as_pair(kernel_size)
    dh, dw = as_pair(dilation)
    ph, pw = as_pair(padding)
    sh, sw = as_pair(stride)
    ho, wo = out_size(h, 2 * ph, kh, dh, sh), out_size(w, 2 * pw, kw, dw, sw)
    n, rows, length = cols.shape
    assert rows % (kh * kw) == 0 and length == ho * wo
    c = rows // (kh * kw)
    blocks = cols.reshape(n, c, kh, kw, ho, wo)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            for p in range(ho):
                for q in range(wo):
                    xp[:, :, p * sh + i * dh, q * sw + j * dw] += blocks[:, :, i, j, p, q]
    y = xp[:, :, ph : ph + h, pw : pw + w]
    return y[0] if unbatched else y


def error_bound(abs_ref, reduction: int, dtype) -> np.ndarray:
    """Elementwise bound on |computed - exact| for a float ``dtype`` sum of ``reduction``
    products plus a bias: a small multiple of ``reduction * eps * sum |terms|`` (any
    summation order, FMA or not), plus the rounding of the final store."""
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny
    return 2.0 * (reduction + 2) * eps * abs_ref + 4 * tiny


def assert_close(actual, expected, abs_ref, reduction: int, dtype=None, what: str = "result"):
    """Assert ``actual`` is within the rounding-error bound of the float64 ``expected``."""
    actual = np.asarray(actual)
    dtype = actual.dtype if dtype is None else np.dtype(dtype)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = np.abs(actual.astype(np.float64) - expected)
    bound = error_bound(abs_ref, reduction, dtype)
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements off; first at {idx}: "
            f"got {actual[idx]!r}, expected {expected[idx]!r}, bound {bound[idx]:.3g}, "
            f"max err/bound {np.nanmax(err / bound) if err.size else 0:.3g}"
        )


# Winograd F(4x4, 3x3) mixes a tile's whole 6x6 input window through its transforms, so
# its rounding error scales with the largest terms of the plane rather than with each
# output's own: measured up to 1.7x the plane-wide bound on random problems whose input
# channels span six decades of magnitude; 16 leaves room for the transforms' worst case.
WINOGRAD_GROWTH = 16.0


def assert_close_winograd(actual, expected, abs_ref, reduction: int):
    """Assert a Winograd result is within its bound: the rounding bound of each output
    plane's largest terms, times ``WINOGRAD_GROWTH``."""
    plane_max = np.broadcast_to(abs_ref.max(axis=(-2, -1), keepdims=True, initial=0.0),
                                abs_ref.shape)
    dtype = np.asarray(actual).dtype
    bound_terms = WINOGRAD_GROWTH * plane_max
    assert_close(actual, expected, bound_terms, reduction, dtype, what="winograd result")


def reduction_length(w_shape) -> int:
    """K = C_in/groups * kh * kw, the number of products summed per output element."""
    return int(math.prod(w_shape[1:]))


_NP_PAD_MODE = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
                "symm": "symmetric", "symmetric": "symmetric"}  # fmt: skip


def _full_correlation(in1, kernel, boundary, fillvalue):
    """``out[i, j] = sum_{k, l} in1_ext[i + k, j + l] * kernel[k, l]`` over the full range,
    ``in1_ext`` being ``in1`` extended by ``kernel.shape - 1`` on every side per ``boundary``."""
    p, q = kernel.shape
    mode = _NP_PAD_MODE[boundary]
    pads = ((p - 1, p - 1), (q - 1, q - 1))
    if mode == "constant":
        ext = np.pad(in1, pads, mode="constant", constant_values=fillvalue)
    else:
        ext = np.pad(in1, pads, mode=mode)
    m, n = in1.shape[0] + p - 1, in1.shape[1] + q - 1
    out = np.zeros((m, n), dtype=np.result_type(ext, kernel))
    for k in range(p):
        for l in range(q):
            out += ext[k : k + m, l : l + n] * kernel[k, l]
    return out


def _signal(in1, in2, mode, boundary, fillvalue, flip):
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    dtype = np.complex128 if np.iscomplexobj(in1) or np.iscomplexobj(in2) else np.float64
    in1, in2 = in1.astype(dtype), in2.astype(dtype)
    swapped = False
    if mode == "valid":  # scipy's rule: the input at least as large everywhere becomes in1
        if all(a >= b for a, b in zip(in1.shape, in2.shape)):
            swapped = False
        elif all(b >= a for a, b in zip(in1.shape, in2.shape)):
            swapped = True
        else:
            raise ValueError("'valid' mode needs one input at least as large as the other")
    if swapped:
        in1, in2 = in2, in1
    kernel = in2[::-1, ::-1] if flip else np.conj(in2)
    full = _full_correlation(in1, kernel, boundary, fillvalue)
    (m, n), (p, q) = in1.shape, in2.shape
    if mode == "full":
        out = full
    elif mode == "valid":
        out = full[p - 1 : m, q - 1 : n]
    else:  # "same": in1's shape, centred in the full result
        r0, c0 = (p - 1) // 2, (q - 1) // 2
        if not flip:
            r0, c0 = p - 1 - r0, q - 1 - c0
        out = full[r0 : r0 + m, c0 : c0 + n]
    if swapped and not flip:
        out = out[::-1, ::-1]
    return out


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """``scipy.signal.convolve2d`` in float64 (complex128 for complex inputs)."""
    return _signal(in1, in2, mode, boundary, fillvalue, flip=True)


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """``scipy.signal.correlate2d`` in float64 (complex128 for complex inputs)."""
    return _signal(in1, in2, mode, boundary, fillvalue, flip=False)
