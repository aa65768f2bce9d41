"""Exact float rescales and activation functions in C++: tables (one row and per channel), segmented
tables, thresholds from transcendental functions and BatchNorm, exact multipliers, float biases,
and the float-scale Brevitas matrix - the C simulation equals the interpreter on every element,
on both backends and both io styles.
"""

from __future__ import annotations

import numpy as np
import pytest
from brevitas_float_zoo import MATRIX as FLOAT_MATRIX
from brevitas_float_zoo import export_qonnx_file, make_float_mlp

from hlsgen import generate
from qonnx_ir import execute, load
from transforms import LoweringOptions, lower

PAIRINGS = [("vitis", "parallel"), ("vitis", "stream"), ("catapult", "parallel"), ("catapult", "stream")]


def _scale(value: float) -> float:
    return float(np.float32(value))


def _mixed_model(qonnx_graph):
    """8 inputs -> dense (float bias) -> Tanh -> 6 bits (thresholds) -> PRelu per channel -> 8 bits (a table,
    a row per channel) -> dense -> 6 bits (exact multiplier) -> HardSwish -> 8 bits (a table) -> dense (float
    bias) -> Mul -> 12 bits (exact multiplier) -> dense -> SiLU -> 8 bits (a segmented table, WARNING)."""
    rng = np.random.default_rng(5)
    g = qonnx_graph("x", (1, 8))
    t = g.quant("x", scale=_scale(2.3 / 128), bits=8)
    t = g.matmul(t, g.quantized_weight(rng.integers(-7, 8, (8, 6)), _scale(0.071), 4))
    t = g.node("Add", [t, g.constant(rng.normal(0, 0.3, 6))])
    t = g.quant(g.node("Tanh", [t]), scale=_scale(1 / 31), bits=6)
    slopes = g.constant([0.25, -0.5, 0.1, 0.3, 0.0, -0.125])
    t = g.quant(g.node("PRelu", [t, slopes]), scale=_scale(0.0047), bits=8)
    t = g.matmul(t, g.quantized_weight(rng.integers(-31, 32, (6, 5)), _scale(0.0173), 6))
    t = g.quant(t, scale=_scale(0.043), bits=6)
    t = g.quant(g.node("HardSwish", [t]), scale=_scale(0.0091), bits=8)
    t = g.matmul(t, g.quantized_weight(rng.integers(-127, 128, (5, 4)), _scale(0.0091), 8))
    t = g.node("Add", [t, g.constant(rng.normal(0, 0.2, 4))])
    t = g.quant(g.node("Mul", [t, g.constant(_scale(1.37))]), scale=_scale(0.00061), bits=12)
    t = g.matmul(t, g.quantized_weight(rng.integers(-7, 8, (4, 3)), _scale(0.11), 4))
    sigmoid = g.node("Sigmoid", [t])
    t = g.quant(g.node("Mul", [t, sigmoid]), scale=_scale(0.013), bits=8)
    return g.build(t, (1, 3), opset=14)


@pytest.fixture(scope="module")
def mixed(request):
    from conftest import QonnxGraph

    lowered, context = lower(_mixed_model(QonnxGraph), LoweringOptions(activation_table_bits=10))
    return lowered, context


def test_the_mixed_model_uses_every_exact_form(mixed):
    lowered, context = mixed
    report = str(context.report)
    ops = [node.op_type for node in lowered.graph.node]
    assert ops.count("Table") == 3 and ops.count("Requant") == 3, ops
    assert "exact multiplier" in report and "float bias kept" in report
    (warning,) = context.report.warnings  # only the SiLU on a wide accumulator
    assert "segmented table" in warning


@pytest.mark.parametrize("backend, io", PAIRINGS, ids=[f"{b}-{io}" for b, io in PAIRINGS])
def test_csim_equals_interpreter(mixed, backend, io, tmp_path):
    lowered, _ = mixed
    x = np.random.default_rng(6).uniform(-2.5, 2.5, (500, 8))
    expected = execute(lowered, x, codes=True)
    assert len(np.unique(expected)) > 20
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=4)
    actual = project.predict(x, codes=True)
    assert np.array_equal(actual, expected), f"{int(np.sum(actual != expected))} of {actual.size} differ"


# the float-scale Brevitas matrix (tests/brevitas_float_zoo.py): each pairing meets several models
FLOAT_CASES = [(config, *PAIRINGS[i % 4]) for i, config in enumerate(FLOAT_MATRIX[::3])]


@pytest.mark.parametrize("config, backend, io", FLOAT_CASES, ids=[f"{c.id}-{b}-{io}" for c, b, io in FLOAT_CASES])
def test_float_scale_mlp_csim_equals_interpreter(config, backend, io, tmp_path):
    path = export_qonnx_file(make_float_mlp(config), config.in_features, tmp_path / "m.onnx")
    lowered, context = lower(load(path))
    assert context.report.exact
    x = np.random.default_rng(8).uniform(-2, 2, (300, config.in_features))
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=4)
    expected = execute(lowered, x, codes=True)
    assert np.array_equal(project.predict(x, codes=True), expected)
