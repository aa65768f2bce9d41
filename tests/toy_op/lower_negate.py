"""The toy op's lowering floor (what would be transforms/lower_negate.py).

    have: t:<typed> -> Neg -> u
    want: t -> Negate -> u:<-range of t>
"""

from __future__ import annotations

from qonnx_ir.dialect import GraphView

from transforms.base import Pass
from transforms.graph import replace_node, set_edge, typed

from .negate_op import Negate


class LowerNegate(Pass):
    name = "lower-negate"
    description = "Neg on a typed tensor => Negate"
    consumes = ("Neg",)
    produces = ("Negate",)

    def apply(self, model, context):
        changed = False
        for node in list(model.get_nodes_by_op_type("Neg")):
            if typed(model, node.input[0]) is None:
                context.skip(node.name, "its input has no fixed-point type yet")
                continue
            new = Negate.make(node.name, [node.input[0]], [node.output[0]])
            replace_node(model, node, new)
            set_edge(model, node.output[0], Negate(new, GraphView(model)).infer()[0])
            changed = True
        return changed
