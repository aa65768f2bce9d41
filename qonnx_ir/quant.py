"""Reading qonnx quantizer nodes (Quant or its newer name IntQuant, BipolarQuant), with the checks bad files need."""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from .errors import QonnxError
from .types import QONNX_ROUNDING, check_bit_width
from .validate import check_scale

QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant")  # IntQuant: qonnx >= 0.4's name for Quant (the same op)


def attribute(node: NodeProto, name: str, default=None):
    """A node attribute's value (strings decoded), or default."""
    for entry in node.attribute:
        if entry.name == name:
            value = helper.get_attribute_value(entry)
            return value.decode() if isinstance(value, bytes) else value
    return default


def constant(model: ModelWrapper, tensor: str) -> np.ndarray | None:
    value = model.get_initializer(tensor)
    return None if value is None else np.asarray(value, dtype=np.float64)


def quant_parameters(model: ModelWrapper, node: NodeProto) -> dict:
    """A Quant/IntQuant/BipolarQuant node's parameters, checked: constants, zero point 0, sane bits."""
    names = ("scale",) if node.op_type == "BipolarQuant" else ("scale", "zeropt", "bitwidth")
    params = {}
    for name, tensor in zip(names, node.input[1:]):
        value = constant(model, tensor)
        if value is None:
            raise QonnxError(f"{node.op_type} parameter '{name}' is not a constant: fold it or export it as one", node=node.name)
        params[name] = value
    scale = params["scale"]
    check_scale(scale, node.op_type, node.name)
    if node.op_type == "BipolarQuant":
        return {"scale": scale, "bits": 1, "signed": True, "narrow": False, "rounding": "ROUND", "bipolar": True}
    if np.any(params["zeropt"] != 0):
        raise QonnxError("Quant zero point must be 0 (asymmetric quantization is not supported)", node=node.name)
    bitwidth = params["bitwidth"]
    if bitwidth.size != 1:
        raise QonnxError("Quant bit width must be a single number", node=node.name)
    bits = check_bit_width(float(bitwidth.ravel()[0]), node.name)
    signed = bool(attribute(node, "signed", 1))
    return {
        "scale": scale, "bits": bits, "signed": signed, "narrow": bool(attribute(node, "narrow", 0)),
        "rounding": str(attribute(node, "rounding_mode", "ROUND")).upper(), "bipolar": bits == 1 and signed,
    }


def check_quantizer(model: ModelWrapper, node: NodeProto) -> None:
    """Everything about a quantizer that can be checked before lowering."""
    params = quant_parameters(model, node)
    quantizes_constant = constant(model, node.input[0]) is not None  # weights: any qonnx mode, applied in float64
    if not quantizes_constant and not params["bipolar"] and params["rounding"] not in QONNX_ROUNDING:
        raise QonnxError(
            f"rounding_mode {params['rounding']} is not supported (supported: {', '.join(QONNX_ROUNDING)})",
            node=node.name,
        )
