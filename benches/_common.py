"""The body shared by every benchmark: prepare the peer, check it, time it, record it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pytest

from convrs import _bench


@lru_cache(maxsize=4)
def _arrays(suite: str, name: str) -> tuple[np.ndarray, ...]:
    return _bench.SUITES[suite].workload(name).arrays()


@lru_cache(maxsize=4)
def _expected(suite: str, name: str) -> np.ndarray:
    s = _bench.SUITES[suite]
    with s.peers[0].prepare(s.workload(name), _arrays(suite, name), 1) as fn:
        return np.asarray(fn())


def run(benchmark: Any, record: Any, budget: float, suite: str, name: str, peer: str,
        threads: int) -> None:
    s = _bench.SUITES[suite]
    p = next(p for p in s.peers if p.name == peer)
    if threads != 1 and not p.threaded:
        pytest.skip(f"{peer} is single-threaded: measured at 1 thread")
    wl = s.workload(name)
    benchmark.group = f"{suite} {name} {threads}T"
    benchmark.extra_info.update(gflop=wl.flops / 1e9, threads=threads)
    try:
        with p.prepare(wl, _arrays(suite, name), threads) as fn:
            # The first call, checked against convrs, is the warm-up and sizes the rounds.
            result, first = _bench.timed(fn)
            assert _bench.agrees(result, _expected(suite, name)), f"{peer} disagrees with convrs"
            _bench.warm_up(fn)
            benchmark.pedantic(fn, rounds=_bench.rounds_for(first, budget), iterations=1)
    except _bench.PeerUnavailable as exc:
        pytest.skip(str(exc))
    if benchmark.stats is not None:  # None under --benchmark-disable
        record(s, wl, peer, threads, benchmark.stats.stats.median)
