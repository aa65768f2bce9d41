"""The interpreter's table softmax against the dialect's definition, evaluated with Python integers."""

from __future__ import annotations

import numpy as np

from qonnx_ir import execute
from qonnx_ir.dialect import EdgeType
from qonnx_ir.dialect.builder import GraphBuilder
from qonnx_ir.ops.softmax import Softmax
from qonnx_ir.types import FixedType


def _reference(codes, table, shift, frac, exp_bits, guard):
    """qonnx_ir/ops/softmax.py: i = ceil(d / 2^shift) clipped; r = floor(2^K / S); y = (e r + 2^(K-F-1)) >> (K-F)."""
    out = []
    k = exp_bits + frac + guard
    for row in codes:
        row = [int(v) for v in row]
        exps = [int(table[min(-(-(max(row) - v) // (1 << shift)), len(table) - 1)]) for v in row]
        reciprocal = (1 << k) // sum(exps)
        out.append([min((e * reciprocal + (1 << (k - frac - 1))) >> (k - frac), (1 << 18) - 1) for e in exps])
    return np.array(out)


def test_table_softmax_matches_integer_definition_including_ties():
    rng = np.random.default_rng(0)
    table = np.round(np.exp(-np.arange(64) / 8.0) * 2**16).astype(np.int64)
    table[0] = 2**16
    out_type = FixedType(18, 2, False)
    builder = GraphBuilder((5,))
    x = builder.input_quant(FixedType(12, 12, True))
    t = builder.constant("t", table, FixedType.for_range(0, 2**16, 0))
    y = builder.node(Softmax, "softmax", [x, t], out=EdgeType(out_type, (5,)), table_shift=2, exp_bits=16,
                     guard_bits=4)
    model = builder.build(y)
    codes = rng.integers(-2048, 2048, (3000, 5))
    codes[:500, 1] = codes[:500, 0]  # exact ties of the largest logits
    codes[500:600] = codes[500:600, :1]  # all equal: every output 1/5
    expected = _reference(codes, table, shift=2, frac=out_type.frac_bits, exp_bits=16, guard=4)
    assert np.array_equal(execute(model, codes.astype(np.float64), codes=True), expected)
