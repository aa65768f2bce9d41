"""Everything `load` checks before any work starts (DESIGN.md contract 6).

Order matters: sizes are checked on the protobuf before a single constant is turned into an
array, so a hostile file cannot make us allocate gigabytes; then names, domains, structure
(producers, dangling tensors, cycles), the standard ops' schemas, and the numbers (every
constant finite, every quantizer parameter sane, BatchNorm variances non-negative).
Every error is one line and names the node as the file names it.
"""

from __future__ import annotations

import math
import re

import networkx as nx
import numpy as np
import onnx
from onnx import ModelProto, TensorProto, numpy_helper

from .errors import QonnxError
from .limits import (MAX_INITIALIZER_ELEMENTS, MAX_NODES, MAX_QUANT_BITS, MAX_SAMPLE_ELEMENTS, MAX_SCALE_EXPONENT,
                     MIN_SCALE_EXPONENT)

# Names in exports look like "/fc1/MatMul", "onnx::MatMul_12", "features.3.weight",
# "dense/BiasAdd:0". Anything else (shell or C metacharacters, path traversal) is refused.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_./:\-\[\]#@+ ]*")

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")
HAWQ_DOMAIN = "hawq2qonnx"  # HAWQ's exporter: qonnx's quantizers (and Round, Conv) under its own name
STANDARD_DOMAINS = ("", "ai.onnx")
HW_DOMAIN = "qonnx_ir.hw"
KNOWN_DOMAINS = (*STANDARD_DOMAINS, *QONNX_DOMAINS, HAWQ_DOMAIN, HW_DOMAIN)
QUANTIZER_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")  # IntQuant is qonnx >= 0.4's name for Quant
OPSET_RANGE = (7, 22)  # default-domain opsets we read (onnx 1.22 knows up to 22)
# qonnx custom ops: input counts
QONNX_ARITY = {"Quant": (4,), "IntQuant": (4,), "BipolarQuant": (2,), "Trunc": (5, 6), "MultiThreshold": (2,),
               "Round": (1,), "Conv": (2, 3)}  # the last two: HAWQ's spelling of the standard ops
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")
_ITEM_BYTES = {TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.INT8: 1,
               TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2, TensorProto.INT32: 4,
               TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8, TensorProto.BOOL: 1}
_TYPED_FIELD = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data", TensorProto.INT64: "int64_data",
                TensorProto.UINT64: "uint64_data"}  # every other type above is stored in int32_data


def check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        bad = sorted({c for c in name if not _SAFE_NAME.fullmatch(c)})
        raise QonnxError(f"{what} name {name!r} contains {''.join(bad)!r}: rename it (allowed: letters, digits, "
                         "space and _ . / : - [ ] # @ +)")
    if ".." in name.split("/"):
        raise QonnxError(f"{what} name {name!r} contains a path traversal '..': rename it")


def node_label(node, index: int) -> str:
    """How errors name a node: its name, or (unnamed) its op and position."""
    return node.name or f"{node.op_type} #{index} (unnamed)"


def validate_model(model: ModelProto, where: str = "the model") -> None:
    graph = model.graph
    if not graph.node:
        raise QonnxError(f"{where}: not an ONNX model (no graph nodes)")
    if len(graph.node) > MAX_NODES:
        raise QonnxError(f"{where}: {len(graph.node)} nodes (more than {MAX_NODES})")
    _check_initializer_sizes(graph)
    _check_declared_shapes(graph)
    _check_names(graph)
    _check_domains(model)
    _check_structure(graph)
    _check_standard_nodes(model)
    constants = _constants(graph)
    _check_numbers(graph, constants)  # quantizer parameters first: their messages say what is wrong
    _check_finite(graph, constants)
    _check_inputs(graph, constants)


# -- sizes, before anything is allocated ---------------------------------------------------


def _check_initializer_sizes(graph) -> None:
    for init in graph.initializer:
        where = f"constant '{init.name}'"
        if init.data_location == TensorProto.EXTERNAL or init.external_data:
            raise QonnxError(f"{where} is stored in an external file: save the model as one .onnx file")
        if any(d < 0 for d in init.dims):
            raise QonnxError(f"{where} has a negative dimension {list(init.dims)}")
        count = math.prod(init.dims)
        if count > MAX_INITIALIZER_ELEMENTS:
            raise QonnxError(f"{where} declares {count:,} values (more than {MAX_INITIALIZER_ELEMENTS:,})")
        if init.data_type not in _ITEM_BYTES:
            raise QonnxError(f"{where} has data type {TensorProto.DataType.Name(init.data_type)}, "
                             "not a number type this tool reads")
        if init.raw_data:
            stored, expected = len(init.raw_data), count * _ITEM_BYTES[init.data_type]
        else:
            field = _TYPED_FIELD.get(init.data_type, "int32_data")
            stored, expected = len(getattr(init, field)), count
        if stored != expected:
            raise QonnxError(f"{where} holds {stored} {'bytes' if init.raw_data else 'values'} of data for "
                             f"dimensions {list(init.dims)} ({expected} expected): the file is corrupt")


def _declared_dims(value_info) -> list | None:
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def _check_declared_shapes(graph) -> None:
    for value in [*graph.input, *graph.output, *graph.value_info]:
        dims = _declared_dims(value)
        if not dims:
            continue
        static = [d for d in dims[1:] if isinstance(d, int)]
        if any(d < 0 for d in static):
            raise QonnxError(f"tensor '{value.name}' has a negative dimension {dims}")
        if math.prod(static) > MAX_SAMPLE_ELEMENTS:
            raise QonnxError(f"tensor '{value.name}' is declared with {math.prod(static):,} values per sample "
                             f"(shape {dims}; more than {MAX_SAMPLE_ELEMENTS:,})")


# -- names, domains, structure -----------------------------------------------------------------


def _check_names(graph) -> None:
    for index, node in enumerate(graph.node):
        check_name(node.name, "node")
        for tensor in [*node.input, *node.output]:
            check_name(tensor, f"tensor of node {node_label(node, index)!r}:")
    for value in [*graph.input, *graph.output, *graph.initializer, *graph.value_info]:
        check_name(value.name, "tensor")


def _check_domains(model: ModelProto) -> None:
    versions = {o.domain: o.version for o in model.opset_import}
    default = versions.get("", versions.get("ai.onnx"))
    if default is not None and not OPSET_RANGE[0] <= default <= OPSET_RANGE[1]:
        raise QonnxError(f"the model uses ONNX opset {default}: supported are {OPSET_RANGE[0]}..{OPSET_RANGE[1]} "
                         "(re-export it, or convert it with onnx.version_converter)")
    unknown: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        if node.domain not in KNOWN_DOMAINS:
            unknown.setdefault(node.domain, []).append(node_label(node, index))
    if unknown:
        listing = "; ".join(f"'{domain}' ({', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''})"
                            for domain, nodes in unknown.items())
        raise QonnxError(f"nodes of unknown op domains: {listing} (known: ai.onnx, {', '.join(KNOWN_DOMAINS[2:])})")


def _check_structure(graph) -> None:
    sources = {}
    for init in graph.initializer:
        if init.name in sources:
            raise QonnxError(f"tensor '{init.name}' is defined by two initializers")
        sources[init.name] = "an initializer"
    for value in graph.input:
        if value.name in sources and sources[value.name] != "an initializer":
            raise QonnxError(f"graph input '{value.name}' is listed twice")
        sources.setdefault(value.name, "a graph input")
    producers = {}
    for index, node in enumerate(graph.node):
        for tensor in node.output:
            if not tensor:
                continue
            if tensor in producers:
                raise QonnxError(f"tensor '{tensor}' is produced twice (also by node "
                                 f"'{node_label(*producers[tensor])}')", node=node_label(node, index))
            if tensor in sources:
                raise QonnxError(f"tensor '{tensor}' is produced by a node and is also {sources[tensor]}",
                                 node=node_label(node, index))
            producers[tensor] = (node, index)
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(graph.node)))
    for index, node in enumerate(graph.node):
        for tensor in node.input:
            if not tensor:
                continue
            if tensor in producers:
                dag.add_edge(producers[tensor][1], index)
            elif tensor not in sources:
                raise QonnxError(f"input '{tensor}' is produced by no node, initializer or graph input",
                                 node=node_label(node, index))
    for output in graph.output:
        if output.name not in producers and output.name not in sources:
            raise QonnxError(f"graph output '{output.name}' is produced by no node")
    if not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag)
        names = [node_label(graph.node[a], a) for a, _ in cycle]
        raise QonnxError(f"the graph has a cycle: {' -> '.join(names)} -> {names[0]}")


def _check_standard_nodes(model: ModelProto) -> None:
    """Arity and attributes of the standard ops, by onnx's own schemas."""
    versions = {o.domain: o.version for o in model.opset_import}
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version or onnx.IR_VERSION
    context.opset_imports = {"": versions.get("", versions.get("ai.onnx", OPSET_RANGE[0]))}
    lexical = onnx.checker.C.LexicalScopeContext()
    for index, node in enumerate(model.graph.node):
        if node.domain in STANDARD_DOMAINS:
            try:
                onnx.checker.check_node(node, context, lexical)
            except Exception as error:  # onnx raises ValidationError and SchemaError
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise QonnxError(f"invalid {node.op_type} node: {first}", node=node_label(node, index)) from None
        elif node.op_type in QONNX_ARITY and len(node.input) not in QONNX_ARITY[node.op_type]:
            expected = " or ".join(map(str, QONNX_ARITY[node.op_type]))
            raise QonnxError(f"{node.op_type} takes {expected} inputs, this node has {len(node.input)}",
                             node=node_label(node, index))


# -- numbers -----------------------------------------------------------------------------


def _constants(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node values as arrays."""
    constants = {}
    for init in graph.initializer:
        constants[init.name] = numpy_helper.to_array(init)
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                    tensor = attribute.t
                    if math.prod(tensor.dims) > MAX_INITIALIZER_ELEMENTS:
                        raise QonnxError("the constant is too large", node=node_label(node, index))
                    constants[node.output[0]] = numpy_helper.to_array(tensor)
    return constants


def _check_finite(graph, constants) -> None:
    """Every float constant finite (NaN weights or biases mean the training diverged)."""
    consumers: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        for tensor in node.input:
            consumers.setdefault(tensor, node_label(node, index))
    for name, values in constants.items():
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            bad = "NaN" if np.any(np.isnan(values)) else "infinite"
            raise QonnxError(f"constant '{name}' holds {bad} values: fix the model (training diverged?)",
                             node=consumers.get(name))


def _parameter(producers, constants, node, index: int, position: int, what: str) -> np.ndarray | None:
    """A quantizer parameter's value; None if it is computed from constants (cleanup folds it)."""
    tensor = node.input[position]
    if tensor in constants:
        return constants[tensor]
    if _depends_on_data(producers, tensor, constants):
        raise QonnxError(f"{node.op_type} parameter '{what}' is not a constant: fold it or export it as one",
                         node=node_label(node, index))
    return None


def _depends_on_data(producers, tensor: str, constants) -> bool:
    pending, seen = [tensor], set()
    while pending:
        name = pending.pop()
        if name in seen or name in constants or not name:
            continue
        seen.add(name)
        if name not in producers:
            return True  # a graph input
        pending.extend(producers[name].input)
    return False


def check_scale(scale: np.ndarray, op: str, where: str) -> None:
    if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise QonnxError(f"{op} scale must be positive and finite", node=where)
    low, high = math.ldexp(1.0, MIN_SCALE_EXPONENT), math.ldexp(1.0, MAX_SCALE_EXPONENT)
    if np.any(scale < low) or np.any(scale > high):
        extreme = float(scale.min() if np.any(scale < low) else scale.max())
        raise QonnxError(f"{op} scale {extreme:.3g} is outside [2**{MIN_SCALE_EXPONENT}, 2**{MAX_SCALE_EXPONENT}]: "
                         "not a usable quantizer (a broken export?)", node=where)


def _check_bits(bits: np.ndarray, op: str, where: str, what: str = "bit width") -> None:
    if bits.size != 1:
        raise QonnxError(f"{op} {what} must be a single number", node=where)
    value = float(bits.ravel()[0])
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_QUANT_BITS:
        raise QonnxError(f"{what} {value:g} is not supported (must be a whole number 1..{MAX_QUANT_BITS})", node=where)


def _check_numbers(graph, constants) -> None:
    producers = {name: node for node in graph.node for name in node.output}
    for index, node in enumerate(graph.node):
        where = node_label(node, index)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain in (*QONNX_DOMAINS, HAWQ_DOMAIN) and node.op_type in QUANTIZER_OPS:
            scale = _parameter(producers, constants, node, index, 1, "scale")
            if scale is not None:
                check_scale(np.asarray(scale, dtype=np.float64), node.op_type, where)
            if node.op_type != "BipolarQuant":
                zeropt = _parameter(producers, constants, node, index, 2, "zeropt")
                if zeropt is not None and np.any(zeropt != np.round(zeropt)):
                    raise QonnxError(f"{node.op_type} zero point must hold whole numbers", node=where)
                bits_positions = (3,) if node.op_type != "Trunc" else (3, len(node.input) - 1)
                for position in bits_positions:
                    bits = _parameter(producers, constants, node, index, position, "bitwidth")
                    if bits is not None:
                        _check_bits(np.asarray(bits, dtype=np.float64), node.op_type, where)
                mode = attributes.get("rounding_mode", b"ROUND")
                mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
                if mode not in ROUNDING_MODES:
                    raise QonnxError(f"rounding_mode {mode} is unknown (qonnx knows {', '.join(ROUNDING_MODES)})",
                                     node=where)
                for flag in ("signed", "narrow"):
                    if attributes.get(flag, 0) not in (0, 1):
                        raise QonnxError(f"attribute {flag} must be 0 or 1, not {attributes[flag]}", node=where)
        elif node.op_type == "BatchNormalization" and node.domain in STANDARD_DOMAINS:
            epsilon = float(attributes.get("epsilon", 1e-5))
            variance = constants.get(node.input[4]) if len(node.input) > 4 else None
            if not math.isfinite(epsilon) or epsilon < 0:
                raise QonnxError(f"BatchNormalization epsilon {epsilon} must be finite and >= 0", node=where)
            if variance is not None and (np.any(variance < 0) or np.any(variance + epsilon <= 0)):
                raise QonnxError("BatchNormalization variance must be >= 0 (and variance + epsilon > 0)", node=where)


def _check_inputs(graph, constants) -> None:
    used = {tensor for node in graph.node for tensor in node.input}
    data = [value for value in graph.input if value.name not in constants]
    for value in data:
        if value.name not in used and value.name not in {o.name for o in graph.output}:
            raise QonnxError(f"graph input '{value.name}' is used by no node: remove it")
        if _declared_dims(value) is None:
            raise QonnxError(f"graph input '{value.name}' declares no tensor type or shape")
        if value.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            raise QonnxError(f"graph input '{value.name}' is of type "
                             f"{TensorProto.DataType.Name(value.type.tensor_type.elem_type)}: a float input is expected")
    if len(data) > 1:
        raise QonnxError(f"the graph has {len(data)} data inputs ({', '.join(v.name for v in data)}): "
                         "only one is supported")
    for value in graph.output:
        if _declared_dims(value) is None:
            raise QonnxError(f"graph output '{value.name}' declares no tensor type or shape")
    seen: dict[str, str] = {}
    for where, values in (("graph input", graph.input), ("value_info", graph.value_info), ("graph output", graph.output)):
        for value in values:
            if value.name in seen and not (where == "graph output" and seen[value.name] == "value_info"):
                raise QonnxError(f"tensor '{value.name}' is declared twice (as {seen[value.name]} and {where})")
            seen[value.name] = where
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for value in [*graph.input, *graph.value_info]:
        dims = _declared_dims(value)
        if value.name in shapes and dims is not None and dims != shapes[value.name]:
            raise QonnxError(f"constant '{value.name}' has shape {shapes[value.name]} but is declared {dims}")
