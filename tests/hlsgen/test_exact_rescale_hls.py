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
from hls_pairings import PAIRINGS, parametrize_rotating

from hlsgen import generate
from qonnx_ir import execute, load
from transforms import LoweringOptions, lower


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
    assert len(np.unique(execute(lowered, x, codes=True))) > 20
    _csim_equals_interpreter(lowered, x, backend, io, tmp_path)


def pytest_generate_tests(metafunc):
    parametrize_rotating(metafunc, "float_case", FLOAT_MATRIX)


def test_float_scale_mlp_csim_equals_interpreter(float_case, tmp_path):
    config, backend, io = float_case
    path = export_qonnx_file(make_float_mlp(config), config.in_features, tmp_path / "m.onnx")
    lowered, context = lower(load(path))
    assert context.report.exact
    _csim_equals_interpreter(lowered, np.random.default_rng(8).uniform(-2, 2, (300, config.in_features)),
                             backend, io, tmp_path)


def _csim_equals_interpreter(lowered, x, backend, io, tmp_path):
    expected = execute(lowered, x, codes=True)
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=4)
    actual = project.predict(x, codes=True)
    assert np.array_equal(actual, expected), f"{int(np.sum(actual != expected))} of {actual.size} differ"


def _activations_model():
    """The activation functions the mixed model does not have, each on a narrow quantized input (a table),
    one after the other: Sigmoid, ELU, LeakyReLU, HardSigmoid, HardTanh (Clip: an exact multiplier)."""
    from conftest import QonnxGraph

    g = QonnxGraph("x", (1, 4))
    t = g.quant("x", scale=_scale(2.1 / 32), bits=6)
    for op, attrs, scale in (("Sigmoid", {}, 1 / 255), ("Elu", {"alpha": 0.7}, 0.011), ("LeakyRelu", {"alpha": 0.1}, 0.0093),
                             ("HardSigmoid", {"alpha": float(np.float32(1 / 6)), "beta": 0.5}, 1 / 127)):
        t = g.node("Mul", [t, g.constant(_scale(3.7))]) if op == "Elu" else t
        t = g.quant(g.node(op, [t], **attrs), scale=_scale(scale), bits=8, signed=op != "Sigmoid")
    t = g.node("Clip", [g.node("Mul", [t, g.constant(_scale(1.9))]), g.constant(-0.6), g.constant(0.8)])
    return g.build(g.quant(t, scale=_scale(0.0071), bits=9), (1, 4))


def _hawq():
    from export_graphs import hawq_mlp

    return hawq_mlp()


def _hawq_integer_only():
    from export_graphs import hawq_mlp_without_activation_quant

    return hawq_mlp_without_activation_quant()


def _qdq():
    from export_graphs import qdq_mlp

    return qdq_mlp()


OTHER_MODELS = {"activations": _activations_model, "hawq": _hawq, "hawq-integer-only": _hawq_integer_only,
                "qdq": _qdq}
OTHER_CASES = [(name, *pairing) for name in OTHER_MODELS for pairing in PAIRINGS]


@pytest.mark.parametrize("name, backend, io", OTHER_CASES, ids=[f"{n}-{b}-{io}" for n, b, io in OTHER_CASES])
def test_other_exports_csim_equals_interpreter(name, backend, io, tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper

    model = OTHER_MODELS[name]()
    lowered, context = lower(model if isinstance(model, ModelWrapper) else ModelWrapper(model))
    assert context.report.exact, str(context.report)
    if name == "activations":
        assert [n.op_type for n in lowered.graph.node].count("Table") == 4
    width = lowered.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    _csim_equals_interpreter(lowered, np.random.default_rng(9).uniform(-2.5, 2.5, (300, width)), backend, io,
                             tmp_path)
