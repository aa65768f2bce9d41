"""size-accumulators: every accumulator type re-derived from the actual integer weights.

The interval analysis itself is the Dense op's type rule (`qonnx_ir.ops.dense.accumulator_bounds`:
per output, the extremes of sum_i x_i w_i + b are reached term by term at the ends of x's
range, so the type is minimal and can never overflow). The lowering sizes new layers this
way already; this pass changes only a graph whose weights or input types were edited afterwards.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir.dialect import GraphView, is_hw
from qonnx_ir.dialect.builder import add_constant
from qonnx_ir.types import FixedType

from .base import Context, Pass
from .graph import set_edge, typed


class SizeAccumulators(Pass):
    name = "size-accumulators"
    description = "accumulator types by interval analysis of the integer weights"

    def apply(self, model: ModelWrapper, context: Context) -> bool:
        changed = False
        for node in model.graph.node:
            if not is_hw(node) or node.op_type != "Dense":
                continue
            if len(node.input) > 2 and node.input[2]:  # the bias's type holds its codes, on the same grid
                bias = GraphView(model).constant(node.input[2])
                stored = typed(model, node.input[2])
                fitted = stored.with_(type=FixedType.for_range(int(bias.min()), int(bias.max()), stored.type.frac_bits))
                if not fitted.same_as(stored):
                    add_constant(model, node.input[2], bias, fitted.type, stored.gain)
                    changed = True
            (acc,) = GraphView(model).op(node).infer()
            stored = typed(model, node.output[0])
            if stored is None or not stored.same_as(acc):
                set_edge(model, node.output[0], acc)
                changed = True
        return changed
