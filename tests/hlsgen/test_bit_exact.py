"""The generated C++ computes exactly what the interpreter computes (contract: bit for bit).

Both zoo models with reuse factors 1, 2, 3, 5, 7 and "layer size" (every layer's R = its
number of products; most of these do not divide the layer), each R on a backend x io style,
every pairing twice; every model of the lowering matrix (tests/brevitas_zoo.py) on four
variants chosen so that each model meets both backends, both io styles and two reuse factors
(`pytest --hls-full` runs all eight for the matrix too, and every R on every variant for the
zoo: beyond CI's budget). 1000 inputs per project, every element compared.
"""

from __future__ import annotations

import numpy as np
import pytest
from brevitas_zoo import INPUT_RANGE, MATRIX, export_qonnx_file, make_mlp
from paths import JET_TAGGER, MNIST_TFC

from hlsgen import generate
from qonnx_ir import execute, load
from transforms import lower

SAMPLES = 1000
PAIRINGS = [(backend, io) for backend in ("vitis", "catapult") for io in ("parallel", "stream")]
VARIANTS = [(backend, io, reuse) for backend, io in PAIRINGS for reuse in (1, 4)]
COVERING = [("vitis", "parallel", 1), ("vitis", "stream", 3), ("catapult", "parallel", 7), ("catapult", "stream", "size")]
REUSE_FACTORS = [1, 2, 3, 5, 7, "size"]  # "size": each layer's R is its number of products
ZOO_VARIANTS = [(*PAIRINGS[i % 4], reuse) for i, reuse in enumerate(REUSE_FACTORS + [3, "size"])]


def _reuse_config(lowered, reuse) -> dict:
    if reuse != "size":
        return {"reuse_factor": reuse}
    layers = {node.name: {"reuse_factor": int(lowered.get_initializer(node.input[1]).size)}
              for node in lowered.graph.node if node.op_type == "Dense"}
    return {"layers": layers}


def _check(lowered, x, directory, backend, io, reuse):
    project = generate(lowered, directory, backend=backend, io=io, config=_reuse_config(lowered, reuse), tb_samples=4)
    project.compile()
    ours = [line for line in getattr(project, "compiler_warnings", "").splitlines()
            if "warning:" in line and line.startswith(str(project.path))]
    assert not ours, "g++ -Wall -Wextra warns about generated code:\n" + "\n".join(ours)
    expected = execute(lowered, x)
    actual = project.predict(x)
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ ({backend}, {io}, reuse {reuse})"


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.id)
def test_matrix_model_csim_equals_interpreter(config, tmp_path, request):
    path = tmp_path / "model.onnx"
    export_qonnx_file(make_mlp(config), config.in_features, path)
    lowered, _ = lower(load(path))
    x = np.random.default_rng(2).uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, config.in_features))
    for backend, io, reuse in VARIANTS if request.config.getoption("--hls-full") else COVERING:
        _check(lowered, x, tmp_path / f"{backend}_{io}_{reuse}", backend, io, reuse)


def pytest_generate_tests(metafunc):
    if "zoo_variant" in metafunc.fixturenames:
        full = metafunc.config.getoption("--hls-full")
        variants = [(*p, r) for p in PAIRINGS for r in REUSE_FACTORS] if full else ZOO_VARIANTS
        metafunc.parametrize("zoo_variant", variants, ids=[f"{v[0]}-{v[1]}-r{v[2]}" for v in variants])


@pytest.mark.parametrize("path", [JET_TAGGER, MNIST_TFC], ids=["jet", "tfc"])
def test_zoo_model_csim_equals_interpreter(path, zoo_variant, tmp_path):
    variant = zoo_variant
    lowered, _ = lower(load(path))
    shape = [d.dim_value for d in lowered.graph.input[0].type.tensor_type.shape.dim[1:]]
    rng = np.random.default_rng(3)
    if path == JET_TAGGER:  # inputs on the fixed<16,6> grid, spread over its range
        x = np.clip(np.round(rng.normal(0, 8, (SAMPLES, *shape)) * 1024) / 1024, -32, 32 - 2**-10)
    else:
        x = rng.uniform(0, 1, (SAMPLES, *shape))
    _check(lowered, x, tmp_path / "project", *variant)
