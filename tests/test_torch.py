"""conv2d, im2col and col2im against PyTorch itself, where it is installed.

The suite's reference is the NumPy one in ``reference.py``; these tests check convrs (and
so that reference's reading of PyTorch's semantics) against ``torch.nn.functional`` on the
argument forms the two share. torch is optional (a multi-GB download): without it they are
skipped.
"""

import numpy as np
import pytest

import convrs

torch = pytest.importorskip("torch")
F = torch.nn.functional
# torch's note that an even kernel with padding="same" makes it copy the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# (input shape, weight shape, keyword arguments in the form both libraries take)
LAYERS = [
    ((2, 3, 17, 19), (4, 3, 3, 3), {}),
    ((2, 3, 17, 19), (4, 3, 3, 3), {"padding": 1}),
    ((1, 8, 20, 23), (6, 4, 3, 5), {"stride": (2, 1), "padding": (1, 2), "groups": 2}),
    ((1, 6, 21, 21), (6, 1, 3, 3), {"padding": 2, "dilation": 2, "groups": 6}),
    ((3, 4, 15, 16), (8, 4, 4, 2), {"padding": "same"}),
    ((3, 4, 15, 16), (8, 4, 2, 3), {"padding": "same", "dilation": (2, 3)}),
    ((2, 5, 12, 13), (7, 5, 3, 3), {"padding": "valid", "stride": 3}),
    ((1, 64, 20, 20), (64, 64, 3, 3), {"padding": 1}),  # the row algorithm, Winograd (f64)
    ((4, 3, 32, 32), (16, 3, 5, 5), {"padding": 2}),  # cifar: the one-vector row kernel
    ((1, 16, 30, 30), (32, 16, 1, 1), {}),
    ((1, 3, 40, 40), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((5, 2, 9, 9), (4, 2, 3, 3), {"stride": 2, "padding": 1, "dilation": 2}),
]


def _torch_conv2d(x, w, b, kw):
    return F.conv2d(
        torch.from_numpy(x.astype(np.float64)),
        torch.from_numpy(w.astype(np.float64)),
        None if b is None else torch.from_numpy(b.astype(np.float64)),
        **kw,
    ).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_conv2d_equals_torch(layer, algorithm, bias, dtype):
    xs, ws, kw = LAYERS[layer]
    rng = np.random.default_rng(layer)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    got = convrs.conv2d(x, w, b, algorithm=algorithm, **kw)
    want = _torch_conv2d(x, w, b, kw)
    assert got.shape == want.shape and got.dtype == dtype
    # torch in float64 on the same (rounded) data: the difference is convrs's rounding,
    # bounded by the terms' magnitudes (Winograd's, on the float64 64-channel layer, is
    # some 1e-14 of them).
    scale = _torch_conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), kw)
    eps = np.finfo(dtype).eps
    terms = ws[1] * ws[2] * ws[3] + 1
    np.testing.assert_array_less(np.abs(got - want), 2 * terms * eps * scale + 1e-300)


def test_unbatched_conv2d_equals_torch():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 10, 11)), rng.standard_normal((5, 3, 3, 3))
    got = convrs.conv2d(x, w, padding="same")
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    assert got.shape == want.shape == (5, 10, 11)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_asymmetric_padding_equals_torch_after_pad():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 13, 14)), rng.standard_normal((4, 3, 3, 2))
    got = convrs.conv2d(x, w, padding=((2, 0), (1, 3)), stride=(1, 2))
    padded = F.pad(torch.from_numpy(x), (1, 3, 2, 0))  # left, right, top, bottom
    want = F.conv2d(padded, torch.from_numpy(w), stride=(1, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


UNFOLD = [
    ((2, 3, 9, 10), {"kernel_size": 3}),
    ((1, 2, 11, 8), {"kernel_size": (2, 3), "dilation": (2, 1), "padding": (1, 2), "stride": 2}),
    ((3, 4, 7, 7), {"kernel_size": 1, "stride": (3, 2)}),
]


@pytest.mark.parametrize("case", range(len(UNFOLD)))
def test_im2col_and_col2im_equal_torch_unfold_and_fold(case):
    shape, kw = UNFOLD[case]
    x = np.random.default_rng(case).standard_normal(shape)
    cols = convrs.im2col(x, **kw)
    want = F.unfold(torch.from_numpy(x), **kw).numpy()
    np.testing.assert_array_equal(cols, want)
    back = convrs.col2im(cols, shape[2:], **kw)
    want_back = F.fold(torch.from_numpy(want), shape[2:], **kw).numpy()
    np.testing.assert_allclose(back, want_back, rtol=1e-13, atol=1e-13)
