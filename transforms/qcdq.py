"""qcdq-to-quant: QuantizeLinear -> [Clip] -> DequantizeLinear, and DequantizeLinear of an integer
constant, read as the one qonnx Quant they compute.

What writes these: Brevitas' `export_onnx_qcdq` (activations Q -> [Clip] -> DQ; weights
Clip(int8 constant) -> DQ, per output channel along `axis`; biases DQ(int32 constant)) and
onnxruntime's static quantization in QDQ format (weights DQ(int8 constant), biases DQ(int32)).

    have: x -> QuantizeLinear(s, z) -> [Clip(lo, hi)] -> DequantizeLinear(s, z) -> y
    want: x -> Quant(s, 0, bits; signed, narrow, ROUND) -> y                        named as the DQ

    have: codes (integer constant) -> [Clip(lo, hi)] -> DequantizeLinear(s, 0; axis) -> w
    want: Quant(codes * s (float32), s reshaped to the axis, 0, bits) -> w          named as the DQ

Exact: QuantizeLinear is saturate(round_half_even(x / s) + z) and DequantizeLinear (q - z) * s;
with z = 0 and integer bounds, clamping before or after rounding gives the same codes, so
this is qonnx's Quant with ROUND over the integer range [lo, hi] (the dtype's range, narrowed
by the Clip). That range must be the range of a whole number of bits - unsigned [0, 2**b - 1]
or narrow [0, 2**b - 2], signed [-2**(b-1), 2**(b-1) - 1] or narrow [-(2**(b-1) - 1), ...] -
or the Clip is refused. A constant's float32 values codes * s must round back to the codes
(always true below 2**23). Zero points other than 0 (asymmetric quantization, onnxruntime's
default for activations) are refused: a Quant with a zero point is not supported downstream.

The activation chains are fused by qonnx's own `QCDQToQuant`. Read for what it does (qonnx
1.0, qonnx/transformation/qcdq_to_qonnx.py), it needs help here, which this pass gives: it
reads tensor types from value_info (shapes inferred first), reshapes per-channel scales only
when `axis` is set (made explicit) and fails on a 0-d scale with `axis` (dropped), rewrites
shared scale and zero-point tensors in place (made unique first), names the new node after
the input tensor (renamed to the DQ's name), and reads the bit width from the Clip as
ceil(log2(hi - lo + 1)) with narrow only when lo == -hi: unsigned narrow [0, 254] came out as
plain 8 bits, and a Clip like [0, 5] that no bit width spans silently lost its bound; it also
reads the bounds as inputs only (opset >= 11) and asserts lo <= 0. So the Clip is read here
(bits and narrow from the range; a range no bit width spans is refused) and taken out of the
chain before qonnx fuses QuantizeLinear -> DequantizeLinear. Its DequantizeLinear of an integer initializer skips a Clip on the
constant (Brevitas clips its int8 weights to the bit width: read here) and casts the codes
times the scale to float32 unchecked (checked here, refused beyond 2**23).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.transformation.general import GiveUniqueParameterTensors
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

from qonnx_ir.errors import QonnxError

from .base import Pass
from .graph import attribute, fresh_name, remove_dead_nodes

QUANT_DOMAIN = "qonnx.custom_op.general"
_INTEGER_RANGES = {
    TensorProto.INT8: (-(2**7), 2**7 - 1), TensorProto.UINT8: (0, 2**8 - 1),
    TensorProto.INT16: (-(2**15), 2**15 - 1), TensorProto.UINT16: (0, 2**16 - 1),
    TensorProto.INT32: (-(2**31), 2**31 - 1), TensorProto.UINT32: (0, 2**32 - 1),
}
_FLOAT32_EXACT_CODES = 2**23  # |code| below this: float32(code * s) / s rounds back to code


class QcdqToQuant(Pass):
    """QCDQ -> Quant, exactly (see the module docstring); refuses a chain no Quant computes."""

    name = "qcdq-to-quant"
    description = "QuantizeLinear -> [Clip] -> DequantizeLinear and DequantizeLinear(int constant) -> Quant"
    consumes = ("QuantizeLinear", "DequantizeLinear")

    def apply(self, model, context):
        dequantizers = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        if not dequantizers:
            _refuse_lonely_quantizers(model)
            return False
        _constant_nodes_to_initializers(model)
        chains = []
        for dq in dequantizers:
            if not _fold_constant(model, dq):
                chains.append(_chain(model, dq))
        if chains:
            _fuse_with_qonnx(model, chains)
        remove_dead_nodes(model)
        _refuse_lonely_quantizers(model)
        context.report.add("qcdq-to-quant", f"{len(dequantizers)} DequantizeLinear nodes read as Quant")
        return True


def _constant_nodes_to_initializers(model) -> None:
    """Constant nodes read by the quantize / clip / dequantize nodes become initializers (cleanup would
    fold them only later, together with the integer weights this pass must see first)."""
    read = {name for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Clip")
            for name in node.input}
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in read]:
        entry = node.attribute[0] if len(node.attribute) == 1 else None
        if entry is None or entry.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            continue
        value = helper.get_attribute_value(entry)
        array = numpy_helper.to_array(value) if entry.name == "value" else np.asarray(
            value, dtype=np.float32 if entry.name.startswith("value_float") else np.int64)
        model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        model.graph.node.remove(node)


def _refuse_lonely_quantizers(model) -> None:
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            raise QonnxError("QuantizeLinear without a DequantizeLinear after it (integer tensors in the graph): "
                             "only QuantizeLinear -> [Clip] -> DequantizeLinear is read, as a Quant", node=node.name)


def _integer_range(elem_type: int, node) -> tuple[int, int]:
    if elem_type not in _INTEGER_RANGES:
        raise QonnxError(f"quantized type {TensorProto.DataType.Name(elem_type)} is not supported "
                         "(int8/uint8, int16/uint16, int32/uint32)", node=node.name)
    return _INTEGER_RANGES[elem_type]


def _clip_bounds(model, clip, low: int, high: int) -> tuple[int, int]:
    """[low, high] narrowed by a Clip with constant bounds (inputs since opset 11, attributes before)."""
    bounds = [low, high]
    for position, name in ((1, "min"), (2, "max")):
        if len(clip.input) > position and clip.input[position]:
            value = model.get_initializer(clip.input[position])
            if value is None or value.size != 1:
                raise QonnxError("Clip bounds must be constant scalars to be read as a quantizer", node=clip.name)
            bounds[position - 1] = float(np.asarray(value).ravel()[0])
        elif attribute(clip, name) is not None:
            bounds[position - 1] = float(attribute(clip, name))
    low, high = max(low, bounds[0]), min(high, bounds[1])
    if low != int(low) or high != int(high):
        raise QonnxError(f"Clip bounds [{low:g}, {high:g}] of integer codes are not whole numbers", node=clip.name)
    return int(low), int(high)


def quant_range(low: int, high: int) -> tuple[int, bool, bool] | None:
    """(bits, signed, narrow) of the qonnx Quant whose code range is exactly [low, high], else None."""
    if low == 0 and high >= 1:
        for narrow in (False, True):
            bits = (high + 1 + narrow).bit_length() - 1
            if 2**bits - 1 - narrow == high:
                return bits, False, narrow
    if low < 0 < high + 1 and (high + 1) & high == 0:  # high = 2**(b-1) - 1
        bits = (high + 1).bit_length()
        if bits >= 2 and low in (-(high + 1), -high):
            return bits, True, low == -high
    return None


def _bits_of(low: int, high: int, node) -> tuple[int, bool, bool]:
    found = quant_range(low, high)
    if found is None:
        raise QonnxError(f"the integer range [{low}, {high}] is not that of a whole number of bits (signed "
                         "[-2**(b-1), 2**(b-1)-1], unsigned [0, 2**b-1], or their narrow forms): it cannot be read "
                         "as a quantizer", node=node.name)
    return found


def _zero_point(model, node, position: int) -> None:
    """Zero points must be constant zeros (absent means 0)."""
    if len(node.input) <= position or not node.input[position]:
        return
    zero = model.get_initializer(node.input[position])
    if zero is None:
        raise QonnxError(f"{node.op_type} zero point is not a constant", node=node.name)
    if np.any(zero != 0):
        raise QonnxError(f"{node.op_type} zero point {np.asarray(zero).ravel()[0]} is not 0: asymmetric quantization "
                         "is not supported (quantize symmetrically, e.g. onnxruntime's ActivationSymmetric=True)",
                         node=node.name)


def _scale(model, node) -> np.ndarray:
    scale = model.get_initializer(node.input[1])
    if scale is None:
        raise QonnxError(f"{node.op_type} scale is not a constant", node=node.name)
    return np.asarray(scale, dtype=np.float32)


def _axis_shape(scale: np.ndarray, shape: list[int], node) -> list[int] | None:
    """The shape a per-axis scale takes to broadcast like the DQ's `axis` over a tensor of `shape`;
    None when per tensor."""
    if scale.size == 1:
        return None
    if scale.ndim != 1:
        raise QonnxError(f"{node.op_type} scale of shape {list(scale.shape)}: blocked quantization is not supported",
                         node=node.name)
    axis = int(attribute(node, "axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape) or shape[axis] != scale.size:
        raise QonnxError(f"{node.op_type} has {scale.size} scales along axis {attribute(node, 'axis', 1)} of a "
                         f"tensor of shape {list(shape)}", node=node.name)
    broadcast = [1] * len(shape)
    broadcast[axis] = scale.size
    return broadcast


def _fold_constant(model, dq) -> bool:
    """DequantizeLinear([Clip](integer constant)) -> Quant(float32 constant). False if not that pattern."""
    source, clip = dq.input[0], None
    producer = model.find_producer(source)
    if producer is not None and producer.op_type == "Clip":
        clip, source = producer, producer.input[0]
        producer = model.find_producer(source)
    tensor = next((init for init in model.graph.initializer if init.name == source), None)
    if producer is not None or tensor is None:
        return False
    codes = numpy_helper.to_array(tensor)
    low, high = _integer_range(tensor.data_type, dq)
    if clip is not None:
        low, high = _clip_bounds(model, clip, low, high)
    bits, signed, narrow = _bits_of(low, high, clip or dq)
    _zero_point(model, dq, 2)
    scale = _scale(model, dq)
    shape = _axis_shape(scale, list(codes.shape), dq)
    scale = scale.reshape(shape) if shape else scale.reshape(())
    codes = np.clip(codes.astype(np.int64), low, high)
    if np.max(np.abs(codes), initial=0) >= _FLOAT32_EXACT_CODES:
        raise QonnxError(f"integer constant '{source}' holds codes of {np.max(np.abs(codes)):.0f}, beyond 2**23: "
                         "its dequantized values are not float32 numbers", node=dq.name)
    values = (codes * scale.astype(np.float64)).astype(np.float32)
    if not np.array_equal(np.round(values.astype(np.float64) / scale), codes):
        raise QonnxError(f"integer constant '{source}' times its scale does not round back to the codes in "
                         "float32", node=dq.name)
    names = [fresh_name(model, f"{dq.name}/{what}") for what in ("values", "scale", "zeropt", "bitwidth")]
    for name, value in zip(names, (values, scale, np.float32(0), np.float32(bits))):
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
    quant = helper.make_node("Quant", names, [dq.output[0]], name=dq.name, domain=QUANT_DOMAIN, signed=int(signed),
                             narrow=int(narrow), rounding_mode="ROUND")
    position = list(model.graph.node).index(dq)
    model.graph.node.remove(dq)
    model.graph.node.insert(position, quant)
    return True


class _Chain:
    def __init__(self, dq, clip, quantize, bits, signed, narrow):
        self.dq, self.clip, self.quantize = dq, clip, quantize
        self.name, self.output = dq.name, dq.output[0]  # the nodes are replaced: keep their names
        self.bits, self.signed, self.narrow = bits, signed, narrow


def _chain(model, dq) -> _Chain:
    """Check QuantizeLinear -> [Clip] -> DQ and compute its Quant's bits from the integer range."""
    producer = model.find_producer(dq.input[0])
    clip = None
    if producer is not None and producer.op_type == "Clip":
        clip, producer = producer, model.find_producer(producer.input[0])
    if producer is None or producer.op_type != "QuantizeLinear":
        raise QonnxError("DequantizeLinear of a tensor that neither QuantizeLinear -> [Clip] nor an integer "
                         "constant produces: it cannot be read as a quantizer", node=dq.name)
    quantize = producer
    for node in (quantize, dq):
        _zero_point(model, node, 2)
    if not np.array_equal(_scale(model, quantize), _scale(model, dq)):
        raise QonnxError(f"QuantizeLinear '{quantize.name}' and this DequantizeLinear have different scales: "
                         "not one quantizer", node=dq.name)
    zero = model.get_initializer(quantize.input[2]) if len(quantize.input) > 2 and quantize.input[2] else None
    elem_type = TensorProto.UINT8 if zero is None else helper.np_dtype_to_tensor_dtype(np.asarray(zero).dtype)
    low, high = _integer_range(elem_type, quantize)
    if clip is not None:
        low, high = _clip_bounds(model, clip, low, high)
    bits, signed, narrow = _bits_of(low, high, clip or quantize)
    return _Chain(dq, clip, quantize, bits, signed, narrow)


def _fuse_with_qonnx(model, chains: list[_Chain]) -> None:
    """Prepare what QCDQToQuant needs (see the module docstring), run it, then set names and bits."""
    for chain in chains:
        if len(chain.quantize.input) < 3 or not chain.quantize.input[2]:  # absent: uint8 0 (ONNX's default)
            name = fresh_name(model, f"{chain.quantize.name}/zero_point")
            model.graph.initializer.append(numpy_helper.from_array(np.array(0, np.uint8), name))
            chain.quantize.input[2:] = [name]
        if len(chain.dq.input) < 3 or not chain.dq.input[2]:
            chain.dq.input[2:] = [chain.quantize.input[2]]
        for node in (chain.quantize, chain.dq):
            if _scale(model, node).size == 1:
                for entry in [a for a in node.attribute if a.name == "axis"]:
                    node.attribute.remove(entry)
            elif attribute(node, "axis") is None:
                node.attribute.append(helper.make_attribute("axis", 1))
        for node in [n for n in (chain.quantize, chain.clip) if n is not None]:
            consumers = model.find_consumers(node.output[0])
            if len(consumers) != 1:
                raise QonnxError(f"{node.op_type} output read by {len(consumers)} nodes: only a chain to one "
                                 "DequantizeLinear is read as a quantizer", node=node.name)
        if chain.clip is not None:  # its range is in chain.bits: qonnx is given QuantizeLinear -> DequantizeLinear
            chain.dq.input[0] = chain.clip.input[0]
            model.graph.node.remove(chain.clip)
    prepared = model.transform(GiveUniqueParameterTensors(), make_deepcopy=False, cleanup=False)
    prepared = prepared.transform(InferShapes(), make_deepcopy=False, cleanup=False)
    for chain in chains:  # qonnx reshapes a per-channel scale by the tensor's inferred shape
        scale = _scale(prepared, chain.dq)
        if scale.size > 1:
            shape = prepared.get_tensor_shape(chain.dq.input[0])
            if shape is None:
                raise QonnxError("per-channel DequantizeLinear of a tensor of unknown shape", node=chain.name)
            _axis_shape(scale, shape, chain.dq)
    prepared = prepared.transform(QCDQToQuant(), make_deepcopy=False, cleanup=False)
    model.model.CopyFrom(prepared.model)
    for chain in chains:
        fused = model.find_producer(chain.output)
        if fused is None or fused.op_type != "Quant":
            raise QonnxError("qonnx's QCDQToQuant did not fuse this QuantizeLinear -> DequantizeLinear chain",
                             node=chain.name)
        fused.name = chain.name
        for entry in [a for a in fused.attribute if a.name in ("signed", "narrow")]:
            fused.attribute.remove(entry)
        fused.attribute.extend([helper.make_attribute("signed", int(chain.signed)),
                                helper.make_attribute("narrow", int(chain.narrow))])
        bits = fresh_name(model, f"{chain.name}/bitwidth")
        model.graph.initializer.append(numpy_helper.from_array(np.float32(chain.bits), bits))
        fused.input[3] = bits
