"""Pool: max or sum over windows of channels-last codes (average = sum, then a rescale).

    Pool(x) -> y          x: (L, C) or (H, W, C); per channel, over each window (no padding)
    mode max:  y[p, c] = max_k x[p * stride + k, c]           y's type and gain are x's
    mode sum:  y[p, c] = sum_k x[p * stride + k, c]           y's range is K times x's

An average pool is a sum followed by the division by K: the lowering keeps that division as
a float op of the requantization that follows (so the division happens as the QONNX graph
does it), or, when K is a power of two, folds it exactly into y's type (its lsb is x's / K).
Global pooling is a window over the whole extent.
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..types import FixedType
from .. import integers
from .window import output_spatial, patches

MODES = ("max", "sum")


class Pool(HwOp):
    op_type = "Pool"
    summary = "max or sum pooling over windows (global: one window)"
    inputs = (Port("x"),)

    mode = Attr(str, choices=MODES)
    kernel_shape = Attr("ints", minimum=1)
    strides = Attr("ints", (), minimum=1, doc="per spatial axis (default: the kernel)")
    scale_shift = Attr(int, 0, minimum=0, maximum=32, doc="sum: y's lsb is x's / 2**scale_shift (a power-of-two mean)")

    def geometry(self):
        kernel = tuple(self.kernel_shape)
        return kernel, tuple(self.strides) or kernel, (1,) * len(kernel)

    @property
    def window(self) -> int:
        return math.prod(self.kernel_shape)

    def working_values(self) -> int:
        """A sum widens every window's values before adding them: output positions x window x C."""
        return max(super().working_values(), self.output_edge().size * self.window)

    def infer(self):
        x = self.input_edge("x")
        if len(x.shape) not in (2, 3):
            raise self.fail(f"pooling needs an (L, C) or (H, W, C) input, not {x.shape}")
        kernel, strides, dilations = self.geometry()
        out_spatial = output_spatial(x.shape[:-1], kernel, strides, dilations, self.name)
        if self.mode == "max":
            if self.scale_shift:
                raise self.fail("scale_shift belongs to mode sum")
            fixed = x.type
        else:
            frac = x.type.frac_bits + self.scale_shift
            fixed = FixedType.for_range(x.type.min_code * self.window, x.type.max_code * self.window, frac)
        return [EdgeType(fixed, (*out_spatial, x.channels), x.gain)]

    def evaluate(self, inputs):
        x = np.asarray(inputs[0])
        windows = patches(x, *self.geometry())  # (N, *out, *kernel, C)
        axes = tuple(range(1 + len(self.kernel_shape), 1 + 2 * len(self.kernel_shape)))
        if self.mode == "max":
            return [windows.max(axis=axes)]
        bound = self.input_edge("x").type.magnitude * self.window
        kind = integers.representation(bound)
        return [integers.as_repr(windows, kind).sum(axis=axes)]

    def cost(self, io="parallel"):
        x = self.input_edge("x")
        return Cost(act_bits=x.type.width, latency=1 + math.ceil(math.log2(max(self.window, 2))))
