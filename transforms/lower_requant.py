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

from qonnx_ir.dialect import EdgeType, GraphView, is_hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.requant import Requant
from qonnx_ir.limits import MAX_THRESHOLD_BITS
from qonnx_ir.types import FixedType, Saturation, power_of_two_exponent

from . import float_chain
from .base import Context, Pass
from .graph import add_constant, fresh_name, remove_dead_nodes, remove_nodes, set_edge, single_consumer, typed
from .quantizers import TERMINATORS, terminator


class LowerRequant(Pass):
    name = "lower-requant"
    description = "typed tensor -> [affine/BatchNorm] -> [Relu] -> Quant  =>  Requant (shift, thresholds or multiplier)"
    consumes = ("Quant", "BipolarQuant", "Trunc", "Mul", "Add", "Sub", "Div", "BatchNormalization", "Relu")
    produces = ("Requant",)

    def apply(self, model, context: Context) -> bool:
        changed = False
        sources = [(node, name) for node in model.graph.node if is_hw(node) and node.op_type != "Softmax"
                   for name in node.output]
        for producer, tensor in sources:
            match = _match_chain(model, tensor)
            if match is None:
                continue
            chain_nodes, ops, quant_node = match
            if quant_node is None and not ops:
                continue  # already typed and nothing to do (e.g. logits into the output)
            _lower(model, producer, tensor, chain_nodes, ops, quant_node, context)
            changed = True
        if changed:
            remove_dead_nodes(model)
        return changed


def _match_chain(model, tensor: str):
    """(chain nodes, chain ops, terminating quantizer or None) after a typed tensor, or None."""
    channels = typed(model, tensor).channels
    nodes, ops = [], []
    while True:
        node = single_consumer(model, tensor)
        if node is None or node.op_type == "Softmax" or is_hw(node):
            at_end = node is None and tensor in [o.name for o in model.graph.output]
            return (nodes, ops, None) if (at_end or (node is not None and node.op_type == "Softmax")) else None
        if node.op_type in TERMINATORS and node.input[0] == tensor:
            return nodes, ops, node
        if node.op_type not in float_chain.ELEMENTWISE:
            return None
        op = float_chain.read_op(model, node, tensor, channels)
        if op is None:
            return None
        nodes.append(node)
        ops.append(op)
        tensor = node.output[0]


def _lower(model, producer, tensor, chain_nodes, ops, quant_node, context):
    options = context.options
    source = typed(model, tensor)
    channels = source.channels
    step = source.channel_gain() * source.type.lsb  # real value of one input code, per channel
    anchor = quant_node if quant_node is not None else chain_nodes[-1]
    output = anchor.output[0]
    name = anchor.name
    low, high = source.type.min_code, source.type.max_code
    end = terminator(model, quant_node) if quant_node is not None else None
    if end is not None:
        out_type, out_gain, s_out, quantize = end.out_type, end.gain, end.step, end.quantize
    else:
        out_type, out_gain, s_out, quantize = None, 1.0, math.ldexp(1.0, -options.output_frac_bits), None
    relu_only = all(op.kind == "relu" for op in ops)
    shifts = [power_of_two_exponent(float(r)) for r in step / s_out]
    single = end is None or end.single_rounding(step)
    inputs, attrs = [tensor], {}
    threshold_limit = MAX_THRESHOLD_BITS if end is not None and end.exact_only else options.threshold_max_bits
    if relu_only and single and all(s is not None for s in shifts) and not (out_type is not None and out_type.bipolar):
        out_type = out_type or _output_type(step, np.ones(channels), np.zeros(channels), low, high, options)
        attrs = dict(mode="shift", relu=int(bool(ops) and out_type.signed), shift=_compact([-s for s in shifts]))
        note = f"shift by {sorted(set(-s for s in shifts))} to {out_type} (exact)"
    elif quantize is not None and (out_type.bipolar or out_type.width <= threshold_limit):
        thresholds = _thresholds(model, producer, tensor, ops, quantize, out_type, step, low, high, channels)
        source = typed(model, tensor)  # negated channels may have resized the accumulator
        table_type = FixedType.for_range(source.type.min_code, source.type.max_code + 1, source.type.frac_bits)
        inputs.append(add_constant(model, fresh_name(model, f"{name}/thresholds"), _compact_rows(thresholds),
                                   table_type))
        attrs = dict(mode="thresholds")
        note = f"{thresholds.shape[1]} thresholds per channel to {out_type} (reproduces the float64 graph exactly)"
    elif end is not None and end.exact_only:
        raise QonnxError(f"{quant_node.op_type} to {out_type.width} bits after this rescale has no exact lowering "
                         f"(thresholds go up to {MAX_THRESHOLD_BITS} bits)", node=quant_node.name)
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
        attrs = dict(mode="multiply_shift", relu=int(relu and out_type.signed), shift=[shift],
                     multiplier=_compact(multiplier), offset=_compact(offset))
        note = (f"multiplier/shift (S={shift}) to {out_type}: approximation error <= {bound:.2g} lsb; results can "
                f"differ from the float graph by 1 lsb only where the exact value lies that close to a rounding boundary")
    node = Requant.make(name, inputs, [output], **attrs)
    position = list(model.graph.node).index(chain_nodes[0] if chain_nodes else quant_node)
    remove_nodes(model, chain_nodes + ([quant_node] if quant_node is not None else []))
    model.graph.node.insert(position, node)
    set_edge(model, output, EdgeType(out_type, source.shape, out_gain))
    if attrs["mode"] == "multiply_shift":
        context.report.warn(name, note)
    else:
        context.report.add(name, note)


def _compact(values) -> list[int]:
    """One value when every channel has the same (the attribute may give one for all)."""
    values = [int(v) for v in np.ravel(values)]
    return values[:1] if len(set(values)) == 1 else values


def _compact_rows(table: np.ndarray) -> np.ndarray:
    return table[:1] if np.all(table == table[:1]) else table


def _output_type(step, a, b, low, high, options) -> FixedType:
    """Fixed-point type with output_frac_bits fraction bits holding relu?(a*x+b) over the input range."""
    ends = np.stack([a * step * low + b, a * step * high + b])
    scale = math.ldexp(1.0, options.output_frac_bits)
    return FixedType.for_range(int(math.floor(ends.min() * scale)) - 1, int(math.ceil(ends.max() * scale)) + 1,
                               options.output_frac_bits).with_(saturation=Saturation.SAT)


def _thresholds(model, producer, tensor, ops, quantize, out_type, step, low, high, channels) -> np.ndarray:
    """T[c, k] = smallest input code whose output code is >= level k (binary search, float64 chain)."""
    sign = float_chain.slope_sign(ops, channels)
    if np.any(sign < 0):
        _negate_channels(model, producer, sign < 0)
        source = typed(model, tensor)
        low, high = source.type.min_code, source.type.max_code
    levels = np.array([1.0]) if out_type.bipolar else np.arange(out_type.min_code + 1, out_type.max_code + 1,
                                                                 dtype=np.float64)
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
    identical, and thresholds only need to count upwards. The weight's gain (and so the
    accumulator's) turns negative there, so code * lsb * gain still states the true value.
    A weight type whose most negative code is used widens by a bit (its negation must fit).
    """
    if producer.op_type not in ("Dense", "Conv"):
        raise QonnxError("a decreasing rescale (negative factor) must follow a dense or convolution layer",
                         node=producer.name)
    dense = GraphView(model).op(producer)  # Dense or Conv: output channels are the weights' last axis
    weight_edge = dense.input_edge("weight")
    weight = np.array(dense.weight)
    weight[..., flip] *= -1
    weight_type = weight_edge.type
    if not weight_type.bipolar and not weight_type.contains(int(weight.min()), int(weight.max())):
        weight_type = weight_type.with_(width=weight_type.width + 1, int_bits=weight_type.int_bits + 1)
    weight_gain = weight_edge.channel_gain() * np.where(flip, -1.0, 1.0)
    add_constant(model, producer.input[1], weight, weight_type, weight_gain)
    if dense.has_input("bias"):
        bias_edge = dense.input_edge("bias")
        bias = np.array(dense.bias)
        bias[flip] *= -1
        bias_type = FixedType.for_range(int(bias.min()), int(bias.max()), bias_edge.type.frac_bits)
        add_constant(model, producer.input[2], bias, bias_type, bias_edge.channel_gain() * np.where(flip, -1.0, 1.0))
    (acc,) = GraphView(model).op(producer).infer()
    set_edge(model, producer.output[0], acc)
