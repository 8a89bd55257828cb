"""convrs: fast, exact 2-D convolution for NumPy users, with a Rust core.

- :func:`conv2d`: the CNN layer (PyTorch semantics, cross-correlation plus bias).
- :func:`convolve2d`, :func:`correlate2d`: drop-in replacements for ``scipy.signal``'s.
- :func:`im2col`, :func:`col2im`: ``torch.nn.functional.unfold`` / ``fold``.
- :func:`get_num_threads`, :func:`set_num_threads`, :func:`simd_level`: the runtime.
"""

from ._conv import col2im, conv2d, im2col
from ._core import __version__, get_num_threads, set_num_threads, simd_level
from ._signal import convolve2d, correlate2d

__all__ = [
    "__version__",
    "col2im",
    "conv2d",
    "convolve2d",
    "correlate2d",
    "get_num_threads",
    "im2col",
    "set_num_threads",
    "simd_level",
]
