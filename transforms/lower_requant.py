"""lower-requant: everything between a typed tensor and the next quantizer -> one Requant (or Table).

    have: t:<type, gain> -> [Mul/Add/Sub/Div c | BatchNorm | Relu | Clip | LeakyRelu | PRelu
          | HardSigmoid | HardSwish | Sigmoid | Tanh | Elu | SiLU]* -> Quant / BipolarQuant / Trunc
    want: t -> Requant -> q        or   t -> Table -> q   (activation functions)

The output codes are the QONNX graph's exactly - the float ops evaluated in exact arithmetic on the
exact value of every input code (transforms/exact.py, transforms/float_chain.py; a transcendental
function is evaluated in float64, which defines it). In order of preference:

  shift        nothing but Relu in between and every ratio lsb*gain / s_out a power of two: a cast.
  table        an activation function on an input of at most 2**activation_table_bits codes: an
               output code for every input code (exact by construction; the table's size is reported).
  thresholds   an output of at most threshold_max_bits bits (bipolar too): per channel the smallest
               input code reaching each level, found in float64 and checked exactly.
  multiplier   an affine chain (Mul, Add - a float bias -, Div, Relu, Clip, HardSigmoid) into a
               quantizer: q = floor((t M + O) / 2**S) with M, O, S proven exact on t's range
               (transforms/requant_math.py); the bits it costs are reported.
  thresholds   a monotone chain that is not affine (BatchNorm, Sigmoid, ...) into at most 10 bits.
  approximate  otherwise (or with --multiplier-bits narrower than exact needs): a multiplier of
               limited precision, or a segmented table; reported as a WARNING with its bound.

A chain that reaches the graph output with no quantizer gets the exact fixed-point value of the
affine map when it is dyadic and fits 64 bits, else output_frac_bits fraction bits (a WARNING).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from qonnx_ir.dialect import EdgeType, GraphView, is_hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.limits import MAX_THRESHOLD_BITS
from qonnx_ir.ops.requant import Requant
from qonnx_ir.ops.table import Table
from qonnx_ir.types import FixedType, Saturation, power_of_two_exponent

from . import float_chain, requant_math
from .base import Context, Pass
from .graph import (
    add_constant,
    fresh_name,
    remove_dead_nodes,
    remove_nodes,
    set_edge,
    single_consumer,
    typed,
)
from .quantizers import TERMINATORS, terminator


class LowerRequant(Pass):
    name = "lower-requant"
    description = "typed tensor -> float ops -> Quant  =>  Requant (shift, thresholds, exact multiplier) or Table"
    consumes = ("Quant", "BipolarQuant", "Trunc", *float_chain.ELEMENTWISE)
    produces = ("Requant", "Table")

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


def _silu(model, tensor: str):
    """(Sigmoid node, Mul node) when tensor -> Sigmoid -> Mul(tensor, sigmoid): SiLU as PyTorch exports it."""
    consumers = model.find_consumers(tensor)
    if len(consumers) != 2 or tensor in [o.name for o in model.graph.output]:
        return None
    sigmoid = next((n for n in consumers if n.op_type == "Sigmoid"), None)
    mul = next((n for n in consumers if n.op_type == "Mul"), None)
    if sigmoid is None or mul is None or sorted(mul.input) != sorted([tensor, sigmoid.output[0]]):
        return None
    return sigmoid, mul


def _match_chain(model, tensor: str):
    """(chain nodes, chain ops, terminating quantizer or None) after a typed tensor, or None."""
    channels = typed(model, tensor).channels
    nodes, ops = [], []
    while True:
        silu = _silu(model, tensor)
        if silu is not None:
            nodes += list(silu)
            ops.append(float_chain.ChainOp("silu"))
            tensor = silu[1].output[0]
            continue
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
    step = source.channel_gain() * source.type.lsb  # real value of one input code, per channel (exact)
    anchor = quant_node if quant_node is not None else chain_nodes[-1]
    name, output = anchor.name, anchor.output[0]
    low, high = source.type.min_code, source.type.max_code
    end = terminator(model, quant_node) if quant_node is not None else None
    sign = float_chain.slope_sign(ops, channels)
    # thresholds count upwards: a decreasing channel needs its layer's weights negated (Dense / Conv)
    monotone = bool(np.all(sign != 0)) and (bool(np.all(sign > 0)) or producer.op_type in ("Dense", "Conv"))
    inputs, warning = [tensor], None
    out_type = end.out_type if end is not None else None
    out_gain = end.gain if end is not None else 1.0
    shifts = [power_of_two_exponent(float(r)) for r in step / (end.step if end is not None else
                                                                   math.ldexp(1.0, -options.output_frac_bits))]
    codes = high - low + 1
    op_class = Requant

    if (all(op.kind == "relu" for op in ops) and (end is None or end.single_rounding(step))
            and all(s is not None for s in shifts) and not (out_type is not None and out_type.bipolar)):
        out_type = out_type or _output_type(step, low, high, options.output_frac_bits, bool(ops))
        attrs = dict(mode="shift", shift=_compact([-s for s in shifts]), clip=_relu_clip(ops, out_type))
        note = f"shift by {sorted(set(-s for s in shifts))} to {out_type} (exact)"
    elif end is not None and float_chain.has_activation(ops) and codes <= 1 << options.activation_table_bits:
        entries, corrections = requant_math.table(ops, end, step, low, high)
        op_class, attrs = Table, dict(offset=low)
        inputs.append(add_constant(model, fresh_name(model, f"{name}/table"), _compact_rows(entries), out_type))
        how = "the float64 function on each code" if any(op.kind in float_chain.TRANSCENDENTAL for op in ops) else \
            "each code checked exactly" + (f", {corrections} corrected from float64" if corrections else "")
        rows = _compact_rows(entries).shape[0]
        note = (f"table of {entries.shape[1]} entries x {rows} row(s) over every input code to {out_type} "
                f"({rows * entries.shape[1] * out_type.width} bits; exact: {how})")
    elif end is not None and monotone and (out_type.bipolar or out_type.width <= options.threshold_max_bits):
        attrs, note = _threshold_plan(model, producer, tensor, ops, end, sign, name, inputs)
    elif (plan := _multiplier_plan(ops, end, step, low, high, channels, options)) is not None:
        attrs, out_type, note, warning = plan
    elif end is not None and monotone and (out_type.bipolar or out_type.width <= MAX_THRESHOLD_BITS):
        attrs, note = _threshold_plan(model, producer, tensor, ops, end, sign, name, inputs)
    elif end is not None and end.exact_only:
        raise QonnxError(f"{quant_node.op_type} to {out_type.width} bits after this rescale has no exact lowering "
                         f"(thresholds go up to {MAX_THRESHOLD_BITS} bits)", node=quant_node.name)
    elif end is not None and not np.all(sign != 0):  # neither increasing nor decreasing: no multiplier form
        shift = max(0, (codes - 1).bit_length() - options.activation_table_bits)
        entries, _ = requant_math.table(ops, end, step, low, high, shift)
        error = requant_math.table_error(ops, end.quantize, step, low, high, shift, entries)
        op_class, attrs = Table, dict(offset=low, shift=shift)
        inputs.append(add_constant(model, fresh_name(model, f"{name}/table"), _compact_rows(entries), out_type))
        note = f"segmented table of {entries.shape[1]} entries (one per {1 << shift} input codes) to {out_type}"
        warning = f"{note}: off by up to {error} output code(s); a wider --activation-table-bits makes it exact"
    else:
        attrs, out_type, note, warning = _approximate_plan(ops, end, step, low, high, channels, options)
        if end is not None:
            out_type, out_gain = end.out_type, end.gain
    if end is None and out_type is None:
        raise AssertionError("a plan chose no output type")
    node = op_class.make(name, inputs, [output], **attrs)
    position = list(model.graph.node).index(chain_nodes[0] if chain_nodes else quant_node)
    remove_nodes(model, chain_nodes + ([quant_node] if quant_node is not None else []))
    model.graph.node.insert(position, node)
    set_edge(model, output, EdgeType(out_type, typed(model, tensor).shape, out_gain))
    if warning:
        context.report.warn(name, warning)
    else:
        context.report.add(name, note)


def _relu_clip(ops, out_type) -> list[int] | None:
    """A Relu in a shift: the output codes start at 0 (nothing to do for an unsigned type)."""
    if ops and out_type.signed:
        return [0, out_type.max_code]
    return None


def _threshold_plan(model, producer, tensor, ops, end, sign, name, inputs):
    channels = len(sign)
    if np.any(sign < 0):
        _negate_channels(model, producer, sign < 0)
    source = typed(model, tensor)  # negated channels may have resized the accumulator
    step = source.channel_gain() * source.type.lsb
    table, corrections = requant_math.thresholds(ops, end.quantize, end.reached, end.out_type, step,
                                                 source.type.min_code, source.type.max_code)
    table_type = FixedType.for_range(source.type.min_code, source.type.max_code + 1, source.type.frac_bits)
    inputs.append(add_constant(model, fresh_name(model, f"{name}/thresholds"), _compact_rows(table), table_type))
    checked = "checked exactly" if float_chain.exact_value(ops, 0, Fraction(0)) is not None else \
        "the float64 function on every code"
    fixes = f", {corrections} corrected from float64" if corrections else ""
    return dict(mode="thresholds"), (f"{table.shape[1]} thresholds per channel x {channels} channel(s) to "
                                     f"{end.out_type} (exact: {checked}{fixes})")


def _multiplier_plan(ops, end, step, low, high, channels, options):
    """The exact multiplier of an affine chain, or an exact dyadic output; None if neither applies."""
    affines = [float_chain.affine(ops, c) for c in range(channels)]
    if any(a is None for a in affines):
        return None
    steps = [Fraction(float(s)) for s in step]
    if end is None:
        found = requant_math.exact_output(affines, steps, low, high)
        if found is None:
            return None
        multipliers, offsets, frac, (lowest, highest), (clip_low, clip_high) = found
        if max(abs(lowest), abs(highest)) >= 2**62:
            return None
        out_type = FixedType.for_range(lowest, highest, frac).with_(saturation=Saturation.SAT)
        clip = None
        if clip_low is not None or clip_high is not None:
            clip = [max(out_type.min_code, clip_low if clip_low is not None else out_type.min_code),
                    min(out_type.max_code, clip_high if clip_high is not None else out_type.max_code)]
        attrs = dict(mode="multiply_shift", shift=[0], multiplier=_compact(multipliers), offset=_compact(offsets),
                     clip=clip)
        bits = max(abs(m) for m in multipliers).bit_length() + 1
        return attrs, out_type, f"exact fixed-point output {out_type}: code = t x M + O ({bits}-bit M, no rounding)", None
    if end.rounding is None or end.out_type.bipolar:
        return None
    out = end.out_type
    plan = requant_math.exact_multiplier(affines, steps, Fraction(end.step), end.rounding, low, high,
                                         out.min_code, out.max_code)
    if plan is None:
        return None
    if options.multiplier_bits is not None and plan.multiplier_bits > options.multiplier_bits:
        return _approximate_plan(ops, end, step, low, high, channels, options)
    attrs = dict(mode="multiply_shift", shift=_compact(plan.shift), multiplier=_compact(plan.multiplier),
                 offset=_compact(plan.offset), rounding="type" if plan.half_even else "floor",
                 clip=list(plan.clip) if plan.clip else None)
    width = (max(abs(low), abs(high)) * max(abs(m) for m in plan.multiplier) + max(abs(o) for o in plan.offset))
    note = (f"exact multiplier to {out}: {plan.multiplier_bits}-bit M, {plan.offset_bits}-bit offset, shift "
            f"{sorted(set(plan.shift))}, product {width.bit_length() + 1} bits")
    return attrs, out, note, None


def _approximate_plan(ops, end, step, low, high, channels, options):
    """A multiplier of limited precision for the chain's affine form (float64): reported with its bound."""
    a, b, clip_low = _float_affine(ops, channels)
    s_out = end.step if end is not None else math.ldexp(1.0, -options.output_frac_bits)
    out_type = end.out_type if end is not None else _output_type(step * a, low, high, options.output_frac_bits,
                                                                 False, offset=b)
    c, d = a * step / s_out, b / s_out
    bits = options.multiplier_bits or 32
    largest = float(np.max(np.abs(c))) or 1.0
    shift = bits - 1 - math.ceil(math.log2(largest))
    multiplier = np.round(np.ldexp(c, shift)).astype(np.int64)
    offset = np.round(np.ldexp(d, shift)).astype(np.int64)
    bound = max(abs(low), abs(high)) * float(np.max(np.abs(c - np.ldexp(multiplier, -shift)))) + float(
        np.max(np.abs(d - np.ldexp(offset, -shift))))
    clip = [0, out_type.max_code] if clip_low and out_type.signed else None
    attrs = dict(mode="multiply_shift", shift=[shift], multiplier=_compact(multiplier), offset=_compact(offset),
                 clip=clip)
    why = "the chain is not affine" if any(op.kind in ("bn", *float_chain.ACTIVATIONS) for op in ops) else \
        f"--multiplier-bits {options.multiplier_bits}" if options.multiplier_bits else "no exact form fits"
    warning = (f"approximate {bits}-bit multiplier to {out_type} ({why}): off by up to {bound:.2g} lsb before "
               f"rounding, so an output can be 1 lsb off where the exact value lies that close to a rounding boundary")
    return attrs, out_type, warning, warning


def _float_affine(ops, channels) -> tuple[np.ndarray, np.ndarray, bool]:
    """(a, b, relu at the end) with chain(x) ~ relu?(a x + b) in float64 (BatchNorm folded)."""
    a, b, relu = np.ones(channels), np.zeros(channels), False
    for op in ops:
        if relu and op.kind != "relu":
            raise QonnxError("a Relu followed by more float ops before the quantizer has no approximate form")
        if op.kind == "relu":
            relu = True
        elif op.kind == "mul":
            a, b = a * op.values[0], b * op.values[0]
        elif op.kind == "add":
            b = b + op.values[0]
        elif op.kind == "rsub":
            a, b = -a, op.values[0] - b
        elif op.kind == "div":
            a, b = a / op.values[0], b / op.values[0]
        elif op.kind == "bn":
            scale, bias, mean, var, epsilon = op.values
            factor = scale / np.sqrt(var + epsilon)
            a, b = a * factor, (b - mean) * factor + bias
        else:
            raise QonnxError(f"{op.kind} before a wide quantizer: no exact or approximate form (use "
                             "--activation-table-bits to table it)")
    return a, b, relu


def _compact(values) -> list[int]:
    """One value when every channel has the same (the attribute may give one for all)."""
    values = [int(v) for v in np.ravel(values)]
    return values[:1] if len(set(values)) == 1 else values


def _compact_rows(table: np.ndarray) -> np.ndarray:
    return table[:1] if np.all(table == table[:1]) else table


def _output_type(step, low, high, frac_bits: int, relu: bool, offset=0.0) -> FixedType:
    """Fixed-point type with frac_bits fraction bits holding relu?(step x + offset) over the input range."""
    ends = np.stack([step * low + offset, step * high + offset])
    if relu:
        ends = np.maximum(ends, 0.0)
    scale = math.ldexp(1.0, frac_bits)
    return FixedType.for_range(int(math.floor(ends.min() * scale)) - 1, int(math.ceil(ends.max() * scale)) + 1,
                               frac_bits).with_(saturation=Saturation.SAT)


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
    layer = GraphView(model).op(producer)  # Dense or Conv: output channels are the weights' last axis
    weight_edge = layer.input_edge("weight")
    weight = np.array(layer.weight)
    weight[..., flip] *= -1
    weight_type = weight_edge.type
    if not weight_type.bipolar and not weight_type.contains(int(weight.min()), int(weight.max())):
        weight_type = weight_type.with_(width=weight_type.width + 1, int_bits=weight_type.int_bits + 1)
    weight_gain = weight_edge.channel_gain() * np.where(flip, -1.0, 1.0)
    add_constant(model, producer.input[1], weight, weight_type, weight_gain)
    if layer.has_input("bias"):
        bias_edge = layer.input_edge("bias")
        bias = np.array(layer.bias)
        bias[flip] *= -1
        bias_type = FixedType.for_range(int(bias.min()), int(bias.max()), bias_edge.type.frac_bits)
        add_constant(model, producer.input[2], bias, bias_type, bias_edge.channel_gain() * np.where(flip, -1.0, 1.0))
    (acc,) = GraphView(model).op(producer).infer()
    set_edge(model, producer.output[0], acc)
