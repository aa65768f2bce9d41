"""Hand-built QONNX graphs with an activation function between quantizers, and their float64
references (PyTorch's functions, then the quantizer written from its specification)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from conftest import QonnxGraph, quant_codes

SLOPE = np.float32(0.1)  # LeakyReLU / PReLU / ELU parameter, as the float32 ONNX attribute stores it
PRELU_SLOPES = np.array([0.25, -0.375, 0.1], np.float32)  # per channel; one negative: not monotone
CHANNELS = 3


def _hardsigmoid(g, t):
    # torch exports nn.Hardsigmoid as HardSigmoid(alpha=1/6) in float32
    return g.node("HardSigmoid", [t], alpha=float(np.float32(1 / 6)), beta=0.5)


def _silu(g, t):
    return g.node("Mul", [t, g.node("Sigmoid", [t])])


# name -> (ONNX nodes, float64 reference on a torch tensor, opset)
ACTIVATIONS = {
    "sigmoid": (lambda g, t: g.node("Sigmoid", [t]), torch.sigmoid, 11),
    "tanh": (lambda g, t: g.node("Tanh", [t]), torch.tanh, 11),
    "hardtanh": (lambda g, t: g.node("Clip", [t, g.constant(-0.75), g.constant(0.5)]),
                 lambda x: torch.clamp(x, -0.75, 0.5), 11),
    "leaky_relu": (lambda g, t: g.node("LeakyRelu", [t], alpha=float(SLOPE)),
                   lambda x: F.leaky_relu(x, float(SLOPE)), 11),
    "prelu": (lambda g, t: g.node("PRelu", [t, g.constant(PRELU_SLOPES)]),
              lambda x: F.prelu(x, torch.from_numpy(PRELU_SLOPES.astype(np.float64))), 11),
    "elu": (lambda g, t: g.node("Elu", [t], alpha=float(SLOPE)), lambda x: F.elu(x, float(SLOPE)), 11),
    "hardsigmoid": (_hardsigmoid, lambda x: torch.clamp(x * float(np.float32(1 / 6)) + 0.5, 0.0, 1.0), 11),
    "hardswish": (lambda g, t: g.node("HardSwish", [t]), F.hardswish, 14),
    "silu": (_silu, F.silu, 11),
}
OUT_SCALE = float(np.float32(1.37 / 127))  # covers every activation's range at 8 signed bits


def activation_graph(name, in_scale, bits, signed, qonnx_graph=QonnxGraph):
    build, _, opset = ACTIVATIONS[name]
    g = qonnx_graph("x", (1, CHANNELS))
    q = g.quant("x", scale=in_scale, bits=bits, signed=signed)
    y = g.quant(build(g, q), scale=OUT_SCALE, bits=8, signed=True)
    return g.build(y, (1, CHANNELS), opset=opset)


def reference(name, x):
    """PyTorch's function in float64, then the 8-bit quantizer, in real values."""
    value = ACTIVATIONS[name][1](torch.from_numpy(x)).numpy()
    return quant_codes(value, scale=OUT_SCALE, bits=8, signed=True, narrow=False, rounding="ROUND") * OUT_SCALE


def all_codes(bits, signed, in_scale):
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = np.arange(low, high + 1, dtype=np.float64)
    return np.repeat(codes[:, None], CHANNELS, axis=1) * in_scale  # exact: a float32 scale times a small integer


# -- a wide accumulator into an activation ---------------------------------------------------

WEIGHTS = np.array([[28, -50, 6], [-38, 15, 60], [50, 33, -22], [-4, -64, 44]])  # 8-bit codes


def dense_activation_graph(name, qonnx_graph=QonnxGraph):
    """A 4 -> 3 dense layer, 8-bit inputs and weights (float scales): an accumulator of 2**16 codes."""
    build, _, opset = ACTIVATIONS[name]
    g = qonnx_graph("x", (1, 4))
    q = g.quant("x", scale=float(np.float32(2.1 / 128)), bits=8)
    t = g.matmul(q, g.quantized_weight(WEIGHTS, float(np.float32(0.0123)), 8))
    y = g.quant(build(g, t), scale=OUT_SCALE, bits=8, signed=True)
    return g.build(y, (1, 3), opset=opset)


def dense_reference(name, x):
    in_scale, w_scale = float(np.float32(2.1 / 128)), float(np.float32(0.0123))
    codes = quant_codes(x, scale=in_scale, bits=8, signed=True, narrow=False, rounding="ROUND")
    return reference(name, (codes @ WEIGHTS) * (in_scale * w_scale))


