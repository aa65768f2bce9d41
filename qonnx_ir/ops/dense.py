"""Dense: a fully connected layer on integer codes, exact.

    Dense(x, weight, bias?) -> acc          x: (F,); weight: codes (F, O); bias: codes (O,)
    acc[o] = bias[o] + sum_i x[i] * weight[i, o]

Types: the weight constant has its own type (codes * 2**-f_w * gain_w[o] are the real
weights), so acc's lsb is lsb_x * lsb_w and its gain gain_x * gain_w[o]. The bias is on that
grid already. acc's type is the narrowest holding every reachable value (interval analysis
of the actual weights, term by term: the extremes of x[i] * w[i, o] are at the ends of x's
range), so it never wraps. Knobs: reuse_factor R (each multiplier serves R products; any R
from 1 to F*O) and strategy (latency: weights in registers; resource: weights in a ROM).
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..types import FixedType
from .. import integers

STRATEGIES = ("latency", "resource")


def accumulator_bounds(weight: np.ndarray, bias: np.ndarray, in_type: FixedType) -> tuple[np.ndarray, np.ndarray]:
    """Per output (min, max) of x @ weight + bias over every x of in_type, as exact Python ints."""
    weight = np.asarray(weight).astype(object)
    low_products = np.minimum(weight * in_type.min_code, weight * in_type.max_code)
    high_products = np.maximum(weight * in_type.min_code, weight * in_type.max_code)
    bias = np.asarray(bias).astype(object)
    return low_products.sum(axis=0) + bias, high_products.sum(axis=0) + bias


class Dense(HwOp):
    op_type = "Dense"
    summary = "acc = x @ weight + bias on integer codes"
    inputs = (Port("x"), Port("weight", constant=True), Port("bias", constant=True, optional=True))
    outputs = ("acc",)

    reuse_factor = Attr(int, 1, minimum=1, knob=True, doc="products per multiplier (1: fully parallel)")
    strategy = Attr(str, "latency", choices=STRATEGIES, knob=True,
                    doc="latency: weights in registers; resource: weights in a ROM read R times per sample")

    @property
    def weight(self) -> np.ndarray:
        return self.constant("weight")

    @property
    def bias(self) -> np.ndarray:
        bias = self.constant("bias")
        return np.zeros(self.weight.shape[1], np.int64) if bias is None else bias

    def fit_knob(self, name: str, value):
        return min(value, int(self.weight.size)) if name == "reuse_factor" else value

    def infer(self) -> list[EdgeType | None]:
        x, weight_edge = self.input_edge("x"), self.input_edge("weight")
        weight = self.weight
        if len(x.shape) != 1:
            raise self.fail(f"Dense reads a vector (F,), its input is {x.shape}")
        if weight.ndim != 2 or weight.shape[0] != x.shape[0]:
            raise self.fail(f"weight shape {weight.shape} does not fit the input of {x.shape[0]} values")
        if x.per_tensor_gain is None:
            raise self.fail("the input has one scale per channel: a dense layer needs one for the whole input")
        low, high = accumulator_bounds(weight, self.bias, x.type)
        fixed = FixedType.for_range(int(min(low)), int(max(high)), x.type.frac_bits + weight_edge.type.frac_bits)
        gain = x.gain[0] * np.broadcast_to(weight_edge.gain, (weight.shape[1],))
        return [EdgeType(fixed, (weight.shape[1],), gain)]

    def validate(self) -> None:
        super().validate()
        weight = self.weight
        if self.has_input("bias"):
            bias_edge, acc = self.input_edge("bias"), self.output_edge()
            if self.bias.shape != (weight.shape[1],):
                raise self.fail(f"bias shape {self.bias.shape} does not match {weight.shape[1]} outputs")
            if bias_edge.type.frac_bits != acc.type.frac_bits or not np.array_equal(
                    bias_edge.channel_gain(), acc.channel_gain()):
                raise self.fail(f"bias type {bias_edge.describe()} is not on the accumulator grid {acc.describe()}")
        if self.reuse_factor > weight.size:
            raise self.fail(f"reuse_factor {self.reuse_factor} exceeds the {weight.size} products of the layer")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        x = inputs[0]
        weight, bias = self.weight, self.bias
        bound = int(np.max(np.abs(weight).sum(axis=0) * self.input_edge("x").type.magnitude + np.abs(bias)))
        acc = integers.matmul(x, weight, bound)
        acc += integers.as_repr(bias, acc.dtype.type if acc.dtype != object else object)
        return [acc]

    def cost(self, io: str = "parallel") -> Cost:
        x, weight_edge, weight = self.input_edge("x"), self.input_edge("weight"), self.weight
        n_in, n_out = weight.shape
        nonzero = int(np.count_nonzero(weight))
        real_products = 0 if weight_edge.type.bipolar else nonzero  # bipolar weights add or subtract
        reuse = self.reuse_factor
        adder_depth = math.ceil(math.log2(max(n_in, 2)))
        return Cost(macs=n_in * n_out, weight_bits_each=weight_edge.type.width, act_bits=x.type.width,
                    n_weights=int(weight.size), multipliers=-(-real_products // reuse), ii=reuse,
                    latency=reuse + adder_depth + 1)
