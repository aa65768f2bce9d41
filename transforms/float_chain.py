"""The float ops between an accumulator and the next quantizer, evaluated as the QONNX graph does.

A chain is a list of elementwise ops with constant operands (Mul, Add, Sub, Div,
BatchNormalization, Relu). `evaluate` applies them in float64 in graph order, which is
what thresholds are computed from (so they reproduce the float graph exactly);
`affine` composes them into per-channel a*x + b (valid up to a final Relu), which is
what multiplier/shift requantization approximates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto
from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir.errors import QonnxError

from .graph import attribute, constant

ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "BatchNormalization", "Relu")


@dataclass
class ChainOp:
    kind: str  # mul, add, rsub (c - x), div, bn, relu
    values: tuple = ()


def read_op(model: ModelWrapper, node: NodeProto, tensor: str, channels: int) -> ChainOp | None:
    """The chain op for `node` applied to `tensor`, or None if it is not elementwise-constant."""
    def per_channel(name):
        value = constant(model, name)
        if value is None:
            return None
        if value.size not in (1, channels):
            raise QonnxError(f"{node.op_type} constant of shape {value.shape} is not per tensor or per channel", node=node.name)
        return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)

    if node.op_type == "Relu":
        return ChainOp("relu")
    if node.op_type == "BatchNormalization":
        params = [per_channel(name) for name in node.input[1:5]]
        if any(p is None for p in params):
            return None
        return ChainOp("bn", (*params, float(attribute(node, "epsilon", 1e-5))))
    if node.op_type in ("Mul", "Add", "Sub", "Div") and tensor in node.input:
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        value = per_channel(other)
        if value is None:
            return None
        if node.op_type == "Sub":
            return ChainOp("add", (-value,)) if node.input[0] == tensor else ChainOp("rsub", (value,))
        if node.op_type == "Div":
            return ChainOp("div", (value,)) if node.input[0] == tensor else None
        return ChainOp(node.op_type.lower(), (value,))
    return None


def evaluate(chain: list[ChainOp], values: np.ndarray) -> np.ndarray:
    """Apply the chain to real values (..., channels) in float64, op by op, as the graph does."""
    for op in chain:
        if op.kind == "relu":
            values = np.maximum(values, 0.0)
        elif op.kind == "mul":
            values = values * op.values[0]
        elif op.kind == "add":
            values = values + op.values[0]  # x - c is x + (-c): the same float64 result
        elif op.kind == "rsub":
            values = op.values[0] - values
        elif op.kind == "div":
            values = values / op.values[0]
        else:  # ONNX BatchNormalization: (x - mean) / sqrt(var + eps) * scale + bias
            scale, bias, mean, var, epsilon = op.values
            values = (values - mean) / np.sqrt(var + epsilon) * scale + bias
    return values


def affine(chain: list[ChainOp], channels: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(a, b, relu_at_end) with chain(x) == relu?(a*x + b) in exact arithmetic.

    Raises QonnxError if a Relu is followed by more ops (not an affine map then).
    """
    a, b, relu = np.ones(channels), np.zeros(channels), False
    for op in chain:
        if relu:
            raise QonnxError("a Relu followed by more float ops before the quantizer is not supported")
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
        else:
            scale, bias, mean, var, epsilon = op.values
            factor = scale / np.sqrt(var + epsilon)
            a, b = a * factor, (b - mean) * factor + bias
    return a, b, relu


def slope_sign(chain: list[ChainOp], channels: int) -> np.ndarray:
    """+1 where the chain is non-decreasing in its input, -1 where non-increasing (Relu is monotone)."""
    sign = np.ones(channels)
    for op in chain:
        if op.kind in ("mul", "div"):
            sign = sign * np.sign(op.values[0])
        elif op.kind == "rsub":
            sign = -sign
        elif op.kind == "bn":
            sign = sign * np.sign(op.values[0])
    return sign
