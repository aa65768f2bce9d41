"""Brevitas MLPs across the quantization matrix: export -> lower -> interpreter == Brevitas in float64.

Every element of 1000 random inputs per model must be equal (np.array_equal), a float
(unquantized) bias included: it stays a float Add that the requantization absorbs exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from brevitas_zoo import INPUT_RANGE, MATRIX, export_qonnx_file, float64_forward, make_mlp

from qonnx_ir import execute, load
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
    assert context.report.exact, report
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ; report:\n{report}"


def test_cli_run_on_a_lowered_matrix_model(tmp_path):
    config = MATRIX[0]
    model = make_mlp(config)
    export_qonnx_file(model, config.in_features, tmp_path / "m.onnx")
    assert qonnx(["transform", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.hw.onnx")]) == 0
    x = _inputs(config)
    np.save(tmp_path / "x.npy", x)
    assert qonnx(["run", str(tmp_path / "m.hw.onnx"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), float64_forward(model, x))
