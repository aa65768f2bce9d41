"""Activation functions between quantizers, lowered exactly: every input code of every signed and
unsigned input of 2-8 bits, against PyTorch's float64 function (what Brevitas evaluates) and the
quantizer written from its specification (tests/conftest.py quant_codes).

    x -> Quant(s_in, b bits) -> activation -> Quant(s_out, 8 bits) -> y

Float, non power-of-two scales throughout. Then the same activations on a wide accumulator
(more codes than --activation-table-bits allows in one table): monotone ones become exact
thresholds; the others a segmented table that states its error bound as a WARNING, and exact
again with a wider table.
"""

from __future__ import annotations

import numpy as np
import pytest
from activation_graphs import (
    ACTIVATIONS,
    OUT_SCALE,
    activation_graph,
    all_codes,
    dense_activation_graph,
    dense_reference,
    reference,
)

from qonnx_ir import execute
from qonnx_ir.dialect import read_edge_type
from transforms import LoweringOptions, lower


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_between_quantizers_is_exact_on_every_input_code(qonnx_graph, helpers, name, bits, signed):
    in_scale = float(np.float32((3.3 if signed else 5.1) / 2 ** (bits - (1 if signed else 0))))
    lowered, context = lower(activation_graph(name, in_scale, bits, signed))
    assert context.report.exact, str(context.report)
    ops = [node.op_type for node in lowered.graph.node]
    assert ops[0] == "InputQuant" and len(ops) == 2
    x = all_codes(bits, signed, in_scale)
    expected = reference(name, x)
    actual = execute(lowered, x)
    assert np.array_equal(actual, expected), f"{int(np.sum(actual != expected))} of {actual.size} differ"
    if ops[1] == "Table":  # one entry per input code: its size is reported
        assert f"table of {2 ** bits} entries" in str(context.report)


def test_each_activation_meets_every_output_level_it_can(qonnx_graph, helpers):
    """The comparisons above are not vacuous: at 8 input bits each activation spans many output codes."""
    for name in ACTIVATIONS:
        in_scale = float(np.float32(3.3 / 128))
        levels = np.unique(reference(name, all_codes(8, True, in_scale)))
        assert len(levels) > 40, (name, len(levels))


MONOTONE = ["sigmoid", "tanh", "hardtanh", "leaky_relu", "elu", "hardsigmoid"]
NOT_MONOTONE = ["prelu", "hardswish", "silu"]


@pytest.mark.parametrize("name", MONOTONE)
def test_monotone_activation_on_a_wide_accumulator_gives_exact_thresholds(qonnx_graph, helpers, name):
    lowered, context = lower(dense_activation_graph(name))
    assert context.report.exact, str(context.report)
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant"]
    x = np.random.default_rng(3).uniform(-2.2, 2.2, (4000, 4))
    expected = dense_reference(name, x)
    assert np.array_equal(execute(lowered, x), expected)
    assert len(np.unique(expected)) > 30


@pytest.mark.parametrize("name", NOT_MONOTONE)
def test_other_activation_on_a_wide_accumulator_is_a_segmented_table_with_its_bound(qonnx_graph, helpers, name):
    model = dense_activation_graph(name)
    lowered, context = lower(model)
    assert not context.report.exact
    (warning,) = context.report.warnings
    assert "segmented table" in warning and "--activation-table-bits" in warning
    bound = int(warning.split("off by up to ")[1].split()[0])
    x = np.random.default_rng(4).uniform(-2.2, 2.2, (4000, 4))
    expected = dense_reference(name, x)
    error = np.max(np.abs(execute(lowered, x) - expected)) / OUT_SCALE
    assert 0 < bound and error <= bound + 1e-9
    # a table over every accumulator code is exact again
    acc = read_edge_type(lowered, lowered.graph.node[1].output[0]).type
    assert acc.width == 16
    wide, context = lower(model, LoweringOptions(activation_table_bits=acc.width))
    assert context.report.exact, str(context.report)
    assert np.array_equal(execute(wide, x), expected)
