"""conv2d on the CNN layers of issue 4 vs ONNX Runtime, PyTorch (if installed) and NumPy."""

from __future__ import annotations

import pytest

from convrs import _bench

from ._common import run


@pytest.mark.parametrize("peer", [p.name for p in _bench.CONV.peers])
@pytest.mark.parametrize("name", [w.name for w in _bench.CONV.workloads])
def test_conv2d(benchmark, record, note, budget, name, peer, threads):
    run(benchmark, record, budget, "conv2d", name, peer, threads)
    if name == "big" and peer in ("convrs", "onnxruntime"):
        # Issue 4: peak memory beyond input and output, measured in a fresh subprocess.
        line = _bench.rss_note(peer, threads)
        if line is not None:
            note(line)
