"""Conv: a 1-D or 2-D convolution on channels-last integer codes, exact.

    Conv(x, weight, bias?) -> acc      x: (L, C) or (H, W, C); weight: codes (*kernel, C/groups, O)
    acc[p, o] = bias[o] + sum_{k, c} x[p * stride + k * dilation, g(o) * C/groups + c] * weight[k, c, o]

g(o) = o // (O / groups) is output channel o's group (groups = C = O: depthwise). There is
no implicit padding: a Pad node in front pads (the lowering splits ONNX's pads off), so the
stream kernel never branches on borders. Types as for Dense: weight codes carry their own
type and gain; acc's lsb is lsb_x * lsb_w, its gain gain_x * gain_w[o], its range the
interval analysis of each output's K * C/groups terms (the padding's zeros lie inside it).

Knobs: reuse_factor R (each multiplier serves R products of one output position),
strategy (latency / resource, as Dense), parallelization P (io parallel: output positions
computed at once; the layer then takes R * ceil(positions / P) cycles per sample; io stream
computes one position per input pixel and ignores P).
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..types import FixedType
from .. import integers
from .dense import STRATEGIES, accumulator_bounds
from .window import output_spatial, patches


class Conv(HwOp):
    op_type = "Conv"
    summary = "convolution (1-D or 2-D, strides, dilations, groups) on channels-last codes"
    inputs = (Port("x"), Port("weight", constant=True), Port("bias", constant=True, optional=True))
    outputs = ("acc",)

    strides = Attr("ints", (), minimum=1, doc="per spatial axis (default 1)")
    dilations = Attr("ints", (), minimum=1, doc="per spatial axis (default 1)")
    groups = Attr(int, 1, minimum=1)
    reuse_factor = Attr(int, 1, minimum=1, knob=True, doc="products per multiplier, for one output position")
    strategy = Attr(str, "latency", choices=STRATEGIES, knob=True)
    parallelization = Attr(int, 0, minimum=0, knob=True, doc="io parallel: output positions at once (0: all)")

    @property
    def weight(self) -> np.ndarray:
        return self.constant("weight")

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[:-2])

    def geometry(self) -> tuple[tuple, tuple, tuple]:
        rank = len(self.kernel)
        return (self.kernel, tuple(self.strides) or (1,) * rank, tuple(self.dilations) or (1,) * rank)

    @property
    def bias(self) -> np.ndarray:
        bias = self.constant("bias")
        return np.zeros(self.weight.shape[-1], np.int64) if bias is None else bias

    @property
    def positions(self) -> int:
        return math.prod(self.output_edge().shape[:-1])

    def working_values(self) -> int:
        """evaluate copies every window into a row of the product (im2col): positions x kernel x C_in."""
        return max(super().working_values(), self.positions * math.prod(self.kernel) * self.input_edge("x").channels)

    def fit_knob(self, name: str, value):
        if name == "reuse_factor":
            return min(value, int(self.weight[..., 0].size))  # products per output channel and position
        if name == "parallelization":
            return min(value, self.positions) if value else value
        return value

    def infer(self) -> list[EdgeType | None]:
        x, weight_edge, weight = self.input_edge("x"), self.input_edge("weight"), self.weight
        spatial, channels = x.shape[:-1], x.channels
        if len(x.shape) not in (2, 3) or weight.ndim != len(x.shape) + 1:
            raise self.fail(f"a {weight.ndim - 2}-D kernel on an input of shape {x.shape} (expected (L, C) or (H, W, C))")
        if channels % self.groups or weight.shape[-1] % self.groups or weight.shape[-2] * self.groups != channels:
            raise self.fail(f"weight {weight.shape} with {self.groups} groups does not fit {channels} input channels")
        if x.per_tensor_gain is None:
            raise self.fail("the input has one scale per channel: a convolution needs one for the whole input")
        kernel, strides, dilations = self.geometry()
        out_spatial = output_spatial(spatial, kernel, strides, dilations, self.name)
        columns = weight.reshape(-1, weight.shape[-1])
        low, high = accumulator_bounds(columns, self.bias, x.type)
        fixed = FixedType.for_range(int(min(low)), int(max(high)), x.type.frac_bits + weight_edge.type.frac_bits)
        gain = x.gain[0] * np.broadcast_to(weight_edge.gain, (weight.shape[-1],))
        return [EdgeType(fixed, (*out_spatial, weight.shape[-1]), gain)]

    def validate(self) -> None:
        super().validate()
        if self.has_input("bias"):
            bias_edge, acc = self.input_edge("bias"), self.output_edge()
            if self.bias.shape != (self.weight.shape[-1],):
                raise self.fail(f"bias shape {self.bias.shape} does not match {self.weight.shape[-1]} outputs")
            if bias_edge.type.frac_bits != acc.type.frac_bits or not np.array_equal(bias_edge.channel_gain(),
                                                                                    acc.channel_gain()):
                raise self.fail(f"bias type {bias_edge.describe()} is not on the accumulator grid {acc.describe()}")
        rank = len(self.kernel)
        for name in ("strides", "dilations"):
            if len(self.attrs[name]) not in (0, rank):
                raise self.fail(f"{name} has {len(self.attrs[name])} values for a {rank}-D kernel")
        if self.reuse_factor > self.weight[..., 0].size:
            raise self.fail(f"reuse_factor {self.reuse_factor} exceeds the {self.weight[..., 0].size} products of "
                            "one output (per position and channel)")
        if self.parallelization > self.positions:
            raise self.fail(f"parallelization {self.parallelization} exceeds the {self.positions} output positions")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        weight, bias = self.weight, self.bias
        kernel, strides, dilations = self.geometry()
        windows = patches(x, kernel, strides, dilations)  # (N, *out, *kernel, C)
        n, out_spatial = len(x), windows.shape[1:1 + len(kernel)]
        groups, c_group = self.groups, weight.shape[-2]
        o_group = weight.shape[-1] // groups
        rows = windows.reshape(n * math.prod(out_spatial), math.prod(kernel), groups, c_group)
        magnitude = self.input_edge("x").type.magnitude
        results = []
        for g in range(groups):
            w = weight[..., g * o_group:(g + 1) * o_group].reshape(-1, o_group)
            b = bias[g * o_group:(g + 1) * o_group]
            bound = int(np.max(np.abs(w).sum(axis=0) * magnitude + np.abs(b)))
            acc = integers.matmul(rows[:, :, g, :].reshape(len(rows), -1), w, bound)
            results.append(acc + integers.as_repr(b, acc.dtype.type if acc.dtype != object else object))
        acc = results[0] if groups == 1 else np.concatenate(results, axis=-1)
        return [acc.reshape(n, *out_spatial, weight.shape[-1])]

    def cost(self, io: str = "parallel") -> Cost:
        x, weight_edge, weight = self.input_edge("x"), self.input_edge("weight"), self.weight
        positions = self.positions
        per_output = int(weight[..., 0].size)  # K * C/groups
        nonzero = int(np.count_nonzero(weight))
        real_products = 0 if weight_edge.type.bipolar else nonzero
        reuse = self.reuse_factor
        parallel = (self.parallelization or positions) if io == "parallel" else 1  # io stream: a position at a time
        rounds = -(-positions // parallel) if io == "parallel" else 1
        adder_depth = math.ceil(math.log2(max(per_output, 2)))
        return Cost(macs=positions * int(weight.size), weight_bits_each=weight_edge.type.width, act_bits=x.type.width,
                    n_weights=int(weight.size), multipliers=-(-real_products * parallel // reuse), ii=reuse * rounds,
                    latency=reuse * rounds + adder_depth + 1)
