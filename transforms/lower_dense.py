"""lower-dense: MatMul with quantized weights (+ bias) on a typed input -> one Dense node.

    have: x:<type, gain g> -> MatMul(x, [Transpose] Quant(W, s_w)) -> [Add(b or Quant(b))]
    want: x -> Dense(x, W_codes:<w>, b_codes:<acc grid>) -> acc

The weight constant gets its own type: a power-of-two scale 2**-f (per tensor, or per
channel as 2**-f times a power-of-two gain) is exact as fixed<bits, bits-f>; any other
scale stays a gain. acc's type then follows (Dense.infer: lsb_x * lsb_w, gain g * gain_w,
the narrowest range by interval analysis). A bias on acc's grid (b / (lsb * gain) a whole number,
as for a bias quantized with scale s_x * s_w, Brevitas' bias quantizers) becomes Dense's bias; a
float bias stays a float Add, which the requantization after it evaluates exactly.
"""

from __future__ import annotations

import numpy as np

from qonnx_ir.dialect import EdgeType, GraphView
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.dense import Dense

from .base import LOWER_PRODUCER_FIRST, Context, Pass, lower_each
from .graph import (
    add_constant,
    fresh_name,
    quantized_constant,
    remove_dead_nodes,
    replace_node,
    set_edge,
    single_consumer,
)
from .weights import add_bias, constant_or_quantized, weight_type


class LowerDense(Pass):
    name = "lower-dense"
    description = "MatMul(typed x, quantized W) [+ bias] => Dense with integer weights and sized accumulator"
    consumes = ("MatMul", "Add")
    produces = ("Dense",)

    def apply(self, model, context: Context) -> bool:
        changed = lower_each(model, model.get_nodes_by_op_type("MatMul"), context, self._lower, LOWER_PRODUCER_FIRST)
        if changed:
            remove_dead_nodes(model)
        return changed

    def _lower(self, model, node, x: EdgeType, context):
        if x.per_tensor_gain is None:
            raise QonnxError("the input of this layer has a per-channel scale: quantize it per tensor", node=node.name)
        if len(x.shape) != 1:
            raise QonnxError(f"MatMul on a {len(x.shape) + 1}-D tensor: flatten it first", node=node.name)
        weights = quantized_constant(model, node.input[1])
        if weights is None:
            raise QonnxError("MatMul weights are not quantized constants (Quant(initializer)): quantize the layer",
                             node=node.name)
        codes, scale, params = weights
        if codes.ndim != 2 or np.any(scale != scale[:1, :]):
            raise QonnxError("weight scale must be per tensor or per output channel", node=node.name)
        if codes.shape[0] != x.shape[0]:
            raise QonnxError(f"weights of shape {codes.shape} do not fit an input of {x.shape[0]} values", node=node.name)
        weight_type_, weight_gain = weight_type(params, scale[0])
        removed, output = [node], node.output[0]
        bias_real, bias_node = None, single_consumer(model, node.output[0])
        if bias_node is not None and bias_node.op_type == "Add":
            other = bias_node.input[1] if bias_node.input[0] == output else bias_node.input[0]
            bias_real = constant_or_quantized(model, other)
            if bias_real is not None:
                if bias_real.size not in (1, codes.shape[1]):
                    raise QonnxError(f"bias of shape {bias_real.shape} for {codes.shape[1]} outputs", node=bias_node.name)
                bias_real = np.broadcast_to(bias_real.reshape(-1), (codes.shape[1],))
        name = node.name
        weight_name = add_constant(model, fresh_name(model, f"{name}/weight"), codes, weight_type_, weight_gain)
        inputs = [node.input[0], weight_name]
        if bias_real is not None:  # on the accumulator grid: lsb_x * lsb_w, gain g * gain_w (Dense.infer)
            acc_gain = float(x.gain[0]) * np.broadcast_to(weight_gain, (codes.shape[1],))
            bias = add_bias(model, name, bias_real, x.type.frac_bits + weight_type_.frac_bits, acc_gain)
            if bias is not None:
                inputs.append(bias)
                removed.append(bias_node)
                output = bias_node.output[0]
            else:  # a float bias stays a float Add: the requantization after it takes it exactly
                context.report.add(name, "float bias kept as a float Add for the requantization to absorb exactly")
        dense = Dense.make(name, inputs, [output])
        replace_node(model, node, dense, removed[1:])
        (acc,) = Dense(dense, GraphView(model)).infer()
        set_edge(model, output, acc)
        context.report.add(name, f"{codes.shape[0]}x{codes.shape[1]} weights {weight_type_}, accumulator {acc.type}")

