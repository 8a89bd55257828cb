"""The references themselves, against SciPy where SciPy computes the same thing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import reference as ref

BOUNDARIES = ("fill", "wrap", "symm")


@pytest.mark.parametrize("flip", [True, False], ids=["convolve2d", "correlate2d"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@given(
    m=st.integers(1, 9), n=st.integers(1, 9), p=st.integers(1, 9), q=st.integers(1, 9),
    complex_=st.booleans(), seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_signal_references_match_scipy(m, n, p, q, complex_, seed, mode, boundary, flip):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    k = rng.standard_normal((p, q))
    if complex_:
        a = a + 1j * rng.standard_normal((m, n))
        k = k + 1j * rng.standard_normal((p, q))
    fill = 0.5 - 0.25j if complex_ else 1.5
    scipy_fn = scipy.signal.convolve2d if flip else scipy.signal.correlate2d
    ref_fn = ref.convolve2d if flip else ref.correlate2d
    try:
        expected = scipy_fn(a, k, mode, boundary, fill)
    except ValueError:
        return  # shapes scipy rejects ('valid' with neither input the larger)
    got = ref_fn(a, k, mode, boundary, fill)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
