"""convolve2d (mode 'same') on the images of issue 3 vs SciPy, OpenCV and NumPy."""

from __future__ import annotations

import pytest

from convrs import _bench

from ._common import run


@pytest.mark.parametrize("peer", [p.name for p in _bench.FILTER.peers])
@pytest.mark.parametrize("name", [w.name for w in _bench.FILTER.workloads])
def test_convolve2d(benchmark, record, budget, name, peer, threads):
    run(benchmark, record, budget, "convolve2d", name, peer, threads)
