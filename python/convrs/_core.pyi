"""Type stubs for the Rust extension module (called only through the public wrappers)."""

from typing import Any

import numpy as np

__all__ = [
    "__version__",
    "col2im",
    "conv2d",
    "filter2d",
    "get_num_threads",
    "im2col",
    "set_num_threads",
    "simd_level",
]

__version__: str

def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int] | str,
    dilation: tuple[int, int],
    groups: int,
    algorithm: str,
    out: np.ndarray | None,
) -> np.ndarray: ...
def filter2d(
    in1: np.ndarray, in2: np.ndarray, flip: bool, mode: str, boundary: str, fillvalue: Any
) -> np.ndarray: ...
def im2col(
    input: np.ndarray,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    stride: tuple[int, int],
) -> np.ndarray: ...
def col2im(
    cols: np.ndarray,
    output_size: tuple[int, int],
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    stride: tuple[int, int],
) -> np.ndarray: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def simd_level() -> str: ...
