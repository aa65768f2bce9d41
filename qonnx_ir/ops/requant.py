"""Requant: integer codes -> the codes of another type; every rescale of the dialect is one.

    Requant(x, thresholds?) -> q         per channel c (the last axis)
    mode shift:           q = sat(round(x / 2**shift[c]))           a negative shift multiplies
    mode multiply_shift:  q = sat(round((x * multiplier[c] + offset[c]) / 2**shift[c]))
    mode thresholds:      q = min_code + step * #{k : x >= thresholds[c, k]}
                          (step 2 for a bipolar q: -1 or +1; one row for every channel allowed)
    clip = [low, high]:   q = min(max(q, low), high) at the end (a Relu or Clip before the quantizer)

sat is q's type's: SAT clamps to its range (SAT_SYM: the symmetric one). round is q's type's
(RND_CONV half to even, TRN floor) unless rounding = floor: an exact multiplier folds any
rounding into its offset and floors. Everything is exact integer arithmetic; which mode
reproduces which float computation is the lowering's business (transforms/lower_requant.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..types import Rounding
from .. import integers

MODES = ("shift", "multiply_shift", "thresholds")
MAX_SHIFT = 128


class Requant(HwOp):
    op_type = "Requant"
    summary = "rescale codes: shift, multiplier and shift, or thresholds (per channel)"
    inputs = (Port("x"), Port("thresholds", constant=True, optional=True))
    outputs = ("q",)

    mode = Attr(str, choices=MODES)
    rounding = Attr(str, "type", choices=("type", "floor"), doc="type: the output type's rounding; floor: always")
    clip = Attr("ints", (), doc="[low, high]: the output codes are clamped to these after saturation")
    shift = Attr("ints", (0,), minimum=-MAX_SHIFT, maximum=MAX_SHIFT, doc="per channel, or one for all")
    multiplier = Attr("ints", (1,), doc="multiply_shift: per channel, or one for all")
    offset = Attr("ints", (0,), doc="multiply_shift: per channel, or one for all")

    def per_channel(self, values: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.int64), (self.input_edge("x").channels,))

    @property
    def levels(self) -> int:
        out = self.output_edge().type
        return (out.max_code - out.min_code) // out.code_step

    @property
    def lowest(self) -> int:
        out = self.output_edge().type
        return max(out.min_code, self.clip[0]) if self.clip else out.min_code

    @property
    def highest(self) -> int:
        out = self.output_edge().type
        return min(out.max_code, self.clip[1]) if self.clip else out.max_code

    @property
    def half_even(self) -> bool:
        return self.rounding == "type" and self.output_edge().type.rounding is Rounding.CONV

    def check_output(self, index: int, edge: EdgeType) -> None:
        x = self.input_edge("x")
        if edge.shape != x.shape:
            raise self.fail(f"output shape {edge.shape} differs from the input shape {x.shape}")
        for name in ("shift", "multiplier", "offset"):
            if len(self.attrs[name]) not in (1, x.channels):
                raise self.fail(f"{name} has {len(self.attrs[name])} values for {x.channels} channels")
        if self.mode != "multiply_shift" and (self.multiplier != (1,) or self.offset != (0,)):
            raise self.fail(f"multiplier and offset belong to mode multiply_shift, not {self.mode}")
        if edge.type.bipolar and self.mode != "thresholds":
            raise self.fail("a bipolar output is computed by thresholds (mode thresholds)")
        if self.clip and (len(self.clip) != 2 or self.clip[0] > self.clip[1]):
            raise self.fail(f"clip {list(self.clip)} is not [low, high] with low <= high")
        if edge.type.bipolar and self.clip:
            raise self.fail("a bipolar output takes no clip")
        has_table = self.has_input("thresholds")
        if has_table != (self.mode == "thresholds"):
            raise self.fail("mode thresholds takes a thresholds input, the other modes none")
        if has_table:
            table = self.constant("thresholds")
            if table.ndim != 2 or table.shape[0] not in (1, x.channels) or table.shape[1] != self.levels:
                raise self.fail(f"thresholds have shape {table.shape}, expected ({x.channels} or 1, {self.levels}) "
                                f"for {edge.type}")
            if table.size and (table.min() < x.type.min_code or table.max() > x.type.max_code + 1):
                raise self.fail(f"thresholds lie outside the input range [{x.type.min_code}, {x.type.max_code + 1}]")
            if np.any(np.diff(table, axis=1) < 0):
                raise self.fail("thresholds must not decrease along a channel")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        x_type, out = self.input_edge("x").type, self.output_edge().type
        representation = integers.representation(out.magnitude)
        if self.mode == "thresholds":
            table = self.constant("thresholds")
            counts = (x[..., None] >= np.broadcast_to(table, (x.shape[-1], table.shape[1]))).sum(axis=-1)
            codes = out.min_code + out.code_step * counts
            return [np.clip(codes, self.lowest, self.highest).astype(representation)]
        shift = self.per_channel(self.shift)
        multiply = self.mode == "multiply_shift"
        multiplier = self.per_channel(self.multiplier) if multiply else np.ones(1, np.int64)
        offset = self.per_channel(self.offset) if multiply else np.zeros(1, np.int64)
        bound = x_type.magnitude * int(np.max(np.abs(multiplier))) + int(np.max(np.abs(offset)))
        bound <<= max(0, -int(shift.min()))
        kind = integers.representation(bound)
        numerator = integers.as_repr(x, kind)
        if multiply:
            numerator = numerator * integers.as_repr(multiplier, kind) + integers.as_repr(offset, kind)
        codes = integers.divide_rounded(numerator, shift, self.half_even, bound)
        if codes.dtype.kind == "f":
            np.clip(codes, self.lowest, self.highest, out=codes)
        else:
            codes = np.clip(codes, self.lowest, self.highest)
        return [integers.as_repr(codes, representation)]

    def cost(self, io: str = "parallel") -> Cost:
        x = self.input_edge("x")
        if self.mode == "thresholds":
            latency = 1 + math.ceil(math.log2(self.levels + 1))  # comparators, then an adder tree of the results
        else:
            latency = 2 if self.mode == "multiply_shift" else 1
        return Cost(act_bits=x.type.width, latency=latency)
