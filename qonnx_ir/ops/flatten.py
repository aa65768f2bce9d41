"""Flatten: a channels-last tensor as the vector PyTorch's flatten gives (channels first).

    Flatten(x) -> y      x: (L, C) or (H, W, C);  y[c * H * W + h * W + w] = x[h, w, c]

So a dense layer exported from PyTorch reads its inputs in the order it was trained on, and a
flattened output is what PyTorch returns: nobody transposes by hand. In hardware this is wiring.
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Cost, HwOp, Port


class Flatten(HwOp):
    op_type = "Flatten"
    summary = "channels-last tensor -> vector in PyTorch's (channels-first) order"
    inputs = (Port("x"),)

    def infer(self):
        x = self.input_edge("x")
        if len(x.shape) not in (2, 3):
            raise self.fail(f"Flatten of an edge of shape {x.shape}")
        if x.per_tensor_gain is None:
            raise self.fail("Flatten of an edge with per-channel scales: requantize it to one scale first")
        return [EdgeType(x.type, (math.prod(x.shape),), x.gain[:1])]

    def evaluate(self, inputs):
        x = np.asarray(inputs[0])
        return [np.moveaxis(x, -1, 1).reshape(len(x), -1)]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge("x").type.width, latency=1)
