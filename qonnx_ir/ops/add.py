"""Add: the exact sum of two edges of the same shape (a residual connection).

    Add(a, b) -> y        y = a * 2**(f - f_a) + b * 2**(f - f_b),  f = max(f_a, f_b)

The binary points are aligned, so the sum is exact: f_a, f_b are the fraction bits, counted
against a's gain (b's gain may be a's times a power of two 2**e, the same for every channel:
its codes then have f_b - e fraction bits on a's grid). Scales that differ otherwise need a
requantization of one branch first. y's range is the sum of the aligned ranges: it never wraps.
"""

from __future__ import annotations

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Cost, HwOp, Port
from ..types import FixedType, power_of_two_exponent
from .. import integers


class Add(HwOp):
    op_type = "Add"
    summary = "exact sum of two edges, binary points aligned"
    inputs = (Port("a"), Port("b"))

    def alignment(self) -> tuple[int, int, int]:
        """(shift of a, shift of b, fraction bits of y on a's gain)."""
        a, b = self.input_edge("a"), self.input_edge("b")
        ratios = {power_of_two_exponent(float(r)) for r in b.channel_gain() / a.channel_gain()}
        if len(ratios) != 1 or None in ratios:
            raise self.fail("Add of two edges whose scales differ by more than a power of two: requantize one "
                            "branch to the other's scale first")
        (exponent,) = ratios
        frac_a, frac_b = a.type.frac_bits, b.type.frac_bits - exponent
        frac = max(frac_a, frac_b)
        return frac - frac_a, frac - frac_b, frac

    def infer(self):
        a, b = self.input_edge("a"), self.input_edge("b")
        if a.shape != b.shape:
            raise self.fail(f"Add of shapes {a.shape} and {b.shape}")
        if a.type.bipolar or b.type.bipolar:
            raise self.fail("Add of a bipolar edge: requantize it first")
        sa, sb, frac = self.alignment()
        if max(sa, sb) > 32:
            raise self.fail(f"Add of edges whose binary points are {max(sa, sb)} bits apart")
        low = (a.type.min_code << sa) + (b.type.min_code << sb)
        high = (a.type.max_code << sa) + (b.type.max_code << sb)
        return [EdgeType(FixedType.for_range(low, high, frac), a.shape, a.gain)]

    def evaluate(self, inputs):
        sa, sb, _ = self.alignment()
        out = self.output_edge().type
        kind = integers.representation(out.magnitude)
        a, b = integers.as_repr(np.asarray(inputs[0]), kind), integers.as_repr(np.asarray(inputs[1]), kind)
        return [a * (1 << sa) + b * (1 << sb)]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge("a").type.width, latency=1)
