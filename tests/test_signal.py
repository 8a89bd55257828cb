"""convrs.convolve2d / correlate2d against scipy.signal: values, shape, dtype, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convrs

FUNCS = [(convrs.convolve2d, ss.convolve2d), (convrs.correlate2d, ss.correlate2d)]
MODES = ["full", "same", "valid"]
BOUNDARIES = ["fill", "pad", "wrap", "circular", "symm", "symmetric"]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOATS = [np.float32, np.float64, np.longdouble]
COMPLEX = [np.complex64, np.complex128, np.clongdouble]


@pytest.fixture(params=[1, 2], autouse=True)
def threads(request):
    """Every test runs with 1 and 2 threads (results must not depend on the split)."""
    old = convrs.get_num_threads()
    convrs.set_num_threads(request.param)
    yield request.param
    convrs.set_num_threads(old)


def random_array(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def tolerance(dtype):
    eps = np.finfo(np.dtype(dtype)).eps
    return 64 * float(eps)


def assert_matches(got, want, a=None, k=None):
    """Same dtype and shape; integers bit-exact; floats within a bound relative to the
    magnitude of the sum of |products| (what rounding can move)."""
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
        return
    got64 = got.astype(np.clongdouble if want.dtype.kind == "c" else np.longdouble)
    want64 = want.astype(got64.dtype)
    finite = np.isfinite(want64)
    np.testing.assert_array_equal(np.isfinite(got64), finite)
    if not finite.all():
        return
    scale = 1.0
    if a is not None and k is not None and a.size and k.size:
        scale = float(np.abs(a).max()) * float(np.abs(k).max()) * k.size
    scale = max(scale, float(np.abs(want64).max(initial=0)), 1e-300)
    err = float(np.abs(got64 - want64).max(initial=0))
    assert err <= tolerance(want.dtype) * scale, (err, scale)


def check(f, g, a, k, *args, exact=False, **kwargs):
    """convrs's ``f`` against SciPy's ``g``: the same result, or a ValueError where SciPy
    raises one. ``exact`` asks for bit-identical floats (small-integer data)."""
    try:
        want = g(a, k, *args, **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            f(a, k, *args, **kwargs)
        return
    got = f(a, k, *args, **kwargs)
    assert_matches(got, want, np.asarray(a), np.asarray(k))
    if exact:
        np.testing.assert_array_equal(got, want)


# --- the seed's examples -------------------------------------------------------------

SEED_IMAGE = np.array([[1, 1, 1, 0, 0],
                       [0, 1, 1, 1, 0],
                       [0, 0, 1, 1, 1],
                       [0, 0, 1, 1, 0],
                       [0, 1, 1, 0, 0]])
SEED_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_seed_example_valid_convolution():
    got = convrs.convolve2d(SEED_IMAGE, SEED_KERNEL, "valid")
    assert got.dtype == SEED_IMAGE.dtype
    np.testing.assert_array_equal(got, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    np.testing.assert_array_equal(got, ss.convolve2d(SEED_IMAGE, SEED_KERNEL, "valid"))
    # The sum of element-wise products of the first patch and the (flipped) kernel.
    assert got[0, 0] == np.sum(SEED_IMAGE[:3, :3] * SEED_KERNEL[::-1, ::-1])


def test_asymmetric_kernel_convolution_and_correlation_differ():
    k = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    conv = convrs.convolve2d(SEED_IMAGE, k, "valid")
    corr = convrs.correlate2d(SEED_IMAGE, k, "valid")
    assert conv[0, 0] == 4 and corr[0, 0] == 3
    np.testing.assert_array_equal(conv, ss.convolve2d(SEED_IMAGE, k, "valid"))
    np.testing.assert_array_equal(corr, ss.correlate2d(SEED_IMAGE, k, "valid"))
    np.testing.assert_array_equal(conv, convrs.correlate2d(SEED_IMAGE, k[::-1, ::-1], "valid"))


# --- dtypes --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", INTS + FLOATS + COMPLEX)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("fi", [0, 1])
def test_every_dtype_mode_boundary(dtype, mode, boundary, fi):
    f, g = FUNCS[fi]
    rng = np.random.default_rng(hash((np.dtype(dtype).str, mode, boundary, fi)) % 2**32)
    a = random_array(rng, (23, 70), dtype)
    k = random_array(rng, (4, 5), dtype)
    fill = 3 if np.dtype(dtype).kind in "iu" else (2 - 1j if np.dtype(dtype).kind == "c" else 1.5)
    check(f, g, a, k, mode, boundary, fill)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int32, np.uint64])
def test_integer_wraparound_is_bit_exact(dtype):
    info = np.iinfo(dtype)
    a = np.full((9, 40), info.max, dtype=dtype)
    a[::2, ::3] = info.min
    k = np.full((5, 5), info.max // 3 + 1, dtype=dtype)
    for f, g in FUNCS:
        for mode in MODES:
            for boundary in ["fill", "wrap", "symm"]:
                check(f, g, a, k, mode, boundary, fillvalue=7)


def test_uint8_wraps_like_scipy():
    a = np.array([[200, 100]], np.uint8)
    k = np.array([[2, 3]], np.uint8)
    got = convrs.correlate2d(a, k, "valid")
    assert got.dtype == np.uint8 and got[0, 0] == (200 * 2 + 100 * 3) % 256


MIXED = [(np.int8, np.uint8), (np.int64, np.uint64), (np.int32, np.float32),
         (np.int16, np.float16), (np.float32, np.complex64), (np.float64, np.complex64),
         (np.bool_, np.int8), (np.float16, np.float32), (np.uint8, np.float64),
         (np.float32, np.longdouble), (np.complex64, np.clongdouble), (np.int8, np.uint64)]


@pytest.mark.parametrize(("t1", "t2"), MIXED)
def test_mixed_dtypes_promote_like_scipy(t1, t2):
    rng = np.random.default_rng(5)
    a = (rng.integers(0, 5, (12, 17))).astype(t1)
    k = (rng.integers(0, 5, (3, 4))).astype(t2)
    for f, g in FUNCS:
        check(f, g, a, k, "same")
        check(f, g, k, a, "valid")


@pytest.mark.parametrize("dtypes", [(np.bool_, np.bool_), (np.float16, np.float16),
                                    (object, object), (np.int8, np.float16),
                                    ("M8[s]", "M8[s]"), ("m8[s]", "m8[s]"),
                                    (np.float64, "U1")])
def test_rejected_dtypes_raise_like_scipy(dtypes):
    a = np.ones((4, 4), dtype=dtypes[0])
    k = np.ones((2, 2), dtype=dtypes[1])
    for f, g in FUNCS:
        with pytest.raises(Exception) as want:
            g(a, k)
        with pytest.raises(type(want.value)):
            f(a, k)


def test_non_native_byte_order_and_layouts():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((30, 40))
    k = rng.standard_normal((5, 3))
    for aa in [a.astype(">f8"), np.asfortranarray(a), a[::-1, ::2], a.T]:
        for kk in [k.astype(">f4"), k[::-1], np.asfortranarray(k)]:
            for f, g in FUNCS:
                check(f, g, aa, kk, "same", "symm")


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((20, 20)) + 1j * rng.standard_normal((20, 20))
    k = rng.standard_normal((3, 3)) + 1j
    a0, k0 = a.copy(), k.copy()
    for f, _ in FUNCS:
        f(a, k, "full", "wrap")
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(k, k0)


def test_lists_and_python_scalars():
    for f, g in FUNCS:
        check(f, g, [[1, 2, 3], [4, 5, 6]], [[1, -1]])
        check(f, g, [[1.5, 2], [3, 4]], [[1j, 2]], "same")
        check(f, g, [[2**63, 1]], [[1]])


# --- modes, boundaries, shapes -------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (3, 2), (5, 5)])
@pytest.mark.parametrize("kshape", [(1, 1), (1, 4), (4, 1), (4, 5), (6, 7), (9, 13)])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
def test_thin_inputs_and_kernels_larger_than_the_image(shape, kshape, boundary):
    rng = np.random.default_rng(sum(shape) * 100 + sum(kshape))
    a = rng.integers(-9, 9, shape).astype(np.float64)
    k = rng.integers(-9, 9, kshape).astype(np.float64)
    for f, g in FUNCS:
        for mode in MODES:
            # Small integers: every path is exact.
            check(f, g, a, k, mode, boundary, 2.0, exact=True)


def test_valid_mode_swap_and_correlate_reversal():
    rng = np.random.default_rng(6)
    small = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    big = rng.standard_normal((8, 9)) + 1j * rng.standard_normal((8, 9))
    for f, g in FUNCS:
        check(f, g, small, big, "valid")
        check(f, g, big, small, "valid")
        check(f, g, small, small, "valid")


@pytest.mark.parametrize(("s1", "s2"), [((0, 3), (2, 2)), ((3, 3), (0, 2)), ((0, 3), (0, 2)),
                                        ((0, 0), (1, 1)), ((2, 0), (1, 1)), ((2, 2), (2, 0)),
                                        ((0, 3), (1, 1))])
@pytest.mark.parametrize("mode", MODES)
def test_empty_inputs_like_scipy(s1, s2, mode):
    boundaries = ["fill"] if 0 in s1 else ["fill", "wrap", "symm"]
    for boundary in boundaries:
        for f, g in FUNCS:
            check(f, g, np.ones(s1), np.ones(s2), mode, boundary, 5.0, exact=True)


def test_empty_image_with_periodic_boundary_raises():
    # SciPy divides by zero here (the process dies); convrs raises instead.
    for f, _ in FUNCS:
        with pytest.raises(ValueError, match="in1"):
            f(np.ones((0, 3)), np.ones((2, 2)), "full", "wrap")
        with pytest.raises(ValueError, match="in1"):
            f(np.ones((0, 3), np.longdouble), np.ones((2, 2)), "full", "symm")


# --- fillvalue -----------------------------------------------------------------------

FILLS = [-1, 300, 2.7, np.nan, np.inf, 2**70, 1e300, 1j, 1 + 0j, 3 + 4j, None, [1],
         np.array([[2]]), [], [1, 2], "3", "1+2j", np.float16(2.5), True, np.int64(-3),
         np.uint64(2**64 - 1), -2**63, 2**64 - 1, np.array(1.5, np.float32),
         np.array([1.5]), np.complex128(1), "x", object(), np.float64(np.nan)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int64, np.uint64, np.float32,
                                   np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("fi", range(len(FILLS)))
def test_fillvalue_conversion_like_scipy(dtype, fi):
    fill = FILLS[fi]
    a = np.ones((3, 4), dtype)
    k = np.ones((2, 2), dtype)
    for f, g in FUNCS:
        with warnings.catch_warnings(record=True) as want_w:
            warnings.simplefilter("always")
            try:
                want = g(a, k, fillvalue=fill)
            except Exception as e:  # noqa: BLE001 - the class is what is compared
                want = e
        with warnings.catch_warnings(record=True) as got_w:
            warnings.simplefilter("always")
            if isinstance(want, Exception):
                with pytest.raises(type(want)):
                    f(a, k, fillvalue=fill)
                continue
            got = f(a, k, fillvalue=fill)
        assert_matches(got, want)
        assert {w.category for w in got_w} == {w.category for w in want_w}


def test_fillvalue_ignored_for_periodic_boundaries():
    a, k = np.ones((3, 3)), np.ones((2, 2))
    for f, g in FUNCS:
        for bad in ([1, 2], 1j, "x"):
            check(f, g, a, k, "full", "wrap", bad)


def test_complex_fill_for_complex_input():
    rng = np.random.default_rng(8)
    a = random_array(rng, (6, 7), np.complex64)
    k = random_array(rng, (3, 2), np.complex64)
    for f, g in FUNCS:
        check(f, g, a, k, "full", "fill", 1 - 2j)


# --- errors --------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "kwargs"), [
    ((np.ones(3), np.ones((2, 2))), {}),
    ((np.ones((2, 2, 2)), np.ones((2, 2))), {}),
    ((np.float64(1), np.ones((2, 2))), {}),
    ((np.ones((3, 3)), np.ones((2, 2)), "foo"), {}),
    ((np.ones((3, 3)), np.ones((2, 2)), None), {}),
    ((np.ones((3, 3)), np.ones((2, 2)), "SAME"), {}),
    ((np.ones((3, 3)), np.ones((2, 2)), "full", "foo"), {}),
    ((np.ones((3, 3)), np.ones((2, 2)), "full", 3), {}),
    ((np.ones((3, 2)), np.ones((2, 3)), "valid"), {}),
    (([[1, 2], [3]], np.ones((2, 2))), {}),
])
def test_errors_like_scipy(args, kwargs):
    for f, g in FUNCS:
        with pytest.raises(Exception) as want:
            g(*args, **kwargs)
        with pytest.raises(type(want.value), match=None) as got:
            f(*args, **kwargs)
        if isinstance(want.value, ValueError) and "mode" in str(want.value):
            assert str(got.value) == str(want.value)


# --- randomised differential test ----------------------------------------------------

DTYPES = st.sampled_from([np.float32, np.float64, np.complex64, np.complex128, np.int8,
                          np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                          np.uint64])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 40), w=st.integers(1, 90), kh=st.integers(1, 12),
       kw=st.integers(1, 12), dtype=DTYPES, mode=st.sampled_from(MODES),
       boundary=st.sampled_from(BOUNDARIES), fi=st.integers(0, 1),
       seed=st.integers(0, 2**32 - 1))
def test_random_against_scipy(h, w, kh, kw, dtype, mode, boundary, fi, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, (h, w), dtype)
    k = random_array(rng, (kh, kw), dtype)
    f, g = FUNCS[fi]
    check(f, g, a, k, mode, boundary, a.flat[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_large_image_many_bands(dtype):
    rng = np.random.default_rng(9)
    a = random_array(rng, (300, 1100), dtype)
    k = random_array(rng, (7, 9), dtype)
    for f, g in FUNCS:
        check(f, g, a, k, "same", "symm")


@pytest.mark.parametrize(("dtype", "shape"), [(np.float32, (1100, 1024)),
                                             (np.float64, (760, 704))])
@pytest.mark.parametrize("kshape", [(3, 3), (5, 4)])
def test_large_outputs_with_streaming_stores(dtype, shape, kshape):
    """Outputs of at least 2 MiB per thread are written with non-temporal stores where
    their rows are whole cache lines apart (`same`; `full` rows are not): a cached strip
    up to the first line-aligned column, then streamed blocks (the Rust tests put the
    output at several offsets from a line). Small-integer data: exact where the kernel is
    3×3, which is direct at every level; 5×4 float64 takes the FFT path without SIMD."""
    rng = np.random.default_rng(10)
    a = rng.integers(-8, 8, size=shape).astype(dtype)
    k = rng.integers(-4, 4, size=kshape).astype(dtype)
    for f, g in FUNCS:
        for mode in ["same", "full"]:
            check(f, g, a, k, mode, exact=kshape == (3, 3))


# --- FFT path (float dtypes, large kernels) ------------------------------------------
# Kernels from about 13x13 up on images a few times larger go through the FFT
# (src/filter2d/tiling.rs; its tests check that the shapes below take that path). The
# error is bounded relative to the output's magnitude, not per element.

def assert_close_to_max(got, want):
    """Same dtype and shape; |got - want| <= 64 eps max|want| (no relative term, so
    near-zero outputs are held to the same absolute bound)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    ref = want.astype(np.complex128 if want.dtype.kind == "c" else np.float64)
    scale = float(np.abs(ref).max(initial=0))
    err = float(np.abs(got - ref).max(initial=0))
    assert err <= tolerance(want.dtype) * scale, (err, scale)


def reference(g, a, k, *args):
    """SciPy's direct result computed in float64 / complex128, cast to the input dtype."""
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    return g(a.astype(wide), k.astype(wide), *args)


FFT_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


@pytest.mark.parametrize("dtype", FFT_DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("fi", [0, 1])
def test_fft_path_every_mode_and_boundary(dtype, mode, boundary, fi):
    rng = np.random.default_rng(21)
    a = random_array(rng, (150, 170), dtype)
    k = random_array(rng, (21, 19), dtype)
    f, g = FUNCS[fi]
    fill = a.flat[3]
    got = f(a, k, mode, boundary, fill)
    want = reference(g, a, k, mode, boundary, fill)
    assert_close_to_max(got, want.astype(dtype))


@pytest.mark.parametrize("dtype", FFT_DTYPES)
@pytest.mark.parametrize(("shape", "kshape", "mode", "boundary"), [
    ((700, 530), (33, 29), "same", "symm"),   # several tiles, remainders on both axes
    ((611, 389), (25, 40), "full", "wrap"),
    ((389, 611), (40, 25), "valid", "fill"),
])
def test_fft_path_many_tiles_with_remainders(dtype, shape, kshape, mode, boundary):
    rng = np.random.default_rng(5)
    a = random_array(rng, shape, dtype)
    k = random_array(rng, kshape, dtype)
    for f, g in FUNCS:
        assert_close_to_max(f(a, k, mode, boundary), reference(g, a, k, mode, boundary).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ksize", [9, 11, 13, 15, 17, 23])
def test_kernels_around_the_crossover(dtype, ksize):
    """Just below (direct) and above (FFT) the crossover: both within the bound."""
    rng = np.random.default_rng(ksize)
    a = random_array(rng, (256, 256), dtype)
    k = random_array(rng, (ksize, ksize), dtype)
    for f, g in FUNCS:
        assert_close_to_max(f(a, k, "same"), reference(g, a, k, "same").astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_error_is_relative_to_output_magnitude(dtype):
    """Outputs spanning many magnitudes, and a zero-sum kernel on a near-constant image
    (outputs near zero): the error bound is 64 eps max|y|, nothing per element."""
    rng = np.random.default_rng(3)
    a = (1000.0 + rng.standard_normal((300, 280))).astype(dtype)
    k = rng.standard_normal((31, 31))
    k -= k.mean()
    k = k.astype(dtype)
    got = convrs.convolve2d(a, k, "valid")
    want = reference(ss.convolve2d, a, k, "valid")
    ref_scale = float(np.abs(a).max()) * float(np.abs(k).sum())
    err = float(np.abs(got - want).max())
    # Cancellation makes max|y| small; the error stays at eps times the sum's scale.
    assert err <= 64 * float(np.finfo(dtype).eps) * max(ref_scale, 1.0), (err, ref_scale)
    b = random_array(rng, (300, 280), dtype) * np.logspace(-3, 3, 280).astype(dtype)
    assert_close_to_max(convrs.convolve2d(b, k, "same"),
                        reference(ss.convolve2d, b, k, "same").astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("bad", [np.nan, np.inf, "huge"])
@pytest.mark.parametrize("where", [(40, 50), (159, 149)], ids=["early", "last"])
@pytest.mark.parametrize("threads", [1, 3])
def test_non_finite_or_huge_values_stay_local(dtype, bad, where, threads):
    """NaN/inf would spread over a whole FFT tile and huge values could overflow the
    spectrum: those inputs take the direct kernel, so NaN/inf stay where SciPy has them.
    The input is scanned for them in one chunk per thread: the bad value sits in the
    first or the last chunk."""
    convrs.set_num_threads(threads)
    rng = np.random.default_rng(8)
    a = random_array(rng, (160, 150), dtype)
    k = random_array(rng, (21, 21), dtype)
    if bad == "huge":
        a[where] = np.finfo(np.dtype(dtype)).max / 4
    else:
        a[where] = bad
    for f, g in FUNCS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = g(a, k, "same")
        got = f(a, k, "same")
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        assert_matches(got, want, a, k)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
def test_integers_never_take_the_fft_path(dtype):
    """Large kernels on integers: bit-exact wrap-around, as SciPy computes them."""
    rng = np.random.default_rng(4)
    a = random_array(rng, (200, 190), dtype)
    k = random_array(rng, (31, 31), dtype)
    for f, g in FUNCS:
        np.testing.assert_array_equal(f(a, k, "same"), g(a, k, "same"))
