"""Hardware dialect -> firmware C++ (configuration, constants and calls; the algorithms are in qnn/).

The same text serves both backends: types are spelt `qnn::int_t<W, S>` (ap_int or ac_int,
chosen by firmware/qnn_backend.h); only the interface types of the top function and the
top-level pragmas come from the backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import FixedType

from .names import identifier

_LITERAL_LIMIT = 2**62  # larger constants would need a string constructor; no lowering makes them


def code_type(fixed: FixedType) -> str:
    """The integer type holding a tensor's codes (bipolar codes are -1/+1: 2 signed bits)."""
    if fixed.bipolar:
        return "qnn::int_t<2, true>"
    return f"qnn::int_t<{fixed.width}, {'true' if fixed.signed else 'false'}>"


def int_type(bits: int, signed: bool = True) -> str:
    return f"qnn::int_t<{max(int(bits), 1)}, {'true' if signed else 'false'}>"


def bits_for(magnitude: int) -> int:
    """Signed bits holding every integer in [-magnitude, magnitude]."""
    return max(int(magnitude), 1).bit_length() + 1


def literal(value) -> str:
    value = int(value)
    if abs(value) >= _LITERAL_LIMIT:
        raise QonnxError(f"constant {value} is too wide for the generated C++ (more than 62 bits)")
    return f"{value}LL" if abs(value) >= 2**31 else str(value)


def storage_type(values) -> str:
    """The smallest plain C integer type holding every value (constant arrays compile instantly)."""
    values = np.asarray(values, dtype=np.int64)
    largest = int(np.abs(values).max()) if values.size else 0
    for ctype, bits in (("signed char", 8), ("short", 16), ("int", 32)):
        if largest < 2 ** (bits - 1):
            return ctype
    return "long long"


def array(ctype: str, name: str, values) -> str:
    values = [literal(v) for v in np.ravel(values)]
    rows = [", ".join(values[i : i + 16]) for i in range(0, len(values), 16)]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{len(values)}] = {{\n    {body}\n}};\n"


@dataclass
class Layer:
    """One hardware layer as C++: its config struct, its constant arrays and its call."""

    ident: str
    node_name: str
    op: str
    n_in: int
    n_out: int
    in_code: str
    out_code: str
    config: str
    arrays: list[str] = field(default_factory=list)
    kernel: str = ""
    arguments: list[str] = field(default_factory=list)
    reuse_factor: int = 1
    strategy: str = "latency"  # Dense: latency = weights in registers, resource = weights in a ROM


def _magnitude(fixed: FixedType) -> int:
    return max(abs(fixed.min_code), abs(fixed.max_code))


def _struct(name: str, members: list[str]) -> str:
    body = "\n".join(f"    {m}" for m in members)
    return f"struct {name} {{\n{body}\n}};\n"


def build_layers(model: ModelWrapper, settings_for) -> tuple[FixedType, list[Layer]]:
    """(input type, layers) for every node after InputQuant; settings_for(node_name) -> (R, strategy)."""
    nodes = list(model.graph.node)
    if not nodes or nodes[0].op_type != "InputQuant" or not all(hw.is_hw(n) for n in nodes):
        raise QonnxError("HLS generation needs a lowered hardware-dialect graph (run qonnx transform first)")
    input_type = hw.out_tensor(nodes[0]).type
    features = int(np.prod(hw.attribute(nodes[0], "in_shape", [1])))
    layers, width, in_type = [], features, input_type
    for index, node in enumerate(nodes[1:], start=1):
        ident = identifier(index, node.name)
        builder = {"Dense": _dense, "Requant": _requant, "Softmax": _softmax}.get(node.op_type)
        if builder is None:
            raise QonnxError(f"{node.op_type} has no HLS kernel", node=node.name)
        reuse, strategy = settings_for(node.name)
        layer = builder(model, node, ident, width, in_type, reuse)
        layer.strategy = strategy
        layers.append(layer)
        width, in_type = layer.n_out, hw.out_tensor(node).type
    return input_type, layers


def _dense(model, node, ident, n_in, in_type, reuse) -> Layer:
    weights = model.get_initializer(node.input[1]).astype(np.int64)
    n_out = weights.shape[1]
    if weights.shape[0] != n_in:
        raise QonnxError(f"Dense expects {weights.shape[0]} inputs, its producer gives {n_in}", node=node.name)
    bias = model.get_initializer(node.input[2]).astype(np.int64) if len(node.input) > 2 else np.zeros(n_out, np.int64)
    weight_type, bias_type = hw.type_attr(node, "weight_type"), hw.type_attr(node, "bias_type")
    accum_type = hw.type_attr(node, "accum_type")
    if not 1 <= reuse <= n_in * n_out:
        raise QonnxError(f"reuse factor {reuse} must be between 1 and the {n_in * n_out} multiplications", node=node.name)
    product = "qnn::multiply"
    if weight_type.bipolar:
        product = "qnn::xnor" if in_type.bipolar else "qnn::sign_select"
    config = _struct(f"{ident}_config", [
        f"static const unsigned n_in = {n_in}, n_out = {n_out}, reuse_factor = {reuse};",
        f"typedef {code_type(in_type)} input_t;",
        f"typedef {code_type(weight_type)} weight_t;",
        f"typedef {code_type(bias_type)} bias_t;",
        f"typedef {code_type(accum_type)} accum_t;",
        f"typedef {product} product;",
        f"typedef {storage_type(weights)} weight_store_t;",
        f"typedef {storage_type(bias)} bias_store_t;",
    ])
    arrays = [array(f"{ident}_config::weight_store_t", f"{ident}_weights", weights),
              array(f"{ident}_config::bias_store_t", f"{ident}_bias", bias)]
    return Layer(ident, node.name, "Dense", n_in, n_out, code_type(in_type), code_type(accum_type), config, arrays,
                 "dense", [f"{ident}_weights", f"{ident}_bias"], reuse)


def _requant(model, node, ident, n, in_type, reuse) -> Layer:
    out_type = hw.type_attr(node, "out_type")
    mode = hw.attribute(node, "mode")
    half_even = "true" if out_type.rounding.value == "RND_CONV" else "false"
    members = [
        f"typedef {code_type(in_type)} input_t;",
        f"typedef {code_type(out_type)} output_t;",
        f"static const bool half_even = {half_even}, relu = {'true' if hw.attribute(node, 'relu', 0) else 'false'}, "
        f"bipolar = {'true' if out_type.bipolar else 'false'};",
        f"static const long long out_min = {out_type.min_code}, out_max = {out_type.max_code};",
    ]
    if mode == "thresholds":
        thresholds = model.get_initializer(node.input[1]).astype(np.int64)
        levels = thresholds.shape[1]
        members = [f"static const unsigned n = {n}, levels = {levels};"] + members + [
            f"typedef {int_type(max(in_type.width, bits_for(np.abs(thresholds).max())) + 1)} threshold_t;",
            f"typedef {storage_type(thresholds)} threshold_store_t;"]
        arrays = [array(f"{ident}_config::threshold_store_t", f"{ident}_thresholds", thresholds)]
        return Layer(ident, node.name, "Requant", n, n, code_type(in_type), code_type(out_type),
                     _struct(f"{ident}_config", members), arrays, "requant_thresholds", [f"{ident}_thresholds"])
    shift = np.broadcast_to(hw.int_list(node, "shift"), (n,))
    multiplier = np.broadcast_to(hw.int_list(node, "multiplier") if mode == "multiply_shift" else [1], (n,))
    offset = np.broadcast_to(hw.int_list(node, "offset") if mode == "multiply_shift" else [0], (n,))
    bound = _magnitude(in_type) * int(np.abs(multiplier).max()) + int(np.abs(offset).max())
    bound <<= max(0, -int(shift.min()))
    members = [f"static const unsigned n = {n}, levels = 0;"] + members + [
        f"typedef {int_type(bits_for(bound) + 1)} wide_t;",
        f"typedef {int_type(bits_for(np.abs(multiplier).max()))} multiplier_t;",
        f"typedef {storage_type(multiplier)} multiplier_store_t;",
        f"typedef {storage_type(offset)} offset_store_t;",
    ]
    arrays = [array("int", f"{ident}_shift", shift)]
    arguments = [f"{ident}_shift"]
    kernel = "requant_shift"
    if mode == "multiply_shift":
        arrays += [array(f"{ident}_config::multiplier_store_t", f"{ident}_multiplier", multiplier),
                   array(f"{ident}_config::offset_store_t", f"{ident}_offset", offset)]
        arguments += [f"{ident}_multiplier", f"{ident}_offset"]
        kernel = "requant_multiply_shift"
    return Layer(ident, node.name, "Requant", n, n, code_type(in_type), code_type(out_type),
                 _struct(f"{ident}_config", members), arrays, kernel, arguments)


def _softmax(model, node, ident, n, in_type, reuse) -> Layer:
    out_type = hw.type_attr(node, "out_type")
    table = model.get_initializer(node.input[1]).astype(np.int64)
    exp_bits = int(hw.attribute(node, "exp_bits"))
    sum_bits = exp_bits + 1 + math.ceil(math.log2(max(n, 2)))
    members = [
        f"static const unsigned n = {n}, table_size = {len(table)}, table_shift = {hw.attribute(node, 'table_shift')}, "
        f"out_frac = {out_type.frac_bits};",
        f"static const long long out_max = {out_type.max_code};",
        f"typedef {code_type(in_type)} input_t;",
        f"typedef {code_type(out_type)} output_t;",
        f"typedef {int_type(in_type.width + 2)} distance_t;",
        f"typedef {int_type(exp_bits + 1, False)} exp_t;",
        f"typedef {int_type(sum_bits, False)} sum_t;",
        f"typedef {int_type(max(exp_bits + 1 + out_type.frac_bits, sum_bits) + 2, False)} wide_t;",
        f"typedef {storage_type(table)} exp_store_t;",
    ]
    return Layer(ident, node.name, "Softmax", n, n, code_type(in_type), code_type(out_type),
                 _struct(f"{ident}_config", members), [array(f"{ident}_config::exp_store_t", f"{ident}_exp_table", table)],
                 "softmax_table", [f"{ident}_exp_table"])
