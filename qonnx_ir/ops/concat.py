"""Concat: channels-last edges side by side along the channels.

    Concat(x_1, ..., x_n) -> y      y[p, :] = (x_1[p, :] * 2**(f - f_1), ..., x_n[p, :] * 2**(f - f_n))

f = max f_i: the codes are aligned to the finest grid, so every value stays exact; each
input keeps its own gain, which becomes the gain of its channels in y (one per channel).
"""

from __future__ import annotations

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Cost, HwOp, Port
from ..types import FixedType
from .. import integers

MAX_INPUTS = 4


class Concat(HwOp):
    op_type = "Concat"
    summary = "edges side by side along the channels, aligned to the finest grid"
    inputs = tuple(Port(f"x{i}", optional=i >= 2) for i in range(MAX_INPUTS))

    def edges(self) -> list[EdgeType]:
        return [self.input_edge(i) for i in range(len(self.node.input))]

    def shifts(self) -> list[int]:
        edges = self.edges()
        f = max(e.type.frac_bits for e in edges)
        return [f - e.type.frac_bits for e in edges]

    def infer(self):
        edges = self.edges()
        if any(e.shape[:-1] != edges[0].shape[:-1] for e in edges):
            raise self.fail(f"Concat of shapes {[e.shape for e in edges]}: all but the channels must agree")
        if any(e.type.bipolar for e in edges):
            raise self.fail("Concat of a bipolar edge: requantize it first")
        shifts = self.shifts()
        low = min(e.type.min_code << s for e, s in zip(edges, shifts))
        high = max(e.type.max_code << s for e, s in zip(edges, shifts))
        frac = max(e.type.frac_bits for e in edges)
        channels = sum(e.channels for e in edges)
        gain = np.concatenate([e.channel_gain() for e in edges])
        if np.all(gain == gain[0]):
            gain = gain[:1]
        return [EdgeType(FixedType.for_range(low, high, frac), (*edges[0].shape[:-1], channels), gain)]

    def evaluate(self, inputs):
        out = self.output_edge().type
        kind = integers.representation(out.magnitude)
        parts = [integers.as_repr(np.asarray(x), kind) * (1 << s) for x, s in zip(inputs, self.shifts())]
        return [np.concatenate(parts, axis=-1)]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge(0).type.width, latency=1)
