"""The toy op's semantics floor (what would be qonnx_ir/ops/negate.py): y = -x, exactly."""

from __future__ import annotations

import numpy as np

from qonnx_ir.dialect import Cost, EdgeType, HwOp, Port
from qonnx_ir.types import FixedType


class Negate(HwOp):
    op_type = "Negate"
    summary = "y = -x on integer codes"
    inputs = (Port("x"),)

    def infer(self):
        x = self.input_edge("x")
        low, high = -x.type.max_code, -x.type.min_code
        return [EdgeType(FixedType.for_range(low, high, x.type.frac_bits), x.shape, x.gain)]

    def evaluate(self, inputs):
        return [-np.asarray(inputs[0])]

    def cost(self, io="parallel"):
        return Cost(act_bits=self.input_edge("x").type.width, latency=1)
