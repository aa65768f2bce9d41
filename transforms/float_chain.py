"""The float ops between a typed tensor and the next quantizer, read as one function per channel.

A chain is a list of elementwise ops with constant operands: Mul, Add, Sub, Div, BatchNormalization,
Relu, Clip (HardTanh), LeakyRelu, PRelu, HardSigmoid, HardSwish, Sigmoid, Tanh, Elu, and SiLU
(exported as Mul(x, Sigmoid(x))). Three readings of it:

- `evaluate`: float64, op by op in graph order (what a QONNX graph evaluated in float64 gives);
- `exact_value`: the exact real value for one channel - a rational, or p + q sqrt(d) once a
  BatchNorm divides by sqrt(var + eps) - for every op but the transcendental ones (None then);
- `affine`: clamp(alpha * x + beta, low, high) with exact rationals, when the chain is that
  (Mul/Add/Sub/Div, Relu, Clip, HardSigmoid in any order): what an exact multiplier implements.

`slope_sign` says per channel whether the chain is non-decreasing (+1), non-increasing (-1) or
neither (0: HardSwish, SiLU, a PRelu with a negative slope), which decides whether thresholds apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from onnx import NodeProto
from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir.errors import QonnxError

from . import exact as ex
from .graph import attribute, constant
from .weights import constant_or_quantized

ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "PRelu",
               "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu")
TRANSCENDENTAL = ("sigmoid", "tanh", "elu", "silu")
ACTIVATIONS = ("leaky", "prelu", "hardsigmoid", "hardswish", *TRANSCENDENTAL)  # beyond Relu and Clip


@dataclass
class ChainOp:
    kind: str  # mul, add, rsub (c - x), div, bn, relu, clip, leaky, prelu, hardsigmoid, hardswish, sigmoid, tanh, elu, silu
    values: tuple = ()  # per-channel arrays (float64) or scalars, by kind


def read_op(model: ModelWrapper, node: NodeProto, tensor: str, channels: int) -> ChainOp | None:
    """The chain op for `node` applied to `tensor`, or None if it is not elementwise-constant."""
    def per_channel(name):
        value = constant_or_quantized(model, name)
        if value is None:
            return None
        if value.size not in (1, channels):
            raise QonnxError(f"{node.op_type} constant of shape {value.shape} is not per tensor or per channel",
                             node=node.name)
        return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)

    kind = node.op_type
    if kind in ("Relu", "Sigmoid", "Tanh", "HardSwish"):
        return ChainOp(kind.lower())
    if kind == "Elu":
        return ChainOp("elu", (float(attribute(node, "alpha", 1.0)),))
    if kind == "LeakyRelu":
        return ChainOp("leaky", (float(attribute(node, "alpha", 0.01)),))
    if kind == "HardSigmoid":
        return ChainOp("hardsigmoid", (float(attribute(node, "alpha", 0.2)), float(attribute(node, "beta", 0.5))))
    if kind == "PRelu":
        slope = per_channel(node.input[1])
        return None if slope is None else ChainOp("prelu", (slope,))
    if kind == "Clip":
        bounds = []
        for position, (attr, default) in enumerate((("min", -math.inf), ("max", math.inf)), start=1):
            if len(node.input) > position and node.input[position]:
                value = constant(model, node.input[position])
                if value is None or value.size != 1:
                    return None
                bounds.append(float(value.ravel()[0]))
            else:
                bounds.append(float(attribute(node, attr, default)))
        return ChainOp("clip", tuple(bounds))
    if kind == "BatchNormalization":
        params = [per_channel(name) for name in node.input[1:5]]
        if any(p is None for p in params):
            return None
        return ChainOp("bn", (*params, float(attribute(node, "epsilon", 1e-5))))
    if kind in ("Mul", "Add", "Sub", "Div") and tensor in node.input:
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        value = per_channel(other)
        if value is None:
            return None
        if kind == "Sub":
            return ChainOp("add", (-value,)) if node.input[0] == tensor else ChainOp("rsub", (value,))
        if kind == "Div":
            return ChainOp("div", (value,)) if node.input[0] == tensor else None
        return ChainOp(kind.lower(), (value,))
    return None


# -- float64 ----------------------------------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def evaluate(chain: list[ChainOp], values: np.ndarray) -> np.ndarray:
    """Apply the chain to real values (..., channels) in float64, op by op, as the graph does."""
    for op in chain:
        kind = op.kind
        if kind == "relu":
            values = np.maximum(values, 0.0)
        elif kind == "mul":
            values = values * op.values[0]
        elif kind == "add":
            values = values + op.values[0]  # x - c is x + (-c): the same float64 result
        elif kind == "rsub":
            values = op.values[0] - values
        elif kind == "div":
            values = values / op.values[0]
        elif kind == "bn":  # ONNX BatchNormalization: (x - mean) / sqrt(var + eps) * scale + bias
            scale, bias, mean, var, epsilon = op.values
            values = (values - mean) / np.sqrt(var + epsilon) * scale + bias
        elif kind == "clip":
            values = np.clip(values, op.values[0], op.values[1])
        elif kind == "leaky" or kind == "prelu":
            values = np.where(values >= 0, values, values * op.values[0])
        elif kind == "hardsigmoid":
            values = np.clip(values * op.values[0] + op.values[1], 0.0, 1.0)
        elif kind == "hardswish":
            values = values * np.clip(values / 6.0 + 0.5, 0.0, 1.0)
        elif kind == "sigmoid":
            values = _sigmoid(values)
        elif kind == "tanh":
            values = np.tanh(values)
        elif kind == "elu":
            values = np.where(values >= 0, values, op.values[0] * np.expm1(np.minimum(values, 0.0)))
        elif kind == "silu":
            values = values * _sigmoid(values)
        else:
            raise AssertionError(kind)
    return values


# -- exact ------------------------------------------------------------------------------------


def _channel(values, c: int) -> Fraction:
    values = np.ravel(values)
    return ex.exact(values[c] if values.size > 1 else values[0])


def exact_value(chain: list[ChainOp], c: int, value):
    """The exact result of the chain for channel c on an exact input (Fraction or Surd); None when
    it has a transcendental op, or a second BatchNorm after the first (two different roots)."""
    for op in chain:
        kind = op.kind
        if kind in TRANSCENDENTAL:
            return None
        if kind == "relu":
            value = ex.maximum(value, Fraction(0))
        elif kind == "mul":
            value = value * _channel(op.values[0], c)
        elif kind == "add":
            value = value + _channel(op.values[0], c)
        elif kind == "rsub":
            value = _channel(op.values[0], c) - value
        elif kind == "div":
            value = value / _channel(op.values[0], c)
        elif kind == "bn":
            if isinstance(value, ex.Surd):
                return None
            scale, bias, mean, var, epsilon = (_channel(v, c) for v in op.values)
            root = ex.sqrt_of(var + epsilon)
            value = (value - mean) * scale / root + bias if isinstance(root, Fraction) else \
                ex.Surd(bias, (value - mean) * scale / (var + epsilon), var + epsilon)
        elif kind == "clip":
            low, high = op.values
            if math.isfinite(low):
                value = ex.maximum(value, ex.exact(low))
            if math.isfinite(high):
                value = ex.minimum(value, ex.exact(high))
        elif kind in ("leaky", "prelu"):
            if ex.sign(value) < 0:
                value = value * _channel(op.values[0], c)
        elif kind == "hardsigmoid":
            alpha, beta = (ex.exact(v) for v in op.values)
            value = ex.minimum(ex.maximum(value * alpha + beta, Fraction(0)), Fraction(1))
        elif kind == "hardswish":
            gate = ex.minimum(ex.maximum(value / Fraction(6) + Fraction(1, 2), Fraction(0)), Fraction(1))
            if isinstance(value, ex.Surd) or isinstance(gate, ex.Surd):
                return None  # a product of two roots
            value = value * gate
    return value


@dataclass(frozen=True)
class Affine:
    """clamp(alpha * x + beta, low, high), exact (low/high None: unbounded)."""

    alpha: Fraction
    beta: Fraction
    low: Fraction | None
    high: Fraction | None


def affine(chain: list[ChainOp], c: int) -> Affine | None:
    """The chain for channel c as clamp(alpha x + beta, low, high), or None if it is not that."""
    alpha, beta, low, high = Fraction(1), Fraction(0), None, None

    def scale(factor: Fraction):
        nonlocal alpha, beta, low, high
        alpha, beta = alpha * factor, beta * factor
        low, high = (None if low is None else low * factor), (None if high is None else high * factor)
        if factor < 0:
            low, high = high, low

    def clamp(a: Fraction | None, b: Fraction | None):
        nonlocal low, high
        if a is not None:
            low = a if low is None else max(low, a)
            high = None if high is None else max(high, a)
        if b is not None:
            high = b if high is None else min(high, b)
            low = None if low is None else min(low, b)

    for op in chain:
        kind = op.kind
        if kind == "mul":
            scale(_channel(op.values[0], c))
        elif kind == "div":
            scale(1 / _channel(op.values[0], c))
        elif kind in ("add", "rsub"):
            if kind == "rsub":
                scale(Fraction(-1))
            shift = _channel(op.values[0], c)
            beta += shift
            low, high = (None if low is None else low + shift), (None if high is None else high + shift)
        elif kind == "relu":
            clamp(Fraction(0), None)
        elif kind == "clip":
            clamp(*(ex.exact(v) if math.isfinite(v) else None for v in op.values))
        elif kind == "hardsigmoid":
            a, b = (ex.exact(v) for v in op.values)
            scale(a)
            beta += b
            low, high = (None if low is None else low + b), (None if high is None else high + b)
            clamp(Fraction(0), Fraction(1))
        else:
            return None
    if alpha == 0:
        return None
    return Affine(alpha, beta, low, high)


def slope_sign(chain: list[ChainOp], channels: int) -> np.ndarray:
    """+1 where the chain is non-decreasing in its input, -1 where non-increasing, 0 where neither."""
    sign = np.ones(channels)
    for op in chain:
        kind = op.kind
        if kind in ("mul", "div"):
            sign = sign * np.sign(op.values[0])
        elif kind == "rsub":
            sign = -sign
        elif kind == "bn" or kind == "hardsigmoid":
            sign = sign * np.sign(op.values[0])
        elif kind in ("leaky", "prelu"):
            sign = np.where(np.broadcast_to(op.values[0], (channels,)) < 0, 0.0, sign)
        elif kind in ("hardswish", "silu"):
            sign = np.zeros(channels)
        elif kind == "elu":
            sign = sign if op.values[0] >= 0 else np.zeros(channels)
    return sign


def has_activation(chain: list[ChainOp]) -> bool:
    return any(op.kind in ACTIVATIONS for op in chain)
