"""Brevitas MLPs across the quantization matrix: export -> lower -> interpreter == Brevitas in float64.

Every element of 1000 random inputs per model must be equal (np.array_equal), except
for a float (unquantized) bias, which the lowering rounds onto the accumulator grid:
there the deviation must be reported, and the outputs stay within what that rounding
can explain.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brevitas_zoo import INPUT_RANGE, MATRIX, export_qonnx_file, float64_forward, make_mlp

from qonnx_ir import execute, load
from qonnx_ir.dialect import read_edge_type
from qonnx_ir.cli import main as qonnx
from transforms import lower

SAMPLES = 1000


def _inputs(config, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, config.in_features))


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.id)
def test_lowered_graph_equals_brevitas_in_float64(config, tmp_path):
    model = make_mlp(config)
    path = tmp_path / "model.onnx"
    export_qonnx_file(model, config.in_features, path)
    lowered, context = lower(load(path))
    x = _inputs(config)
    expected = float64_forward(model, x)
    actual = execute(lowered, x)
    report = str(context.report)
    if config.bias == "float":
        # The deviation is reported, and it is exactly the bias rounding: Brevitas with the
        # rounded biases put back in computes what the lowered graph computes.
        assert "float bias rounded onto the accumulator grid" in report
        _set_biases(model, _lowered_biases(lowered))
        expected = float64_forward(model, x)
    else:
        assert "float bias" not in report
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ; report:\n{report}"


def _lowered_biases(lowered) -> list[np.ndarray]:
    """Real values of each Dense's integer bias: code * accumulator lsb * gain."""
    biases = []
    for node in lowered.graph.node:
        if node.op_type == "Dense":
            step = read_edge_type(lowered, node.output[0]).real_scale
            codes = lowered.get_initializer(node.input[2]) if len(node.input) > 2 else 0.0
            biases.append(np.asarray(codes, dtype=np.float64) * step)
    return biases


def _set_biases(model, biases) -> None:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(biases)
    with torch.no_grad():
        for linear, bias in zip(linears, biases):
            linear.bias.copy_(torch.from_numpy(np.broadcast_to(bias, linear.bias.shape).copy()))


def test_cli_run_on_a_lowered_matrix_model(tmp_path):
    config = MATRIX[0]
    model = make_mlp(config)
    export_qonnx_file(model, config.in_features, tmp_path / "m.onnx")
    assert qonnx(["transform", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.hw.onnx")]) == 0
    x = _inputs(config)
    np.save(tmp_path / "x.npy", x)
    assert qonnx(["run", str(tmp_path / "m.hw.onnx"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), float64_forward(model, x))
