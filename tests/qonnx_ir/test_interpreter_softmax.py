"""The interpreter's table softmax against the dialect's definition, evaluated with Python integers."""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir import hw
from qonnx_ir.interpreter import KERNELS
from qonnx_ir.types import FixedType


def _reference(codes, table, shift, frac):
    """hw.py: d = max - x; i = 0 if d == 0 else min(((d-1) >> shift) + 1, size-1); round_half_even(e*2^F / sum)."""
    out = []
    for row in codes:
        row = [int(v) for v in row]
        exps = [int(table[0 if (d := max(row) - v) == 0 else min(((d - 1) >> shift) + 1, len(table) - 1)]) for v in row]
        total = sum(exps)
        result = []
        for e in exps:
            quotient, remainder = divmod(e << frac, total)
            if 2 * remainder > total or (2 * remainder == total and quotient % 2 == 1):
                quotient += 1
            result.append(quotient)
        out.append(result)
    return np.array(out)


def test_table_softmax_matches_integer_definition_including_ties():
    rng = np.random.default_rng(0)
    table = np.round(np.exp(-np.arange(64) / 8.0) * 2**16).astype(np.int64)
    table[0] = 2**16
    out_type = FixedType(18, 2, False)
    node = onnx.helper.make_node("Softmax", ["x", "t"], ["y"], domain=hw.DOMAIN, in_type="fixed<12,12>",
                                 out_type=str(out_type), table_size=64, table_shift=2, exp_bits=16)
    codes = rng.integers(-2048, 2048, (3000, 5))
    codes[:500, 1] = codes[:500, 0]  # exact ties of the largest logits
    codes[500:600] = codes[500:600, :1]  # all equal: every output 1/5
    expected = _reference(codes, table, shift=2, frac=out_type.frac_bits)
    actual = KERNELS["Softmax"](node, [codes.astype(np.float64), table.astype(np.float64)], ModelWrapper(onnx.ModelProto()))
    assert np.array_equal(actual, expected)
