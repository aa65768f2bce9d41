"""Sliding windows over channels-last tensors: the geometry Conv and Pool share.

A window op reads `x` of shape (N, *spatial, C) with spatial = (L,) or (H, W). Kernel k,
stride s and dilation d per spatial axis; there is no implicit padding (a Pad op in front
does it), so the output extent is floor((n - (k - 1) d - 1) / s) + 1 along each axis.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import QonnxError


def output_extent(n: int, kernel: int, stride: int, dilation: int) -> int:
    reach = (kernel - 1) * dilation + 1
    return (n - reach) // stride + 1 if n >= reach else 0


def output_spatial(spatial, kernel, strides, dilations, where: str) -> tuple[int, ...]:
    if not (len(spatial) == len(kernel) == len(strides) == len(dilations)):
        raise QonnxError(f"a window of {len(kernel)} axes on a tensor of {len(spatial)} spatial axes", node=where)
    if any(v < 1 for v in (*kernel, *strides, *dilations)):
        raise QonnxError("kernel, strides and dilations must be >= 1", node=where)
    extents = tuple(output_extent(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilations))
    if any(e < 1 for e in extents):
        raise QonnxError(f"a window of {tuple(kernel)} (dilation {tuple(dilations)}) does not fit the input "
                         f"{tuple(spatial)}", node=where)
    return extents


def patches(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """(N, *out_spatial, *kernel, C): every window's values (a view where possible)."""
    axes = tuple(range(1, 1 + len(kernel)))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    windows = sliding_window_view(x, reach, axis=axes)  # (N, *positions, C, *reach)
    index = [slice(None)] + [slice(None, None, s) for s in strides] + [slice(None)] + [slice(None, None, d) for d in dilations]
    windows = windows[tuple(index)]
    # move C behind the kernel axes: (N, *out, *kernel, C)
    return np.moveaxis(windows, 1 + len(kernel), -1)


def same_pads(spatial, kernel, strides, dilations, upper: bool) -> tuple[int, ...]:
    """ONNX auto_pad SAME_UPPER / SAME_LOWER: output extent ceil(n / s); (begins..., ends...)."""
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return (*begins, *ends)


def window_size(kernel) -> int:
    return math.prod(kernel)
