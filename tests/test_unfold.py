"""im2col / col2im against the NumPy reference of torch's unfold / fold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convrs
import reference as ref

DTYPES = (np.float32, np.float64)


def pair_or_int(values):
    return st.one_of(values, st.tuples(values, values))


@st.composite
def windows(draw, max_side=9):
    n, c = draw(st.integers(0, 2)), draw(st.integers(0, 3))
    kernel = draw(pair_or_int(st.integers(1, 4)))
    dilation = draw(pair_or_int(st.integers(1, 3)))
    padding = draw(pair_or_int(st.integers(0, 3)))
    stride = draw(pair_or_int(st.integers(1, 4)))
    (kh, kw), (dh, dw), (ph, pw) = (ref.as_pair(v) for v in (kernel, dilation, padding))
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, max_side))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, max_side))
    unbatched = draw(st.booleans()) and n == 1
    shape = (c, h, w) if unbatched else (n, c, h, w)
    return {
        "shape": shape,
        "kernel_size": kernel,
        "dilation": dilation,
        "padding": padding,
        "stride": stride,
    }


def _args(p):
    return p["kernel_size"], p["dilation"], p["padding"], p["stride"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@given(p=windows(), seed=st.integers(0, 2**32 - 1))
def test_im2col_matches_reference(p, seed, dtype):
    x = np.random.default_rng(seed).standard_normal(p["shape"]).astype(dtype)
    cols = convrs.im2col(x, *_args(p))
    expected = ref.im2col(x, *_args(p))
    assert cols.dtype == dtype and cols.flags.c_contiguous
    assert cols.shape == expected.shape
    np.testing.assert_array_equal(cols, expected.astype(dtype))  # a copy: exact


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@given(p=windows(), seed=st.integers(0, 2**32 - 1))
def test_col2im_matches_reference(p, seed, dtype):
    rng = np.random.default_rng(seed)
    shape = ref.im2col(np.zeros(p["shape"]), *_args(p)).shape
    cols = rng.standard_normal(shape).astype(dtype)
    size = p["shape"][-2:]
    y = convrs.col2im(cols, size, *_args(p))
    expected = ref.col2im(cols, size, *_args(p))
    assert y.dtype == dtype and y.flags.c_contiguous
    assert y.shape == expected.shape == p["shape"]
    # Each pixel sums at most kh*kw column entries.
    kh, kw = ref.as_pair(p["kernel_size"])
    magnitude = ref.col2im(np.abs(cols), size, *_args(p))
    ref.assert_close(y, expected, magnitude, kh * kw)


@given(p=windows(), seed=st.integers(0, 2**32 - 1))
def test_col2im_is_adjoint_of_im2col(p, seed):
    """<im2col(x), c> == <x, col2im(c)> for every x and c."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p["shape"])
    cols = convrs.im2col(x, *_args(p))
    c = rng.standard_normal(cols.shape)
    back = convrs.col2im(c, p["shape"][-2:], *_args(p))
    lhs, rhs = np.vdot(cols, c), np.vdot(x, back)
    scale = np.vdot(np.abs(cols), np.abs(c)) + 1e-300
    assert abs(lhs - rhs) <= 1e-12 * scale


@given(p=windows(max_side=5))
def test_small_integers_round_trip_exactly(p):
    """col2im(im2col(x)) multiplies each pixel by the number of windows covering it."""
    x = np.arange(np.prod(p["shape"]), dtype=np.float32).reshape(p["shape"]) % 17
    cols = convrs.im2col(x, *_args(p))
    back = convrs.col2im(cols, p["shape"][-2:], *_args(p))
    counts = convrs.col2im(convrs.im2col(np.ones_like(x), *_args(p)), p["shape"][-2:], *_args(p))
    np.testing.assert_array_equal(back, x * counts)


def test_torch_unfold_documented_example():
    """The layout of torch.nn.functional.unfold, written out by hand for a tiny case."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    cols = convrs.im2col(x, 2)
    # Rows: taps (0,0), (0,1), (1,0), (1,1); columns: windows at (0,0), (0,1), (1,0), (1,1).
    np.testing.assert_array_equal(cols[0], [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]])
    # Channel-major rows for two channels.
    x2 = np.stack([x[0, 0], 10 * x[0, 0]])[None]
    cols2 = convrs.im2col(x2, (1, 2), stride=(2, 1))
    np.testing.assert_array_equal(
        cols2[0], [[1, 2, 7, 8], [2, 3, 8, 9], [10, 20, 70, 80], [20, 30, 80, 90]]
    )
    # fold sums the overlaps: the centre pixel of a 3x3 image is covered by 4 2x2 windows.
    np.testing.assert_array_equal(
        convrs.col2im(np.ones((1, 4, 4)), 3, 2)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    )


def test_padding_produces_zeros():
    x = np.ones((1, 1, 2, 2), np.float32)
    cols = convrs.im2col(x, 3, padding=1)
    assert cols.shape == (1, 9, 4)
    # Tap (0, 0) of window (0, 0) reads the padding; tap (1, 1) reads x[0, 0].
    assert cols[0, 0, 0] == 0 and cols[0, 4, 0] == 1
    np.testing.assert_array_equal(cols.sum(axis=1), [[4, 4, 4, 4]])


def test_unbatched_forms(rng):
    x = rng.standard_normal((3, 5, 6))
    np.testing.assert_array_equal(convrs.im2col(x, 2), convrs.im2col(x[None], 2)[0])
    c = rng.standard_normal((12, 20))
    np.testing.assert_array_equal(convrs.col2im(c, (5, 6), 2), convrs.col2im(c[None], (5, 6), 2)[0])


@pytest.mark.parametrize(
    "dtype",
    [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64],
    ids=lambda d: np.dtype(d).name,
)
def test_dtype_rule(dtype):
    x = (np.arange(2 * 3 * 4) % 2).astype(dtype).reshape(2, 3, 4)
    cols = convrs.im2col(x, 2)
    assert cols.dtype == np.result_type(dtype, np.float32)
    np.testing.assert_array_equal(cols, ref.im2col(x, 2))
    back = convrs.col2im(cols.astype(dtype), (3, 4), 2)
    assert back.dtype == np.result_type(dtype, np.float32)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.flip(np.ascontiguousarray(np.flip(a))),
        lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(a.dtype.newbyteorder()),
        lambda a: a.tolist(),
        lambda a: np.lib.stride_tricks.as_strided(a, a.shape, a.strides, writeable=False),
    ],
    ids=["negative-strides", "strided", "fortran", "byteswapped", "list", "read-only"],
)
def test_layouts(make, rng):
    x = rng.standard_normal((3, 7, 10))
    y = make(x)
    xv = np.asarray(y, dtype=np.float64)
    np.testing.assert_array_equal(
        convrs.im2col(y, (2, 3), 1, 1, 2), ref.im2col(xv, (2, 3), 1, 1, 2)
    )
    cols = ref.im2col(xv, (2, 3))
    expected = convrs.col2im(cols, xv.shape[1:], (2, 3))
    np.testing.assert_array_equal(convrs.col2im(make(cols), xv.shape[1:], (2, 3)), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_thread_counts_bit_identical(dtype, rng):
    x = rng.standard_normal((4, 16, 40, 36)).astype(dtype)
    args = ((3, 4), (2, 1), (1, 2), (1, 2))
    results = {}
    for n in (1, 2, 3):
        convrs.set_num_threads(n)
        cols = convrs.im2col(x, *args)
        results[n] = (cols, convrs.col2im(cols, x.shape[2:], *args))
    np.testing.assert_array_equal(results[1][0], ref.im2col(x, *args).astype(dtype))
    for n in (2, 3):
        np.testing.assert_array_equal(results[n][0], results[1][0])
        np.testing.assert_array_equal(results[n][1], results[1][1])
