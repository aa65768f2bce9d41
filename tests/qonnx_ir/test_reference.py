"""qonnx_ir.reference.execute_qonnx: exact float64 execution of QONNX graphs, batched."""

from pathlib import Path

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from brevitas_zoo import INPUT_RANGE, MATRIX, export_qonnx_file, float64_forward, make_mlp
from qonnx_ir.reference import execute_qonnx

from paths import SHARED_MODELS

# Chosen to cover: accumulators and a bias wider than float32's 24-bit mantissa, bipolar
# activations with BatchNorm, a float (unquantized) bias, and a saturating 16-bit bias.
EXACT_IDS = ["w16a16s-pc-bq32", "w8a1bip-nr-pc-bq16-bn", "w4a4u-bf", "w12a12s-pc-bq16"]
EXACT_CONFIGS = [config for config in MATRIX if config.id in EXACT_IDS]


def _single_output(results: dict) -> np.ndarray:
    (value,) = results.values()
    return value


def _near_tie_inputs(config, count, rng) -> np.ndarray:
    """Inputs on and 2**-35 around the input quantizer's rounding ties (x / scale = k + 0.5):
    float32 cannot tell these apart, so they catch any float32 step and any tie-rounding
    mismatch (both sides must round half to even)."""
    scale = INPUT_RANGE * 2.0 ** (1 - config.act_bits)
    levels = 2 ** (config.act_bits - 1)
    ties = (rng.integers(-levels, levels, (count, config.in_features)) + 0.5) * scale
    return ties + rng.choice([-1.0, 0.0, 1.0], ties.shape) * 2.0**-35


@pytest.mark.parametrize("config", EXACT_CONFIGS, ids=lambda config: config.id)
def test_float64_qonnx_execution_equals_brevitas_float64(config, tmp_path):
    model = make_mlp(config)
    path = export_qonnx_file(model, config.in_features, tmp_path / "model.onnx")
    rng = np.random.default_rng(config.seed + 100)
    inputs = [rng.uniform(-INPUT_RANGE, INPUT_RANGE, (200, config.in_features))]
    if config.act_bits > 1:
        inputs.append(_near_tie_inputs(config, 200, rng))
    for x in inputs:
        expected = float64_forward(model, x)
        actual = _single_output(execute_qonnx(path, x, float64=True))
        assert actual.dtype == np.float64
        assert np.array_equal(actual, expected)


def test_all_exact_configs_are_in_the_matrix():
    assert sorted(config.id for config in EXACT_CONFIGS) == sorted(EXACT_IDS)


def _shared_model_inputs(path: Path, batch: int) -> np.ndarray:
    """Inputs on a 2**-8 grid in [0, 1): the jet tagger has no input quantizer, and with
    short dyadic inputs its first MatMul is exact, so any batch mismatch is a real one and
    not the summation order of onnxruntime's GEMM versus GEMV kernels."""
    graph_input = ModelWrapper(str(path)).graph.input[0]
    sample_shape = [dim.dim_value for dim in graph_input.type.tensor_type.shape.dim][1:]
    return np.random.default_rng(0).integers(0, 256, (batch, *sample_shape)) / 256.0


@pytest.mark.parametrize("name", ["jet_tagging_qkeras_w6a6", "mnist_tfc_w2a2"])
def test_shared_model_batch_equals_one_by_one(name):
    path = SHARED_MODELS / f"{name}.onnx"
    x = _shared_model_inputs(path, 64)
    batched = execute_qonnx(path, x, float64=True, return_all=True)
    singles = [execute_qonnx(path, x[i:i + 1], float64=True, return_all=True)
               for i in range(len(x))]
    # onnxruntime's float64 Softmax is not batch-invariant: its vectorized exp treats the
    # (batch, classes) buffer as one array, so an element's code path (SIMD lane or scalar
    # tail) depends on its position in the batch: up to 1 ulp apart (float32 is unaffected).
    cleaned = cleanup_model(ModelWrapper(str(path)))
    softmax_outputs = {node.output[0] for node in cleaned.graph.node if node.op_type == "Softmax"}
    activations = [tensor for tensor, value in batched.items()
                   if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == len(x)
                   and singles[0][tensor].shape[0] == 1]
    assert len(activations) > 5
    for tensor in activations:
        one_by_one = np.concatenate([single[tensor] for single in singles])
        if tensor in softmax_outputs:
            np.testing.assert_array_max_ulp(batched[tensor], one_by_one, maxulp=1)
        else:
            assert np.array_equal(batched[tensor], one_by_one), tensor


def test_unknown_input_name_is_an_error():
    with pytest.raises(KeyError, match="not graph inputs"):
        execute_qonnx(SHARED_MODELS / "jet_tagging_qkeras_w6a6.onnx", {"nope": np.zeros((1, 16))})
