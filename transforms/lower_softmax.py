"""lower-softmax: a Softmax at the graph output -> the table-based hardware Softmax (or nothing).

    have: logits:<type> -> Softmax(axis=-1) -> output
    want: logits -> hw Softmax(exp_table) -> output        (options.softmax == "table")
          logits -> output                                 (options.softmax == "drop")

Dropping keeps the argmax (softmax is monotone), which is all a trigger decision needs.
The table covers input distances d = max - x in steps of 2**table_shift codes; entry 0
is exp(0) exactly so the largest logit always wins; entry i >= 1 holds exp(-midpoint of
its step). The outputs share one reciprocal of the sum (qonnx_ir/ops/softmax.py).
`error_bound` gives the worst |hw - softmax| this can produce (see its proof).
"""

from __future__ import annotations

import math

import numpy as np

from qonnx_ir.dialect import EdgeType
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.softmax import Softmax
from qonnx_ir.types import FixedType

from .base import Context, Pass, lower_each
from .graph import (
    add_constant,
    attribute,
    fresh_name,
    is_hw,
    remove_nodes,
    replace_node,
    rewire,
    set_edge,
    typed,
)

GUARD_BITS = 4  # the reciprocal's extra bits: it costs at most 2**-4 of an output lsb


def exp_table(size: int, shift: int, step_real: float, exp_bits: int) -> np.ndarray:
    """exp(-d * step_real) * 2**exp_bits for the codes d each entry stands for (midpoints)."""
    width = 1 << shift
    first = np.maximum((np.arange(size) - 1) * width + 1, 0)  # entry i covers d in [first, first + width - 1]
    middle = np.where(np.arange(size) == 0, 0.0, first + (width - 1) / 2.0)
    return np.round(np.ldexp(np.exp(-middle * step_real), exp_bits)).astype(np.int64)


def table_index(distance: np.ndarray, shift: int, size: int) -> np.ndarray:
    return np.minimum(np.where(distance == 0, 0, ((distance - 1) >> shift) + 1), size - 1)


def error_bound(size: int, shift: int, step_real: float, exp_bits: int, out_frac_bits: int, classes: int,
                guard_bits: int = GUARD_BITS) -> float:
    """Worst |y_i - softmax_i| over all inputs.

    With u_i = 2**P exp(-d_i) exact and table value e_i = u_i + a_i: |a_i| <= rho u_i + c,
    rho = exp(half a step) - 1 (midpoint error), c = 1/2 (table rounding) + 2**P exp(-range)
    (inputs past the table's range). Since the largest u is 2**P, sum u = U >= 2**P and
    |e_i/E - u_i/U| <= (2 rho + c (1+n) / 2**P) / (1 - rho - n c / 2**P); the shared
    reciprocal adds at most 2**-guard_bits of an output lsb, the output rounding half an lsb.
    """
    half_step = ((1 << shift) - 1) / 2.0 * step_real
    rho = math.expm1(half_step)
    covered = ((size - 2) * (1 << shift) + 1) * step_real
    c = 0.5 + math.ldexp(math.exp(-covered), exp_bits)
    scale = math.ldexp(1.0, -exp_bits)
    rounding = math.ldexp(0.5, -out_frac_bits) + math.ldexp(1.0, -out_frac_bits - guard_bits)
    return (2 * rho + c * (1 + classes) * scale) / (1 - rho - classes * c * scale) + rounding


class LowerSoftmax(Pass):
    name = "lower-softmax"
    description = "terminal Softmax => table-based hw Softmax (or dropped with softmax='drop')"
    consumes = ("Softmax",)
    produces = ("Softmax",)

    def apply(self, model, context: Context) -> bool:
        softmaxes = [n for n in model.get_nodes_by_op_type("Softmax") if not is_hw(n)]
        return lower_each(model, softmaxes, context, self._lower)

    def _lower(self, model, node, source: EdgeType, context):
        if node.output[0] not in [o.name for o in model.graph.output]:
            raise QonnxError("Softmax is only supported at the graph output", node=node.name)
        axis = attribute(node, "axis", -1)
        if axis not in (-1, 1):
            raise QonnxError(f"Softmax over axis {axis} is not supported (only the feature axis)", node=node.name)
        if context.options.softmax == "drop":
            self._drop(model, node, context)
        else:
            self._table(model, node, source, context)

    def _drop(self, model, node, context):
        logits, output = node.input[0], node.output[0]
        if logits in [o.name for o in model.graph.output]:
            raise QonnxError(f"softmax='drop' would give two graph outputs the same values: '{logits}' is already "
                             "one; remove the Softmax output or lower with the table softmax", node=node.name)
        logits_type = typed(model, logits)
        remove_nodes(model, [node])
        producer = model.find_producer(logits)
        producer.output[list(producer.output).index(logits)] = output
        rewire(model, logits, output)  # later layers may read the logits too
        set_edge(model, output, logits_type)
        context.report.add(node.name, "terminal Softmax dropped: outputs are logits (argmax unchanged)")

    def _table(self, model, node, source: EdgeType, context):
        options = context.options
        if source.per_tensor_gain is None:
            raise QonnxError("Softmax input must have one scale per tensor", node=node.name)
        if len(source.shape) != 1:
            raise QonnxError(f"Softmax over a tensor of shape {source.shape}: only over a vector", node=node.name)
        step_real = source.type.lsb * float(source.gain[0])
        size, exp_bits = options.softmax_table_size, options.softmax_exp_bits
        needed = exp_bits * math.log(2) + 1  # past this distance the exp rounds to 0 anyway
        shift = 0
        while (size - 2) * (1 << shift) * step_real < needed and shift < 62:
            shift += 1
        table = exp_table(size, shift, step_real, exp_bits)
        name = node.name
        out_type = options.softmax_out_type
        table_name = add_constant(model, fresh_name(model, f"{name}/exp_table"), table,
                                  FixedType.for_range(0, int(table.max()), 0))
        classes = source.shape[0]
        bound = error_bound(size, shift, step_real, exp_bits, out_type.frac_bits, classes)
        new = Softmax.make(name, [node.input[0], table_name], [node.output[0]], table_shift=shift, exp_bits=exp_bits,
                           guard_bits=GUARD_BITS)
        replace_node(model, node, new)
        set_edge(model, node.output[0], EdgeType(out_type, source.shape))
        context.report.add(name, f"table softmax ({size} entries, step {1 << shift} codes, exp {exp_bits} bits, one "
                                 f"reciprocal) -> {out_type}: |error| <= {bound:.3g}")
