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


def test_algorithms_suite_forces_each_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import convrs

    seen: list[str] = []
    real = convrs.conv2d

    def spy(*args, **kwargs):
        seen.append(kwargs.get("algorithm", "auto"))
        return real(*args, **kwargs)

    monkeypatch.setattr(convrs, "conv2d", spy)
    wl = _bench.ConvWorkload("tiny", 1, 4, 9, 9, 5, 3, 3, stride=1, padding=1)
    arrays = wl.arrays()
    results = {}
    for peer in _bench.ALGORITHMS.peers:
        with peer.prepare(wl, arrays, 1) as fn:
            results[peer.name] = fn()
    assert seen == ["auto", "direct", "im2col", "winograd"]
    scale = np.abs(results["convrs"]).max()
    for name in ("direct", "im2col", "winograd"):
        # Winograd's float32 error is a few 1e-6 of the largest output, not of each.
        np.testing.assert_allclose(results[name], results["convrs"], atol=1e-5 * scale)
    # Winograd has no column for layers it does not take.
    strided = _bench.ConvWorkload("tiny-s2", 1, 4, 9, 9, 5, 3, 3, stride=2, padding=1)
    winograd = next(p for p in _bench.ALGORITHMS.peers if p.name == "winograd")
    with pytest.raises(_bench.PeerUnavailable), winograd.prepare(strided, strided.arrays(), 1):
        pass
    # The subject's column is named after auto, each ratio is forced time / auto time.
    table = _bench.format_table(_bench.ALGORITHMS,
                                [_bench.Row(wl, 1, {"convrs": 1.0, "im2col": 1.4})])
    assert "| auto ms |" in table.splitlines()[0]
    assert "| 1400 (1.40×) |" in table
