"""A conv2d call of a chosen duration, for the GIL and exit tests (also imported by their
subprocesses)."""

from __future__ import annotations

import time

import numpy as np

import convrs


def long_conv2d(target_seconds: float):
    """A zero-argument callable running one conv2d of about ``target_seconds`` on this
    machine, SIMD level and thread count. Compute-bound (11x11 kernel, 64 channels) and
    scaled by output rows, so it stays small in memory at any speed."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 64, 11, 11)).astype(np.float32)

    def make(rows: int):
        x = rng.standard_normal((1, 64, rows + 10, 110)).astype(np.float32)
        return lambda: convrs.conv2d(x, w)

    probe_rows = 4
    probe = make(probe_rows)
    probe()  # warm-up: pool start, page faults
    start = time.perf_counter()
    probe()
    per_row = max(time.perf_counter() - start, 1e-6) / probe_rows
    return make(int(min(max(target_seconds / per_row, 1), 20000)))
