"""Shared fixtures: thread-count parametrisation, random data, Hypothesis profile."""

from __future__ import annotations

import os
import sys
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis imports libcst to write a patch when a test fails; libcst warns about a
# deprecated mypy_extensions import, which the project's filterwarnings=error turns into an
# INTERNALERROR that hides the real failure. Import it once here, warnings silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

import convrs

# The tests import the reference as a plain module, wherever pytest's rootdir is.
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "convrs",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("thorough", parent=settings.get_profile("convrs"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "convrs"))

THREAD_COUNTS = (1, 2, 3)


@pytest.fixture(autouse=True)
def _restore_num_threads():
    """No test may leak a thread-count change into the next one."""
    before = convrs.get_num_threads()
    yield
    convrs.set_num_threads(before)


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"threads{n}")
def num_threads(request):
    """Runs the test once per thread count (set for the duration of the test)."""
    convrs.set_num_threads(request.param)
    return request.param


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
