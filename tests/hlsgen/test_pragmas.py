"""The pragmas the HLS tools will see, read from the firmware as their preprocessor sees it
(g++ -E with the backend selected and QNN_PLAIN_CXX off): every stream stage pipelined at II = R,
multipliers capped for R > 1, the resource strategy's ROM reshaped to ceil(weights / R) per word,
Vitis pragmas first in the loop body, Catapult pragmas right before their loop."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from hlsgen import generate
from hlsgen.headers import find_headers
from paths import JET_TAGGER
from qonnx_ir import load
from transforms import lower

REUSE = 3


@pytest.fixture(scope="module")
def lowered():
    return lower(load(JET_TAGGER))[0]


def _preprocessed(project, backend: str) -> str:
    headers = [f"-isystem{d}" for d in find_headers(backend).directories]
    command = ["g++", "-std=c++14", "-E", "-P", *headers, f"-I{project.path / 'firmware'}",
               str(project.path / "firmware" / "qnn_top.cpp")]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return text[text.index("struct no_state {};"):]  # our code (qnn/stage.h on), after the vendor's


def _function(text: str, name: str) -> str:
    """The definition of function `name` (not a declaration): from its name to its closing brace."""
    start = next(m.start() for m in re.finditer(rf"void {name}\(", text)
                 if text.find("{", m.end()) < text.find(";", m.end()))  # a body comes before any ';'

    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[start:j + 1]
    raise AssertionError(name)


def _code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _dense_layers(project) -> list[str]:
    import json

    metadata = json.loads((project.path / "project.json").read_text())
    return [layer["ident"] for layer in metadata["layers"] if layer["op"] == "Dense"]


@pytest.mark.parametrize("strategy", ["latency", "resource"])
def test_vitis_stream_stages_are_pipelined_at_the_reuse_factor(lowered, tmp_path, strategy):
    project = generate(lowered, tmp_path / "prj", backend="vitis", io="stream", reuse=REUSE, strategy=strategy)
    text = _preprocessed(project, "vitis")
    layers = _dense_layers(project)
    import json

    for layer in json.loads((project.path / "project.json").read_text())["layers"]:
        lines = _code_lines(_function(text, f"{layer['ident']}_stage"))
        loop = next(i for i, line in enumerate(lines) if line.startswith("for ("))
        ii = REUSE if layer["ident"] in layers else 1
        assert lines[loop + 1] == f"#pragma HLS PIPELINE II = {ii}", layer["ident"]  # first in the loop body
    dense = text[text.index("template <class C> struct dense"):]
    run = _code_lines(dense[dense.index("static void run("):])
    body = run.index("const typename C::bias_store_t bias[]) {") + 1
    assert run[body:body + 2] == ["#pragma HLS PIPELINE II = C::reuse_factor",
                                  "#pragma HLS ALLOCATION operation instances = mul limit = multiplier_limit"]
    assert "static const unsigned multiplier_limit = ceil_div(C::nonzero_weights, C::reuse_factor);" in dense
    top = _code_lines(_function(text, "qnn_top"))
    assert top[1] == "#pragma HLS DATAFLOW"  # first in the body
    if strategy == "resource":
        per_word = -(-16 * 64 // REUSE)  # the first layer: 16 x 64 weights
        assert (f"#pragma HLS BIND_STORAGE variable = {layers[0]}_weights type = rom_1p impl = bram" in top)
        assert f"#pragma HLS ARRAY_RESHAPE variable = {layers[0]}_weights cyclic factor = {per_word}" in top
    else:
        assert f"#pragma HLS ARRAY_PARTITION variable = {layers[0]}_weights complete" in top


def test_vitis_parallel_top_is_pipelined_at_the_largest_reuse_factor(lowered, tmp_path):
    config = {"reuse_factor": 2, "layers": {"MatMul_1": {"reuse_factor": 7}}}
    project = generate(lowered, tmp_path / "prj", backend="vitis", io="parallel", config=config)
    top = _code_lines(_function(_preprocessed(project, "vitis"), "qnn_top"))
    assert top[1:4] == ["#pragma HLS ARRAY_PARTITION variable = x complete",
                        "#pragma HLS ARRAY_PARTITION variable = y complete", "#pragma HLS PIPELINE II = 7"]


def _catapult_pragmas_precede_loops(text: str) -> list[str]:
    """Catapult reads a loop pragma on the statement after it: a for loop, optionally labelled."""
    lines = _code_lines(text)
    misplaced = []
    for i, line in enumerate(lines):
        if line.startswith(("#pragma hls_unroll", "#pragma hls_pipeline_init_interval")):
            following = lines[i + 1]
            if re.fullmatch(r"\w+:", following):
                following = lines[i + 2]
            if not following.startswith("for ("):
                misplaced.append(f"{line} before {following!r}")
    return misplaced


def test_catapult_stream_stages_carry_the_pipeline_pragma_at_their_loop(lowered, tmp_path):
    project = generate(lowered, tmp_path / "prj", backend="catapult", io="stream", reuse=REUSE)
    text = _preprocessed(project, "catapult")
    assert _catapult_pragmas_precede_loops(text) == []
    assert "#pragma HLS" not in text
    for ident in _dense_layers(project):
        stage = _code_lines(_function(text, f"{ident}_stage"))
        assert stage[2:5] == [f"#pragma hls_pipeline_init_interval {REUSE}", "steps:",
                              f"for (unsigned t = 0; t < {ident}::steps; t++) {{"], stage[:6]
    assert text.count("#pragma hls_design top") == 1


def test_catapult_parallel_main_loop_is_pipelined_in_the_tcl(lowered, tmp_path):
    project = generate(lowered, tmp_path / "prj", backend="catapult", io="parallel", reuse=REUSE)
    assert _catapult_pragmas_precede_loops(_preprocessed(project, "catapult")) == []
    tcl = (project.path / "build_prj.tcl").read_text()
    assert f"directive set /qnn_top/core/main -PIPELINE_INIT_INTERVAL {REUSE}" in tcl
    assert tcl.index("go assembly") < tcl.index("-PIPELINE_INIT_INTERVAL") < tcl.index("go architect")


def test_softmax_uses_one_divider(lowered, tmp_path):
    project = generate(lowered, tmp_path / "prj", backend="vitis")
    text = _preprocessed(project, "vitis")
    softmax = text[text.index("template <class C> struct softmax_table"):]
    softmax = softmax[:softmax.index("\n};") + 3]
    assert softmax.count(" / ") == 1  # the reciprocal of the sum; each output is a multiplication
    assert np.count_nonzero([line.strip().startswith("const reciprocal_t") for line in softmax.splitlines()]) == 1
