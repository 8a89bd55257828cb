"""conv2d against the float64 NumPy reference: random problems for every algorithm and
dtype, hand-picked edge cases, memory layouts, the dtype rule, ``out=`` and threads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convrs
import reference as ref

ALGORITHMS = ("auto", "direct", "im2col")
DTYPES = (np.float32, np.float64)


def check(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, algorithm="auto", dtype=None):
    """Run conv2d and assert it matches the reference within the rounding bound.

    Returns the result, for further checks.
    """
    y = convrs.conv2d(x, w, b, stride, padding, dilation, groups, algorithm=algorithm)
    xa, wa = np.asarray(x), np.asarray(w)
    expected = ref.conv2d(xa, wa, b, stride, padding, dilation, groups)
    magnitude = ref.conv2d(xa, wa, b, stride, padding, dilation, groups, absolute=True)
    if dtype is not None:
        assert y.dtype == dtype
    assert y.dtype in (np.float32, np.float64)
    assert y.flags.c_contiguous and y.flags.writeable and y.dtype.isnative
    ref.assert_close(y, expected, magnitude, ref.reduction_length(wa.shape))
    return y


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --- the reference itself -----------------------------------------------------------------


def test_reference_matches_naive_loops(rng):
    """The einsum reference against the definition written as plain loops."""
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    sh, sw, dh, dw, groups = 2, 1, 1, 2, 2
    t, bot, left, right = 1, 2, 0, 3
    xp = np.pad(x, ((0, 0), (0, 0), (t, bot), (left, right)))
    ho = (7 + t + bot - dh * 2 - 1) // sh + 1
    wo = (6 + left + right - dw * 1 - 1) // sw + 1
    y = np.zeros((2, 6, ho, wo))
    for n, k, p, q in itertools.product(range(2), range(6), range(ho), range(wo)):
        g = k // 3
        acc = b[k]
        for c, r, s in itertools.product(range(2), range(3), range(2)):
            acc += xp[n, g * 2 + c, p * sh + r * dh, q * sw + s * dw] * w[k, c, r, s]
        y[n, k, p, q] = acc
    got = ref.conv2d(x, w, b, (sh, sw), ((t, bot), (left, right)), (dh, dw), groups)
    np.testing.assert_allclose(got, y, rtol=1e-13, atol=1e-13)


def test_reference_matches_scipy_correlate2d(rng):
    x = rng.standard_normal((9, 11))
    k = rng.standard_normal((4, 3))
    got = ref.conv2d(x[None, None], k[None, None])[0, 0]
    np.testing.assert_allclose(got, scipy.signal.correlate2d(x, k, "valid"), rtol=1e-13)


def test_reference_same_padding_rule():
    # H=4, k=4, s=1: total 3 -> (1, 2), the odd element at the bottom.
    assert ref.resolve_padding("same", 4, 4, (4, 4), (1, 1)) == (1, 2, 1, 2)
    # H=5, k=3, s=2: out 3, total (3-1)*2+3-5 = 2.
    assert ref.same_pads(5, 3, 2) == (1, 1)
    # H=6, k=1, s=4: no padding needed.
    assert ref.same_pads(6, 1, 4) == (0, 0)


# --- random problems ------------------------------------------------------------------------


def pair_or_int(values):
    return st.one_of(values, st.tuples(values, values))


@st.composite
def problems(draw, max_side=10, max_channels=4):
    groups = draw(st.integers(1, 3))
    cin_g = draw(st.integers(1, max_channels))
    cout_g = draw(st.integers(1, max_channels))
    n = draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(pair_or_int(st.integers(1, 4)))
    dilation = draw(pair_or_int(st.integers(1, 3)))
    pad_values = st.integers(0, 3)
    padding = draw(
        st.one_of(
            pad_values,
            st.tuples(pad_values, pad_values),
            st.tuples(st.tuples(pad_values, pad_values), st.tuples(pad_values, pad_values)),
            st.sampled_from(["valid", "same"]),
        )
    )
    sh, sw = ref.as_pair(stride)
    dh, dw = ref.as_pair(dilation)
    k_eff = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    if isinstance(padding, str):
        fixed = (0, 0, 0, 0)
    else:
        fixed = ref.resolve_padding(padding, 0, 0, k_eff, (sh, sw))
    need_h = max(1, k_eff[0] - fixed[0] - fixed[1]) if padding != "same" else 1
    need_w = max(1, k_eff[1] - fixed[2] - fixed[3]) if padding != "same" else 1
    h = need_h + draw(st.integers(0, max_side))
    w = need_w + draw(st.integers(0, max_side))
    unbatched = draw(st.booleans()) and n == 1
    bias = draw(st.booleans())
    x_shape = (cin_g * groups, h, w) if unbatched else (n, cin_g * groups, h, w)
    w_shape = (cout_g * groups, cin_g, kh, kw)
    return {
        "x_shape": x_shape,
        "w_shape": w_shape,
        "bias": bias,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
    }


def run_problem(p, dtype, algorithm, seed):
    rng = np.random.default_rng(seed)
    x = random(rng, p["x_shape"], dtype)
    w = random(rng, p["w_shape"], dtype)
    b = random(rng, (p["w_shape"][0],), dtype) if p["bias"] else None
    return check(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"], algorithm, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(p=problems(), seed=st.integers(0, 2**32 - 1))
def test_random_problems(p, seed, algorithm, dtype):
    run_problem(p, dtype, algorithm, seed)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=12)
@given(p=problems(max_side=70, max_channels=20), seed=st.integers(0, 2**32 - 1))
def test_random_larger_problems(p, seed, algorithm, dtype):
    """Several microkernel tiles, channel blocks and input bands per call."""
    run_problem(p, dtype, algorithm, seed)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@given(p=problems(), seed=st.integers(0, 2**32 - 1))
def test_algorithms_agree(p, seed, dtype):
    """All algorithms agree with each other to the rounding bound (through the reference)
    and give identical shapes and dtypes."""
    ys = [run_problem(p, dtype, a, seed) for a in ALGORITHMS]
    assert len({(y.shape, y.dtype) for y in ys}) == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(p=problems(max_side=6), seed=st.integers(0, 2**32 - 1))
def test_small_integers_are_exact(p, seed, algorithm):
    """Small integers in float32: every partial sum is an exact integer below 2**24."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, p["x_shape"]).astype(np.float32)
    w = rng.integers(-8, 9, p["w_shape"]).astype(np.float32)
    b = rng.integers(-100, 100, p["w_shape"][0]).astype(np.float32) if p["bias"] else None
    args = (p["stride"], p["padding"], p["dilation"], p["groups"])
    y = convrs.conv2d(x, w, b, *args, algorithm=algorithm)
    expected = ref.conv2d(x, w, b, *args)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected.astype(np.float32))


# --- hand-picked edge cases -----------------------------------------------------------------

EDGE_CASES = {
    "1x1": {"x": (2, 5, 6, 7), "w": (3, 5, 1, 1)},
    "1x1-stride2": {"x": (1, 4, 7, 8), "w": (3, 4, 1, 1), "stride": 2},
    "1x1-padded": {"x": (1, 4, 3, 3), "w": (2, 4, 1, 1), "padding": 1},
    "kernel-equals-input": {"x": (2, 3, 5, 4), "w": (4, 3, 5, 4)},
    "kernel-equals-padded-input": {"x": (1, 2, 3, 2), "w": (3, 2, 5, 6), "padding": (1, 2)},
    "kernel-equals-padded-dilated": {"x": (1, 2, 5, 5), "w": (2, 2, 3, 3), "dilation": 2},
    "stride-gt-kernel": {"x": (2, 3, 11, 13), "w": (4, 3, 2, 3), "stride": (4, 5)},
    "stride-gt-input": {"x": (1, 2, 3, 3), "w": (1, 2, 2, 2), "stride": 7},
    "even-kernel-same": {"x": (1, 3, 6, 7), "w": (2, 3, 4, 2), "padding": "same"},
    "even-kernel-same-stride2": {
        "x": (1, 3, 7, 6),
        "w": (2, 3, 4, 4),
        "padding": "same",
        "stride": 2,
    },
    "same-stride3-dilated": {
        "x": (2, 2, 10, 9),
        "w": (3, 2, 3, 2),
        "padding": "same",
        "stride": 3,
        "dilation": (2, 3),
    },
    "same-kernel-gt-input": {"x": (1, 1, 2, 3), "w": (1, 1, 5, 6), "padding": "same"},
    "same-large-stride": {"x": (1, 2, 5, 5), "w": (2, 2, 3, 3), "padding": "same", "stride": 8},
    "valid": {"x": (1, 3, 6, 6), "w": (2, 3, 3, 3), "padding": "valid"},
    "asymmetric-padding": {"x": (1, 2, 5, 6), "w": (3, 2, 3, 3), "padding": ((0, 3), (2, 0))},
    "padding-only-rows": {"x": (1, 2, 1, 6), "w": (2, 2, 3, 1), "padding": (1, 0)},
    "cout1": {"x": (3, 4, 8, 9), "w": (1, 4, 3, 3), "padding": 1},
    "cin1": {"x": (2, 1, 8, 9), "w": (5, 1, 3, 3)},
    "depthwise": {"x": (2, 6, 9, 8), "w": (6, 1, 3, 3), "padding": 1, "groups": 6},
    "depthwise-strided": {
        "x": (2, 4, 9, 8),
        "w": (4, 1, 3, 3),
        "padding": 1,
        "stride": 2,
        "groups": 4,
    },
    "depthwise-dilated": {
        "x": (1, 3, 9, 8),
        "w": (3, 1, 3, 3),
        "padding": 2,
        "dilation": 2,
        "groups": 3,
    },
    "depthwise-multiplier": {"x": (1, 3, 7, 7), "w": (6, 1, 3, 3), "groups": 3},
    "depthwise-even-same": {"x": (1, 4, 7, 6), "w": (4, 1, 2, 4), "padding": "same", "groups": 4},
    "grouped": {"x": (2, 6, 7, 7), "w": (4, 3, 3, 3), "padding": 1, "groups": 2},
    "grouped-3": {"x": (1, 9, 6, 5), "w": (6, 3, 2, 2), "stride": (1, 2), "groups": 3},
    "wide-row": {"x": (1, 2, 3, 200), "w": (3, 2, 3, 5), "padding": (1, 2)},
    "tall": {"x": (1, 2, 150, 3), "w": (3, 2, 7, 3)},
    "one-pixel": {"x": (1, 3, 1, 1), "w": (2, 3, 1, 1)},
    "one-pixel-padded": {"x": (1, 3, 1, 1), "w": (2, 3, 3, 3), "padding": 1},
    "many-channels": {"x": (1, 70, 5, 5), "w": (50, 70, 3, 3), "padding": 1},
    "unbatched": {"x": (3, 6, 5), "w": (4, 3, 2, 2)},
    "unbatched-same": {"x": (3, 6, 5), "w": (4, 3, 3, 2), "padding": "same", "stride": 2},
    "large-dilation": {"x": (1, 2, 12, 12), "w": (2, 2, 2, 2), "dilation": (11, 5)},
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases(case, bias, algorithm, dtype, rng):
    c = dict(EDGE_CASES[case])
    x = random(rng, c.pop("x"), dtype)
    w = random(rng, c.pop("w"), dtype)
    b = random(rng, w.shape[0], dtype) if bias else None
    y = check(x, w, b, algorithm=algorithm, dtype=dtype, **c)
    expected_shape = ref.conv2d(x, w, b, **c).shape
    assert y.shape == expected_shape


@st.composite
def extreme_geometry(draw):
    """Strides, dilations and paddings far beyond the input, with a small output."""
    big = st.one_of(st.integers(1, 4), st.integers(1, 2**20), st.sampled_from([2**20, 2**30]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(big), draw(big)
    # Dilations are kept moderate: the direct algorithm's workspace grows with the dilated
    # kernel extent (see test_direct_with_huge_dilation_fails_cleanly).
    dh, dw = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    if draw(st.booleans()):
        padding = "same"
    else:
        padding = ((draw(big) - 1, draw(big) - 1), (draw(big) - 1, draw(big) - 1))
    groups = draw(st.sampled_from([1, 2]))
    x_shape = (draw(st.integers(1, 2)), 2 * groups, h, w)
    w_shape = (2 * groups, 2, kh, kw)
    try:
        pads, out_hw = ref.conv2d_shape_params(x_shape, w_shape, (sh, sw), padding, (dh, dw))
    except ValueError:
        out_hw = (0, 0)
    k_eff = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    fits = all(hw + a + b >= k for hw, a, b, k in zip((h, w), pads[::2], pads[1::2], k_eff))
    assume(fits and 0 < out_hw[0] * out_hw[1] <= 64)
    return x_shape, w_shape, (sh, sw), padding, (dh, dw), groups, pads, out_hw


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(g=extreme_geometry(), seed=st.integers(0, 2**32 - 1))
def test_extreme_geometry_small_output(g, seed, algorithm):
    x_shape, w_shape, stride, padding, dilation, groups, pads, out_hw = g
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, x_shape).astype(np.float64)
    w = rng.integers(-4, 5, w_shape).astype(np.float64)
    b = rng.integers(-4, 5, w_shape[0]).astype(np.float64)
    y = convrs.conv2d(x, w, b, stride, padding, dilation, groups, algorithm=algorithm)
    expected = ref.conv2d_by_taps(x, w, b, stride, pads, dilation, groups, out_hw)
    np.testing.assert_array_equal(y, expected)


def test_auto_workspace_bounded_for_huge_dilation():
    # The direct algorithm's band spans the dilated kernel (2**31 columns here); "auto" must
    # see that and take im2col, whose workspace is one panel per tile.
    x = np.ones((1, 1024, 3, 3), np.float32)
    w = np.ones((1, 1024, 1, 2), np.float32)
    # Tap 0 reads the left padding, tap 1 reads x: every output is sum(x * w) over channels.
    y = convrs.conv2d(x, w, padding=((0, 0), (2**31, 0)), dilation=(1, 2**31))
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), 1024.0, np.float32))


def test_direct_with_huge_dilation_fails_cleanly():
    # Asked for explicitly, "direct" needs a band of 2**41 elements here: a MemoryError, as
    # the contract allows for a workspace too large to allocate, never a crash.
    x = np.ones((1, 1024, 3, 3), np.float32)
    w = np.ones((1, 1024, 1, 2), np.float32)
    with pytest.raises(MemoryError):
        convrs.conv2d(x, w, padding=((0, 0), (2**31, 0)), dilation=(1, 2**31), algorithm="direct")


def test_huge_dilation_with_im2col():
    x = np.ones((1, 1024, 3, 3), np.float32)
    w = np.ones((1, 1024, 1, 2), np.float32)
    y = convrs.conv2d(x, w, padding=((0, 0), (2**31, 0)), dilation=(1, 2**31), algorithm="im2col")
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), 1024.0, np.float32))


@given(p=problems(), seed=st.integers(0, 2**32 - 1))
def test_references_agree(p, seed):
    """The window reference and the gather reference, against each other."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p["x_shape"])
    x = x if x.ndim == 4 else x[None]
    w = rng.standard_normal(p["w_shape"])
    args = (p["stride"], p["padding"], p["dilation"])
    pads, out_hw = ref.conv2d_shape_params(x.shape, w.shape, *args)
    a = ref.conv2d(x, w, None, *args, p["groups"])
    b = ref.conv2d_by_taps(x, w, None, p["stride"], pads, p["dilation"], p["groups"], out_hw)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_same_output_size_at_any_stride(rng):
    for h, k, s, d in itertools.product(range(1, 9), range(1, 5), range(1, 5), range(1, 3)):
        x = random(rng, (1, 1, h, h + 1), np.float64)
        w = random(rng, (1, 1, k, k), np.float64)
        y = check(x, w, padding="same", stride=s, dilation=d)
        assert y.shape[2:] == (-(-h // s), -(-(h + 1) // s))


def test_same_at_stride1_keeps_size_and_puts_odd_pad_bottom_right():
    """With a delta kernel at its top-left, "same" output (p, q) reads x[p - top, q - left]:
    PyTorch's split puts floor(total/2) on top, the rest at the bottom."""
    x = np.arange(1, 5 * 6 + 1, dtype=np.float64).reshape(1, 1, 5, 6)
    w = np.zeros((1, 1, 4, 4))
    w[0, 0, 0, 0] = 1.0  # total padding 3 -> top/left 1, bottom/right 2
    y = convrs.conv2d(x, w, padding="same")
    assert y.shape == x.shape
    expected = np.zeros_like(x)
    expected[0, 0, 1:, 1:] = x[0, 0, :-1, :-1]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_batch_zero(algorithm, dtype, rng):
    x = np.zeros((0, 3, 5, 5), dtype)
    w = random(rng, (4, 3, 3, 3), dtype)
    b = random(rng, 4, dtype)
    y = convrs.conv2d(x, w, b, padding=1, algorithm=algorithm)
    assert y.shape == (0, 4, 5, 5) and y.dtype == dtype


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_channels_zero(algorithm, dtype, rng):
    x = np.zeros((2, 0, 5, 6), dtype)
    w = np.zeros((3, 0, 3, 2), dtype)
    b = random(rng, 3, dtype)
    y = convrs.conv2d(x, w, b, padding=(1, 0), algorithm=algorithm)
    assert y.shape == (2, 3, 5, 5) and y.dtype == dtype
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))
    y = convrs.conv2d(x, w, None, stride=2, algorithm=algorithm)
    assert y.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(y, 0)
    # Unbatched, and groups with zero channels per group.
    y = convrs.conv2d(x[0], np.zeros((4, 0, 1, 1), dtype), np.arange(4.0), groups=2)
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0)[:, None, None], (4, 5, 6)))


def test_output_channels_zero(rng):
    x = random(rng, (2, 3, 5, 5), np.float32)
    y = convrs.conv2d(x, np.zeros((0, 3, 3, 3), np.float32), np.zeros(0, np.float32))
    assert y.shape == (2, 0, 3, 3) and y.dtype == np.float32


@pytest.mark.parametrize("padding", ["same", (2, 1), ((1, 2), (1, 0))])
def test_zero_height(padding):
    """H == 0: "same" gives ceil(0 / s) == 0 rows; explicit padding follows the formula."""
    x = np.zeros((1, 2, 0, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    b = np.arange(3, dtype=np.float32)
    y = convrs.conv2d(x, w, b, padding=padding)
    expected = ref.conv2d(x, w, b, padding=padding)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y, expected)


def test_seed_example_dot_product_of_patch_and_kernel(rng):
    """Each output element is the dot product of the flattened kernel and patch."""
    x = random(rng, (1, 3, 6, 6), np.float64)
    w = random(rng, (2, 3, 3, 3), np.float64)
    y = convrs.conv2d(x, w)
    for k, p, q in itertools.product(range(2), range(4), range(4)):
        patch = x[0, :, p : p + 3, q : q + 3]
        np.testing.assert_allclose(y[0, k, p, q], patch.ravel() @ w[k].ravel(), rtol=1e-12)


# --- conv2d == weight @ im2col ------------------------------------------------------------


@st.composite
def unfold_problems(draw, max_side=8):
    """conv2d problems im2col can express: one group, symmetric padding."""
    n, c, k = draw(st.integers(0, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(pair_or_int(st.integers(1, 3)))
    dilation = draw(pair_or_int(st.integers(1, 3)))
    padding = draw(pair_or_int(st.integers(0, 2)))
    (dh, dw), (ph, pw) = ref.as_pair(dilation), ref.as_pair(padding)
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, max_side))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, max_side))
    return {
        "x_shape": (n, c, h, w),
        "w_shape": (k, c, kh, kw),
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(p=unfold_problems(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_is_weight_times_im2col(p, seed, algorithm):
    rng = np.random.default_rng(seed)
    x = random(rng, p["x_shape"], np.float64)
    w = random(rng, p["w_shape"], np.float64)
    args = (p["stride"], p["padding"], p["dilation"])
    y = convrs.conv2d(x, w, None, *args, algorithm=algorithm)
    cols = convrs.im2col(x, w.shape[2:], p["dilation"], p["padding"], p["stride"])
    via = (w.reshape(w.shape[0], -1) @ cols).reshape(y.shape)
    magnitude = ref.conv2d(x, w, None, *args, absolute=True)
    ref.assert_close(y, via, magnitude, ref.reduction_length(w.shape))


# --- memory layouts and array-likes -----------------------------------------------------------


def _layouts(a):
    """Equal-valued versions of ``a`` in every memory layout."""
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    flipped = np.flip(np.ascontiguousarray(np.flip(a)))
    ro = a.copy()
    ro.flags.writeable = False
    swapped = a.astype(a.dtype.newbyteorder(">" if a.dtype.isnative else "<"))
    if swapped.dtype.isnative:  # big-endian host
        swapped = a.astype(a.dtype.newbyteorder("<"))
    transposed = np.asfortranarray(a)
    broadcast = None
    if a.shape[0] >= 1:
        broadcast = np.broadcast_to(a[:1], a.shape) if a.shape[0] == 1 else None
    out = {
        "contiguous": a,
        "strided-view": view,
        "negative-strides": flipped,
        "fortran": transposed,
        "read-only": ro,
        "byteswapped": swapped,
        "list": a.tolist(),
    }
    if broadcast is not None:
        out["broadcast-zero-stride"] = broadcast
    return out


LAYOUTS = (
    "contiguous",
    "strided-view",
    "negative-strides",
    "fortran",
    "read-only",
    "byteswapped",
    "list",
)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", ["input", "weight", "bias", "all"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memory_layouts(layout, which, algorithm, rng):
    x = random(rng, (2, 4, 7, 6), np.float64)
    w = random(rng, (6, 2, 3, 2), np.float64)
    b = random(rng, 6, np.float64)
    kw = {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "groups": 2, "algorithm": algorithm}
    expected = convrs.conv2d(x, w, b, **kw)
    ref.assert_close(
        expected,
        ref.conv2d(x, w, b, kw["stride"], kw["padding"], 1, 2),
        ref.conv2d(x, w, b, kw["stride"], kw["padding"], 1, 2, absolute=True),
        6,
    )
    args = {"input": x, "weight": w, "bias": b}
    for name in args if which == "all" else [which]:
        args[name] = _layouts(args[name])[layout]
    y = convrs.conv2d(args["input"], args["weight"], args["bias"], **kw)
    assert y.flags.c_contiguous and y.dtype.isnative and y.dtype == np.float64
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_memory_layouts_float32(layout, rng):
    x = random(rng, (1, 3, 8, 9), np.float32)
    w = random(rng, (4, 3, 3, 3), np.float32)
    expected = convrs.conv2d(x, w, padding="same")
    y = convrs.conv2d(_layouts(x)[layout], _layouts(w)[layout], padding="same")
    assert y.dtype == (np.float64 if layout == "list" else np.float32)
    if layout == "list":
        # Python floats become float64: same values, computed in float64.
        check(x.astype(np.float64), w.astype(np.float64), padding="same")
    else:
        np.testing.assert_array_equal(y, expected)


def test_broadcast_zero_strides(rng):
    x = np.broadcast_to(random(rng, (1, 3, 1, 9), np.float32), (2, 3, 6, 9))
    w = np.broadcast_to(random(rng, (1, 3, 2, 2), np.float32), (4, 3, 2, 2))
    y = check(x, w, padding=1)
    np.testing.assert_array_equal(y, convrs.conv2d(x.copy(), w.copy(), padding=1))


def test_nested_lists_and_tuples():
    x = [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
    w = ((((1, 0), (0, -1)),),)
    y = convrs.conv2d(x, w)
    assert y.dtype == np.float64 and y.shape == (1, 2, 2)
    np.testing.assert_array_equal(y, [[[1 - 5, 2 - 6], [4 - 8, 5 - 9]]])


def test_result_is_new_array(rng):
    x = random(rng, (1, 2, 4, 4), np.float32)
    w = np.ones((2, 2, 1, 1), np.float32)
    y = convrs.conv2d(x, w)
    assert not np.shares_memory(y, x) and not np.shares_memory(y, w)
    assert y.base is None or not isinstance(y.base, np.ndarray) or y.base.flags.owndata


@pytest.mark.parametrize(
    "make",
    [
        lambda x: convrs.conv2d(x, np.ones((3, 2, 3, 3), x.dtype), padding=1),
        lambda x: convrs.conv2d(x.astype(np.float64), np.ones((2, 2, 1, 1))),
        lambda x: convrs.convolve2d(x[0, 0], np.ones((2, 3), x.dtype)),
        lambda x: convrs.correlate2d((x[0, 0] * 9).astype(np.int16), np.ones((3, 2), np.int16)),
        lambda x: convrs.convolve2d(x[0, 1].astype(np.complex128), np.ones((2, 2))),
        lambda x: convrs.convolve2d((x[0, 0] > 0).astype(np.uint8), np.ones((2, 2), np.uint8)),
        lambda x: convrs.im2col(x, (2, 3)),
        lambda x: convrs.col2im(convrs.im2col(x, (2, 3)), (5, 7), (2, 3)),
    ],
    ids=["conv2d", "conv2d-f64", "convolve2d", "int16", "complex", "uint8", "im2col", "col2im"],
)
def test_results_start_on_a_cache_line(rng, make):
    # Whole-vector stores into a result straddle two cache lines unless its rows start
    # on one; numpy's allocator only aligns to 16 bytes.
    for _ in range(4):
        x = random(rng, (2, 2, 5, 7), np.float32)
        y = make(x)
        assert y.ctypes.data % 64 == 0
        assert y.flags.c_contiguous and y.flags.writeable
        assert y.base is None or y.base.flags.owndata
        assert not np.shares_memory(y, x)


# --- the dtype rule -----------------------------------------------------------------------

PROMOTION_DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
]


@pytest.mark.parametrize(
    "wdt", [np.float32, np.float64, np.int8, np.bool_], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("xdt", PROMOTION_DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_promotion(xdt, wdt, rng):
    x = rng.integers(0, 2, (1, 2, 5, 5)).astype(xdt)
    w = rng.integers(0, 2, (3, 2, 2, 2)).astype(wdt)
    y = convrs.conv2d(x, w)
    expected_dtype = np.result_type(x, w, np.float32)
    assert y.dtype == expected_dtype
    np.testing.assert_array_equal(y, ref.conv2d(x, w))


@pytest.mark.parametrize(
    "bdt", [np.int64, np.float64, np.int8, np.bool_], ids=lambda d: np.dtype(d).name
)
def test_bias_takes_part_in_promotion(bdt):
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((2, 1, 2, 2), np.float32)
    b = np.array([1, 0]).astype(bdt)
    y = convrs.conv2d(x, w, b)
    assert y.dtype == np.result_type(x, w, b, np.float32)
    np.testing.assert_array_equal(y, ref.conv2d(x, w, b))


def test_large_integers_promote_to_float64_values():
    x = np.full((1, 1, 2, 2), 2**40 + 1, np.int64)
    w = np.ones((1, 1, 1, 1), np.int64)
    y = convrs.conv2d(x, w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, float(2**40 + 1))


# --- out= ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_is_filled_and_returned(algorithm, dtype, rng):
    x = random(rng, (2, 3, 6, 5), dtype)
    w = random(rng, (4, 3, 3, 2), dtype)
    b = random(rng, 4, dtype)
    expected = convrs.conv2d(x, w, b, padding=1, algorithm=algorithm)
    out = np.full(expected.shape, np.nan, dtype)
    got = convrs.conv2d(x, w, b, padding=1, algorithm=algorithm, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)


def test_out_unbatched_and_empty(rng):
    x = random(rng, (3, 6, 5), np.float32)
    w = random(rng, (4, 3, 3, 3), np.float32)
    out = np.full((4, 4, 3), np.nan, np.float32)
    assert convrs.conv2d(x, w, out=out) is out
    np.testing.assert_array_equal(out, convrs.conv2d(x, w))
    out = np.empty((0, 4, 4, 3), np.float32)
    assert convrs.conv2d(np.zeros((0, 3, 6, 5), np.float32), w, out=out) is out
    # C_in == 0: out is overwritten with the bias, not left alone.
    out = np.full((2, 3, 3), np.nan, np.float64)
    b = np.array([1.0, 2.0])
    convrs.conv2d(np.zeros((0, 3, 3)), np.zeros((2, 0, 1, 1)), b, out=out)
    np.testing.assert_array_equal(out, np.broadcast_to(b[:, None, None], out.shape))


def test_out_overwrites_existing_contents(rng):
    x = random(rng, (1, 2, 4, 4), np.float64)
    w = random(rng, (2, 2, 2, 2), np.float64)
    out = np.full((1, 2, 3, 3), 1e300)
    convrs.conv2d(x, w, out=out)
    np.testing.assert_array_equal(out, convrs.conv2d(x, w))


# --- thread counts: bit-identical, and correct ------------------------------------------------

# Large enough that the work is split between threads (the pool starts above ~2 MFLOP per
# thread); one case per path: direct, im2col, depthwise planar, grouped, strided, dilated.
THREAD_CASES = {
    "direct": {"x": (2, 16, 34, 30), "w": (24, 16, 3, 3), "padding": 1},
    "strided-dilated": {
        "x": (3, 8, 41, 37),
        "w": (20, 8, 3, 5),
        "stride": (2, 3),
        "dilation": (2, 1),
        "padding": "same",
    },
    "1x1": {"x": (2, 32, 30, 30), "w": (40, 32, 1, 1)},
    # 1×1 layers write whole tiles straight to the output planes: a reduction longer than
    # one chunk (the second continues from the first's sums there), and groups whose
    # biases start inside the array (one wide-kernel block per group at 8 rows per block).
    "1x1-long-reduction": {"x": (1, 200, 20, 20), "w": (48, 200, 1, 1)},
    "1x1-grouped": {"x": (2, 48, 17, 19), "w": (32, 12, 1, 1), "groups": 4},
    "depthwise": {"x": (3, 32, 40, 40), "w": (32, 1, 5, 5), "padding": 2, "groups": 32},
    "grouped": {"x": (2, 24, 30, 30), "w": (24, 6, 3, 3), "padding": 1, "groups": 4},
    "batch-one-tall": {"x": (1, 8, 200, 24), "w": (16, 8, 5, 3), "padding": (2, 1)},
    # A padded input band of the direct algorithm holds only some output rows.
    "many-bands": {"x": (1, 64, 50, 98), "w": (9, 64, 3, 3), "padding": 1},
    "many-bands-strided": {
        "x": (1, 48, 61, 90),
        "w": (17, 48, 3, 4),
        "stride": 2,
        "padding": (1, 2),
    },
    # Fewer output channels per group than the wide tile kernel's rows: the one-row kernel
    # (direct and im2col), over several im2col panels, runs longer than a vector, padding
    # wider than one element and a row longer than a panel.
    "few-per-group-depthwise": {
        "x": (2, 12, 61, 67),
        "w": (12, 1, 3, 3),
        "padding": 1,
        "groups": 12,
    },
    "few-per-group-depthwise-strided": {
        "x": (2, 16, 57, 50),
        "w": (16, 1, 3, 3),
        "stride": 2,
        "padding": 1,
        "groups": 16,
    },
    "few-per-group-depthwise-dilated": {
        "x": (1, 8, 40, 45),
        "w": (8, 1, 5, 5),
        "padding": 4,
        "dilation": 2,
        "groups": 8,
    },
    "few-per-group-depthwise-asymmetric": {
        "x": (1, 6, 33, 130),
        "w": (6, 1, 3, 4),
        "padding": ((2, 0), (3, 1)),
        "groups": 6,
    },
    "few-per-group-row-longer-than-panel": {
        "x": (1, 3, 5, 1000),
        "w": (6, 1, 1, 7),
        "padding": (0, 3),
        "groups": 3,
    },
    "few-per-group-2": {"x": (1, 16, 40, 41), "w": (16, 2, 3, 3), "padding": 1, "groups": 8},
    "few-per-group-3": {"x": (2, 8, 35, 37), "w": (12, 2, 3, 3), "groups": 4},
    "few-per-group-4": {"x": (1, 32, 30, 33), "w": (32, 4, 3, 3), "padding": 1, "groups": 8},
    "few-per-group-5": {"x": (1, 10, 30, 31), "w": (10, 5, 3, 3), "padding": 1, "groups": 2},
    "few-per-group-9": {"x": (1, 18, 20, 21), "w": (18, 9, 3, 3), "stride": (1, 2), "groups": 2},
    # im2col's flat copy (unit strides, output rows as wide as input rows): the taps that
    # leave a row sideways are zeroed, here with all the padding on one side, dilation and
    # panels spanning many short rows.
    "flat-one-sided-dilated": {
        "x": (2, 6, 37, 19),
        "w": (12, 3, 3, 3),
        "dilation": (1, 2),
        "padding": ((1, 1), (0, 4)),
        "groups": 2,
    },
    "flat-depthwise-wide-pad": {
        "x": (1, 8, 29, 23),
        "w": (8, 1, 5, 5),
        "padding": ((4, 0), (1, 3)),
        "groups": 8,
    },
    # im2col's strided taps by phase: dilation 2 at stride 2 (one phase), dilation 2 at
    # stride 3 (taps in three phases, two phase elements apart), stride 4 with 7 taps and
    # with dilation 3 (a tap class starting two phase elements in).
    "phases-s2-d2": {"x": (1, 5, 30, 41), "w": (9, 5, 3, 3), "stride": 2, "dilation": 2,
                     "padding": 2},
    "phases-s3-d2": {"x": (2, 4, 31, 53), "w": (7, 4, 2, 5), "stride": (1, 3),
                     "dilation": (1, 2), "padding": (0, 3)},
    "phases-s4-k7": {"x": (1, 3, 40, 90), "w": (16, 3, 7, 7), "stride": 4, "padding": 3},
    "phases-s4-d3": {"x": (1, 3, 30, 70), "w": (10, 3, 3, 5), "stride": 4, "dilation": 3,
                     "padding": (1, 5)},
    # The row algorithm (auto and direct choose it for these at every SIMD level): rows
    # longer than one kernel call, several channel blocks, padded kernel rows left out.
    "rows": {"x": (1, 32, 48, 48), "w": (64, 32, 3, 3), "padding": 1},
    "rows-strided-asymmetric": {
        "x": (3, 32, 60, 50),
        "w": (64, 32, 3, 3),
        "stride": 2,
        "padding": ((1, 0), (1, 1)),
    },
    "rows-dilated-grouped": {
        "x": (1, 64, 50, 50),
        "w": (128, 32, 3, 3),
        "dilation": 2,
        "padding": 2,
        "groups": 2,
    },
    # The row algorithm's one-vector kernels, for groups of one vector of output channels
    # (16 float32 / 8 float64 at AVX-512, 8 / 4 at AVX2): calls of equal size along rows
    # longer than one call (45 = 3 × 15), short reductions, groups, strides.
    "rows-one-vector-16": {"x": (2, 3, 40, 45), "w": (16, 3, 5, 5), "padding": 2},
    "rows-one-vector-8": {"x": (1, 24, 33, 37), "w": (8, 24, 3, 3), "padding": 1},
    "rows-one-vector-4-grouped": {
        "x": (1, 32, 30, 29),
        "w": (8, 16, 3, 3),
        "padding": ((1, 0), (0, 1)),
        "groups": 2,
    },
    "rows-one-vector-16-strided": {
        "x": (1, 16, 41, 60),
        "w": (32, 8, 3, 3),
        "stride": 2,
        "padding": 1,
        "groups": 2,
    },
    # Weight blocks of 92 KB (float32 at AVX2, float64 at AVX2 and scalar) or 184 KB: the
    # row algorithm's groups of blocks per band sweep (256 KiB) hold 2 or 1 of 3 or 6
    # blocks, the last group partial; threads split the blocks further.
    "rows-weight-groups": {"x": (1, 160, 12, 12), "w": (48, 160, 3, 3), "padding": 1},
    # A 1x1 layer with one block of output channels over a plane of ~100 tiles: its tiles
    # go through input panels of at most 128 KiB (32 tiles of 16 at AVX2 float32), several
    # per task, then a partial tile.
    "pointwise-panels": {"x": (1, 64, 40, 41), "w": (6, 64, 1, 1)},
    # Rows too wide for a band of 16 output rows in L2: the row algorithm cuts them into
    # column strips (2 for float32 and 3 for float64 here, the last narrower; 5 strided).
    "rows-column-strips": {"x": (1, 16, 20, 1000), "w": (16, 16, 3, 3), "padding": 1},
    "rows-column-strips-strided": {
        "x": (1, 16, 40, 2001),
        "w": (32, 16, 3, 3),
        "stride": 2,
        "dilation": (1, 2),
        "padding": ((1, 0), (2, 1)),
    },
}


def thread_case(case, dtype, rng):
    """Input, weights, bias and the other arguments of a THREAD_CASES entry."""
    c = dict(THREAD_CASES[case])
    x = random(rng, c.pop("x"), dtype)
    w = random(rng, c.pop("w"), dtype)
    return x, w, random(rng, w.shape[0], dtype), c


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", sorted(THREAD_CASES))
def test_thread_counts_bit_identical(case, algorithm, dtype, rng):
    x, w, b, c = thread_case(case, dtype, rng)
    results = {}
    for n in (1, 2, 3, 4):
        convrs.set_num_threads(n)
        results[n] = convrs.conv2d(x, w, b, algorithm=algorithm, **c)
    check(x, w, b, algorithm=algorithm, dtype=dtype, **c)
    for n in (2, 3, 4):
        np.testing.assert_array_equal(results[n], results[1], err_msg=f"{n} threads vs 1")


def _depthwise(case):
    return case.get("groups", 1) == case["x"][1] and case["w"][1] == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    ("case", "algorithm"),
    [
        (case, algorithm)
        for case in sorted(THREAD_CASES)
        for algorithm in ALGORITHMS
        if algorithm == "im2col" or not _depthwise(THREAD_CASES[case])
    ],
)
def test_bias_is_added_to_the_finished_sums(case, algorithm, dtype, rng):
    """The tile and row paths add the bias in one rounding after the whole sum, as `+ b`
    would, however the reduction is split (the depthwise planar kernel, which the direct
    algorithm takes for depthwise layers, starts its sums from the bias instead)."""
    x, w, b, c = thread_case(case, dtype, rng)
    with_bias = convrs.conv2d(x, w, b, algorithm=algorithm, **c)
    without = convrs.conv2d(x, w, algorithm=algorithm, **c)
    np.testing.assert_array_equal(with_bias, without + b[:, None, None])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", sorted(THREAD_CASES))
def test_multithreaded_problems_match_reference(case, algorithm, dtype, num_threads, rng):
    x, w, b, c = thread_case(case, dtype, rng)
    assert convrs.get_num_threads() == num_threads
    check(x, w, b, algorithm=algorithm, dtype=dtype, **c)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(p=problems(), seed=st.integers(0, 2**32 - 1))
def test_random_problems_under_threads(p, seed, algorithm):
    """Small problems with several threads allowed still match one thread exactly."""
    convrs.set_num_threads(1)
    y1 = run_problem(p, np.float32, algorithm, seed)
    for n in (2, 3):
        convrs.set_num_threads(n)
        np.testing.assert_array_equal(run_problem(p, np.float32, algorithm, seed), y1)


def test_non_finite_values_propagate():
    x = np.ones((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 3, 3] = np.inf
    w = np.ones((1, 1, 2, 2), np.float32)
    for algorithm in ALGORITHMS:
        y = convrs.conv2d(x, w, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.conv2d(x, w)))
        assert np.isposinf(y[0, 0, 2, 2])
