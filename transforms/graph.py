"""Small queries and edits on a ModelWrapper that the passes share."""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.intquant import int_quant

from qonnx_ir.dialect import DOMAIN, OPSET, EdgeType, is_hw, read_edge_type, write_edge_type
from qonnx_ir.dialect.builder import add_constant
from qonnx_ir.quant import QUANT_OPS, attribute, constant, quant_parameters

__all__ = ["QUANT_OPS", "attribute", "constant", "quant_parameters", "is_hw", "typed", "set_edge",
           "add_constant", "single_consumer", "quantized_constant", "rewire", "remove_nodes", "insert_after",
           "fresh_name", "remove_dead_nodes", "replace_node"]


def typed(model: ModelWrapper, tensor: str) -> EdgeType | None:
    """The tensor's EdgeType if a lowered node produced it, else None."""
    return read_edge_type(model, tensor)


def set_edge(model: ModelWrapper, tensor: str, edge: EdgeType) -> None:
    """Store an edge's type; the model imports the dialect's domain from its first lowered node on."""
    write_edge_type(model, tensor, edge)
    if not any(entry.domain == DOMAIN for entry in model.model.opset_import):
        model.model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET))


def single_consumer(model: ModelWrapper, tensor: str) -> NodeProto | None:
    consumers = model.find_consumers(tensor)
    if len(consumers) != 1 or tensor in [o.name for o in model.graph.output]:
        return None
    return consumers[0]


def quantized_constant(model: ModelWrapper, tensor: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(integer codes, scale broadcast to the codes' shape, parameters) of Quant(constant).

    Follows a Transpose of the quantized constant. None if the tensor is not one.
    Codes follow qonnx's Quant semantics evaluated in float64.
    """
    producer = model.find_producer(tensor)
    perm = None
    if producer is not None and producer.op_type == "Transpose":
        perm = attribute(producer, "perm") or "reverse"  # ONNX: no perm reverses the axes
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
    if perm is not None:
        axes = None if perm == "reverse" else perm
        codes, scale = np.transpose(codes, axes), np.transpose(scale, axes)
    return codes.astype(np.int64), np.asarray(scale), params


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


def insert_after(model: ModelWrapper, anchor: NodeProto, new_nodes: list[NodeProto]) -> None:
    position = list(model.graph.node).index(anchor) + 1
    for offset, node in enumerate(new_nodes):
        model.graph.node.insert(position + offset, node)


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
