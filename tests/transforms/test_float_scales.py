"""Float (non power-of-two) scales and float biases, lowered exactly.

1. The matrix of Brevitas MLPs with Brevitas' float-scale quantizers (tests/brevitas_float_zoo.py):
   the lowered graph equals Brevitas evaluated in float64 on every element of 1000 inputs, and the
   lowering says it is exact (no WARNING).
2. Scales and biases with 24 significant bits, as training leaves them: Brevitas' float32 and
   float64 runs differ there, so the reference is the QONNX graph in exact rational arithmetic
   (written here from the QONNX and ONNX specifications, with Python's Fraction).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from brevitas_float_zoo import (
    INPUT_RANGE,
    MATRIX,
    export_qonnx_file,
    float64_forward,
    make_float_mlp,
)
from onnx import numpy_helper

from qonnx_ir import execute, load
from transforms import LoweringOptions, lower

SAMPLES = 1000


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("float_mlp")
    cache = {}

    def get(config):
        if config not in cache:
            model = make_float_mlp(config)
            cache[config] = (model, export_qonnx_file(model, config.in_features, directory / f"{config.id}.onnx"))
        return cache[config]

    return get


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.id)
def test_lowered_float_scale_mlp_equals_brevitas_in_float64(config, exported):
    model, path = exported(config)
    lowered, context = lower(load(path))
    assert context.report.exact, str(context.report)
    x = np.random.default_rng(1).uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, config.in_features))
    expected = float64_forward(model, x)
    actual = execute(lowered, x)
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ; report:\n{context.report}"
    assert len(np.unique(expected)) > (2 ** config.out_bits // 2 if config.out_bits else 20)  # not degenerate


def test_the_matrix_has_non_power_of_two_scales(exported):
    _, path = exported(MATRIX[0])
    model = load(path)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scales = [initializers[n.input[1]] for n in model.graph.node if n.op_type == "Quant" and n.input[1] in initializers]
    assert len(scales) >= 4 and all(math.frexp(float(s))[0] != 0.5 for scale in scales for s in np.ravel(scale))


# -- 24 significant bits: the exact rational value of the graph ----------------------------------


def _exact_quant(value: Fraction, scale: Fraction, bits: int, signed: bool, narrow: bool, mode: str) -> Fraction:
    """qonnx Quant (zero point 0): clamp(x / s) to the integer range, round, times s."""
    low = -(2 ** (bits - 1)) + int(narrow) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - int(narrow)
    y = min(max(value / scale, Fraction(low)), Fraction(high))
    floor = math.floor(y)
    if mode == "FLOOR":
        code = floor
    else:  # ROUND: half to even
        rest = y - floor
        code = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
    return code * scale


def _graph(rng, activation):
    """x -> Quant(8) -> [MatMul(Quant(W)) -> Add(float b) -> act -> Quant]x2 -> MatMul -> Add: 24-bit scales."""
    from conftest import QonnxGraph

    def scale(value):
        return float(np.float32(value * (1 + rng.uniform(0.01, 0.2))))

    layers = []  # (W codes, W scale, bias, out quant) for the exact evaluation
    g = QonnxGraph("x", (1, 6))
    in_scale = scale(2.0 / 128)
    t = g.quant("x", scale=in_scale, bits=8)
    widths = [6, 10, 8, 4]
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        codes = rng.integers(-7, 8, (fan_in, fan_out))
        w_scale = scale(0.05)
        bias = rng.normal(0, 0.3, fan_out).astype(np.float32)
        t = g.node("Add", [g.matmul(t, g.quantized_weight(codes, w_scale, 4)), g.constant(bias)])
        out = None
        if index < 2:
            if activation == "relu":
                t = g.node("Relu", [t])
            out = dict(scale=scale(3.0 / 15), bits=4, signed=activation != "relu", narrow=False, mode="ROUND")
            t = g.quant(t, scale=out["scale"], bits=4, signed=out["signed"])
        layers.append((codes, w_scale, bias, out))
    return g.build(t, (1, widths[-1])), in_scale, layers


def _exact_forward(x_row, in_scale, layers, activation):
    s_in = Fraction(in_scale)
    values = [_exact_quant(Fraction(float(v)), s_in, 8, True, False, "ROUND") for v in x_row]
    for codes, w_scale, bias, out in layers:
        s_w = Fraction(w_scale)
        values = [sum((values[i] * (int(codes[i, j]) * s_w) for i in range(codes.shape[0])), Fraction(0))
                  + Fraction(float(bias[j])) for j in range(codes.shape[1])]
        if out is not None:
            if activation == "relu":
                values = [max(v, Fraction(0)) for v in values]
            values = [_exact_quant(v, Fraction(out["scale"]), out["bits"], out["signed"], out["narrow"], out["mode"])
                      for v in values]
    return values


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_24_bit_scales_and_biases_equal_the_exact_rational_value(activation):
    rng = np.random.default_rng(7 if activation == "relu" else 8)
    model, in_scale, layers = _graph(rng, activation)
    lowered, context = lower(model)
    assert context.report.exact, str(context.report)
    x = rng.uniform(-2.2, 2.2, (300, 6))
    actual = execute(lowered, x)
    for row, got in zip(x, actual):
        exact = _exact_forward(row, in_scale, layers, activation)
        assert list(got) == [float(v) for v in exact]  # each logit: the exact value, rounded once to float64


def test_a_cap_on_the_multiplier_trades_exactness_for_width_and_says_so(exported):
    _, path = exported(MATRIX[6])  # w8a8: exact multipliers need more than 16 bits
    exact, context = lower(load(path))
    assert context.report.exact
    capped, context = lower(load(path), LoweringOptions(multiplier_bits=12, threshold_max_bits=0))
    assert context.report.warnings
    assert all("approximate 12-bit multiplier" in w and "off by up to" in w for w in context.report.warnings)


# -- CNNs: float biases and average-pool divisions travel past pooling and Flatten ------------


def _float_cnn(pool: str):
    """conv 3x3 (float bias, float scales) -> [MaxPool -> ReLU quant | ReLU quant -> global average over
    3x3 -> Flatten -> quant] -> dense: a float op must cross a pooling or a Flatten to reach its quantizer."""
    import torch
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant.scaled_int import (Int8ActPerTensorFloatMinMaxInit, Int8WeightPerTensorFloat,
                                           Uint8ActPerTensorFloatMaxInit)
    from brevitas_float_zoo import short
    from torch import nn

    torch.manual_seed(3)
    identity = dict(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=6, return_quant_tensor=True)
    layers = [QuantIdentity(min_val=-short(2.0 / 32) * 32, max_val=short(2.0 / 32) * 32, **identity),
              QuantConv2d(1, 4, 3, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=5,
                          return_quant_tensor=False)]
    relu = QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=4, max_val=short(3.0 / 15) * 15,
                     return_quant_tensor=True)
    if pool == "max":
        layers += [nn.MaxPool2d(2), relu, nn.Flatten()]
        features = 4 * 2 * 2
    else:
        layers += [relu, nn.AvgPool2d(5), nn.Flatten(),
                   QuantIdentity(min_val=-short(2.0 / 32) * 32, max_val=short(2.0 / 32) * 32, **identity)]
        features = 4
    layers.append(QuantLinear(features, 3, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=5))
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        conv = layers[1]
        weight = conv.weight.numpy()
        conv.weight.copy_(torch.from_numpy(weight * (short(float(np.abs(weight).max()) / 15) * 15
                                                     / np.abs(weight).max())))
        conv.bias.copy_(torch.randn(4) * 0.3)
    return model


@pytest.mark.parametrize("pool", ["max", "global-average"])
def test_float_ops_cross_a_pooling_or_flatten_exactly(pool, tmp_path):
    import torch
    from brevitas.export import export_qonnx
    from brevitas_float_zoo import float64_forward as forward

    model = _float_cnn("max" if pool == "max" else "average")
    path = tmp_path / "cnn.onnx"
    export_qonnx(model, input_t=torch.randn(1, 1, 7, 7), export_path=str(path), dynamo=False)
    lowered, context = lower(load(path))
    assert context.report.exact, str(context.report)
    assert "moved past the" in str(context.report)
    x = np.random.default_rng(5).uniform(-2, 2, (500, 1, 7, 7))
    expected = forward(model, x)
    assert np.array_equal(execute(lowered, x), expected)
    assert len(np.unique(expected)) > 50
