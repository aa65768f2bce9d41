"""hawq.quantizers and hawq.sensitivity: the plain-torch weight quantizer is Brevitas' exactly,
and Omega_l(b) = Tr(H_l)/n_l * ||Q_b(W_l) - W_l||^2 behaves as the allocator assumes."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hawq.quantizers import quantize_weight, weight_integers, weight_scale
from hawq.sensitivity import read_traces_json, sensitivities, write_traces_json
from qonnx_ir.errors import QonnxError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from brevitas.nn import QuantLinear
    from brevitas.quant.fixed_point import Int8WeightPerTensorFixedPoint

BITS = (2, 3, 4, 5, 6, 7, 8, 16)




def _weights(seed: int, shape=(12, 20)) -> list[torch.Tensor]:
    """Random weights over many magnitudes, plus the edge cases of the power-of-two scale:
    max |w| exactly a power of two (clipped to P - s), just above / below one, all zero."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for magnitude in (1e-4, 0.03, 0.7, 1.0, 5.0, 300.0):
        cases.append(torch.randn(shape, generator=g) * magnitude)
        cases.append((torch.rand(shape, generator=g) * 2 - 1) * magnitude)
    for k in (-3, 0, 2):
        w = torch.randn(shape, generator=g)
        w = w / w.abs().max() * 2.0**k
        cases.append(w)  # max |w| = 2**k exactly
        cases.append(w * (1 + 2**-20))  # just above: P doubles
        cases.append(w * (1 - 2**-20))
        cases.append(-w)
    cases.append(torch.zeros(shape))
    return cases


@pytest.mark.parametrize("bits", BITS)
def test_quantize_weight_equals_brevitas_quant_weight(bits):
    layer = QuantLinear(20, 12, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=bits)
    for seed in range(3):
        for w in _weights(seed):
            with torch.no_grad():
                layer.weight.copy_(w)
            reference = layer.quant_weight()
            assert torch.equal(quantize_weight(w, bits), reference.value)
            assert torch.equal(weight_scale(w, bits), reference.scale.reshape(()))
            assert torch.equal(weight_integers(w, bits), reference.int().to(w.dtype))
            assert int(reference.bit_width) == bits


def test_quantize_weight_equals_brevitas_in_float64():
    layer = QuantLinear(20, 12, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=5).double()
    for w in _weights(7):
        w = w.double()
        with torch.no_grad():
            layer.weight.copy_(w)
        assert torch.equal(quantize_weight(w, 5), layer.quant_weight().value)


def test_quantize_weight_grid_and_clipping():
    w = torch.tensor([[1.0, -0.5, 0.26, 0.1]])  # max |w| = 1 = P: the scale is P / 2**(b-1)
    q = quantize_weight(w, 3)  # s = 1/4, integers in -3..3
    assert torch.equal(q, torch.tensor([[0.75, -0.5, 0.25, 0.0]]))  # 1.0 clips to P - s = 0.75
    assert float(weight_scale(w, 3)) == 0.25
    for bad in (1, 0, 25):
        with pytest.raises(ValueError):
            quantize_weight(w, bad)


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def test_omega_never_increases_with_bits():
    """Holds for every layer, not just on average: the grid at b bits (step P/2**(b-1), range
    +-(P - step)) is a subset of the grid at b + 1, so no weight's rounding error can grow."""
    candidates = tuple(range(2, 17))
    for seed in range(20):
        model = _mlp(seed)
        with torch.no_grad():  # vary the distributions: heavy tails, uniform, tiny
            model[2].weight.copy_(torch.distributions.StudentT(2.0).sample(model[2].weight.shape) * 0.1)
            model[4].weight.mul_(10.0 ** (seed % 5 - 2))
        sens = sensitivities(model, {name: 1.0 + seed for name in ("0", "2", "4")}, candidates)
        for name, omega in sens.items():
            values = [omega[b] for b in candidates]
            assert all(a >= b for a, b in zip(values, values[1:])), (seed, name, values)
            assert values[0] > values[-1] > 0 or values[0] == 0


def test_omega_is_linear_in_the_trace_and_accepts_trace_objects():
    model = _mlp(1)
    base = sensitivities(model, {"0": 1.0, "2": 2.0, "4": 0.5})
    scaled = sensitivities(model, {"0": SimpleNamespace(trace=3.0, std_error=0.1), "2": 6.0, "4": 1.5})
    assert set(base) == {"0", "2", "4"} and set(base["0"]) == {2, 3, 4, 5, 6, 7, 8}
    for name in base:
        for bits in base[name]:
            assert scaled[name][bits] == pytest.approx(3.0 * base[name][bits], rel=1e-12)
    zero = sensitivities(model, {"0": 0.0, "2": 0.0, "4": 0.0}, candidates=(4,))
    assert all(omega[4] == 0.0 for omega in zero.values())


def test_omega_formula():
    model = _mlp(2)
    sens = sensitivities(model, {"0": 2.0, "2": 1.0, "4": 1.0}, candidates=(3,))
    w = model[0].weight.detach()
    expected = 2.0 / w.numel() * float(((quantize_weight(w, 3).double() - w.double()) ** 2).sum())
    assert sens["0"][3] == pytest.approx(expected, rel=1e-15)


def test_missing_trace_is_a_clear_error():
    with pytest.raises(QonnxError, match="no Hessian trace for layer"):
        sensitivities(_mlp(0), {"0": 1.0})
    with pytest.raises(QonnxError, match="NaN"):
        sensitivities(_mlp(0), {"0": float("nan"), "2": 1.0, "4": 1.0})


def test_traces_json_format_and_round_trip(tmp_path):
    model = _mlp(3)
    traces = {"0": SimpleNamespace(trace=4.0, std_error=0.25), "2": 2.0, "4": 1.0}
    sens = sensitivities(model, traces, candidates=(2, 4, 8))
    path = write_traces_json(tmp_path / "sub" / "traces.json", model, traces, sens, {"samples": 256, "seed": 0})
    data = json.loads(path.read_text())
    assert set(data) == {"layers", "meta"} and data["meta"] == {"samples": 256, "seed": 0}
    assert [layer["name"] for layer in data["layers"]] == ["0", "2", "4"]
    first = data["layers"][0]
    assert set(first) == {"name", "in_features", "out_features", "trace", "std_error", "sensitivity"}
    assert (first["in_features"], first["out_features"], first["trace"], first["std_error"]) == (16, 32, 4.0, 0.25)
    assert data["layers"][1]["std_error"] is None
    assert list(first["sensitivity"]) == ["2", "4", "8"]
    assert first["sensitivity"]["4"] == sens["0"][4]
    traces_back, sens_back, meta = read_traces_json(path)
    assert traces_back == {"0": 4.0, "2": 2.0, "4": 1.0} and sens_back == sens and meta["samples"] == 256
    assert [p.name for p in path.parent.iterdir()] == ["traces.json"]  # no temporary left behind
