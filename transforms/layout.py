"""Reading ONNX's channels-first attributes against channels-last edges.

A raw QONNX tensor is (N, C, *spatial); the edge of the same tensor in the dialect is
(*spatial, C). These helpers translate an ONNX axis, pads and window attributes, and pad a window's input.
"""

from __future__ import annotations

from qonnx_ir.dialect import EdgeType, GraphView
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.pad import Pad
from qonnx_ir.ops.window import same_pads

from .graph import attribute, fresh_name, set_edge


def channel_axis(edge: EdgeType, axis: int, node) -> int:
    """The edge axis an ONNX axis of the same tensor names (the batch is axis 0 in ONNX)."""
    rank = len(edge.shape) + 1
    axis = axis + rank if axis < 0 else axis
    if not 1 <= axis < rank:
        raise QonnxError(f"axis {axis} of a tensor of rank {rank} is not supported here", node=node.name)
    if len(edge.shape) == 1:
        return 0
    return len(edge.shape) - 1 if axis == 1 else axis - 2


def window_attributes(node, edge: EdgeType, kernel: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
    """(strides, dilations, pads) of an ONNX Conv / pooling node over the edge's spatial axes;
    pads are (begin per axis, then end per axis), auto_pad resolved."""
    rank = len(kernel)
    spatial = edge.shape[:-1]
    if len(spatial) != rank:
        raise QonnxError(f"a {rank}-D window on a tensor of shape (N, C, {', '.join(map(str, spatial))})",
                         node=node.name)
    strides = tuple(attribute(node, "strides", None) or (1,) * rank)
    dilations = tuple(attribute(node, "dilations", None) or (1,) * rank)
    pads = tuple(attribute(node, "pads", None) or (0,) * (2 * rank))
    auto_pad = str(attribute(node, "auto_pad", "NOTSET"))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(spatial, kernel, strides, dilations, upper=auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = (0,) * (2 * rank)
    elif auto_pad != "NOTSET":
        raise QonnxError(f"auto_pad {auto_pad} is not supported", node=node.name)
    if len(strides) != rank or len(dilations) != rank or len(pads) != 2 * rank:
        raise QonnxError("strides, dilations or pads do not match the kernel", node=node.name)
    return strides, dilations, pads


def padded_input(model, node, pads: tuple[int, ...], value: int) -> str:
    """The tensor a Conv / pooling node's window reads: its input, or with any pads a Pad of it by
    `value`, inserted before the node (so the window never reads outside its input)."""
    source = node.input[0]
    if not any(pads):
        return source
    padded = fresh_name(model, f"{source}_padded")
    pad = Pad.make(f"{node.name}/pad", [source], [padded], pads=list(pads), value=value)
    model.graph.node.insert(list(model.graph.node).index(node), pad)
    set_edge(model, padded, Pad(pad, GraphView(model)).infer()[0])
    return padded
