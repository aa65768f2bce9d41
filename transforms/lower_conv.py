"""lower-conv: Conv with quantized weights (+ bias) on a typed channels-last input -> [Pad] + Conv.

    have: x:(N, C, H, W) typed -> Conv(x, [Transpose] Quant(W, s_w), [b or Quant(b)]; pads, strides, ...)
          [-> Add(per-channel b)]
    want: x:(H, W, C) -> [Pad(pads, 0)] -> Conv(x, W_codes:(kh, kw, C/g, O), b_codes) -> acc:(H', W', O)

The weights are moved to channels-last order (ONNX's (O, C/g, kh, kw) becomes (kh, kw, C/g, O));
their type and the bias follow the same rules as a dense layer's (transforms/weights.py).
Padding becomes its own Pad node, so the convolution itself never reads outside its input.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from qonnx_ir.dialect import GraphView
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.conv import Conv

from .base import LOWER_PRODUCER_FIRST, Context, Pass, lower_each
from .graph import (
    add_constant,
    add_float_initializer,
    attribute,
    fresh_name,
    is_hw,
    quantized_constant,
    remove_dead_nodes,
    replace_node,
    set_edge,
    single_consumer,
)
from .layout import padded_input, window_attributes
from .weights import add_bias, constant_or_quantized, weight_type


class LowerConv(Pass):
    name = "lower-conv"
    description = "Conv(typed x, quantized W) [+ bias] => [Pad] Conv with integer weights and sized accumulator"
    consumes = ("Conv",)
    produces = ("Conv",)

    def apply(self, model, context: Context) -> bool:
        convs = [n for n in model.graph.node if n.op_type == "Conv" and not is_hw(n)]
        changed = lower_each(model, convs, context, _lower, LOWER_PRODUCER_FIRST)
        if changed:
            remove_dead_nodes(model)
        return changed


def _lower(model, node, x, context) -> None:
    name = node.name
    if len(x.shape) not in (2, 3):
        raise QonnxError(f"Conv on an input of shape {x.shape}: only 1-D and 2-D convolutions", node=name)
    if x.per_tensor_gain is None:
        raise QonnxError("the input of this layer has a per-channel scale: quantize it per tensor", node=name)
    weights = quantized_constant(model, node.input[1])
    if weights is None:
        raise QonnxError("Conv weights are not quantized constants (Quant(initializer)): quantize the layer "
                         "(QuantConv1d/QuantConv2d), or the weight is not constant", node=name)
    codes, scale, params = weights
    if codes.ndim != len(x.shape) + 1:
        raise QonnxError(f"weights of shape {codes.shape} for an input of shape {x.shape}", node=name)
    per_channel = scale.reshape(scale.shape[0], -1)
    if np.any(per_channel != per_channel[:, :1]):
        raise QonnxError("weight scale must be per tensor or per output channel", node=name)
    kernel = tuple(codes.shape[2:])
    if tuple(attribute(node, "kernel_shape", None) or kernel) != kernel:
        raise QonnxError(f"kernel_shape {attribute(node, 'kernel_shape')} disagrees with the weights {codes.shape}",
                         node=name)
    strides, dilations, pads = window_attributes(node, x, kernel)
    groups = int(attribute(node, "group", 1))
    weight_codes = np.moveaxis(codes, (0, 1), (-1, -2))  # (O, C/g, *k) -> (*k, C/g, O)
    weight_type_, weight_gain = weight_type(params, per_channel[:, 0])
    weight_name = add_constant(model, fresh_name(model, f"{name}/weight"), weight_codes, weight_type_, weight_gain)
    removed, output = [], node.output[0]
    bias_real, follower = None, None
    if len(node.input) > 2 and node.input[2]:
        bias_real = constant_or_quantized(model, node.input[2])
        if bias_real is None:
            raise QonnxError("the Conv bias is neither a constant nor a quantized constant", node=name)
    else:
        follower = single_consumer(model, output)
        if follower is not None and follower.op_type == "Add":
            other = follower.input[1] if follower.input[0] == output else follower.input[0]
            value = constant_or_quantized(model, other)
            if value is not None and value.size == codes.shape[0]:
                bias_real = value.reshape(-1)
    inputs = [padded_input(model, node, pads, 0), weight_name]
    if bias_real is not None:
        acc_gain = float(x.gain[0]) * np.broadcast_to(weight_gain, (codes.shape[0],))
        bias = add_bias(model, name, np.broadcast_to(bias_real.reshape(-1), (codes.shape[0],)),
                        x.type.frac_bits + weight_type_.frac_bits, acc_gain)
        if bias is not None:
            inputs.append(bias)
            if follower is not None:
                removed.append(follower)
                output = follower.output[0]
        else:  # a float bias stays a float Add after the convolution, for the requantization to absorb
            if follower is None:
                accumulator = fresh_name(model, f"{output}_acc")
                bias_name = add_float_initializer(model, f"{name}/float_bias", np.reshape(bias_real, -1))
                add = helper.make_node("Add", [accumulator, bias_name], [output], name=f"{name}/float_bias")
                model.graph.node.insert(list(model.graph.node).index(node) + 1, add)
                output = accumulator
            context.report.add(name, "float bias kept as a float Add for the requantization to absorb exactly")
    conv = Conv.make(name, inputs, [output], strides=list(strides), dilations=list(dilations), groups=groups)
    replace_node(model, node, conv, removed)
    (acc,) = Conv(conv, GraphView(model)).infer()
    set_edge(model, output, acc)
    pad_note = f", padded by {pads}" if any(pads) else ""
    context.report.add(name, f"{'x'.join(map(str, kernel))} conv, {codes.shape[1]}->{codes.shape[0]} channels "
                             f"(groups {groups}, strides {strides}{pad_note}), weights {weight_type_}, "
                             f"accumulator {acc.type}")
