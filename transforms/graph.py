"""Small queries and edits on a ModelWrapper that the passes share."""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.intquant import int_quant

from qonnx_ir.dialect import (
    DOMAIN,
    OPSET,
    EdgeType,
    GraphView,
    is_hw,
    read_edge_type,
    write_edge_type,
)
from qonnx_ir.dialect.builder import add_constant
from qonnx_ir.errors import QonnxError
from qonnx_ir.quant import QUANT_OPS, attribute, constant, quant_parameters
from qonnx_ir.validate import STANDARD_DOMAINS

__all__ = [
    "QUANT_OPS",
    "add_constant",
    "add_float_initializer",
    "attribute",
    "constant",
    "fresh_name",
    "insert_after",
    "is_hw",
    "quant_parameters",
    "quantized_constant",
    "remove_dead_nodes",
    "remove_nodes",
    "replace_node",
    "replace_with_op",
    "rewire",
    "set_edge",
    "single_consumer",
    "standard_nodes",
    "typed",
]


def typed(model: ModelWrapper, tensor: str) -> EdgeType | None:
    """The tensor's EdgeType if a lowered node produced it, else None."""
    return read_edge_type(model, tensor)


def set_edge(model: ModelWrapper, tensor: str, edge: EdgeType) -> None:
    """Store an edge's type; the model imports the dialect's domain from its first lowered node on."""
    write_edge_type(model, tensor, edge)
    if not any(entry.domain == DOMAIN for entry in model.model.opset_import):
        model.model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET))


def standard_nodes(model: ModelWrapper, *op_types: str) -> list[NodeProto]:
    """The nodes of these ONNX (standard domain) op types, in graph order."""
    return [n for n in model.graph.node if n.op_type in op_types and n.domain in STANDARD_DOMAINS]


def single_consumer(model: ModelWrapper, tensor: str) -> NodeProto | None:
    consumers = model.find_consumers(tensor)
    if len(consumers) != 1 or tensor in [o.name for o in model.graph.output]:
        return None
    return consumers[0]


def quantized_constant(model: ModelWrapper, tensor: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(integer codes, scale broadcast to the codes' shape, parameters) of Quant(constant).

    Follows any Transpose and Reshape (constant shape) after the quantizer, applying each to the
    codes and the broadcast scale alike: Quant is elementwise, so moving or regrouping elements
    before or after it gives the same values. A Reshape must leave the scale per tensor or
    varying along one axis (it keeps the channel axis), else it mixes channels and is refused.
    None if the tensor is not one. Codes follow qonnx's Quant semantics evaluated in float64.
    """
    views = []
    producer = model.find_producer(tensor)
    while producer is not None and producer.op_type in ("Transpose", "Reshape"):
        views.append(producer)
        producer = model.find_producer(producer.input[0])
    if producer is None or producer.op_type not in QUANT_OPS:
        return None
    values = constant(model, producer.input[0])
    if values is None:
        return None
    params = quant_parameters(model, producer)
    scale = params["scale"]
    if params["bipolar"]:
        codes = np.where(values >= 0, 1.0, -1.0)
    else:
        dequantized = int_quant(values, scale, 0.0, np.float64(params["bits"]), params["signed"], params["narrow"],
                                params["rounding"])
        codes = np.round(dequantized / scale)
    scale = np.broadcast_to(scale, codes.shape)
    for view in reversed(views):
        if view.op_type == "Transpose":
            axes = attribute(view, "perm") or None  # ONNX: no perm reverses the axes
            codes, scale = np.transpose(codes, axes), np.transpose(scale, axes)
            continue
        shape = _reshape_target(model, view, codes.shape)
        if shape is None:
            return None
        codes, scale = codes.reshape(shape), scale.reshape(shape)
        varying = [axis for axis in range(scale.ndim) if np.any(scale != np.take(scale, [0], axis=axis))]
        if len(varying) > 1:
            raise QonnxError(f"Reshape of a per-channel quantized constant to {list(shape)} mixes its channels (the "
                             "scale varies along several axes): reshape the weights before quantizing them",
                             node=view.name)
    return codes.astype(np.int64), np.asarray(scale), params


def _reshape_target(model: ModelWrapper, node: NodeProto, shape: tuple[int, ...]) -> list[int] | None:
    """ONNX Reshape's output shape (0 copies the input's dimension unless allowzero, -1 is inferred)."""
    target = constant(model, node.input[1])
    if target is None:
        return None
    dims = [int(d) for d in target.ravel()]
    if not attribute(node, "allowzero", 0):
        dims = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise QonnxError(f"Reshape to {dims} is not a valid shape", node=node.name)
    known = int(np.prod([d for d in dims if d != -1]))
    total = int(np.prod(shape))
    if -1 in dims:
        if known == 0 or total % known:
            raise QonnxError(f"Reshape of {list(shape)} to {dims}: the sizes do not match", node=node.name)
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total:
        raise QonnxError(f"Reshape of {list(shape)} to {dims}: the sizes do not match", node=node.name)
    return dims


def rewire(model: ModelWrapper, old: str, new: str) -> None:
    """Make every consumer of tensor `old` (and the graph outputs) read `new` instead."""
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new


def remove_nodes(model: ModelWrapper, nodes: list[NodeProto]) -> None:
    for node in nodes:
        model.graph.node.remove(node)


def replace_node(model: ModelWrapper, old: NodeProto, new: NodeProto, also_remove: list[NodeProto] = ()) -> None:
    """Put `new` where `old` was, and drop `old` and `also_remove`."""
    position = list(model.graph.node).index(old)
    remove_nodes(model, [old, *also_remove])
    model.graph.node.insert(min(position, len(model.graph.node)), new)


def replace_with_op(model: ModelWrapper, node: NodeProto, op, inputs, outputs, **attributes) -> None:
    """Put the dialect op `op` (an HwOp class) reading `inputs` and writing `outputs` where `node`
    was, and store the type it infers for its first output."""
    new = op.make(node.name, inputs, outputs, **attributes)
    replace_node(model, node, new)
    set_edge(model, new.output[0], op(new, GraphView(model)).infer()[0])


def insert_after(model: ModelWrapper, anchor: NodeProto, new_nodes: list[NodeProto]) -> None:
    position = list(model.graph.node).index(anchor) + 1
    for offset, node in enumerate(new_nodes):
        model.graph.node.insert(position + offset, node)


def add_float_initializer(model: ModelWrapper, base: str, values) -> str:
    """A float initializer under a fresh name: float32 when that holds every value exactly, else
    float64 (which keeps a quantized value exact)."""
    values = np.asarray(values, np.float64)
    exact32 = np.array_equal(values.astype(np.float32), values)
    name = fresh_name(model, base)
    model.graph.initializer.append(numpy_helper.from_array(values.astype(np.float32) if exact32 else values, name))
    return name


def fresh_name(model: ModelWrapper, base: str) -> str:
    taken = {t for n in model.graph.node for t in list(n.input) + list(n.output) + [n.name]}
    taken |= {i.name for i in model.graph.initializer}
    name, index = base, 0
    while name in taken:
        index += 1
        name = f"{base}_{index}"
    return name


def remove_dead_nodes(model: ModelWrapper) -> None:
    """Drop nodes whose outputs nobody reads (e.g. weight quantizers after folding), unused
    initializers, and the value infos and annotations of tensors that no longer exist."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [node for node in model.graph.node if not any(o in used for o in node.output)]
        if not dead:
            break
        remove_nodes(model, dead)
    used = {name for node in model.graph.node for name in node.input} | outputs
    for initializer in list(model.graph.initializer):
        if initializer.name not in used:
            model.graph.initializer.remove(initializer)
    produced = {name for node in model.graph.node for name in node.output}
    alive = used | produced | {i.name for i in model.graph.input}
    for value in list(model.graph.value_info):
        if value.name not in alive:
            model.graph.value_info.remove(value)
    for annotation in list(model.graph.quantization_annotation):
        if annotation.tensor_name not in alive:
            model.graph.quantization_annotation.remove(annotation)
