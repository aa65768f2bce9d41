"""lower-requant: everything between a typed tensor and the next quantizer -> one Requant.

    have: t:<type, gain> -> [Mul/Add/Sub/Div c | BatchNormalization]* -> [Relu] -> Quant(s_out, bits)
    want: t -> Requant -> q:<bits, log2 s_out>

Three ways, in order of preference:
  shift           no float op in between and every lsb*gain / s_out is a power of two:
                  a fixed-point cast, exact (contract 3).
  thresholds      otherwise, for outputs of <= threshold_max_bits bits (or bipolar): per
                  channel the smallest input code reaching each output level, found by
                  evaluating the float chain in float64 - identical to the float graph.
  multiply_shift  otherwise: q = round((t*M + O) / 2**S) with M, O the affine map in
                  multiplier_bits of precision; the approximation bound is reported.
A chain that reaches the graph output (or its Softmax) with no quantizer is requantized
to a fixed-point output with output_frac_bits fraction bits.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from qonnx.custom_op.general.intquant import int_quant

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import BIPOLAR, FixedType, Saturation, power_of_two_exponent, quant_type

from . import float_chain
from .base import Context, Pass
from .graph import QUANT_OPS, fresh_name, quant_parameters, remove_dead_nodes, remove_nodes, single_consumer
from .intervals import dense_types


class LowerRequant(Pass):
    name = "lower-requant"
    description = "typed tensor -> [affine/BatchNorm] -> [Relu] -> Quant  =>  Requant (shift, thresholds or multiplier)"

    def apply(self, model, context: Context) -> bool:
        changed = False
        for producer in [n for n in model.graph.node if hw.is_hw(n) and n.op_type != "Softmax"]:
            match = _match_chain(model, producer)
            if match is None:
                continue
            chain_nodes, ops, quant_node = match
            if quant_node is None and not ops:
                continue  # already typed and nothing to do (e.g. logits into the output)
            _lower(model, producer, chain_nodes, ops, quant_node, context)
            changed = True
        if changed:
            remove_dead_nodes(model)
        return changed


def _channels(model, producer) -> int:
    if producer.op_type == "Dense":
        return int(model.get_tensor_shape(producer.input[1])[1]) if model.get_tensor_shape(producer.input[1]) else model.get_initializer(producer.input[1]).shape[1]
    shape = model.get_tensor_shape(producer.output[0])
    if shape:
        return int(np.prod(shape[1:]))
    return int(np.prod([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]))


def _match_chain(model, producer):
    """(chain nodes, chain ops, terminating quantizer or None) after `producer`, or None."""
    channels = _channels(model, producer)
    tensor, nodes, ops = producer.output[0], [], []
    while True:
        node = single_consumer(model, tensor)
        if node is None or node.op_type == "Softmax" or hw.is_hw(node):
            at_end = node is None and tensor in [o.name for o in model.graph.output]
            return (nodes, ops, None) if (at_end or (node is not None and node.op_type == "Softmax")) else None
        if node.op_type in QUANT_OPS and node.input[0] == tensor:
            return nodes, ops, node
        if node.op_type not in float_chain.ELEMENTWISE:
            return None
        op = float_chain.read_op(model, node, tensor, channels)
        if op is None:
            return None
        nodes.append(node)
        ops.append(op)
        tensor = node.output[0]


def _lower(model, producer, chain_nodes, ops, quant_node, context):
    options = context.options
    source = hw.out_tensor(producer)
    channels = _channels(model, producer)
    step = np.broadcast_to(source.real_scale, (channels,)).astype(np.float64)  # real value of one input code
    anchor = quant_node if quant_node is not None else chain_nodes[-1]
    output = anchor.output[0]
    name = fresh_name(model, f"requant_{anchor.name}")
    low, high = _input_range(model, producer)
    if quant_node is not None:
        params = quant_parameters(model, quant_node)
        if params["scale"].size != 1:
            raise QonnxError("activation quantizers must have one scale (per tensor)", node=quant_node.name)
        s_out = float(params["scale"].ravel()[0])
        out_type, out_gain = (BIPOLAR, s_out) if params["bipolar"] else quant_type(
            params["bits"], params["signed"], params["narrow"], params["rounding"], s_out, quant_node.name)
        quantize = _quantizer(params, s_out)
    else:
        out_type, out_gain, s_out, quantize = None, 1.0, math.ldexp(1.0, -options.output_frac_bits), None
    relu_only = all(op.kind == "relu" for op in ops)
    ratios = step / s_out
    shifts = [power_of_two_exponent(float(r)) for r in ratios]
    common = dict(in_type=source.type, gain=out_gain)
    if relu_only and all(s is not None for s in shifts) and not out_type_is_bipolar(out_type):
        out_type = out_type or _output_type(step, np.ones(channels), np.zeros(channels), low, high, options)
        node = hw.make_requant(name, producer.output[0], output, mode="shift", out_type=out_type,
                               relu=bool(ops), shift=[-s for s in shifts], **common)
        note = f"shift by {sorted(set(-s for s in shifts))} to {out_type} (exact)"
    elif quantize is not None and (out_type.bipolar or out_type.width <= options.threshold_max_bits):
        thresholds = _thresholds(model, producer, ops, quantize, out_type, step, low, high, channels)
        common["in_type"] = hw.out_tensor(producer).type  # negated channels may resize the accumulator
        table = fresh_name(model, f"{name}_thresholds")
        model.set_initializer(table, thresholds.astype(np.float64))
        node = hw.make_requant(name, producer.output[0], output, mode="thresholds", out_type=out_type,
                               thresholds=table, **common)
        note = f"{thresholds.shape[1]} thresholds per channel to {out_type} (reproduces the float64 graph exactly)"
    else:
        a, b, relu = float_chain.affine(ops, channels)
        if out_type is None:
            out_type = _output_type(step, a, b, low, high, options)
        c, d = a * step / s_out, b / s_out
        largest = float(np.max(np.abs(c))) or 1.0
        shift = options.multiplier_bits - 1 - math.ceil(math.log2(largest))
        multiplier = np.round(np.ldexp(c, shift)).astype(np.int64)
        offset = np.round(np.ldexp(d, shift)).astype(np.int64)
        bound = max(abs(low), abs(high)) * float(np.max(np.abs(c - np.ldexp(multiplier, -shift)))) + float(
            np.max(np.abs(d - np.ldexp(offset, -shift))))
        node = hw.make_requant(name, producer.output[0], output, mode="multiply_shift", out_type=out_type, relu=relu,
                               shift=[shift] * channels, multiplier=multiplier, offset=offset, **common)
        note = (f"multiplier/shift (S={shift}) to {out_type}: approximation error <= {bound:.2g} lsb; results can "
                f"differ from the float graph by 1 lsb only where the exact value lies that close to a rounding boundary")
    position = list(model.graph.node).index(chain_nodes[0] if chain_nodes else quant_node)
    remove_nodes(model, chain_nodes + ([quant_node] if quant_node is not None else []))
    model.graph.node.insert(position, node)
    context.report.add(name, note)


def out_type_is_bipolar(out_type) -> bool:
    return out_type is not None and out_type.bipolar


def _input_range(model, producer) -> tuple[int, int]:
    fixed = hw.out_tensor(producer).type
    return fixed.min_code, fixed.max_code


def _quantizer(params, s_out):
    """Real values -> output codes, exactly as qonnx's Quant/BipolarQuant computes them."""
    if params["bipolar"]:
        return lambda v: np.where(v >= 0, 1.0, -1.0)
    return lambda v: np.round(int_quant(v, s_out, 0.0, np.float64(params["bits"]), params["signed"], params["narrow"], params["rounding"]) / s_out)


def _output_type(step, a, b, low, high, options) -> FixedType:
    """Fixed-point type with output_frac_bits fraction bits holding relu?(a*x+b) over the input range."""
    ends = np.stack([a * step * low + b, a * step * high + b])
    scale = math.ldexp(1.0, options.output_frac_bits)
    return FixedType.for_range(int(math.floor(ends.min() * scale)) - 1, int(math.ceil(ends.max() * scale)) + 1,
                               options.output_frac_bits).with_(saturation=Saturation.SAT)


def _thresholds(model, producer, ops, quantize, out_type, step, low, high, channels) -> np.ndarray:
    """T[j, k] = smallest input code whose output code is >= level k (binary search, float64 chain)."""
    sign = float_chain.slope_sign(ops, channels)
    if np.any(sign < 0):
        _negate_channels(model, producer, sign < 0)
        low, high = _input_range(model, producer)
    levels = np.array([1.0]) if out_type.bipolar else np.arange(out_type.min_code + 1, out_type.max_code + 1, dtype=np.float64)
    shape = (channels, len(levels))
    lo = np.full(shape, low, dtype=np.int64)
    hi = np.full(shape, high + 1, dtype=np.int64)  # high + 1: the level is never reached
    signed_step = (step * sign)[:, None]
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        values = float_chain.evaluate(ops, (mid * signed_step).T).T if ops else mid * signed_step
        reached = quantize(values) >= levels[None, :]
        hi = np.where(reached & (lo < hi), mid, hi)
        lo = np.where(~reached & (lo < hi), mid + 1, lo)
    return lo


def _negate_channels(model, producer, flip: np.ndarray) -> None:
    """Negate the weights and bias of the given output channels so every channel is increasing.

    The chain is then evaluated on -acc for those channels; the integer results are
    identical, and thresholds only need to count upwards. The layer's gain turns
    negative there, so code * lsb * gain still states the true real value.
    """
    if producer.op_type != "Dense":
        raise QonnxError("a decreasing rescale (negative factor) must follow a dense layer", node=producer.name)
    weight = model.get_initializer(producer.input[1]).copy()
    weight[:, flip] *= -1
    model.set_initializer(producer.input[1], weight)
    bias = np.zeros(weight.shape[1])
    if len(producer.input) > 2:
        bias = model.get_initializer(producer.input[2]).copy()
        bias[flip] *= -1
        model.set_initializer(producer.input[2], bias)
    in_type = hw.type_attr(producer, "in_type")
    accum, bias_type = dense_types(weight.astype(np.int64), bias.astype(np.int64), in_type, hw.type_attr(producer, "accum_type").frac_bits)
    gain = np.broadcast_to(hw.out_tensor(producer).gain, flip.shape) * np.where(flip, -1.0, 1.0)
    for attribute in list(producer.attribute):
        if attribute.name == "out_gain":
            producer.attribute.remove(attribute)
    producer.attribute.extend([onnx.helper.make_attribute("out_gain", [float(g) for g in gain])])
    for attribute in producer.attribute:
        if attribute.name in ("accum_type", "out_type"):
            attribute.s = str(accum).encode()
        elif attribute.name == "bias_type":
            attribute.s = str(bias_type).encode()
