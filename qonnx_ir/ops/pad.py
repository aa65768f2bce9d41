"""Pad: a border of constant codes around channels-last codes (zero padding; -inf for max pools).

    Pad(x) -> y      x: (L, C) or (H, W, C); pads = (begin per axis..., end per axis...)
    y[p + begin, c] = x[p, c]; every other position holds `value` (a code of x's type)

Convolutions pad with 0; a max pool's padding never wins, so it pads with x's minimum code.
"""

from __future__ import annotations

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port


class Pad(HwOp):
    op_type = "Pad"
    summary = "constant border around the spatial axes"
    inputs = (Port("x"),)

    pads = Attr("ints", minimum=0, doc="begin for each spatial axis, then end for each")
    value = Attr(int, 0, doc="the code written into the border")

    def infer(self):
        x = self.input_edge("x")
        rank = len(x.shape) - 1
        if rank not in (1, 2) or len(self.pads) != 2 * rank:
            raise self.fail(f"pads {self.pads} for an input of shape {x.shape}")
        if not x.type.min_code <= self.value <= x.type.max_code:
            raise self.fail(f"the padding code {self.value} is not a code of {x.type}")
        spatial = tuple(n + self.pads[i] + self.pads[rank + i] for i, n in enumerate(x.shape[:-1]))
        return [EdgeType(x.type, (*spatial, x.channels), x.gain)]

    def evaluate(self, inputs):
        x = np.asarray(inputs[0])
        rank = x.ndim - 2
        widths = [(0, 0)] + [(self.pads[i], self.pads[rank + i]) for i in range(rank)] + [(0, 0)]
        value = self.value if x.dtype != object else int(self.value)
        return [np.pad(x, widths, constant_values=value)]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge("x").type.width, latency=1)
