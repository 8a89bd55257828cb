"""``python -m convrs``: what a convolution computes, shown with convrs itself, then timings.

``python -m convrs``          the tour and a short timing table (well under a minute)
``python -m convrs bench``    the full benchmark ratio tables (conv2d and convolve2d vs peers)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

import numpy as np

import convrs
from convrs import _bench

# The classic 5x5 binary image; the symmetric "X" kernel and an asymmetric one.
IMAGE = np.array([[1, 1, 1, 0, 0],
                  [0, 1, 1, 1, 0],
                  [0, 0, 1, 1, 1],
                  [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]])
X_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
ASYMMETRIC = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])


def _show(label: str, value: object) -> None:
    print(f"  {label:<67s} {value}")


def tour_one_pixel(rng: np.random.Generator) -> None:
    print("1. One output pixel of a convolution layer is one dot product")
    x = rng.standard_normal((5, 5))
    k = rng.standard_normal((3, 3))
    i, j = 1, 2
    patch = x[i:i + 3, j:j + 3]
    print(f"   5x5 image x, 3x3 kernel k; output pixel ({i}, {j}) sees the patch x[{i}:{i + 3}, "
          f"{j}:{j + 3}]")
    cols = convrs.im2col(x[np.newaxis], 3)  # (9, L): one column per receptive field
    wo = x.shape[1] - 2
    values = {
        "(a) sum of the element-wise product  (patch * k).sum()": (patch * k).sum(),
        "(b) dot product of the flattened pair  patch.ravel() @ k.ravel()":
            patch.ravel() @ k.ravel(),
        "(c) one matmul with im2col columns (k.ravel() @ im2col(x))[i*Wo+j]":
            (k.ravel() @ cols)[i * wo + j],
        "(d) convrs.conv2d(x[None, None], k[None, None])[0, 0, i, j]":
            convrs.conv2d(x[None, None], k[None, None])[0, 0, i, j],
        "    convrs.correlate2d(x, k, 'valid')[i, j]": convrs.correlate2d(x, k, "valid")[i, j],
    }
    for label, v in values.items():
        _show(label, f"{v:+.12f}")
    ref = values["(a) sum of the element-wise product  (patch * k).sum()"]
    spread = max(abs(v - ref) for v in values.values())
    print(f"   all equal (largest difference {spread:.1e}: float64 rounding order)\n")


def tour_depth(rng: np.random.Generator) -> None:
    print("2. With channels: the sums over height and width add up again over depth, plus a bias")
    c, kout = 3, 2
    x = rng.standard_normal((c, 5, 5))
    w = rng.standard_normal((kout, c, 3, 3))
    b = rng.standard_normal(kout)
    f, i, j = 1, 2, 0
    patch = x[:, i:i + 3, j:j + 3]
    per_channel = [(patch[ch] * w[f, ch]).sum() for ch in range(c)]
    y = convrs.conv2d(x, w, b)
    _show(f"per-channel sums for filter {f} at ({i}, {j})",
          ", ".join(f"{s:+.4f}" for s in per_channel))
    _show("their sum + bias", f"{sum(per_channel) + b[f]:+.12f}")
    _show("flattened (C*kH*kW) dot product + bias", f"{patch.ravel() @ w[f].ravel() + b[f]:+.12f}")
    _show("convrs.conv2d(x, w, b)[f, i, j]", f"{y[f, i, j]:+.12f}")
    layer = w.reshape(kout, -1) @ convrs.im2col(x, 3) + b[:, None]
    diff = np.abs(layer.reshape(y.shape) - y).max()
    print(f"   the whole layer is ONE matrix product: w.reshape({kout}, {c * 9}) @ im2col(x, 3) "
          f"(shape {convrs.im2col(x, 3).shape}) + b; max |difference| to conv2d = {diff:.1e}\n")


def tour_flip() -> None:
    print("3. Convolution flips the kernel; correlation (what CNN layers compute) does not")
    print("   image:\n" + "\n".join("     " + " ".join(map(str, r)) for r in IMAGE))
    sym = convrs.convolve2d(IMAGE, X_KERNEL, "valid")
    print(f"   symmetric kernel {X_KERNEL.tolist()}: flipping changes nothing,")
    print(f"     convolve2d(image, k, 'valid') = {sym.tolist()}  (dtype {sym.dtype})")
    conv = convrs.convolve2d(IMAGE, ASYMMETRIC, "valid")
    corr = convrs.correlate2d(IMAGE, ASYMMETRIC, "valid")
    print(f"   asymmetric kernel {ASYMMETRIC.tolist()}:")
    print(f"     convolve2d  = {conv.tolist()}")
    print(f"     correlate2d = {corr.tolist()}")
    p = tuple(int(v) for v in np.argwhere(conv != corr)[0])
    print(f"     at {p}: convolution gives {conv[p]}, correlation gives {corr[p]}")
    flipped = convrs.correlate2d(IMAGE, ASYMMETRIC[::-1, ::-1], "valid")
    print(f"   convolve2d(image, k) == correlate2d(image, k[::-1, ::-1]): "
          f"{bool(np.array_equal(conv, flipped))}")
    try:
        signal = _bench.import_peer("scipy.signal")
    except _bench.PeerUnavailable:
        print("   (SciPy is not installed: skipping the comparison with scipy.signal)\n")
        return
    same = np.array_equal(signal.convolve2d(IMAGE, ASYMMETRIC, "valid"), conv) and \
        np.array_equal(signal.correlate2d(IMAGE, ASYMMETRIC, "valid"), corr)
    print(f"   scipy.signal.convolve2d / correlate2d give the same: {same}\n")


QUICK_FILTER = ("512k3f32", "512k5f32", "512k11f32", "512k3f64", "512k5f64", "512k11f64")
QUICK_CONV = ("r3x3", "cifar", "r3x3f64")


def quick_timings() -> None:
    threads = convrs.get_num_threads()
    print(f"4. Timings: median of several runs, {threads} thread(s) for convrs, "
          f"simd_level={convrs.simd_level()}")
    try:
        _bench.import_peer("scipy.signal")
        peers = ["scipy.signal", "numpy"]
    except _bench.PeerUnavailable:
        print("   SciPy is not installed (pip install 'convrs[demo]'): NumPy reference only")
        peers = ["numpy"]
    print("   convrs.convolve2d vs scipy.signal.convolve2d and a NumPy shifted-slices sum:")
    rows = _bench.measure_suite(_bench.FILTER, [threads], names=QUICK_FILTER, peers=peers,
                                budget_s=0.25, blocks=1)
    print(_bench.format_table(_bench.FILTER, rows))
    print("\n   convrs.conv2d vs the NumPy formulation (im2col copy + one batched matmul):")
    rows = _bench.measure_suite(_bench.CONV, [threads], names=QUICK_CONV, peers=["numpy"],
                                budget_s=0.25, blocks=1)
    print(_bench.format_table(_bench.CONV, rows))
    notes = _bench.format_notes(rows)
    if notes:
        print(notes)
    for name in QUICK_CONV:
        print(f"   {name}: {_bench.CONV.workload(name).describe()}")
    print("   (× = peer time / convrs time; > 1 means convrs is faster. "
          "Full tables: python -m convrs bench)")


def tour() -> None:
    print(f"convrs {convrs.__version__}: 2-D convolution with a Rust core "
          f"(simd_level={convrs.simd_level()}, threads={convrs.get_num_threads()})\n")
    rng = np.random.default_rng(2024)
    tour_one_pixel(rng)
    tour_depth(rng)
    tour_flip()
    quick_timings()


def bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    env = _bench.bench_environ()
    if env is not None:  # OpenBLAS reads these when NumPy loads: rerun in a clean process
        return subprocess.call([sys.executable, "-m", "convrs", *argv], env=env)
    threads = [int(t) for t in args.threads.split(",")]
    print(_bench.machine_line())
    for key, suite in _bench.SUITES.items():
        if args.suite not in ("all", key):
            continue
        names = args.workloads.split(",") if args.workloads else None
        log = print if args.verbose else None
        rows = _bench.merge_runs([
            _bench.measure_suite(suite, threads, names=names, budget_s=args.budget, log=log)
            for _ in range(args.repeat)
        ])
        if not rows:
            continue
        runs = f", median of {args.repeat} runs" if args.repeat > 1 else ""
        print(f"\n### {suite.title}, threads {args.threads}{runs}\n")
        print(_bench.format_table(suite, rows))
        notes = _bench.format_notes(rows)
        if notes:
            print("\n" + notes)
        if suite is _bench.CONV and any(r.workload.name == "big" for r in rows):
            for peer in ("convrs", "onnxruntime"):
                line = _bench.rss_note(peer, threads[0])
                if line is not None:
                    print(line)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convrs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("bench", help="full benchmark ratio tables against the installed peers")
    b.add_argument("--suite", choices=["all", *_bench.SUITES], default="all")
    b.add_argument("--workloads", default="",
                   help="comma-separated workload names (default: all of the suite)")
    b.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    b.add_argument("--budget", type=float, default=0.5,
                   help="seconds of timed runs per measurement (default 0.5)")
    b.add_argument("--repeat", type=_positive_int, default=1,
                   help="run each suite this many times; every cell is the median of the runs")
    b.add_argument("-v", "--verbose", action="store_true", help="print every measurement")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "bench":
        known = {w.name for s in _bench.SUITES.values() for w in s.workloads}
        unknown = set(filter(None, args.workloads.split(","))) - known
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; known: {sorted(known)}")
        return bench(args, argv)
    tour()
    return 0


if __name__ == "__main__":
    sys.exit(main())
