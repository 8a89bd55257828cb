"""conv2d's algorithms forced ("direct", "im2col") against its own choice ("auto") on the
CNN layers of issue 4: each must stay within 1.5x of auto where auto does not choose it."""

from __future__ import annotations

import pytest

from convrs import _bench

from ._common import run


@pytest.mark.parametrize("peer", [p.name for p in _bench.ALGORITHMS.peers])
@pytest.mark.parametrize("name", [w.name for w in _bench.ALGORITHMS.workloads])
def test_algorithms(benchmark, record, budget, name, peer, threads):
    run(benchmark, record, budget, "algorithms", name, peer, threads)
