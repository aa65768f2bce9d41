"""Upsample: nearest-neighbour upsampling of channels-last codes by whole factors.

    Upsample(x) -> y      y[p * scale + r, c] = x[p, c] for every 0 <= r < scale, per spatial axis
"""

from __future__ import annotations

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port


class Upsample(HwOp):
    op_type = "Upsample"
    summary = "nearest-neighbour upsampling by whole factors"
    inputs = (Port("x"),)

    scales = Attr("ints", minimum=1, maximum=64, doc="per spatial axis")

    def infer(self):
        x = self.input_edge("x")
        if len(x.shape) - 1 != len(self.scales) or len(x.shape) not in (2, 3):
            raise self.fail(f"scales {self.scales} for an input of shape {x.shape}")
        spatial = tuple(n * s for n, s in zip(x.shape[:-1], self.scales))
        return [EdgeType(x.type, (*spatial, x.channels), x.gain)]

    def evaluate(self, inputs):
        y = np.asarray(inputs[0])
        for axis, scale in enumerate(self.scales, start=1):
            y = np.repeat(y, scale, axis=axis)
        return [y]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge("x").type.width, latency=1)
