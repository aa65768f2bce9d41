"""Knobs are resolved once, into the model: the API, the CLI and a config file give the same project,
and a model that carries knobs (`qonnx transform --reuse`) is generated with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hlsgen import generate
from paths import JET_TAGGER
from qonnx_ir import load
from qonnx_ir.cli import main
from qonnx_ir.dialect import HwGraph
from qonnx_ir.errors import QonnxError


@pytest.fixture(scope="module")
def lowered(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("knobs") / "jet.hw.onnx"
    assert main(["transform", str(JET_TAGGER), "-o", str(path), "--check-samples", "0"]) == 0
    return path


def _dense_reuse(project_path: Path) -> dict[str, int]:
    metadata = json.loads((project_path / "project.json").read_text())
    return {layer["node"]: layer["reuse_factor"] for layer in metadata["layers"] if layer["op"] == "Dense"}


def test_generate_uses_the_reuse_factor_the_model_was_lowered_with(tmp_path):
    lowered = tmp_path / "jet.hw.onnx"
    assert main(["transform", str(JET_TAGGER), "-o", str(lowered), "--reuse", "4", "--check-samples", "0"]) == 0
    project = generate(load(lowered), tmp_path / "prj", backend="vitis")  # no reuse given: the model's
    assert set(_dense_reuse(project.path).values()) == {4} and len(_dense_reuse(project.path)) == 4
    parameters = (project.path / "firmware" / "parameters.h").read_text()
    assert len(re.findall(r"reuse_factor = 4;", parameters)) == 4
    assert "reuse_factor = 1;" not in parameters
    # and the model written into the project says so too
    graph = HwGraph(load(project.path / "model.hw.onnx"))
    assert {op.reuse_factor for op in graph.nodes if op.op_type == "Dense"} == {4}


def _files(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*"))
            if p.is_file() and p.relative_to(project).parts[0] != "build"}


def test_cli_config_and_api_give_identical_projects(lowered, tmp_path):
    knobs = ["--reuse", "3", "--strategy", "resource", "--io", "stream"]
    assert main(["hls", str(lowered), "-o", str(tmp_path / "cli"), "--backend", "vitis", *knobs]) == 0
    config = tmp_path / "cfg.yaml"
    config.write_text("reuse_factor: 3\nstrategy: resource\nio: stream\n")
    assert main(["hls", str(lowered), "-o", str(tmp_path / "config"), "--backend", "vitis", "--config", str(config)]) == 0
    generate(load(lowered), tmp_path / "api", backend="vitis", reuse=3, strategy="resource", io="stream")
    generate(load(lowered), tmp_path / "api_config", backend="vitis",
             config={"reuse_factor": 3, "strategy": "resource", "io": "stream"})
    reference = _files(tmp_path / "cli")
    assert "QNN_WEIGHTS_IN_ROM" in reference["firmware/qnn_top.cpp"].decode()
    for other in ("config", "api", "api_config"):
        assert _files(tmp_path / other) == reference, other


def test_a_layer_entry_beats_the_command_line_which_beats_the_config(lowered, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("reuse_factor: 2\nlayers:\n  MatMul_1: {reuse_factor: 8, strategy: resource}\n")
    assert main(["hls", str(lowered), "-o", str(tmp_path / "a"), "--backend", "catapult", "--config", str(config)]) == 0
    assert _dense_reuse(tmp_path / "a") == {"MatMul_0": 2, "MatMul_1": 8, "MatMul_2": 2, "MatMul_3": 2}
    project = generate(load(lowered), tmp_path / "b", backend="catapult", reuse=5,
                       config={"reuse_factor": 2, "layers": {"MatMul_1": {"reuse_factor": 8}}})
    assert _dense_reuse(project.path) == {"MatMul_0": 5, "MatMul_1": 8, "MatMul_2": 5, "MatMul_3": 5}


@pytest.mark.parametrize("config, message", [
    ({"reuse_factor": 0}, "reuse_factor = 0 is below 1"),
    ({"strategy": "fastest"}, "strategy = 'fastest' is not one of latency, resource"),
    ({"layers": {"Quant_8": {"reuse_factor": 2}}}, "layer 'Quant_8' is a Requant; reuse_factor applies to MatMul_0"),
    ({"layers": {"nope": {"reuse_factor": 2}}}, "layer 'nope' is not in the model"),
    ({"io": "serial"}, "io style 'serial' is not one of parallel, stream"),
    ({"reuse": 2}, "unknown key reuse"),
])
def test_bad_knobs_are_one_line_errors(lowered, tmp_path, config, message):
    with pytest.raises(QonnxError, match=re.escape(message)):
        generate(load(lowered), tmp_path / "prj", backend="vitis", config=config)
    assert not (tmp_path / "prj").exists()


def test_a_global_reuse_factor_is_capped_at_each_layers_products(lowered, tmp_path):
    project = generate(load(lowered), tmp_path / "prj", backend="vitis", reuse=1500)
    assert _dense_reuse(project.path) == {"MatMul_0": 16 * 64, "MatMul_1": 1500, "MatMul_2": 32 * 32,
                                          "MatMul_3": 32 * 5}
