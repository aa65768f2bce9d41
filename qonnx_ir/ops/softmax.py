"""Softmax: exp by table, one shared reciprocal, n multipliers; exact integer semantics.

    Softmax(x, exp_table) -> y                 x: (F,) codes; y: unsigned, F = y's fraction bits
    d_j = max(x) - x_j
    i_j = min(ceil(d_j / 2**table_shift), table_size - 1)      (i = 0 exactly when d = 0)
    e_j = exp_table[i_j]                       exp_table[0] = 2**exp_bits: the largest input wins
    S   = sum_j e_j
    K   = exp_bits + F + guard_bits
    r   = floor(2**K / S)                      the one divider of the layer
    y_j = min(max_code, (e_j * r + 2**(K - F - 1)) >> (K - F))

Since S >= 2**exp_bits, r < 2**(F + guard_bits + 1), and e_j * r / 2**(K-F) lies within
2**-guard_bits of an output lsb below e_j * 2**F / S: the reciprocal costs at most that much
on top of the table's error (transforms.lower_softmax.error_bound states the total).
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..limits import MAX_SOFTMAX_EXP_BITS, MAX_TABLE_ENTRIES
from .. import integers


class Softmax(HwOp):
    op_type = "Softmax"
    summary = "softmax over the features: exp table, one reciprocal, a multiplier per output"
    inputs = (Port("x"), Port("exp_table", constant=True))

    table_shift = Attr(int, 0, minimum=0, maximum=62)
    exp_bits = Attr(int, minimum=1, maximum=MAX_SOFTMAX_EXP_BITS)
    guard_bits = Attr(int, 4, minimum=1, maximum=16, doc="extra bits of the reciprocal")

    @property
    def table(self) -> np.ndarray:
        return self.constant("exp_table")

    @property
    def reciprocal_shift(self) -> int:
        return self.exp_bits + self.output_edge().type.frac_bits + self.guard_bits

    def check_output(self, index: int, edge: EdgeType) -> None:
        x = self.input_edge("x")
        if len(x.shape) != 1 or edge.shape != x.shape:
            raise self.fail(f"Softmax maps a vector to one of the same shape, not {x.shape} to {edge.shape}")
        if edge.type.signed or edge.type.frac_bits < 0 or not edge.is_fixed_point:
            raise self.fail(f"the Softmax output must be an unsigned fixed-point type, not {edge.describe()}")
        table = self.table
        if table.ndim != 1 or not 2 <= table.size <= MAX_TABLE_ENTRIES:
            raise self.fail(f"exp_table must hold 2..{MAX_TABLE_ENTRIES} entries, it has shape {table.shape}")
        if table[0] != 1 << self.exp_bits or table.min() < 0 or np.any(np.diff(table) > 0):
            raise self.fail(f"exp_table must start at 2**exp_bits = {1 << self.exp_bits} and never increase")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        out = self.output_edge().type
        table = self.table
        codes_x = integers.as_repr(x, np.float64) if x.dtype != object else x.astype(np.float64)
        distance = codes_x.max(axis=1, keepdims=True) - codes_x  # exact: integers below 2**53
        index = np.minimum(np.ceil(np.ldexp(distance, -self.table_shift)), len(table) - 1).astype(np.intp)
        exps = table[index]  # int64
        total = exps.sum(axis=1, keepdims=True)
        shift = self.reciprocal_shift
        drop = shift - out.frac_bits
        if shift + 2 < 62:
            reciprocal = (np.int64(1) << np.int64(shift)) // total
            codes = (exps * reciprocal + (np.int64(1) << np.int64(drop - 1))) >> np.int64(drop)
        else:  # Python integers past 62 bits
            reciprocal = np.vectorize(lambda s: (1 << shift) // int(s), otypes=[object])(total)
            codes = (exps.astype(object) * reciprocal + (1 << (drop - 1))) >> drop
        codes = np.minimum(codes, out.max_code)
        return [codes.astype(integers.representation(out.magnitude))]

    def cost(self, io: str = "parallel") -> Cost:
        x = self.input_edge("x")
        n = x.shape[0]
        # max tree, table lookups, adder tree, the divider (one bit per cycle), the multipliers
        latency = 2 * math.ceil(math.log2(max(n, 2))) + 2 + self.reciprocal_shift + 1
        return Cost(act_bits=x.type.width, multipliers=n, latency=latency)
