"""algorithm="winograd" (F(4x4, 3x3)) against the float64 NumPy reference: random 3x3
layers at unit stride, blocks of tiles over several threads, the bias, the shapes it
refuses, and where "auto" takes it (float64 only)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convrs
import reference as ref

DTYPES = (np.float32, np.float64)


def check(x, w, b=None, padding=0, groups=1):
    """Run the Winograd algorithm and assert it matches the reference within its bound."""
    y = convrs.conv2d(x, w, b, 1, padding, 1, groups, algorithm="winograd")
    expected = ref.conv2d(x, w, b, 1, padding, 1, groups)
    magnitude = ref.conv2d(x, w, b, 1, padding, 1, groups, absolute=True)
    assert y.dtype == x.dtype and y.flags.c_contiguous
    ref.assert_close_winograd(y, expected, magnitude, ref.reduction_length(w.shape))
    return y


@st.composite
def layers(draw, max_side=14, max_channels=5):
    """3x3 layers at unit stride: any batch, groups and padding, input channels of very
    different magnitudes."""
    groups = draw(st.integers(1, 3))
    cin_g, cout_g = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    n = draw(st.integers(0, 2))
    pads = st.integers(0, 3)
    padding = draw(st.one_of(pads, st.tuples(pads, pads),
                             st.tuples(st.tuples(pads, pads), st.tuples(pads, pads)),
                             st.sampled_from(["valid", "same"])))
    fixed = (0, 0, 0, 0) if isinstance(padding, str) else ref.resolve_padding(
        padding, 0, 0, (3, 3), (1, 1))
    need_h = 1 if padding == "same" else max(1, 3 - fixed[0] - fixed[1])
    need_w = 1 if padding == "same" else max(1, 3 - fixed[2] - fixed[3])
    h = need_h + draw(st.integers(0, max_side))
    w = need_w + draw(st.integers(0, max_side))
    return {"x": (n, cin_g * groups, h, w), "w": (cout_g * groups, cin_g, 3, 3),
            "padding": padding, "groups": groups, "bias": draw(st.booleans())}


def make(p, dtype, seed):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 3, (1, p["x"][1], 1, 1))
    x = (rng.standard_normal(p["x"]) * scale).astype(dtype)
    w = rng.standard_normal(p["w"]).astype(dtype)
    b = rng.standard_normal(p["w"][0]).astype(dtype) if p["bias"] else None
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@given(p=layers(), seed=st.integers(0, 2**32 - 1))
def test_random_layers(p, seed, dtype):
    x, w, b = make(p, dtype, seed)
    check(x, w, b, p["padding"], p["groups"])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=10)
@given(p=layers(max_side=70, max_channels=40), seed=st.integers(0, 2**32 - 1))
def test_random_larger_layers(p, seed, dtype):
    """Several blocks of tiles, microkernel tiles and channel blocks per call."""
    x, w, b = make(p, dtype, seed)
    check(x, w, b, p["padding"], p["groups"])


# Blocks of tiles across tile rows, partial channel blocks, groups, one-sided padding, an
# input with no rows (all padding) and planes narrower than one tile.
CASES = {
    "blocks": {"x": (2, 16, 37, 61), "w": (20, 16, 3, 3), "padding": 1},
    "grouped": {"x": (1, 48, 30, 33), "w": (64, 24, 3, 3), "padding": ((1, 0), (1, 2)),
                "groups": 2},
    "wide": {"x": (1, 32, 20, 300), "w": (40, 32, 3, 3), "padding": 1},
    "r3x3": {"x": (1, 64, 56, 56), "w": (64, 64, 3, 3), "padding": 1},
    "narrow": {"x": (3, 5, 40, 3), "w": (7, 5, 3, 3), "padding": ((0, 0), (0, 0))},
    "no-rows": {"x": (1, 2, 0, 5), "w": (3, 2, 3, 3), "padding": ((2, 2), (0, 0))},
    # One block of tiles, whose output channels the threads share.
    "small-image": {"x": (1, 32, 10, 10), "w": (72, 32, 3, 3), "padding": 1},
}


def case_arrays(name, dtype, rng):
    c = dict(CASES[name])
    x = rng.standard_normal(c.pop("x")).astype(dtype)
    w = rng.standard_normal(c.pop("w")).astype(dtype)
    return x, w, rng.standard_normal(w.shape[0]).astype(dtype), c


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", sorted(CASES))
def test_thread_counts_bit_identical(case, dtype, rng):
    x, w, b, c = case_arrays(case, dtype, rng)
    results = {}
    for n in (1, 2, 3, 4):
        convrs.set_num_threads(n)
        results[n] = convrs.conv2d(x, w, b, algorithm="winograd", **c)
    check(x, w, b, c.get("padding", 0), c.get("groups", 1))
    for n in (2, 3, 4):
        np.testing.assert_array_equal(results[n], results[1], err_msg=f"{n} threads vs 1")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bias_is_added_to_the_finished_sums(case, dtype, rng):
    x, w, b, c = case_arrays(case, dtype, rng)
    with_bias = convrs.conv2d(x, w, b, algorithm="winograd", **c)
    without = convrs.conv2d(x, w, algorithm="winograd", **c)
    np.testing.assert_array_equal(with_bias, without + b[:, None, None])


def test_auto_takes_winograd_for_float64_3x3_layers_only(rng):
    x = rng.standard_normal((1, 16, 24, 24))
    w = rng.standard_normal((16, 16, 3, 3))
    wino = convrs.conv2d(x, w, padding=1, algorithm="winograd")
    direct = convrs.conv2d(x, w, padding=1, algorithm="direct")
    assert not np.array_equal(wino, direct)  # different rounding: the test can tell them apart
    np.testing.assert_array_equal(convrs.conv2d(x, w, padding=1), wino)
    # Too few tiles per image (deep, small layers): the direct algorithm.
    small = rng.standard_normal((1, 16, 12, 12))
    np.testing.assert_array_equal(convrs.conv2d(small, w, padding=1),
                                  convrs.conv2d(small, w, padding=1, algorithm="direct"))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    np.testing.assert_array_equal(convrs.conv2d(x32, w32, padding=1),
                                  convrs.conv2d(x32, w32, padding=1, algorithm="direct"))


@pytest.mark.parametrize("algorithm", ["auto", "winograd"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_stay_where_the_definition_puts_them(algorithm, bad):
    """Non-finite data takes the direct algorithm: the transforms would spread it over
    the whole 4x4 tile."""
    x = np.full((1, 16, 24, 24), 0.5)
    x[0, 3, 5, 6] = bad
    w = np.full((16, 16, 3, 3), 0.25)
    y = convrs.conv2d(x, w, padding=1, algorithm=algorithm)
    expected = ref.conv2d(x, w, None, 1, 1)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expected))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))


@pytest.mark.parametrize(
    ("w_shape", "kwargs"),
    [((4, 2, 5, 5), {}), ((4, 2, 3, 1), {}), ((4, 2, 3, 3), {"stride": 2}),
     ((4, 2, 3, 3), {"dilation": (1, 2)})],
)
def test_other_shapes_are_refused(w_shape, kwargs):
    x = np.ones((1, 2, 9, 9))
    with pytest.raises(ValueError, match="algorithm='winograd' needs a 3x3 kernel"):
        convrs.conv2d(x, np.ones(w_shape), algorithm="winograd", **kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_and_channel_free_problems(dtype):
    w = np.ones((3, 2, 3, 3), dtype)
    b = np.arange(3, dtype=dtype)
    y = convrs.conv2d(np.ones((0, 2, 5, 5), dtype), w, b, algorithm="winograd")
    assert y.shape == (0, 3, 3, 3) and y.dtype == dtype
    y = convrs.conv2d(np.ones((1, 0, 5, 5), dtype), np.ones((3, 0, 3, 3), dtype), b,
                      padding=1, algorithm="winograd")
    np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], (1, 3, 5, 5)))


def test_caller_arrays_are_untouched(rng):
    x = rng.standard_normal((1, 16, 20, 20))
    w = rng.standard_normal((16, 16, 3, 3))
    b = rng.standard_normal(16)
    copies = [a.copy() for a in (x, w, b)]
    convrs.conv2d(x, w, b, padding=1, algorithm="winograd")
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
