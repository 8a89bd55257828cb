"""Benchmarks (pytest-benchmark): convrs against its peers, with the ratio tables at the end.

Run from the repository root (not collected by the normal test run)::

    python -m pytest benches --benchmark-only
    python -m pytest benches --benchmark-only -k "r3x3 or 512k5" --bench-threads 1

The machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which slow NumPy's BLAS down; this
process restarts itself without them so the NumPy peer runs at its real speed.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from typing import Any

import pytest

from convrs import _bench

_RECORDS = pytest.StashKey[dict]()
_NOTES = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convrs benchmarks")
    group.addoption("--bench-threads", default="1,2",
                    help="comma-separated thread counts (default 1,2)")
    group.addoption("--bench-budget", type=float, default=0.5,
                    help="seconds of timed rounds per benchmark (default 0.5)")


def pytest_configure(config: pytest.Config) -> None:
    env = _bench.bench_environ()
    if env is not None:
        # OpenBLAS reads these when NumPy loads, so restart the whole process without them
        # (after giving the terminal back from pytest's output capture).
        capman = config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            capman.stop_global_capturing()
        os.execve(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]], env)
    config.stash[_RECORDS] = {}
    config.stash[_NOTES] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "threads" in metafunc.fixturenames:
        threads = [int(t) for t in metafunc.config.getoption("--bench-threads").split(",")]
        metafunc.parametrize("threads", threads, ids=[f"{t}T" for t in threads])


@pytest.fixture(scope="session")
def record(pytestconfig: pytest.Config) -> Any:
    """``record(suite, workload, peer, threads, seconds)`` for the closing ratio tables."""
    records = pytestconfig.stash[_RECORDS]

    def add(suite: _bench.Suite, workload: Any, peer: str, threads: int, seconds: float) -> None:
        records[suite.title, workload.name, threads, peer] = seconds

    return add


@pytest.fixture(scope="session")
def note(pytestconfig: pytest.Config) -> Any:
    """``note(line)``: a line for the closing summary."""
    return pytestconfig.stash[_NOTES].append


@pytest.fixture(scope="session")
def budget(pytestconfig: pytest.Config) -> float:
    return float(pytestconfig.getoption("--bench-budget"))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, {})
    notes = config.stash.get(_NOTES, [])
    if not records and not notes:
        return
    write = terminalreporter.write_line
    write("")
    write(_bench.machine_line())
    for suite in _bench.SUITES.values():
        rows: dict[tuple[str, int], _bench.Row] = {}
        single: dict[tuple[str, str], float] = defaultdict(float)
        for (title, name, threads, peer), seconds in sorted(records.items()):
            if title != suite.title:
                continue
            row = rows.setdefault((name, threads), _bench.Row(suite.workload(name), threads))
            row.seconds[peer] = seconds
            single[name, peer] = seconds
        for row in rows.values():  # single-threaded peers are measured once, at 1 thread
            for peer in suite.peers:
                if not peer.threaded and (row.workload.name, peer.name) in single:
                    row.seconds.setdefault(peer.name, single[row.workload.name, peer.name])
        if rows:
            order = {w.name: i for i, w in enumerate(suite.workloads)}
            ordered = sorted(rows.values(), key=lambda r: (order[r.workload.name], r.threads))
            write(f"\n### {suite.title}\n")
            for line in _bench.format_table(suite, ordered).splitlines():
                write(line)
    for line in notes:
        write(line)
