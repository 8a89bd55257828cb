"""Bad input: every error of the contract's section 5 raises the right class with a message
naming the argument, quickly, without crashing; and inputs are never modified."""

from __future__ import annotations

import time

import numpy as np
import pytest

import convrs

X = np.ones((1, 4, 6, 6), np.float32)
W = np.ones((2, 4, 3, 3), np.float32)
B = np.ones(2, np.float32)


def conv(**kw):
    args = {"input": X, "weight": W, "bias": None}
    args.update(kw)
    return convrs.conv2d(args.pop("input"), args.pop("weight"), args.pop("bias"), **args)


# (id, call, exception class, message pattern naming the argument)
CONV2D_ERRORS = [
    # input / weight / bias shapes
    ("input-2d", lambda: conv(input=np.ones((6, 6))), ValueError, "input"),
    ("input-5d", lambda: conv(input=np.ones((1, 1, 4, 6, 6))), ValueError, "input"),
    ("input-scalar", lambda: conv(input=1.0), ValueError, "input"),
    (
        "input-ragged",
        lambda: conv(input=[[[1.0]], [[1.0, 2.0]]]),
        ValueError,
        "input must be array-like",
    ),
    (
        "weight-ragged",
        lambda: conv(weight=[[[[1.0]]], [[[1.0, 2.0]]]]),
        ValueError,
        "weight must be array-like",
    ),
    ("bias-ragged", lambda: conv(bias=[1.0, [2.0]]), ValueError, "bias must be array-like"),
    (
        "input-unconvertible",
        lambda: conv(input=_Unconvertible()),
        TypeError,
        "input must be array-like",
    ),
    ("input-none", lambda: conv(input=None), TypeError, "input"),
    ("weight-3d", lambda: conv(weight=np.ones((2, 4, 3))), ValueError, "weight"),
    ("weight-5d", lambda: conv(weight=np.ones((2, 4, 3, 3, 1))), ValueError, "weight"),
    ("weight-none", lambda: conv(weight=None), TypeError, "weight"),
    ("weight-channels", lambda: conv(weight=np.ones((2, 3, 3, 3))), ValueError, "weight"),
    (
        "weight-channels-grouped",
        lambda: conv(weight=np.ones((2, 4, 3, 3)), groups=2),
        ValueError,
        "weight",
    ),
    ("weight-empty-kernel", lambda: conv(weight=np.ones((2, 4, 0, 3))), ValueError, "weight"),
    ("bias-2d", lambda: conv(bias=np.ones((2, 1))), ValueError, "bias"),
    ("bias-scalar", lambda: conv(bias=1.0), ValueError, "bias"),
    ("bias-length", lambda: conv(bias=np.ones(3)), ValueError, "bias"),
    ("bias-empty", lambda: conv(bias=[]), ValueError, "bias"),
    # kernel does not fit
    (
        "kernel-larger-than-input",
        lambda: conv(weight=np.ones((2, 4, 7, 3))),
        ValueError,
        "weight kernel height",
    ),
    (
        "kernel-larger-than-padded-width",
        lambda: conv(weight=np.ones((2, 4, 1, 9)), padding=1),
        ValueError,
        "weight kernel width",
    ),
    ("dilated-kernel-too-large", lambda: conv(dilation=3), ValueError, "weight kernel"),
    (
        "kernel-larger-valid",
        lambda: conv(weight=np.ones((2, 4, 7, 7)), padding="valid"),
        ValueError,
        "weight kernel",
    ),
    # stride
    ("stride-0", lambda: conv(stride=0), ValueError, "stride"),
    ("stride-negative", lambda: conv(stride=(1, -2)), ValueError, "stride"),
    ("stride-triple", lambda: conv(stride=(1, 1, 1)), ValueError, "stride"),
    ("stride-single", lambda: conv(stride=[1]), ValueError, "stride"),
    ("stride-float", lambda: conv(stride=1.5), TypeError, "stride"),
    ("stride-float-in-pair", lambda: conv(stride=(1, 2.0)), TypeError, "stride"),
    ("stride-str", lambda: conv(stride="1"), TypeError, "stride"),
    ("stride-bool", lambda: conv(stride=True), TypeError, "stride"),
    ("stride-none", lambda: conv(stride=None), TypeError, "stride"),
    ("stride-huge", lambda: conv(stride=2**62), ValueError, "stride"),
    ("stride-beyond-int64", lambda: conv(stride=2**70), ValueError, "stride"),
    ("stride-large", lambda: conv(stride=2**40), ValueError, "stride must be at most"),
    # dilation
    ("dilation-0", lambda: conv(dilation=0), ValueError, "dilation"),
    ("dilation-negative", lambda: conv(dilation=(-1, 1)), ValueError, "dilation"),
    ("dilation-triple", lambda: conv(dilation=(1, 1, 1)), ValueError, "dilation"),
    ("dilation-float", lambda: conv(dilation=2.0), TypeError, "dilation"),
    ("dilation-large", lambda: conv(dilation=2**40), ValueError, "dilation must be at most"),
    # padding
    ("padding-negative", lambda: conv(padding=-1), ValueError, "padding"),
    ("padding-negative-pair", lambda: conv(padding=(0, -1)), ValueError, "padding"),
    ("padding-negative-pairs", lambda: conv(padding=((0, 0), (-1, 0))), ValueError, "padding"),
    ("padding-triple", lambda: conv(padding=(1, 1, 1)), ValueError, "padding"),
    ("padding-four", lambda: conv(padding=(1, 1, 1, 1)), ValueError, "padding"),
    ("padding-mixed", lambda: conv(padding=((1, 1), 1)), ValueError, "padding"),
    ("padding-pair-of-triples", lambda: conv(padding=((1, 1, 1), (1, 1))), ValueError, "padding"),
    ("padding-string", lambda: conv(padding="full"), ValueError, "padding"),
    ("padding-string-case", lambda: conv(padding="SAME"), ValueError, "padding"),
    ("padding-empty-string", lambda: conv(padding=""), ValueError, "padding"),
    ("padding-float", lambda: conv(padding=1.0), TypeError, "padding"),
    ("padding-none", lambda: conv(padding=None), TypeError, "padding"),
    ("padding-bool", lambda: conv(padding=False), TypeError, "padding"),
    ("padding-large", lambda: conv(padding=2**40), ValueError, "padding must be at most"),
    ("padding-huge", lambda: conv(padding=2**63), ValueError, "padding"),
    # groups
    ("groups-0", lambda: conv(groups=0), ValueError, "groups"),
    ("groups-negative", lambda: conv(groups=-2), ValueError, "groups"),
    (
        "groups-not-dividing-input",
        lambda: conv(weight=np.ones((3, 1, 3, 3)), groups=3),
        ValueError,
        "groups",
    ),
    (
        "groups-not-dividing-output",
        lambda: conv(weight=np.ones((3, 2, 3, 3)), groups=2),
        ValueError,
        "groups",
    ),
    ("groups-float", lambda: conv(groups=2.0), TypeError, "groups"),
    ("groups-pair", lambda: conv(groups=(1, 1)), TypeError, "groups"),
    ("groups-bool", lambda: conv(groups=True), TypeError, "groups"),
    ("groups-huge", lambda: conv(groups=2**62 - 1), ValueError, "groups must be at most"),
    # algorithm
    ("algorithm-name", lambda: conv(algorithm="fft"), ValueError, "algorithm"),
    ("algorithm-case", lambda: conv(algorithm="Direct"), ValueError, "algorithm"),
    ("algorithm-empty", lambda: conv(algorithm=""), ValueError, "algorithm"),
    ("algorithm-none", lambda: conv(algorithm=None), TypeError, "algorithm"),
    ("algorithm-int", lambda: conv(algorithm=1), TypeError, "algorithm"),
    ("algorithm-bytes", lambda: conv(algorithm=b"auto"), TypeError, "algorithm"),
    # dtypes
    ("input-complex", lambda: conv(input=X.astype(np.complex64)), TypeError, "input"),
    ("weight-complex", lambda: conv(weight=W.astype(np.complex128)), TypeError, "weight"),
    ("bias-complex", lambda: conv(bias=B.astype(np.complex64)), TypeError, "bias"),
    ("input-object", lambda: conv(input=X.astype(object)), TypeError, "input"),
    ("input-str", lambda: conv(input=X.astype(str)), TypeError, "input"),
    ("weight-bytes", lambda: conv(weight=W.astype("S3")), TypeError, "weight"),
    ("input-datetime", lambda: conv(input=X.astype("M8[s]")), TypeError, "input"),
    ("input-timedelta", lambda: conv(input=X.astype("m8[s]")), TypeError, "input"),
    ("input-void", lambda: conv(input=np.zeros((1, 4, 6, 6), "V4")), TypeError, "input"),
    ("input-structured", lambda: conv(input=np.zeros((1, 4, 6, 6), "f4,f4")), TypeError, "input"),
    (
        "input-longdouble",
        lambda: conv(input=X.astype(np.longdouble)),
        TypeError,
        "float32 or float64",
    ),
    ("bias-longdouble", lambda: conv(bias=B.astype(np.longdouble)), TypeError, "bias"),
    (
        "input-list-of-str",
        lambda: conv(input=[[[["a"]]]], weight=np.ones((1, 1, 1, 1))),
        TypeError,
        "input",
    ),
    # out=
    ("out-shape", lambda: conv(out=np.zeros((1, 2, 4, 5), np.float32)), ValueError, "out"),
    ("out-batch", lambda: conv(out=np.zeros((2, 2, 4, 4), np.float32)), ValueError, "out"),
    ("out-ndim", lambda: conv(out=np.zeros((2, 4, 4), np.float32)), ValueError, "out"),
    (
        "out-ndim-unbatched",
        lambda: conv(input=X[0], out=np.zeros((1, 2, 4, 4), np.float32)),
        ValueError,
        "out",
    ),
    ("out-dtype", lambda: conv(out=np.zeros((1, 2, 4, 4), np.float64)), TypeError, "out"),
    ("out-dtype-int", lambda: conv(out=np.zeros((1, 2, 4, 4), np.int32)), TypeError, "out"),
    (
        "out-byteswapped",
        lambda: conv(out=np.zeros((1, 2, 4, 4), ">f4" if np.little_endian else "<f4")),
        TypeError,
        "out",
    ),
    ("out-list", lambda: conv(out=np.zeros((1, 2, 4, 4), np.float32).tolist()), TypeError, "out"),
    (
        "out-non-contiguous",
        lambda: conv(out=np.zeros((1, 2, 4, 8), np.float32)[..., ::2]),
        ValueError,
        "out",
    ),
    (
        "out-fortran",
        lambda: conv(out=np.zeros((1, 2, 4, 4), np.float32, order="F")),
        ValueError,
        "out",
    ),
    (
        "out-read-only",
        lambda: conv(out=_read_only(np.zeros((1, 2, 4, 4), np.float32))),
        ValueError,
        "out",
    ),
]


class _Unconvertible:
    def __array__(self, *args, **kwargs):
        raise TypeError("cannot be an array")


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "call, exc, match", [c[1:] for c in CONV2D_ERRORS], ids=[c[0] for c in CONV2D_ERRORS]
)
def test_conv2d_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
def test_errors_do_not_depend_on_algorithm(algorithm):
    with pytest.raises(ValueError, match="weight kernel"):
        conv(weight=np.ones((2, 4, 7, 7)), algorithm=algorithm)
    with pytest.raises(ValueError, match="groups"):
        conv(groups=3, algorithm=algorithm)


# --- out= sharing memory with an input ----------------------------------------------------


def test_out_sharing_memory_with_input():
    buf = np.zeros(1 * 4 * 6 * 6 + 100, np.float32)
    x = buf[:144].reshape(1, 4, 6, 6)
    out = buf[100:].reshape(1, 4, 6, 6)  # overlaps the end of x
    w = np.ones((4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match="out.*input"):
        convrs.conv2d(x, w, out=out)
    with pytest.raises(ValueError, match="out.*input"):
        convrs.conv2d(out, w, out=out)


def test_out_sharing_memory_with_weight_or_bias():
    w = np.ones((4, 4, 1, 1), np.float32)
    x = np.ones((1, 4, 2, 2), np.float32)
    buf = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="out.*weight"):
        convrs.conv2d(x, buf[8:24].reshape(4, 4, 1, 1), out=buf[:16].reshape(1, 4, 2, 2))
    with pytest.raises(ValueError, match="out.*bias"):
        convrs.conv2d(x, w, buf[12:16], out=buf[:16].reshape(1, 4, 2, 2))


def test_out_sharing_memory_through_another_buffer():
    """A memoryview (or any buffer) of ``out`` is still the same memory."""
    out = np.zeros((1, 4, 2, 2), np.float32)
    w = np.ones((4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match="out.*input"):
        convrs.conv2d(memoryview(out), w, out=out)


def test_out_unbatched_sharing_memory():
    x = np.ones((4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="out.*input"):
        convrs.conv2d(x, np.ones((4, 4, 1, 1), np.float32), out=x)


def test_failed_call_leaves_out_untouched():
    out = np.full((1, 2, 4, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        conv(bias=np.ones(3, np.float32), out=out)
    with pytest.raises(ValueError):
        conv(algorithm="nope", out=out)
    np.testing.assert_array_equal(out, 7.0)


# --- im2col / col2im --------------------------------------------------------------------------

XI = np.ones((1, 2, 5, 5))
COLS = np.ones((1, 2 * 9, 9))  # im2col(XI, 3)

UNFOLD_ERRORS = [
    ("im2col-input-2d", lambda: convrs.im2col(np.ones((5, 5)), 3), ValueError, "input"),
    ("im2col-input-5d", lambda: convrs.im2col(np.ones((1, 1, 1, 5, 5)), 3), ValueError, "input"),
    ("im2col-input-complex", lambda: convrs.im2col(XI.astype(complex), 3), TypeError, "input"),
    ("im2col-input-object", lambda: convrs.im2col(XI.astype(object), 3), TypeError, "input"),
    ("im2col-input-str", lambda: convrs.im2col(XI.astype(str), 3), TypeError, "input"),
    (
        "im2col-input-longdouble",
        lambda: convrs.im2col(XI.astype(np.longdouble), 3),
        TypeError,
        "input",
    ),
    ("im2col-kernel-0", lambda: convrs.im2col(XI, 0), ValueError, "kernel_size"),
    ("im2col-kernel-negative", lambda: convrs.im2col(XI, (3, -1)), ValueError, "kernel_size"),
    ("im2col-kernel-triple", lambda: convrs.im2col(XI, (3, 3, 3)), ValueError, "kernel_size"),
    ("im2col-kernel-float", lambda: convrs.im2col(XI, 3.0), TypeError, "kernel_size"),
    ("im2col-kernel-none", lambda: convrs.im2col(XI, None), TypeError, "kernel_size"),
    ("im2col-kernel-too-large", lambda: convrs.im2col(XI, 6), ValueError, "kernel_size"),
    (
        "im2col-dilated-too-large",
        lambda: convrs.im2col(XI, 3, dilation=3),
        ValueError,
        "kernel_size",
    ),
    ("im2col-dilation-0", lambda: convrs.im2col(XI, 3, dilation=0), ValueError, "dilation"),
    ("im2col-padding-negative", lambda: convrs.im2col(XI, 3, padding=-1), ValueError, "padding"),
    ("im2col-padding-same", lambda: convrs.im2col(XI, 3, padding="same"), TypeError, "padding"),
    (
        "im2col-padding-pairs",
        lambda: convrs.im2col(XI, 3, padding=((1, 1), (1, 1))),
        TypeError,
        "padding",
    ),
    ("im2col-stride-0", lambda: convrs.im2col(XI, 3, stride=0), ValueError, "stride"),
    ("im2col-stride-bool", lambda: convrs.im2col(XI, 3, stride=True), TypeError, "stride"),
    ("col2im-cols-1d", lambda: convrs.col2im(np.ones(9), 5, 3), ValueError, "cols"),
    ("col2im-cols-4d", lambda: convrs.col2im(np.ones((1, 1, 18, 9)), 5, 3), ValueError, "cols"),
    ("col2im-cols-complex", lambda: convrs.col2im(COLS.astype(complex), 5, 3), TypeError, "cols"),
    ("col2im-cols-object", lambda: convrs.col2im(COLS.astype(object), 5, 3), TypeError, "cols"),
    (
        "col2im-rows-not-divisible",
        lambda: convrs.col2im(np.ones((1, 17, 9)), 5, 3),
        ValueError,
        "cols",
    ),
    (
        "col2im-blocks-mismatch",
        lambda: convrs.col2im(np.ones((1, 18, 8)), 5, 3),
        ValueError,
        "cols",
    ),
    ("col2im-output-size-0", lambda: convrs.col2im(COLS, 0, 3), ValueError, "output_size"),
    (
        "col2im-output-size-negative",
        lambda: convrs.col2im(COLS, (5, -5), 3),
        ValueError,
        "output_size",
    ),
    (
        "col2im-output-size-triple",
        lambda: convrs.col2im(COLS, (5, 5, 5), 3),
        ValueError,
        "output_size",
    ),
    ("col2im-output-size-float", lambda: convrs.col2im(COLS, 5.0, 3), TypeError, "output_size"),
    ("col2im-output-size-huge", lambda: convrs.col2im(COLS, 2**62, 3), ValueError, "output_size"),
    # The block count must not wrap around (2**80 blocks would look like a small number).
    (
        "col2im-blocks-overflow",
        lambda: convrs.col2im(COLS, (2**40, 2**40), 3),
        ValueError,
        "output_size is too large",
    ),
    ("col2im-kernel-0", lambda: convrs.col2im(COLS, 5, 0), ValueError, "kernel_size"),
    ("col2im-kernel-too-large", lambda: convrs.col2im(COLS, 2, 3), ValueError, "kernel_size"),
    (
        "col2im-dilation-negative",
        lambda: convrs.col2im(COLS, 5, 3, dilation=-1),
        ValueError,
        "dilation",
    ),
    (
        "col2im-padding-negative",
        lambda: convrs.col2im(COLS, 5, 3, padding=-2),
        ValueError,
        "padding",
    ),
    ("col2im-stride-0", lambda: convrs.col2im(COLS, 5, 3, stride=(1, 0)), ValueError, "stride"),
]


@pytest.mark.parametrize(
    "call, exc, match", [c[1:] for c in UNFOLD_ERRORS], ids=[c[0] for c in UNFOLD_ERRORS]
)
def test_unfold_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --- runtime ----------------------------------------------------------------------------------

RUNTIME_ERRORS = [
    ("threads-0", lambda: convrs.set_num_threads(0), ValueError, "n"),
    ("threads-negative", lambda: convrs.set_num_threads(-1), ValueError, "n"),
    ("threads-too-many", lambda: convrs.set_num_threads(10**6), ValueError, "n"),
    ("threads-beyond-int64", lambda: convrs.set_num_threads(2**70), ValueError, "n"),
    ("threads-very-negative", lambda: convrs.set_num_threads(-(2**70)), ValueError, "n"),
    ("threads-float", lambda: convrs.set_num_threads(2.0), TypeError, "n"),
    ("threads-str", lambda: convrs.set_num_threads("2"), TypeError, "n"),
    ("threads-none", lambda: convrs.set_num_threads(None), TypeError, "n"),
]


@pytest.mark.parametrize(
    "call, exc, match", [c[1:] for c in RUNTIME_ERRORS], ids=[c[0] for c in RUNTIME_ERRORS]
)
def test_runtime_errors(call, exc, match):
    before = convrs.get_num_threads()
    with pytest.raises(exc, match=match):
        call()
    assert convrs.get_num_threads() == before


# --- results too large to allocate --------------------------------------------------------

ONE = np.ones((1, 1, 1, 1), np.float32)

HUGE = [
    # 2**21 x 2**21 outputs from a 1x1 input: ~2**42 elements.
    ("conv2d-padding", lambda: convrs.conv2d(ONE, ONE, padding=2**20)),
    # 2**40 elements from a broadcast weight (no large input is materialised).
    (
        "conv2d-channels",
        lambda: convrs.conv2d(
            np.ones((1, 1, 1024, 1024), np.float32),
            np.broadcast_to(np.float32(1), (2**20, 1, 1, 1)),
        ),
    ),
    # Element count beyond what any address space holds.
    ("conv2d-overflow", lambda: convrs.conv2d(ONE, ONE, padding=2**31)),
    ("conv2d-batch", lambda: convrs.conv2d(np.broadcast_to(np.float32(1), (2**40, 1, 1, 1)), ONE)),
    ("im2col-padding", lambda: convrs.im2col(ONE, 1, padding=2**20)),
    (
        "im2col-rows",
        lambda: convrs.im2col(np.ones((1, 1, 2**10, 2**10), np.float32), 2**9, padding=2**9),
    ),
    (
        "col2im-output",
        lambda: convrs.col2im(np.ones((1, 1, 1), np.float32), 2**20, 1, stride=2**20),
    ),
    (
        "col2im-overflow",
        lambda: convrs.col2im(np.ones((1, 1, 1), np.float32), 2**31, 1, stride=2**31),
    ),
]


@pytest.mark.parametrize("call", [c[1] for c in HUGE], ids=[c[0] for c in HUGE])
def test_huge_results_fail_fast(call):
    start = time.perf_counter()
    with pytest.raises((MemoryError, ValueError)):
        call()
    assert time.perf_counter() - start < 2.0


# --- inputs are never modified ------------------------------------------------------------


def _snapshot(*arrays):
    return [None if a is None else np.array(a, copy=True) for a in arrays]


@pytest.mark.parametrize("read_only", [False, True], ids=["writeable", "read-only"])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
@pytest.mark.parametrize("case", ["plain", "grouped", "depthwise", "strided", "unbatched", "f64"])
def test_conv2d_does_not_modify_inputs(case, algorithm, read_only, rng):
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = {"padding": 1}
    if case == "grouped":
        w, kw = w[:, :2].copy(), {"padding": "same", "groups": 3}
    elif case == "depthwise":
        w, kw = w[:, :1].copy(), {"padding": 2, "groups": 6}
    elif case == "strided":
        x, kw = x[:, :, ::2, ::-1], {"stride": 2, "dilation": (1, 2), "padding": ((1, 0), (0, 3))}
    elif case == "unbatched":
        x = x[0]
    elif case == "f64":
        x, w, b = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    if read_only:
        for a in (x, w, b):
            a.flags.writeable = False
    before = _snapshot(x, w, b)
    y = convrs.conv2d(x, w, b, algorithm=algorithm, **kw)
    out = np.empty_like(y)
    convrs.conv2d(x, w, b, algorithm=algorithm, out=out, **kw)
    for a, a0 in zip((x, w, b), before):
        np.testing.assert_array_equal(a, a0)
        assert a.flags.writeable is not read_only


def test_unfold_does_not_modify_inputs(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    x.flags.writeable = False
    x0 = x.copy()
    cols = convrs.im2col(x, (2, 3), 2, 1, (1, 2))
    np.testing.assert_array_equal(x, x0)
    cols.flags.writeable = False
    c0 = cols.copy()
    convrs.col2im(cols, (7, 6), (2, 3), 2, 1, (1, 2))
    np.testing.assert_array_equal(cols, c0)


def test_failing_calls_do_not_modify_inputs():
    x, w = X.copy(), W.copy()
    for call in (
        lambda: convrs.conv2d(x, w, np.ones(5)),
        lambda: convrs.conv2d(x, w, groups=3),
        lambda: convrs.conv2d(x, w, out=x),
    ):
        with pytest.raises(ValueError):
            call()
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(w, W)
