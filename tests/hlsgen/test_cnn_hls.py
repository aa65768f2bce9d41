"""CNNs in C++: every model of the CNN matrix (tests/cnn_zoo.py) compiled and run, equal to the
interpreter on every element; the stream kernels' pragmas and FIFO depths; io parallel refusing
what it cannot unroll.

CI runs each model on one backend x io pairing, rotating so every pairing meets every kind of
layer; `pytest --hls-full` runs all four pairings for every model.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from cnn_zoo import INPUT_RANGE, MATRIX, CnnConfig, export_cnn_file, make_cnn
from hls_pairings import parametrize_rotating

from hlsgen import generate
from qonnx_ir import execute, load
from qonnx_ir.errors import QonnxError
from transforms import lower

SAMPLES = 200


def pytest_generate_tests(metafunc):
    parametrize_rotating(metafunc, "case", MATRIX)


@pytest.fixture(scope="module")
def lowered_cnn(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cnn_hls")
    cache = {}

    def get(config: CnnConfig):
        if config not in cache:
            path = export_cnn_file(make_cnn(config), config, directory / f"{config.id}.onnx")
            cache[config] = lower(load(path))[0]
        return cache[config]

    return get


def test_cnn_csim_equals_interpreter(case, lowered_cnn, tmp_path):
    config, backend, io = case
    lowered = lowered_cnn(config)
    x = np.random.default_rng(2).uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, *config.input_shape))
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=4)
    expected = execute(lowered, x, codes=True)
    actual = project.predict(x, codes=True)
    assert actual.shape == expected.shape
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ ({backend}, {io})"


def _config(project, ident: str) -> str:
    parameters = (project.path / "firmware" / "parameters.h").read_text()
    return parameters[parameters.index(f"struct {ident}_config"):].split("};")[0]


def test_stream_convolution_is_a_pixel_per_cycle_stage_at_ii_r(lowered_cnn, tmp_path):
    config = MATRIX[0]
    project = generate(lowered_cnn(config), tmp_path / "prj", backend="vitis", io="stream",
                       config={"layers": {"/conv2/Conv": {"reuse_factor": 3}}})
    top = (project.path / "firmware" / "qnn_top.cpp").read_text()
    layers = {layer["node"]: layer for layer in json.loads((project.path / "project.json").read_text())["layers"]}
    conv1, conv2 = layers["/conv1/Conv"], layers["/conv2/Conv"]
    for layer, reuse in ((conv1, 1), (conv2, 3)):
        stage = top[top.index(f"void {layer['ident']}_stage("):]
        stage = stage[:stage.index("\n}\n")]
        assert f"QNN_LOOP_PIPELINE({reuse})" in stage and f"QNN_PIPELINE({reuse})" in stage
        assert f"static {layer['ident']}::state state;" in stage  # the line buffer and window
        assert f"for (unsigned t = 0; t < {layer['ident']}::steps; t++)" in stage
    # conv1 reads the 10 x 10 padded image, one pixel per step; conv2 the padded 4 x 4 after pooling
    assert "in_h = 10, in_w = 10, channels = 1" in _config(project, conv1["ident"])
    assert "in_h = 6, in_w = 6, channels = 4" in _config(project, conv2["ident"])
    readme = (project.path / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| {conv2['ident']} |"))
    assert "| 3 | latency |" in row and f"| 3 | {conv2['tokens']} |" in row  # R, strategy; II, tokens


def test_a_skip_connection_gets_a_fifo_as_deep_as_the_other_branch_is_late(lowered_cnn, tmp_path):
    config = next(c for c in MATRIX if c.join == "add" and not c.depthwise)
    project = generate(lowered_cnn(config), tmp_path / "prj", backend="catapult", io="stream")
    top = (project.path / "firmware" / "qnn_top.cpp").read_text()
    declarations = re.findall(r"qnn::stream<.*> (\w+);  // (.*)\n    QNN_STREAM_DEPTH\(\1, (\d+)\)", top)
    assert len(declarations) == 1, top
    name, reason, depth = declarations[0]
    # the other branch: Pad (6 x 6 after the 2 x 2 pool of 8 x 8) then a 3 x 3 conv, whose window
    # fills after 2 rows and 3 pixels of 6: 2 * 6 + 2 = 14 tokens late, plus the 2 usual slots
    assert int(depth) == 16 and "14 tokens before its other input" in reason
    readme = (project.path / "README.md").read_text()
    assert f"`{name}`" in readme and "depth 16" in readme


def test_io_parallel_refuses_a_layer_too_large_to_unroll(qonnx_graph, tmp_path):
    weights = np.ones((16, 16, 3, 3))
    g = qonnx_graph("x", (1, 16, 64, 64))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.node("Conv", [q, g.quantized_weight(weights, 2**-3, 4)], kernel_shape=[3, 3])
    lowered, _ = lower(g.build(t, (1, 16, 62, 62)))
    with pytest.raises(QonnxError, match=r"too many to unroll in io parallel .* use --io stream"):
        generate(lowered, tmp_path / "prj", backend="vitis", io="parallel")
    assert not (tmp_path / "prj").exists()
    generate(lowered, tmp_path / "prj", backend="vitis", io="stream", tb_samples=1)  # streams fine
