"""lower-add and lower-concat: the joins of two or more typed branches (residual adds, concatenation).

    have: a:typed, b:typed -> Add(a, b)                  want: Add(a, b)   (exact, binary points aligned)
    have: x_1..x_n typed -> Concat(axis = channels)      want: Concat(x_1, ..., x_n)

A bias Add (one operand a constant) is not a join: lower-dense / lower-conv take it, or the
requantization that follows as a float op.
"""

from __future__ import annotations

from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.add import Add
from qonnx_ir.ops.concat import MAX_INPUTS, Concat

from .base import Context, Pass
from .graph import attribute, replace_with_op, standard_nodes, typed
from .layout import channel_axis


class LowerAdd(Pass):
    name = "lower-add"
    description = "Add of two typed tensors (a residual connection) => exact Add"
    consumes = ("Add",)
    produces = ("Add",)

    def apply(self, model, context: Context) -> bool:
        changed = False
        for node in standard_nodes(model, "Add"):
            edges = [typed(model, name) for name in node.input]
            if any(model.get_initializer(name) is not None for name in node.input):
                continue  # a bias or an offset: not a join
            if any(edge is None for edge in edges):
                context.skip(node.name, "an input has no fixed-point type yet")
                continue
            if edges[0].shape != edges[1].shape:
                raise QonnxError(f"Add of shapes {edges[0].shape} and {edges[1].shape} (broadcasting is not supported)",
                                 node=node.name)
            replace_with_op(model, node, Add, node.input, node.output)
            context.report.add(node.name, f"exact add of two branches -> {typed(model, node.output[0]).type}")
            changed = True
        return changed


class LowerConcat(Pass):
    name = "lower-concat"
    description = "Concat of typed tensors along the channels => Concat"
    consumes = ("Concat",)
    produces = ("Concat",)

    def apply(self, model, context: Context) -> bool:
        changed = False
        for node in standard_nodes(model, "Concat"):
            edges = [typed(model, name) for name in node.input]
            if any(edge is None for edge in edges):
                context.skip(node.name, "an input has no fixed-point type yet")
                continue
            if channel_axis(edges[0], int(attribute(node, "axis", 1)), node) != len(edges[0].shape) - 1:
                raise QonnxError("Concat along a spatial axis is not supported (only along the channels)",
                                 node=node.name)
            if not 2 <= len(node.input) <= MAX_INPUTS:
                raise QonnxError(f"Concat of {len(node.input)} inputs (2..{MAX_INPUTS} are supported)", node=node.name)
            replace_with_op(model, node, Concat, node.input, node.output)
            context.report.add(node.name, f"concatenation of {len(node.input)} branches -> "
                                          f"{typed(model, node.output[0]).describe()}")
            changed = True
        return changed
