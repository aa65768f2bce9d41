"""lower-pool: MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool on a typed input -> [Pad] + Pool.

    have: x -> MaxPool(k, s, pads)           want: x -> [Pad(pads, x's minimum code)] -> Pool(max)
    have: x -> AveragePool(k, s, pads)       want: x -> [Pad(pads, 0)] -> Pool(sum) -> Div(K) -> ...
    have: x -> GlobalAveragePool             want: x -> Pool(sum, k = the whole extent) -> Div(K) -> ...

A max pool's padding never wins, so it pads with the minimum code. An average pool sums
exactly and keeps the division by K as a float Div for the requantization that follows, which
evaluates it as the QONNX graph does; when K is a power of two the division is exact and goes
into the sum's type instead (Pool's scale_shift), so nothing follows.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from qonnx_ir.dialect import GraphView
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.pool import Pool
from qonnx_ir.types import power_of_two_exponent

from .base import LOWER_PRODUCER_FIRST, Context, Pass, lower_each
from .graph import attribute, fresh_name, replace_node, set_edge, standard_nodes
from .layout import padded_input, window_attributes

POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")


class LowerPool(Pass):
    name = "lower-pool"
    description = "max / average / global pooling on a typed tensor => [Pad] Pool (average: a sum, then Div K)"
    consumes = POOLS
    produces = ("Pool",)

    def apply(self, model, context: Context) -> bool:
        return lower_each(model, standard_nodes(model, *POOLS), context, _lower, LOWER_PRODUCER_FIRST)


def _lower(model, node, x, context) -> None:
    name = node.name
    if len(x.shape) not in (2, 3):
        raise QonnxError(f"pooling on an input of shape {x.shape}: only 1-D and 2-D", node=name)
    maximum = node.op_type in ("MaxPool", "GlobalMaxPool")
    if node.op_type.startswith("Global"):
        kernel, strides, pads = tuple(x.shape[:-1]), tuple(x.shape[:-1]), (0,) * (2 * (len(x.shape) - 1))
    else:
        kernel = tuple(attribute(node, "kernel_shape"))
        if attribute(node, "ceil_mode", 0):
            raise QonnxError("ceil-mode pooling is not supported: export with ceil_mode=False", node=name)
        strides, dilations, pads = window_attributes(node, x, kernel)
        if any(d != 1 for d in dilations):
            raise QonnxError("dilated pooling is not supported", node=name)
        if not maximum and any(pads) and not attribute(node, "count_include_pad", 0):
            raise QonnxError("average pooling that leaves the padding out of the mean is not supported: use "
                             "count_include_pad=True (PyTorch's default) or no padding", node=name)
    source = padded_input(model, node, pads, x.type.min_code if maximum else 0)
    window = math.prod(kernel)
    exponent = power_of_two_exponent(float(window))
    output = node.output[0]
    attrs = dict(kernel_shape=list(kernel), strides=list(strides))
    if maximum:
        pool = Pool.make(name, [source], [output], mode="max", **attrs)
        note = f"max pool {kernel}, strides {strides}"
    elif exponent is not None:
        pool = Pool.make(name, [source], [output], mode="sum", scale_shift=exponent, **attrs)
        note = f"average pool {kernel}: a sum, and the division by {window} exact in its type"
    else:
        summed = fresh_name(model, f"{output}_sum")
        pool = Pool.make(name, [source], [summed], mode="sum", **attrs)
        divisor = fresh_name(model, f"{name}/window")
        model.set_initializer(divisor, np.asarray(float(window), dtype=np.float32))
        divide = helper.make_node("Div", [summed, divisor], [output], name=f"{name}/mean")
        model.graph.node.insert(list(model.graph.node).index(node) + 1, divide)
        note = f"average pool {kernel}: a sum, then the division by {window} in the requantization that follows"
        output = summed
    replace_node(model, node, pool)
    set_edge(model, output, Pool(pool, GraphView(model)).infer()[0])
    context.report.add(name, note)
