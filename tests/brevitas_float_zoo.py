"""Brevitas MLPs with Brevitas' float-scale quantizers (the defaults people train with).

    QuantIdentity(Int8ActPerTensorFloatMinMaxInit)                       input
    [QuantLinear(Int8WeightPerTensorFloat | Int8WeightPerChannelFloat, bias float | Int16Bias | none)
     -> (BatchNorm1d) -> QuantReLU(Uint8ActPerTensorFloatMaxInit) | QuantIdentity(Int8Act...MinMaxInit)
        | QuantHardTanh (its default quantizer)] x len(hidden)
    QuantLinear -> (QuantIdentity(out_bits))                             logits, float or quantized

Scales are not powers of two. So that Brevitas evaluated in float64 computes the same numbers as
the exported float32 graph (its scale = threshold / int_scale is computed anew in float64), every
scale here is a number with 12 significant bits: the float32 and float64 divisions then give it
exactly, weight codes, bias scales (s_in * s_w: 24 bits) and every sum of products stay exact in
float64, and np.array_equal against Brevitas is a fair test. (Scales with 24 significant bits, as
a trained model has, are in tests/transforms/test_float_scales.py, checked in exact arithmetic.)
2-bit weights are ternary (Brevitas' weight quantizers are narrow: codes -1, 0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from brevitas.nn import QuantHardTanh, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.scaled_int import (
    Int8ActPerTensorFloatMinMaxInit,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    Int16Bias,
    Uint8ActPerTensorFloatMaxInit,
)
from brevitas_zoo import export_qonnx_file, float64_forward  # noqa: F401 (re-exported for the tests)
from torch import nn

INPUT_RANGE = 2.0
SIGNIFICANT_BITS = 12
_CALIBRATION_SAMPLES = 1024


@dataclass(frozen=True)
class FloatMlpConfig:
    weight_bits: int = 4
    act_bits: int = 4
    activation: str = "relu"  # relu (unsigned) | identity (signed) | hardtanh (signed, clamps)
    per_channel: bool = False
    bias: str = "float"  # float | quant | none
    batchnorm: bool = False
    out_bits: int | None = None  # a quantizer on the logits
    in_features: int = 12
    hidden: tuple[int, ...] = (16, 12)
    out_features: int = 5
    seed: int = 0

    @property
    def id(self) -> str:
        parts = [f"w{self.weight_bits}a{self.act_bits}{self.activation[0]}"]
        parts += ["pc"] if self.per_channel else []
        parts += {"float": ["bf"], "quant": ["bq"], "none": ["nobias"]}[self.bias]
        parts += ["bn"] if self.batchnorm else []
        parts += [f"o{self.out_bits}"] if self.out_bits else []
        parts += [f"s{self.seed}"] if self.seed else []
        return "-".join(parts)


def short(value: float) -> float:
    """value rounded to SIGNIFICANT_BITS significant bits (and not a power of two)."""
    mantissa, exponent = math.frexp(value)
    rounded = round(mantissa * 2**SIGNIFICANT_BITS)
    if rounded & (rounded - 1) == 0:
        rounded += 1
    return math.ldexp(rounded, exponent - SIGNIFICANT_BITS)


def _act(config: FloatMlpConfig, threshold: float, kind: str) -> nn.Module:
    """An activation quantizer whose scale is short(threshold / int_scale)."""
    bits = config.act_bits
    if kind == "relu":
        int_scale = 2**bits - 1
        return QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits,
                         max_val=short(threshold / int_scale) * int_scale, return_quant_tensor=True)
    int_scale = 2 ** (bits - 1)  # signed, not narrow
    limit = short(threshold / int_scale) * int_scale
    if kind == "hardtanh":
        return QuantHardTanh(bit_width=bits, min_val=-limit, max_val=limit, return_quant_tensor=True)
    return QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=bits, min_val=-limit, max_val=limit,
                         return_quant_tensor=True)


def _linear(config: FloatMlpConfig, fan_in: int, fan_out: int, rng, quant_bias: bool) -> QuantLinear:
    layer = QuantLinear(fan_in, fan_out, bias=config.bias != "none",
                        weight_quant=Int8WeightPerChannelFloat if config.per_channel else Int8WeightPerTensorFloat,
                        weight_bit_width=config.weight_bits, bias_quant=Int16Bias if quant_bias else None,
                        return_quant_tensor=False)
    weight = rng.standard_normal((fan_out, fan_in)) / math.sqrt(fan_in)
    int_scale = 2 ** (config.weight_bits - 1) - 1  # narrow: max |code|
    group = np.abs(weight).max(axis=1 if config.per_channel else None, keepdims=True)
    target = np.vectorize(lambda g: short(g / int_scale) * int_scale)(group)  # max |w| = short scale x int_scale
    layer.weight.data = torch.from_numpy(weight * (target / group)).float()
    if layer.bias is not None:
        layer.bias.data.zero_()
    return layer


def make_float_mlp(config: FloatMlpConfig) -> nn.Module:
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    layers: list[nn.Module] = [_act(config, INPUT_RANGE, "identity").eval()]
    with torch.no_grad():
        x = layers[0](torch.from_numpy(rng.uniform(-INPUT_RANGE, INPUT_RANGE,
                                                   (_CALIBRATION_SAMPLES, config.in_features))).float())
        widths = (config.in_features, *config.hidden, config.out_features)
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = index == len(widths) - 2
            # a quantized bias needs a quantized input scale: Brevitas' QuantTensor carries it
            linear = _linear(config, fan_in, fan_out, rng, quant_bias=config.bias == "quant").eval()
            layers.append(linear)
            pre = linear(x)
            if linear.bias is not None:
                spread = pre.std(0).numpy() + 1e-3
                linear.bias.data = torch.from_numpy(0.5 * spread * rng.uniform(-1, 1, fan_out)).float()
                pre = linear(x)
            if last:
                if config.out_bits:
                    threshold = float(torch.quantile(pre.abs().flatten(), 0.99))
                    layers.append(QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=config.out_bits,
                                                min_val=-short(threshold / 2 ** (config.out_bits - 1)) * 2 ** (config.out_bits - 1),
                                                max_val=short(threshold / 2 ** (config.out_bits - 1)) * 2 ** (config.out_bits - 1),
                                                return_quant_tensor=False).eval())
                break
            if config.batchnorm:
                bn = nn.BatchNorm1d(fan_out, eps=2.0**-16).eval()
                mean, std = pre.mean(0).numpy(), pre.std(0).numpy() + 1e-3
                bn.running_mean.copy_(torch.from_numpy(mean + 0.3 * std * rng.standard_normal(fan_out)))
                bn.running_var.copy_(torch.from_numpy(std**2 * rng.uniform(0.5, 2.0, fan_out)))
                sign = np.where(rng.random(fan_out) < 0.2, -1.0, 1.0)
                bn.weight.data = torch.from_numpy(sign * rng.uniform(0.5, 2.0, fan_out)).float()
                bn.bias.data = torch.from_numpy(rng.normal(0.0, 0.5, fan_out)).float()
                layers.append(bn)
                pre = bn(pre)
            values = pre.clamp(min=0) if config.activation == "relu" else pre.abs()
            act = _act(config, float(torch.quantile(values.flatten(), 0.99)), config.activation).eval()
            layers.append(act)
            x = act(pre)
    return nn.Sequential(*layers).eval()


def _c(w, a, activation="relu", **kwargs) -> FloatMlpConfig:
    return FloatMlpConfig(weight_bits=w, act_bits=a, activation=activation, **kwargs)


PC, BN, QB, NB = dict(per_channel=True), dict(batchnorm=True), dict(bias="quant"), dict(bias="none")

# weights 2-8 and activations 2-8 bits each at least once; float, quantized and no biases; BatchNorm;
# the cases the issue names: ternary weights with a float bias and 2-bit activations, 4-bit HardTanh
MATRIX: list[FloatMlpConfig] = [
    _c(2, 2), _c(3, 3), _c(4, 4), _c(5, 5), _c(6, 6), _c(7, 7), _c(8, 8),
    _c(2, 2, "identity"), _c(4, 4, "hardtanh"), _c(4, 4, "hardtanh", **PC), _c(8, 8, "hardtanh", out_bits=8),
    _c(3, 6, "identity", **PC), _c(6, 3, **PC), _c(8, 2, "identity"), _c(2, 8, **PC),
    _c(4, 4, **QB), _c(8, 8, "identity", **QB, **PC), _c(6, 6, **NB),
    _c(4, 4, **BN), _c(8, 8, "identity", **BN, **PC), _c(3, 3, "hardtanh", **BN), _c(6, 6, **BN, **QB),
    _c(4, 4, out_bits=6), _c(8, 6, "identity", out_bits=8, **PC), _c(2, 4, "hardtanh", out_bits=4),
    _c(5, 3, "identity", in_features=16, hidden=(24, 16, 8), seed=1),
]
