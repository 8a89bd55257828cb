"""The benchmark's bookkeeping (no timing): merging repeated runs into one table."""

from __future__ import annotations

import pytest

from convrs import _bench


def _row(name: str, threads: int, **seconds: float) -> _bench.Row:
    return _bench.Row(_bench.SUITES["conv2d"].workload(name), threads, dict(seconds))


def test_merge_runs_takes_the_median_of_each_cell() -> None:
    runs = [
        [_row("r3x3", 1, convrs=2.0, onnxruntime=3.0), _row("r3x3", 2, convrs=1.0)],
        [_row("r3x3", 1, convrs=9.0, onnxruntime=2.0), _row("r3x3", 2, convrs=1.2)],
        [_row("r3x3", 1, convrs=2.2, onnxruntime=2.5), _row("r3x3", 2, convrs=0.8)],
    ]
    runs[0][1].missing["onnxruntime"] = "not installed"
    merged = _bench.merge_runs(runs)
    assert [(r.workload.name, r.threads) for r in merged] == [("r3x3", 1), ("r3x3", 2)]
    assert merged[0].seconds == {"convrs": 2.2, "onnxruntime": 2.5}
    assert merged[1].seconds == {"convrs": 1.0}
    assert merged[1].missing == {"onnxruntime": "not installed"}
    # The inputs are left as they were.
    assert runs[1][0].seconds["convrs"] == 9.0


def test_merge_runs_of_one_run_is_that_run() -> None:
    rows = [_row("deep", 1, convrs=2.5, numpy=3.0)]
    assert _bench.merge_runs([rows])[0].seconds == {"convrs": 2.5, "numpy": 3.0}


def test_merge_runs_refuses_runs_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        _bench.merge_runs([[_row("r3x3", 1, convrs=1.0)], []])
