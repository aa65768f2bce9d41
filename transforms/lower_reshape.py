"""lower-flatten, lower-upsample and lower-pad: the ops that only move codes.

    have: x:(N, C, H, W) typed -> Flatten(axis=1)      want: Flatten (PyTorch's order: channels first)
    have: x:(N, F) typed -> Flatten                     want: nothing (x is a vector already)
    have: x typed -> Resize/Upsample(nearest, whole scales)   want: Upsample(scales)
    have: x typed -> Pad(constant, spatial axes)        want: Pad(pads, the value's code)
"""

from __future__ import annotations

import numpy as np

from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.flatten import Flatten
from qonnx_ir.ops.pad import Pad
from qonnx_ir.ops.upsample import Upsample

from .base import Context, Pass, lower_each
from .graph import attribute, constant, remove_nodes, replace_with_op, rewire, standard_nodes


class LowerFlatten(Pass):
    name = "lower-flatten"
    description = "Flatten of a typed tensor => Flatten in PyTorch's channels-first order (a vector: dropped)"
    consumes = ("Flatten",)
    produces = ("Flatten",)

    def apply(self, model, context: Context) -> bool:
        return lower_each(model, standard_nodes(model, "Flatten"), context, _flatten)


def _flatten(model, node, x, context) -> None:
    if attribute(node, "axis", 1) != 1:
        raise QonnxError("Flatten must keep the batch axis (axis=1)", node=node.name)
    if len(x.shape) == 1:
        rewire(model, node.output[0], node.input[0])
        remove_nodes(model, [node])
    else:
        replace_with_op(model, node, Flatten, node.input[:1], node.output[:1])
        context.report.add(node.name, f"flatten {x.shape} in PyTorch's order (channels first)")


class LowerUpsample(Pass):
    name = "lower-upsample"
    description = "nearest-neighbour Resize/Upsample by whole factors on a typed tensor => Upsample"
    consumes = ("Resize", "Upsample")
    produces = ("Upsample",)

    def apply(self, model, context: Context) -> bool:
        nodes = standard_nodes(model, "Resize") + standard_nodes(model, "Upsample")  # every Resize, then every Upsample
        return lower_each(model, nodes, context, _upsample)


def _upsample(model, node, x, context) -> None:
    if str(attribute(node, "mode", "nearest")) != "nearest":
        raise QonnxError(f"{node.op_type} mode {attribute(node, 'mode')} is not supported (only nearest)",
                         node=node.name)
    scales = _scales(model, node, x)
    replace_with_op(model, node, Upsample, node.input[:1], node.output[:1], scales=scales)
    context.report.add(node.name, f"nearest upsampling by {tuple(scales)}")


def _scales(model, node, x) -> list[int]:
    """Whole scales of the spatial axes from the scales or sizes input."""
    rank = len(x.shape) + 1
    if node.op_type == "Upsample":
        scales = constant(model, node.input[1]) if len(node.input) > 1 else np.asarray(attribute(node, "scales"))
    else:
        scales = constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is None or scales.size == 0:
            sizes = constant(model, node.input[3]) if len(node.input) > 3 else None
            if sizes is None:
                raise QonnxError("Resize without constant scales or sizes", node=node.name)
            channels_first = (1, x.channels, *x.shape[:-1])
            scales = np.asarray(sizes, dtype=np.float64) / np.asarray(channels_first, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64).ravel()
    if scales.size != rank or scales[0] != 1 or scales[1] != 1 or np.any(scales[2:] != np.round(scales[2:])) \
            or np.any(scales[2:] < 1):
        raise QonnxError(f"scales {list(scales)}: only whole upscaling of the spatial axes is supported",
                         node=node.name)
    return [int(s) for s in scales[2:]]


class LowerPad(Pass):
    name = "lower-pad"
    description = "constant Pad of the spatial axes of a typed tensor => Pad"
    consumes = ("Pad",)
    produces = ("Pad",)  # lower-conv and lower-pool make the padding of their windows too

    def apply(self, model, context: Context) -> bool:
        return lower_each(model, standard_nodes(model, "Pad"), context, _pad)


def _pad(model, node, x, context) -> None:
    if str(attribute(node, "mode", "constant")) != "constant":
        raise QonnxError(f"Pad mode {attribute(node, 'mode')} is not supported (only constant)", node=node.name)
    pads = constant(model, node.input[1]) if len(node.input) > 1 else np.asarray(attribute(node, "pads"))
    if pads is None:
        raise QonnxError("Pad with pads computed at run time", node=node.name)
    value = constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
    pads = [int(p) for p in np.ravel(pads)]
    rank = len(x.shape) + 1
    if len(pads) != 2 * rank or pads[0] or pads[1] or pads[rank] or pads[rank + 1] or min(pads) < 0:
        raise QonnxError(f"pads {pads}: only non-negative padding of the spatial axes is supported", node=node.name)
    code = float(np.ravel(value)[0]) / float(x.real_scale[0])
    if code != round(code) or x.per_tensor_gain is None:
        raise QonnxError(f"the padding value {float(np.ravel(value)[0])} is not a value of the input's type",
                         node=node.name)
    spatial = [*pads[2:rank], *pads[rank + 2:]]
    replace_with_op(model, node, Pad, node.input[:1], node.output[:1], pads=spatial, value=int(round(code)))
