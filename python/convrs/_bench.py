"""Benchmark workloads, peers, timing and the ratio tables.

One module serves both ``benches/`` (pytest-benchmark) and ``python -m convrs bench``, so the
workload definitions, the peer set-ups and the table live in one place. Peers are optional:
one that is not installed (or cannot run a workload) is reported as unavailable, never as a
failure. Every peer's result is checked against convrs's before it is timed, so a table never
compares a fast wrong answer.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import convrs

Call = Callable[[], Any]

#: Set by the machines this project runs on; they slow OpenBLAS (NumPy's matmul peer) down.
#: Only benchmark processes drop them (see :func:`bench_environ`), never tests or CI.
BENCH_ENV_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: Sustained all-core AVX-512 clock assumed for the "% of FMA peak" column (GHz), measured
#: with an FMA microkernel on the 2-vCPU AMD EPYC (Zen 5) machines this project is developed
#: on. Override with ``CONVRS_PEAK_GHZ`` on another machine.
DEFAULT_PEAK_GHZ = 4.06

# Useful FLOP per cycle per core (2 per multiply-add) for (simd level, dtype): two FMA pipes
# times the vector lanes times 2.
_FLOP_PER_CYCLE = {
    ("avx512", "float32"): 64, ("avx512", "float64"): 32,
    ("avx2", "float32"): 32, ("avx2", "float64"): 16,
    ("neon", "float32"): 16, ("neon", "float64"): 8,
    ("scalar", "float32"): 4, ("scalar", "float64"): 4,
}


class PeerUnavailable(Exception):
    """The peer is not installed or does not support this workload."""


def bench_environ() -> dict[str, str] | None:
    """The environment a benchmark process should run with, or None if it already does."""
    if not any(k in os.environ for k in BENCH_ENV_UNSET):
        return None
    return {k: v for k, v in os.environ.items() if k not in BENCH_ENV_UNSET}


def import_peer(name: str) -> Any:
    """The module ``name``, or :class:`PeerUnavailable` (typed ``Any``: peers ship no stubs)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PeerUnavailable(f"{name} not installed") from None


def peak_gflops(dtype: str, threads: int) -> float:
    """Assumed FMA peak in GFLOP/s for ``threads`` cores at convrs's SIMD level."""
    ghz = float(os.environ.get("CONVRS_PEAK_GHZ", DEFAULT_PEAK_GHZ))
    return _FLOP_PER_CYCLE.get((convrs.simd_level(), dtype), 4) * ghz * threads


# ----------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class ConvWorkload:
    """A ``conv2d`` layer: NCHW input, weights and bias, square stride and padding."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dtype: str = "float32"

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.h + 2 * self.padding - self.kh) // self.stride + 1,
                (self.w + 2 * self.padding - self.kw) // self.stride + 1)

    @property
    def flops(self) -> float:
        ho, wo = self.out_hw
        return 2.0 * self.n * self.k * ho * wo * (self.c // self.groups) * self.kh * self.kw

    def describe(self) -> str:
        s = f"N={self.n} C={self.c} {self.h}x{self.w} K={self.k} {self.kh}x{self.kw}"
        if self.stride != 1:
            s += f" s{self.stride}"
        if self.padding:
            s += f" p{self.padding}"
        if self.groups != 1:
            s += f" g{self.groups}"
        return s + f" {self.dtype}"

    def arrays(self, seed: int = 0) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        dt = np.dtype(self.dtype)
        x = rng.standard_normal((self.n, self.c, self.h, self.w), dtype=dt)
        w = rng.standard_normal((self.k, self.c // self.groups, self.kh, self.kw), dtype=dt)
        b = rng.standard_normal(self.k, dtype=dt)
        return x, w, b


@dataclass(frozen=True)
class FilterWorkload:
    """``convolve2d(image, kernel, mode="same")`` on a square image with a square kernel."""

    name: str
    size: int
    k: int
    dtype: str

    @property
    def flops(self) -> float:
        return 2.0 * self.size * self.size * self.k * self.k

    def describe(self) -> str:
        return f"{self.size}x{self.size} k={self.k} same {self.dtype}"

    def arrays(self, seed: int = 0) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        dt = np.dtype(self.dtype)
        shape = (self.size, self.size)
        if dt.kind in "iu":
            # Small values: no peer overflows, so every peer's answer can be compared exactly.
            return (rng.integers(0, 4, shape).astype(dt),
                    rng.integers(0, 2, (self.k, self.k)).astype(dt))
        return rng.standard_normal(shape, dtype=dt), rng.standard_normal((self.k, self.k), dtype=dt)


CONV_WORKLOADS: tuple[ConvWorkload, ...] = (
    ConvWorkload("conv1", 1, 3, 224, 224, 64, 7, 7, stride=2, padding=3),
    ConvWorkload("r3x3", 1, 64, 56, 56, 64, 3, 3, padding=1),
    ConvWorkload("r3x3b8", 8, 64, 56, 56, 64, 3, 3, padding=1),
    ConvWorkload("deep", 1, 256, 14, 14, 256, 3, 3, padding=1),
    ConvWorkload("pw", 1, 64, 56, 56, 256, 1, 1),
    ConvWorkload("dw", 1, 256, 56, 56, 256, 3, 3, padding=1, groups=256),
    ConvWorkload("s2", 1, 128, 56, 56, 128, 3, 3, stride=2, padding=1),
    ConvWorkload("cifar", 64, 3, 32, 32, 16, 5, 5, padding=2),
    ConvWorkload("r3x3f64", 1, 64, 56, 56, 64, 3, 3, padding=1, dtype="float64"),
    ConvWorkload("big", 1, 64, 1024, 1024, 64, 3, 3, padding=1),
)

FILTER_WORKLOADS: tuple[FilterWorkload, ...] = tuple(
    FilterWorkload(f"{size}k{k}{tag}", size, k, dtype)
    for dtype, tag in (("float32", "f32"), ("float64", "f64"))
    for size, k in ((512, 3), (512, 5), (512, 11), (2048, 3), (2048, 31))
) + (FilterWorkload("512k5i32", 512, 5, "int32"), FilterWorkload("512k5u8", 512, 5, "uint8"))


# ----------------------------------------------------------------------------- references


def numpy_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
                 padding: int = 0, groups: int = 1) -> np.ndarray:
    """The NumPy formulation of a conv layer: an im2col copy and one batched matmul."""
    n = x.shape[0]
    k, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (n, c, ho, wo, kh, kw)
    ho, wo = win.shape[2:4]
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, groups, cg * kh * kw, ho * wo)
    y = (w.reshape(groups, k // groups, cg * kh * kw) @ cols).reshape(n, k, ho, wo)
    return y if b is None else y + b[:, None, None]


def numpy_convolve2d_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``convolve2d(image, kernel, "same")`` as a sum of shifted slices (odd kernels)."""
    kh, kw = kernel.shape
    h, w = image.shape
    padded = np.pad(image, ((kh // 2, kh // 2), (kw // 2, kw // 2)))
    flipped = kernel[::-1, ::-1]
    out = np.zeros_like(image)
    for r in range(kh):
        for s in range(kw):
            out += flipped[r, s] * padded[r:r + h, s:s + w]
    return out


# ----------------------------------------------------------------------------- peers


@contextlib.contextmanager
def _convrs_threads(threads: int) -> Iterator[None]:
    old = convrs.get_num_threads()
    convrs.set_num_threads(threads)
    try:
        yield
    finally:
        convrs.set_num_threads(old)


@contextlib.contextmanager
def _blas_threads(threads: int) -> Iterator[None]:
    # Without threadpoolctl NumPy's BLAS would run at its own thread count, not ``threads``.
    threadpoolctl = import_peer("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        yield


@contextlib.contextmanager
def _conv_convrs(wl: ConvWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    x, w, b = a
    with _convrs_threads(threads):
        yield lambda: convrs.conv2d(x, w, b, wl.stride, wl.padding, groups=wl.groups)


def _conv_algorithm(algorithm: str) -> Callable[..., contextlib.AbstractContextManager[Call]]:
    """convrs with ``algorithm`` forced: the peers of auto's own choice."""

    @contextlib.contextmanager
    def peer(wl: ConvWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
        if algorithm == "winograd" and ((wl.kh, wl.kw) != (3, 3) or wl.stride != 1):
            raise PeerUnavailable("winograd takes 3x3 kernels at stride 1 only")
        x, w, b = a
        with _convrs_threads(threads):
            yield lambda: convrs.conv2d(x, w, b, wl.stride, wl.padding, groups=wl.groups,
                                        algorithm=algorithm)

    return peer


@contextlib.contextmanager
def _conv_numpy(wl: ConvWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    x, w, b = a
    cols_bytes = wl.n * wl.c * wl.kh * wl.kw * wl.out_hw[0] * wl.out_hw[1] * x.itemsize
    if cols_bytes > 1 << 30:
        raise PeerUnavailable(f"its im2col matrix would take {cols_bytes / 2**30:.1f} GiB")
    with _blas_threads(threads):
        yield lambda: numpy_conv2d(x, w, b, wl.stride, wl.padding, wl.groups)


@contextlib.contextmanager
def _conv_onnxruntime(wl: ConvWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    onnx = import_peer("onnx")
    ort = import_peer("onnxruntime")
    x, w, b = a
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], kernel_shape=[wl.kh, wl.kw], strides=[wl.stride] * 2,
        pads=[wl.padding] * 4, group=wl.groups,
    )
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, [wl.n, wl.k, *wl.out_hw])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for every onnxruntime release that knows opset 17
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ORT's workers otherwise spin for work after every run, and on a 2-core machine keep
    # stealing the core that the next measurement's second thread needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 (ORT's own exception types; e.g. no f64 Conv)
        reason = str(exc).splitlines()[0].rsplit(" : ", 1)[-1]  # drop ORT's status prefix
        raise PeerUnavailable(f"onnxruntime: {reason[:100]}") from None
    feed = {"x": x}
    yield lambda: sess.run(None, feed)[0]


@contextlib.contextmanager
def _conv_torch(wl: ConvWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    torch = import_peer("torch")
    xt, wt, bt = (torch.from_numpy(v) for v in a)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)

    def call() -> Any:
        with torch.inference_mode():
            return torch.nn.functional.conv2d(xt, wt, bt, wl.stride, wl.padding, 1, wl.groups)

    try:
        yield lambda: call().numpy()
    finally:
        torch.set_num_threads(old)


def _float_only(wl: FilterWorkload, what: str) -> None:
    if np.dtype(wl.dtype).kind != "f":
        raise PeerUnavailable(f"{what} is for floats only")


@contextlib.contextmanager
def _filter_convrs(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    image, kernel = a
    with _convrs_threads(threads):
        yield lambda: convrs.convolve2d(image, kernel, mode="same")


@contextlib.contextmanager
def _filter_scipy(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    signal = import_peer("scipy.signal")
    image, kernel = a
    yield lambda: signal.convolve2d(image, kernel, mode="same")


@contextlib.contextmanager
def _filter_numpy(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    image, kernel = a
    yield lambda: numpy_convolve2d_same(image, kernel)


@contextlib.contextmanager
def _filter_cv2(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    cv2 = import_peer("cv2")
    if wl.dtype not in ("float32", "float64", "uint8"):
        raise PeerUnavailable(f"cv2.filter2D has no {wl.dtype} images")
    image, kernel = a
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float64)
    old = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield lambda: cv2.filter2D(image, -1, flipped, borderType=cv2.BORDER_CONSTANT)
    finally:
        cv2.setNumThreads(old)


@contextlib.contextmanager
def _filter_ndimage(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
    ndimage = import_peer("scipy.ndimage")
    image, kernel = a
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    yield lambda: ndimage.correlate(image, flipped, mode="constant")


def _fft_peer(func: str) -> Callable[..., contextlib.AbstractContextManager[Call]]:
    @contextlib.contextmanager
    def peer(wl: FilterWorkload, a: tuple[np.ndarray, ...], threads: int) -> Iterator[Call]:
        _float_only(wl, func)
        signal = import_peer("scipy.signal")
        fft = import_peer("scipy.fft")
        image, kernel = a
        f = getattr(signal, func)
        with fft.set_workers(threads):
            yield lambda: f(image, kernel, mode="same")

    return peer


@dataclass(frozen=True)
class Peer:
    """How to run one implementation: ``prepare(workload, arrays, threads)`` is a context
    manager yielding the call to time. ``threaded`` peers are timed per thread count."""

    name: str
    prepare: Callable[..., contextlib.AbstractContextManager[Call]]
    threaded: bool = True


@dataclass(frozen=True)
class Suite:
    title: str
    workloads: tuple[Any, ...]
    peers: tuple[Peer, ...]  # the first one is convrs, the subject of every ratio
    subject: str = "convrs"  # its column's name

    def workload(self, name: str) -> Any:
        return next(w for w in self.workloads if w.name == name)


CONV = Suite("conv2d (CNN layers, NCHW, weights and bias)", CONV_WORKLOADS, (
    Peer("convrs", _conv_convrs),
    Peer("onnxruntime", _conv_onnxruntime),
    Peer("torch", _conv_torch),
    Peer("numpy", _conv_numpy),
))

FILTER = Suite("convolve2d (single channel, mode='same')", FILTER_WORKLOADS, (
    Peer("convrs", _filter_convrs),
    Peer("scipy.signal", _filter_scipy, threaded=False),
    Peer("cv2", _filter_cv2),
    Peer("ndimage", _filter_ndimage, threaded=False),
    Peer("fftconvolve", _fft_peer("fftconvolve")),
    Peer("oaconvolve", _fft_peer("oaconvolve")),
    Peer("numpy", _filter_numpy, threaded=False),
))

# Issue 4: each algorithm forced must stay within 1.5x of auto where auto does not choose it
# (a ratio here is the forced algorithm's time over auto's: <= 1.5 meets the target, and a
# ratio below 1 would mean auto chose the slower one).
ALGORITHMS = Suite("conv2d algorithms forced vs auto", CONV_WORKLOADS, (
    Peer("convrs", _conv_convrs),
    Peer("direct", _conv_algorithm("direct")),
    Peer("im2col", _conv_algorithm("im2col")),
    Peer("winograd", _conv_algorithm("winograd")),
), subject="auto")

SUITES = {"conv2d": CONV, "algorithms": ALGORITHMS, "convolve2d": FILTER}


# ----------------------------------------------------------------------------- checking, timing


def agrees(result: Any, expected: np.ndarray) -> bool:
    """Whether a peer's result matches convrs's: exact for integers, else to a tolerance
    relative to the output's magnitude (FFT peers err by a fraction of the largest value)."""
    result = np.asarray(result)
    if result.shape != expected.shape:
        return False
    if expected.dtype.kind in "iu":
        return bool(np.array_equal(result, expected))
    tol = 1e-3 if expected.dtype == np.float32 else 1e-9
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    return bool(np.max(np.abs(result - expected), initial=0.0) <= tol * scale)


def rounds_for(first_call_s: float, budget_s: float, max_rounds: int = 200) -> int:
    """How many timed runs fit the budget after a first call of ``first_call_s`` (>= 3 for a
    meaningful median, 1 for calls slower than the budget)."""
    if first_call_s >= budget_s:
        return 1
    return max(3, min(max_rounds, int(budget_s / max(first_call_s, 1e-9))))


def timed(fn: Call) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def time_call(fn: Call, first_call_s: float, budget_s: float = 0.5) -> float:
    """Median wall time of ``fn`` in seconds over the rounds that fit the budget, after a
    first (warm-up) call that took ``first_call_s``."""
    return statistics.median(timed(fn)[1] for _ in range(rounds_for(first_call_s, budget_s)))


@dataclass
class Row:
    """One workload at one thread count: seconds per peer, or why it was not measured."""

    workload: Any
    threads: int
    seconds: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


#: Pause before each timed block so other pools' spinning workers go to sleep (OpenBLAS
#: spins for ~2**28 cycles, about 0.07 s, after a call; convrs's helpers for 2 ms).
IDLE_BETWEEN_PEERS_S = 0.2

#: Untimed calls before each timed block, after that pause. On a VM the idle vCPUs sleep
#: and come back slowly: measured here, a 2-thread 512² 5×5 convolve2d took 100-400 µs
#: per call for the first ~5 ms after 0.2 s idle, then 75 µs (1 thread: 141 µs), and
#: other runs stayed 20 % slow for 80 ms: blocks of a few ms (30 rounds of a fast call)
#: timed the wake-up instead of the peer.
WARM_UP_S = 0.1


def warm_up(fn: Call, seconds: float = WARM_UP_S) -> None:
    """Untimed calls of ``fn`` for about ``seconds`` (a single one when it takes that
    long)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()


#: Timed blocks per peer, taken in turn with the other peers of the row: a slow spell of
#: the machine (a busy VM neighbour, a late vCPU) then spoils one block of every peer
#: instead of one peer's whole measurement, and the median of the blocks drops it.
BLOCKS = 3


def measure_suite(suite: Suite, threads_list: Sequence[int], names: Sequence[str] | None = None,
                  peers: Sequence[str] | None = None, budget_s: float = 0.5,
                  log: Callable[[str], None] | None = None, blocks: int = BLOCKS) -> list[Row]:
    """Time every (workload, thread count, peer); single-threaded peers are timed once.

    Each peer's time is the median of ``blocks`` blocks (one for calls slower than the
    budget), each the median of the runs that fit ``budget_s / blocks``; the peers of a
    row take their blocks in turn."""
    rows: list[Row] = []
    once: dict[tuple[str, str], float] = {}
    for wl in suite.workloads:
        if names is not None and wl.name not in names:
            continue
        arrays = wl.arrays()
        expected: np.ndarray | None = None
        for threads in threads_list:
            row = Row(wl, threads)
            rows.append(row)
            with contextlib.ExitStack() as stack:
                timing: dict[str, tuple[Call, float]] = {}
                for peer in suite.peers:
                    if peers is not None and peer.name != "convrs" and peer.name not in peers:
                        continue
                    if not peer.threaded and (wl.name, peer.name) in once:
                        row.seconds[peer.name] = once[wl.name, peer.name]
                        continue
                    try:
                        fn = stack.enter_context(peer.prepare(wl, arrays, threads))
                        # The previous peer's pool (OpenBLAS, ONNX Runtime) busy-waits for
                        # a while after its last call; on a 2-core machine that would
                        # steal the core this peer's second thread needs.
                        time.sleep(IDLE_BETWEEN_PEERS_S)
                        result, first = timed(fn)  # checked, and the warm-up
                        if expected is None:
                            expected = np.asarray(result)  # convrs comes first
                        elif not agrees(result, expected):
                            raise PeerUnavailable("its result differs from convrs's")
                    except PeerUnavailable as exc:
                        row.missing[peer.name] = str(exc)
                        continue
                    timing[peer.name] = (fn, first)
                times: dict[str, list[float]] = {name: [] for name in timing}
                for block in range(blocks):
                    for name, (fn, first) in timing.items():
                        if block > 0 and first >= budget_s:
                            continue
                        if block > 0 or len(timing) > 1:
                            time.sleep(IDLE_BETWEEN_PEERS_S)
                        warm_up(fn)
                        times[name].append(time_call(fn, first, budget_s / blocks))
            for name, block_times in times.items():
                row.seconds[name] = statistics.median(block_times)
                if not next(p for p in suite.peers if p.name == name).threaded:
                    once[wl.name, name] = row.seconds[name]
                if log is not None:
                    log(f"  {wl.name:10s} {threads}T {name:12s} "
                        f"{row.seconds[name] * 1e3:10.3f} ms")
    return rows


def merge_runs(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """Rows of several runs of the same suite merged: per workload, thread count and peer,
    the median of the runs' times. A slow spell of the machine that outlasts a row (a busy
    VM neighbour for minutes) then spoils one run of that cell, not the table."""
    merged: list[Row] = []
    for rows in zip(*runs, strict=True):
        first = rows[0]
        row = Row(first.workload, first.threads, missing=dict(first.missing))
        for name in first.seconds:
            row.seconds[name] = statistics.median(r.seconds[name] for r in rows
                                                  if name in r.seconds)
        merged.append(row)
    return merged


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}"


def format_table(suite: Suite, rows: Sequence[Row]) -> str:
    """A Markdown table: convrs's time, GF/s and % of FMA peak, then for every peer its time
    and the ratio peer time / convrs time (> 1: convrs is faster).

    GF/s counts the direct algorithm's multiply-adds (2 per kernel tap and output), so for
    large float kernels, which convrs computes by FFT, it is an effective rate and the
    "% peak" column can exceed 100."""
    peers = [p.name for p in suite.peers[1:] if any(p.name in r.seconds for r in rows)]
    head = ["workload", "thr", f"{suite.subject} ms", "eff. GF/s", "% peak", *(f"{p} ms (×)" for p in peers),
            "best peer ×"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ours = r.seconds.get("convrs")
        if ours is None:
            continue
        gfs = r.workload.flops / ours / 1e9
        peak = 100 * gfs / peak_gflops(r.workload.dtype, r.threads) \
            if r.workload.dtype.startswith("float") else None
        cells = [r.workload.name, str(r.threads), _ms(ours), f"{gfs:.1f}",
                 "" if peak is None else f"{peak:.0f}"]
        for p in peers:
            s = r.seconds.get(p)
            cells.append("—" if s is None else f"{_ms(s)} ({s / ours:.2f}×)")
        others = [s for p, s in r.seconds.items() if p != "convrs"]
        cells.append(f"{min(others) / ours:.2f}×" if others else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_notes(rows: Sequence[Row]) -> str:
    """The peers that were not measured, and why (once per distinct reason)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for p, why in r.missing.items():
            names = seen.setdefault((p, why), [])
            if r.workload.name not in names:
                names.append(r.workload.name)
    return "\n".join(f"- {p} not measured on {', '.join(n)}: {why}" for (p, why), n in seen.items())


def machine_line() -> str:
    """What a table was measured on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas_env = [k for k in BENCH_ENV_UNSET if k in os.environ]
    return (f"convrs {convrs.__version__}, simd_level={convrs.simd_level()}, CPUs={cpus}, "
            f"numpy {np.__version__}, python {sys.version.split()[0]}, "
            f"{' '.join(blas_env) + ' set' if blas_env else 'OPENBLAS_* unset'}, "
            f"peak assumed {peak_gflops('float32', 1):.0f} GF/s f32 / "
            f"{peak_gflops('float64', 1):.0f} f64 per core "
            f"({os.environ.get('CONVRS_PEAK_GHZ', DEFAULT_PEAK_GHZ)} GHz x FMA width); "
            "eff. GF/s = direct-algorithm FLOPs / time (FFT paths can exceed 100 % peak)")


# ----------------------------------------------------------------------------- peak memory

_RSS_CHILD = """
import sys
from convrs import _bench
print(_bench._extra_rss_here(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field_name} in /proc/self/status")


def _extra_rss_here(workload: str, peer: str, threads: int) -> int:
    """Bytes of peak RSS one call adds beyond its inputs and its output (in this process)."""
    wl = CONV.workload(workload)
    arrays = wl.arrays()
    prepare = next(p for p in CONV.peers if p.name == peer).prepare
    with prepare(wl, arrays, threads) as fn:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
        before = _status_kib("VmRSS")
        result = np.asarray(fn())
        peak = _status_kib("VmHWM")
    return peak * 1024 - before * 1024 - result.nbytes


def extra_rss(workload: str, peer: str = "convrs", threads: int = 1) -> int | None:
    """Peak memory beyond input and output of one call, measured in a fresh subprocess (Linux
    only); None when it cannot be measured."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, workload, peer, str(threads)],
                          capture_output=True, text=True, check=False,
                          env=bench_environ())
    if proc.returncode != 0:
        return None
    return int(proc.stdout.strip().splitlines()[-1])


def rss_note(peer: str, threads: int) -> str | None:
    """The closing-note line for ``big``'s peak memory beyond input and output."""
    extra = extra_rss("big", peer, threads)
    if extra is None:
        return None
    return (f"- big, {peer}, {threads} thread(s): peak RSS beyond input and output "
            f"{extra / 2**20:.1f} MiB")
