"""The generated C++ computes exactly what the interpreter computes (contract: bit for bit).

Both zoo models on all eight variants (backend x io style x reuse factor 1 or 4), and
every model of the lowering matrix (tests/brevitas_zoo.py) on four of them chosen so that
each model meets both backends, both io styles and both reuse factors, and each backend
both reuse factors (`pytest --hls-full` runs all eight for the matrix too: twice the
compile time, beyond CI's budget). 1000 inputs per project, every element compared.
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
VARIANTS = [(backend, io, reuse) for backend in ("vitis", "catapult") for io in ("parallel", "stream") for reuse in (1, 4)]
COVERING = [("vitis", "parallel", 1), ("vitis", "stream", 4), ("catapult", "parallel", 4), ("catapult", "stream", 1)]


def _check(lowered, x, directory, backend, io, reuse):
    project = generate(lowered, directory, backend=backend, io=io, reuse=reuse, tb_samples=4)
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


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}-r{v[2]}")
@pytest.mark.parametrize("path", [JET_TAGGER, MNIST_TFC], ids=["jet", "tfc"])
def test_zoo_model_csim_equals_interpreter(path, variant, tmp_path):
    lowered, _ = lower(load(path))
    shape = [d.dim_value for d in lowered.graph.input[0].type.tensor_type.shape.dim[1:]]
    rng = np.random.default_rng(3)
    if path == JET_TAGGER:  # inputs on the fixed<16,6> grid, spread over its range
        x = np.clip(np.round(rng.normal(0, 8, (SAMPLES, *shape)) * 1024) / 1024, -32, 32 - 2**-10)
    else:
        x = rng.uniform(0, 1, (SAMPLES, *shape))
    _check(lowered, x, tmp_path / "project", *variant)
