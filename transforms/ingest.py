"""Passes that read the QONNX spellings other exporters write as the standard QONNX the lowering takes.

`IntQuant` (qonnx >= 0.4's name for Quant) and the HAWQ exporter's graphs (domain `hawq2qonnx`).

What HAWQ's exporter writes (read in jicampos/HAWQ, `hawq/utils/export/function.py`,
`export_modules.py`, `manager.py` and the older `utils/export/...`): `torch.onnx.export(opset 11)`
with custom symbolics in the domain `hawq2qonnx` (opset version 1) - `hawq2qonnx::Quant(x,
scale, zero_point, bit_width; signed, narrow, rounding_mode)` with qonnx's inputs and
attributes, `BipolarQuant(x, scale)`, `Trunc(x, scale, zero_point, in_bits, out_bits;
rounding_mode)` (qonnx Trunc v1), `Round(x)`, and in older versions `Conv(x, w; dilations, group,
kernel_shape, pads, strides)`; then onnxoptimizer's extract_constant_to_initializer, qonnx's
cleanup, to_channels_last, and a merge of a Mul followed by a Div into one Mul. A layer reads:

    activation  QuantAct:    Quant(x, s_a, 0, bits; signed = symmetric)        real scale s_a
    QuantLinear:             Div(x_q, s_a)                                     back to the codes
                             MatMul(., Quant(W_int^T, 1, 0, w_bits))           integer weights, scale 1
                             Add(., Quant(b_int, 1, 0, b_bits))                integer bias, scale 1
                             Round(.)                                          (linear_rounding)
                             Mul(., s_w * s_a)                                 float rescale, per tensor
                                                                               or per output channel
    (ReLU, then the next QuantAct's Quant; the last layer ends with the Mul)
    QuantAveragePool2d:      Div(x, s), hawq2qonnx::Round, AveragePool, Trunc(. + 0.01, 1, 0, 32, 32),
                             Mul(s)

Older versions (`utils/export/export_modules.py`) rounded before the activation quantizer -
`Round(Div(x, s_prev))`, `Quant(., s')`, `Mul(s_a / s')` - a second rounding that no qonnx
quantizer has: that Round is left alone and named by the final check. (Their torch-side Quant
returned integer codes; the graph is read with qonnx's semantics, as qonnx executes it.)

The rewrites below turn the layer into what the lowering takes, each exactly equal in value:
`hawq-domain` renames the domain; `codes-to-quant` moves the Div in front of the Quant
(Quant(x, s) / s == Quant(x / s, 1)); `drop-integer-round` removes a Round of integers;
`rescale-into-weights` moves the Mul into the weight and bias quantizers' scales; `round-clip-to-quant`
reads Round + Clip to an integer range as Quant(scale 1). Anything else is left alone, and the
final check names the node that blocked lowering.
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from .base import Pass
from .graph import (QUANT_OPS, attribute, constant, fresh_name, quantized_constant, remove_dead_nodes, replace_node,
                    rewire, single_consumer)
from .qcdq import quant_range

QUANT_DOMAIN = "qonnx.custom_op.general"
HAWQ_DOMAIN = "hawq2qonnx"
_HAWQ_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")  # qonnx's ops, spelt in the HAWQ domain
_HAWQ_STANDARD_OPS = ("Round", "Conv")  # standard ONNX ops, spelt in the HAWQ domain


class IntQuantToQuant(Pass):
    """IntQuant -> Quant, same inputs and attributes.

    qonnx renamed Quant to IntQuant (qonnx docs/qonnx-custom-ops/intquant_v1.md: "This operator
    was previously named `Quant`"; qonnx/custom_op/general/quant.py is `IntQuant as Quant`): one
    op, two names, so renaming keeps the value.
    """

    name = "int-quant-to-quant"
    description = "qonnx IntQuant -> Quant (the same op under its older name)"
    consumes = ("IntQuant",)

    def apply(self, model, context):
        changed = False
        for node in model.graph.node:
            if node.op_type == "IntQuant":
                node.op_type = "Quant"
                changed = True
        return changed


class HawqDomain(Pass):
    """hawq2qonnx::{Quant, BipolarQuant, Trunc} -> qonnx's domain; hawq2qonnx::{Round, Conv} -> ONNX's.

    HAWQ's symbolics emit qonnx's ops (same inputs and attributes) and plain torch.round /
    convolution under its own domain name; only the name changes.
    """

    name = "hawq-domain"
    description = "HAWQ exporter's hawq2qonnx domain -> qonnx and standard ONNX domains"

    def apply(self, model, context):
        changed = False
        for node in model.graph.node:
            if node.domain != HAWQ_DOMAIN:
                continue
            if node.op_type in _HAWQ_QONNX_OPS:
                node.domain = QUANT_DOMAIN
            elif node.op_type in _HAWQ_STANDARD_OPS:
                node.domain = ""
            else:
                continue
            changed = True
        if changed:
            for entry in list(model.model.opset_import):
                if entry.domain == HAWQ_DOMAIN and not any(n.domain == HAWQ_DOMAIN for n in model.graph.node):
                    model.model.opset_import.remove(entry)
            if not any(entry.domain == QUANT_DOMAIN for entry in model.model.opset_import):
                model.model.opset_import.append(helper.make_opsetid(QUANT_DOMAIN, 1))
        return changed


def _scalar(model, tensor: str) -> float | None:
    value = constant(model, tensor)
    return None if value is None or value.size != 1 else float(value.ravel()[0])


def _bypass(model, node, source: str | None = None) -> None:
    """Remove a node whose output equals its input `source` (default: the first), keeping a graph output's name."""
    source, result = source or node.input[0], node.output[0]
    outputs = {o.name for o in model.graph.output}
    producer = model.find_producer(source)
    model.graph.node.remove(node)
    if result in outputs and producer is not None and source not in outputs:
        producer.output[list(producer.output).index(source)] = result
        rewire(model, source, result)
    else:
        rewire(model, result, source)


class CodesToQuant(Pass):
    """Quant(x, s) -> Div(s)  =>  Div(x, s) -> Quant(1): HAWQ's layers divide their input back to the codes.

        have: x -> Quant(x, s, 0, b) -> Div(., s) -> codes
        want: x -> Div(x, s) -> Quant(., 1, 0, b) -> codes

    Exact: Quant(x, s) / s = round(clamp(x / s)) * s / s = Quant(x / s, 1), and x / s is the
    division qonnx's Quant does first (the same float64 operation). BipolarQuant likewise:
    sign(x / s) = sign(x) for s > 0. Only for one scale (per tensor) equal to the divisor, and a
    quantizer read by that Div alone.
    """

    name = "codes-to-quant"
    description = "Quant(x, s) -> Div(s) => Div(x, s) -> Quant(scale 1) (HAWQ's integer codes)"

    def apply(self, model, context):
        matches = []
        for div in model.get_nodes_by_op_type("Div"):
            quant = model.find_producer(div.input[0])
            if quant is None or quant.op_type not in QUANT_OPS or single_consumer(model, quant.output[0]) != div:
                continue
            scale, divisor = _scalar(model, quant.input[1]), _scalar(model, div.input[1])
            zero = constant(model, quant.input[2]) if quant.op_type != "BipolarQuant" else np.zeros(1)
            if scale is None or divisor != scale or zero is None or np.any(zero != 0):
                context.skip(div.name, "not a Div by the scale of the quantizer before it")
                continue
            matches.append((quant, div))
        for quant, div in matches:
            scaled, codes = fresh_name(model, f"{div.output[0]}/scaled"), div.output[0]
            unit = fresh_name(model, f"{quant.name}/unit_scale")
            model.graph.initializer.append(numpy_helper.from_array(np.float32(1.0), unit))
            div.input[:] = [quant.input[0], div.input[1]]
            div.output[:] = [scaled]
            quant.input[0], quant.input[1] = scaled, unit
            quant.output[:] = [codes]
            model.graph.node.remove(div)
            model.graph.node.insert(list(model.graph.node).index(quant), div)
            context.report.add(quant.name, "Quant(x, s) / s read as Quant(x / s, 1)")
        return bool(matches)


_INTEGER_PRESERVING = ("MatMul", "Add", "Sub", "Mul", "Conv", "Relu", "Neg", "Abs", "MaxPool", "Max", "Min",
                       "Concat", "Identity")
_INTEGER_SHAPING = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze")  # only input 0 carries data
_INTEGER_RESULTS = ("Round", "Floor", "Ceil")


def integer_valued(model, tensor: str) -> bool:
    """Whether every value of `tensor` is a whole number in exact arithmetic: integer constants,
    quantizers (Quant, BipolarQuant, Trunc) with whole-number scales, Round, and sums, products,
    maxima, ReLUs and reshapes of those."""
    known: dict[str, bool] = {}
    pending = [tensor]
    while pending:
        name = pending[-1]
        if name in known:
            pending.pop()
            continue
        value = constant(model, name)
        producer = model.find_producer(name)
        if value is not None or producer is None:
            known[name] = value is not None and bool(np.all(value == np.round(value)))
            pending.pop()
            continue
        if producer.op_type in _INTEGER_RESULTS:
            known[name] = True
        elif producer.op_type in (*QUANT_OPS, "Trunc"):  # codes times the scale (Trunc: its output scale)
            scale = constant(model, producer.input[4 if len(producer.input) == 6 else 1])
            zero = constant(model, producer.input[2]) if producer.op_type != "BipolarQuant" else np.zeros(1)
            known[name] = scale is not None and zero is not None and bool(np.all(scale == np.round(scale))) \
                and not np.any(zero != 0)
        elif producer.op_type in _INTEGER_PRESERVING or producer.op_type in _INTEGER_SHAPING:
            sources = [t for t in producer.input[:1 if producer.op_type in _INTEGER_SHAPING else None] if t]
            missing = [t for t in sources if t not in known]
            if missing:
                pending.extend(missing)
                continue
            known[name] = all(known[t] for t in sources)
        else:
            known[name] = False
        pending.pop()
    return known[tensor]


class DropIntegerRound(Pass):
    """Round(v) => v when v holds whole numbers (HAWQ rounds the integer accumulator of each layer).

        have: MatMul(codes, Quant(W_int, 1)) -> Add(Quant(b_int, 1)) -> Round -> y
        want: MatMul(codes, Quant(W_int, 1)) -> Add(Quant(b_int, 1)) -> y

    Exact: rounding a whole number gives it back (see `integer_valued` for what is known to be one).
    """

    name = "drop-integer-round"
    description = "Round of a whole-number tensor (HAWQ's integer accumulator) => removed"
    consumes = ("Round",)

    def apply(self, model, context):
        rounds = [node for node in model.get_nodes_by_op_type("Round") if integer_valued(model, node.input[0])]
        for node in rounds:
            _bypass(model, node)
            context.report.add(node.name, "Round of whole numbers removed (it changes nothing)")
        return bool(rounds)


def _clip_bounds(model, clip) -> tuple[float, float] | None:
    bounds = []
    for position, (name, default) in enumerate((("min", -np.inf), ("max", np.inf)), start=1):
        if len(clip.input) > position and clip.input[position]:
            value = _scalar(model, clip.input[position])
            if value is None:
                return None
            bounds.append(value)
        else:
            bounds.append(float(attribute(clip, name, default)))
    return bounds[0], bounds[1]


class RoundClipToQuant(Pass):
    """Round -> Clip(lo, hi), or Clip -> Round, with [lo, hi] the range of b bits => Quant(scale 1).

        have: v -> Round -> Clip(-2**(b-1), 2**(b-1) - 1) -> codes      (HAWQ's requantization)
        want: v -> Quant(v, 1, 0, b; signed, ROUND) -> codes

    Exact: qonnx's Quant with scale 1 is round_half_even(clamp(v, lo, hi)); ONNX Round is half to
    even too, and clamping to whole-number bounds before or after rounding gives the same value.
    Unsigned ranges [0, 2**b - 1] and the narrow forms are read the same way.
    """

    name = "round-clip-to-quant"
    description = "Round + Clip to the range of b bits => Quant(scale 1)"
    consumes = ("Round",)

    def apply(self, model, context):
        matches = []
        for node in model.get_nodes_by_op_type("Round"):
            after = single_consumer(model, node.output[0])
            before = model.find_producer(node.input[0])
            if after is not None and after.op_type == "Clip":
                clip = after
            elif before is not None and before.op_type == "Clip" and single_consumer(model, before.output[0]) == node:
                clip = before
            else:
                context.skip(node.name, "not a quantizer: Round of a value not known to be whole, with no Clip to "
                             "the range of b bits beside it (read are Round of whole numbers, and Round + Clip to b "
                             "bits as a Quant with scale 1)")
                continue
            bounds = _clip_bounds(model, clip)
            found = None if bounds is None or not all(np.isfinite(bounds)) or bounds != tuple(np.round(bounds)) \
                else quant_range(int(bounds[0]), int(bounds[1]))
            if found is None:
                context.skip(node.name, f"the Clip beside it ({clip.name!r}) does not clamp to the range of a whole "
                             "number of bits: not a quantizer")
                continue
            matches.append((node, clip, found))
        for node, clip, (bits, signed, narrow) in matches:
            pair = sorted((node, clip), key=list(model.graph.node).index)
            names = [fresh_name(model, f"{node.name}/{what}") for what in ("scale", "zeropt", "bitwidth")]
            for name, value in zip(names, (1.0, 0.0, float(bits))):
                model.graph.initializer.append(numpy_helper.from_array(np.float32(value), name))
            quant = helper.make_node("Quant", [pair[0].input[0], *names], [pair[1].output[0]], name=node.name,
                                     domain=QUANT_DOMAIN, signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")
            replace_node(model, pair[0], quant, also_remove=[pair[1]])
            context.report.add(node.name, f"Round + Clip read as a {bits}-bit Quant with scale 1")
        return bool(matches)


def _float32_exact(values: np.ndarray) -> bool:
    return bool(np.all(values.astype(np.float32).astype(np.float64) == values))


def _rescaled(codes: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(float32 values, float32 scale) of a quantizer with these codes and scale, or None if float32
    cannot hold the scale or the values do not round back to the codes."""
    if not _float32_exact(scale):
        return None
    values = (codes * scale).astype(np.float32)
    if not np.array_equal(np.round(values.astype(np.float64) / scale), codes):
        return None
    return values, scale.astype(np.float32)


def _compact(scale: np.ndarray) -> np.ndarray:
    """A per-column scale of an (in, out) weight as (1, out), a uniform one as a scalar."""
    if np.all(scale == scale.ravel()[0]):
        return scale.ravel()[:1].reshape(())
    return scale[:1] if scale.ndim == 2 and np.all(scale == scale[:1]) else scale


class RescaleIntoWeights(Pass):
    """MatMul(x, Quant(W, 1)) [-> Add(Quant(b, 1) or b)] -> Mul(m)  =>  MatMul(x, Quant(W m, m)) [-> Add(Quant(b m, m))]

    HAWQ writes integer weights and bias behind quantizers of scale 1, and the layer's float
    rescale s_w * s_a (per tensor or per output channel) as a Mul after it; the lowering reads a
    weight quantizer's scale. Exact: (x @ W + b) m = x @ (W m) + b m with m per column of W.
    Done only when every new scale is a float32 number, the float32 values codes * scale round back
    to the codes, and a float bias b * m is a float32 number; otherwise the Mul is left alone.
    """

    name = "rescale-into-weights"
    description = "MatMul(x, Quant(W, 1)) [+ b] -> Mul(m) => the rescale m becomes the quantizers' scale (HAWQ)"

    def apply(self, model, context):
        matches = [match for mul in model.get_nodes_by_op_type("Mul") if (match := _rescale_match(model, mul, context))]
        renames: dict[str, str] = {}
        for match in matches:
            renames.update(_rescale(model, **match))
            context.report.add(match["mul"].name, "float rescale moved into the weight (and bias) quantizer scales")
        if matches:
            remove_dead_nodes(model)
            names = {node.name for node in model.graph.node}
            for node in model.graph.node:  # a new quantizer takes the name of the one it replaced, once that is gone
                if node.name in renames and renames[node.name] not in names:
                    names.add(renames[node.name])
                    node.name = renames[node.name]
        return bool(matches)


def _rescale_match(model, mul, context) -> dict | None:
    for position in (0, 1):
        rescale = constant(model, mul.input[1 - position])
        producer = model.find_producer(mul.input[position])
        if rescale is not None and producer is not None and producer.op_type in ("MatMul", "Add"):
            break
    else:
        return None
    matmul, bias_node, bias = producer, None, None
    if producer.op_type == "Add":
        sources = [model.find_producer(t) for t in producer.input]
        found = [i for i, p in enumerate(sources) if p is not None and p.op_type == "MatMul"]
        if len(found) != 1:
            return None
        bias_node, matmul, bias = producer, sources[found[0]], producer.input[1 - found[0]]
    if single_consumer(model, matmul.output[0]) != (mul if bias_node is None else bias_node) or \
            (bias_node is not None and single_consumer(model, bias_node.output[0]) != mul):
        return None
    weights = quantized_constant(model, matmul.input[1])
    if weights is None or weights[0].ndim != 2 or np.any(weights[1] != 1.0):
        return None  # only HAWQ's integer weights (scale 1); a real weight scale stays where it is
    codes, _, params = weights
    outputs = codes.shape[1]
    if rescale.size not in (1, outputs) or (rescale.ndim == 2 and rescale.shape[0] != 1) or rescale.ndim > 2:
        context.skip(mul.name, "the rescale is not per tensor or per output channel: left as a float Mul")
        return None
    if np.any(rescale <= 0):
        context.skip(mul.name, "a rescale <= 0 is no quantizer scale: left as a float Mul")
        return None
    column = np.broadcast_to(rescale.reshape(-1), (outputs,)).astype(np.float64)
    new_weights = _rescaled(codes.astype(np.float64), np.broadcast_to(column, codes.shape))
    new_bias = None
    if bias is not None:
        quantized = quantized_constant(model, bias)
        value = constant(model, bias)
        if quantized is not None and quantized[0].size in (1, outputs) and np.all(quantized[1] == 1.0):
            bias_codes = np.broadcast_to(quantized[0].reshape(-1), (outputs,)).astype(np.float64)
            new_bias = (_rescaled(bias_codes, column), quantized[2])
            if new_bias[0] is None:
                new_bias = None
        elif value is not None and value.size in (1, outputs):
            product = np.broadcast_to(value.reshape(-1), (outputs,)) * column
            new_bias = ((product.astype(np.float32), None), None) if _float32_exact(product) else None
        if new_bias is None:
            context.skip(mul.name, "the bias is neither a quantizer of scale 1 nor a constant whose product with the "
                         "rescale is a float32 number: left as a float Mul")
            return None
    if new_weights is None:
        context.skip(mul.name, "the weights times the rescale are not exact in float32: left as a float Mul")
        return None
    return dict(mul=mul, source=mul.input[position], matmul=matmul, weights=(new_weights, params), bias_node=bias_node,
                bias=new_bias)


def _quantizer(model, base: str, values: np.ndarray, scale: np.ndarray, params: dict) -> tuple[str, str]:
    """A new Quant (or BipolarQuant) of a new constant: (its name, its output)."""
    name = fresh_name(model, base)
    inputs = [fresh_name(model, f"{name}/values"), fresh_name(model, f"{name}/scale")]
    arrays = [values, _compact(scale)]
    if not params["bipolar"]:
        inputs += [fresh_name(model, f"{name}/zeropt"), fresh_name(model, f"{name}/bitwidth")]
        arrays += [np.float32(0), np.float32(params["bits"])]
    for tensor, array in zip(inputs, arrays):
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), tensor))
    output = fresh_name(model, f"{name}/out")
    if params["bipolar"]:
        node = helper.make_node("BipolarQuant", inputs, [output], name=name, domain=QUANT_DOMAIN)
    else:
        node = helper.make_node("Quant", inputs, [output], name=name, domain=QUANT_DOMAIN, signed=int(params["signed"]),
                                narrow=int(params["narrow"]), rounding_mode="ROUND")
    model.graph.node.insert(0, node)  # reads only constants; cleanup sorts the graph
    return name, output


def _rescale(model, mul, source, matmul, weights, bias_node, bias) -> dict[str, str]:
    """Rewrite one match; returns {new quantizer's name: the name of the quantizer it replaces}."""
    renames = {}

    def replaced(tensor):
        producer = model.find_producer(tensor)
        while producer is not None and producer.op_type in ("Transpose", "Reshape"):
            producer = model.find_producer(producer.input[0])
        return producer.name

    (values, scale), params = weights
    old = replaced(matmul.input[1])
    name, matmul.input[1] = _quantizer(model, f"{matmul.name}/weight_quant", values, scale, params)
    renames[name] = old
    if bias_node is not None:
        (values, scale), params = bias
        position = 0 if model.find_producer(bias_node.input[0]) != matmul else 1
        if params is None:
            bias_node.input[position] = _float_constant(model, f"{bias_node.name}/bias", values)
        else:
            old = replaced(bias_node.input[position])
            name, bias_node.input[position] = _quantizer(model, f"{bias_node.name}/bias_quant", values, scale, params)
            renames[name] = old
    _bypass(model, mul, source)
    return renames


def _float_constant(model, base: str, values: np.ndarray) -> str:
    name = fresh_name(model, base)
    model.graph.initializer.append(numpy_helper.from_array(values.astype(np.float32), name))
    return name
