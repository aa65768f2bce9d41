"""Small Brevitas MLPs over a matrix of quantization settings, for bit-exactness tests.

Every scale in these models is a power of two, so a float64 evaluation of the Brevitas model
is exact and can be compared with ``np.array_equal`` against any exact lowering.

Model layout (``make_mlp``)::

    QuantIdentity (input: signed, act_bits, narrow_range; threshold 2.0 for x ~ U(-2, 2))
    [QuantLinear -> (BatchNorm1d) -> activation quantizer] x len(hidden)
    QuantLinear (logits)

The logits are left unquantized: the last layer's output is the float sum
``acc * input_scale * weight_scale (+ bias)``, which is exact in float64.

Quantizers (the ``*FixedPoint*`` ones restrict scales to powers of two):

- weights: ``Int8WeightPerTensorFixedPoint`` / ``Int8WeightPerChannelFixedPoint`` with
  ``bit_width`` and ``narrow_range`` overridden; scale ``2**ceil(log2(max|w|)) / 2**(b-1)``
  from the weight statistics (per tensor or per output channel).
- signed activations: ``QuantIdentity`` + ``Int8ActPerTensorFixedPointMinMaxInit``;
  unsigned: ``QuantReLU`` + ``Uint8ActPerTensorFixedPointMaxInit``; both with ``bit_width``,
  ``narrow_range`` and a power-of-two ``max_val`` (threshold), so scale = threshold / 2**(b-1)
  (signed) or threshold / 2**b (unsigned).
- 1-bit activations: ``QuantIdentity`` + ``SignedBinaryActPerTensorConst`` with
  ``restrict_scaling_type=POWER_OF_TWO`` and a constant power-of-two scale ``max_val``
  (exported as ``BipolarQuant``; x >= 0 maps to +scale, as in qonnx).
- quantized bias: ``Int16Bias`` / ``Int24Bias`` / ``Int32Bias`` (``bias_bits``), scale
  input_scale * weight_scale, clamped (saturates when ``bias_bits`` is too small for that
  scale, as in one MATRIX entry on purpose); float bias: ``bias_quant=None``.

Thresholds are calibrated layer by layer on inputs ~ U(-2, 2): the power of two nearest the
99th percentile of |pre-activation| (of its positive part for ReLU), so activations use their
range and saturate only rarely (a few percent). Bipolar scales are 1.0 at the input and
0.5, 0.25, ... for the hidden layers (so lowering also meets BipolarQuant with scale != 1).
BatchNorm1d gets random affine parameters and running statistics near the real ones, and
eps = 2**-16, which (unlike 1e-5) is the same number as a float32 ONNX attribute.
Weights are rescaled so each scale group's max |w| is (1 - 2**-8) * 2**k: the power-of-two
scale ``2**ceil(log2(max|w|))`` is then the same whether computed in float32 or float64.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from brevitas.export import export_qonnx
from brevitas.inject.enum import RestrictValueType
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPointMinMaxInit,
    Int8WeightPerChannelFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPointMaxInit,
)
from brevitas.quant.scaled_int import Int16Bias, Int24Bias, Int32Bias
from torch import nn

INPUT_RANGE = 2.0  # tests feed x ~ U(-INPUT_RANGE, INPUT_RANGE)
_CALIBRATION_SAMPLES = 1024
_BIAS_QUANTS = {16: Int16Bias, 24: Int24Bias, 32: Int32Bias}


@dataclass(frozen=True)
class MlpConfig:
    weight_bits: int = 4
    act_bits: int = 4  # 1 = bipolar +-scale activations (BipolarQuant); needs act_signed
    act_signed: bool = False
    narrow_range: bool = False  # for weights and activations
    per_channel: bool = False  # weight scale per output channel
    bias: str = "quant"  # "none" | "quant" | "float"
    bias_bits: int = 16  # for bias="quant": 16, 24 or 32
    batchnorm: bool = False  # BatchNorm1d between each hidden linear layer and its activation
    in_features: int = 12
    hidden: tuple[int, ...] = (16, 12)
    out_features: int = 5
    seed: int = 0

    def __post_init__(self):
        if not 2 <= self.weight_bits <= 16:
            raise ValueError(f"weight_bits must be in 2..16, got {self.weight_bits}")
        if not 1 <= self.act_bits <= 16:
            raise ValueError(f"act_bits must be in 1..16, got {self.act_bits}")
        if self.act_bits == 1 and not self.act_signed:
            raise ValueError("act_bits=1 means bipolar (+-scale) activations: set act_signed=True")
        if self.bias not in ("none", "quant", "float"):
            raise ValueError(f"bias must be 'none', 'quant' or 'float', got {self.bias!r}")
        if self.bias_bits not in _BIAS_QUANTS:
            raise ValueError(f"bias_bits must be in {sorted(_BIAS_QUANTS)}, got {self.bias_bits}")

    @property
    def id(self) -> str:
        acts = "bip" if self.act_bits == 1 else ("s" if self.act_signed else "u")
        parts = [f"w{self.weight_bits}a{self.act_bits}{acts}"]
        parts += ["nr"] if self.narrow_range else []
        parts += ["pc"] if self.per_channel else []
        parts += {"none": ["nobias"], "quant": [f"bq{self.bias_bits}"], "float": ["bf"]}[self.bias]
        parts += ["bn"] if self.batchnorm else []
        if (self.in_features, self.hidden, self.out_features) != (12, (16, 12), 5):
            parts.append("x".join(map(str, (self.in_features, *self.hidden, self.out_features))))
        parts += [f"s{self.seed}"] if self.seed else []
        return "-".join(parts)


def nearest_po2(value: float) -> float:
    return 2.0 ** round(math.log2(max(value, 2.0**-20)))


def _act_quantizer(config: MlpConfig, threshold: float, signed: bool) -> nn.Module:
    """Activation quantizer with a power-of-two threshold (or bipolar scale)."""
    if config.act_bits == 1:
        return QuantIdentity(
            act_quant=SignedBinaryActPerTensorConst, min_val=-threshold, max_val=threshold,
            restrict_scaling_type=RestrictValueType.POWER_OF_TWO, return_quant_tensor=True)
    common = dict(bit_width=config.act_bits, narrow_range=config.narrow_range,
                  max_val=threshold, return_quant_tensor=True)
    if signed:
        return QuantIdentity(act_quant=Int8ActPerTensorFixedPointMinMaxInit,
                             min_val=-threshold, **common)
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPointMaxInit, **common)


def _linear(config: MlpConfig, in_features: int, out_features: int, rng) -> QuantLinear:
    weight_quant = (Int8WeightPerChannelFixedPoint if config.per_channel
                    else Int8WeightPerTensorFixedPoint)
    layer = QuantLinear(
        in_features, out_features, bias=config.bias != "none",
        weight_quant=weight_quant, weight_bit_width=config.weight_bits,
        weight_narrow_range=config.narrow_range,
        bias_quant=_BIAS_QUANTS[config.bias_bits] if config.bias == "quant" else None,
        return_quant_tensor=False)
    weight = rng.standard_normal((out_features, in_features)) / math.sqrt(in_features)
    # Put every scale group's max |w| just below a power of two, (1 - 2**-8) * 2**k: the full
    # integer range is used and ceil(log2(max|w|)) = k in float32 and float64 alike.
    group_max = np.abs(weight).max(axis=1 if config.per_channel else None, keepdims=True)
    target = (1 - 2.0**-8) * 2.0 ** np.ceil(np.log2(group_max))
    layer.weight.data = torch.from_numpy(weight * (target / group_max)).float()
    if layer.bias is not None:
        layer.bias.data.zero_()  # set after calibration, relative to the pre-activation spread
    return layer


def randomize_batchnorm(bn: nn.BatchNorm1d | nn.BatchNorm2d, pre: torch.Tensor, rng) -> None:
    """Running statistics near the real ones (so outputs stay O(1)), randomly perturbed.

    Statistics per channel (axis 1), over the batch and any spatial axes (CNNs use it too)."""
    axes = [0] + list(range(2, pre.dim()))
    mean, std = pre.mean(axes).numpy(), pre.std(axes).numpy() + 1e-3
    width = bn.num_features
    bn.running_mean.copy_(torch.from_numpy(mean + 0.3 * std * rng.standard_normal(width)))
    bn.running_var.copy_(torch.from_numpy(std**2 * rng.uniform(0.5, 2.0, width)))
    sign = np.where(rng.random(width) < 0.2, -1.0, 1.0)
    bn.weight.data = torch.from_numpy(sign * rng.uniform(0.5, 2.0, width)).float()
    bn.bias.data = torch.from_numpy(rng.normal(0.0, 0.5, width)).float()


def make_mlp(config: MlpConfig) -> nn.Module:
    """Build the (eval-mode) MLP for `config`; deterministic in `config.seed`."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    input_quant = _act_quantizer(config, 1.0 if config.act_bits == 1 else INPUT_RANGE, signed=True)
    layers: list[nn.Module] = [input_quant.eval()]
    with torch.no_grad():
        # Calibration data flows through the layers as they are built (each layer sees the
        # already-quantized output of the previous one).
        samples = rng.uniform(-INPUT_RANGE, INPUT_RANGE, (_CALIBRATION_SAMPLES, config.in_features))
        x = input_quant(torch.from_numpy(samples).float())
        widths = (config.in_features, *config.hidden, config.out_features)
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = _linear(config, fan_in, fan_out, rng).eval()
            layers.append(linear)
            if index == len(widths) - 2:
                break  # logits: no BatchNorm, no activation quantizer
            pre = linear(x)
            if linear.bias is not None:
                spread = pre.std(0).numpy() + 1e-3
                bias = 0.5 * spread * rng.uniform(-1.0, 1.0, fan_out)
                linear.bias.data = torch.from_numpy(bias).float()
                pre = linear(x)
            if config.batchnorm:
                # eps = 2**-16 is exact in the float32 ONNX attribute and in float64 torch
                # (1e-5 is not), so float64 runs of both see the same BatchNorm.
                bn = nn.BatchNorm1d(fan_out, eps=2.0**-16).eval()
                randomize_batchnorm(bn, pre, rng)
                layers.append(bn)
                pre = bn(pre)
            if config.act_bits == 1:
                threshold = 2.0 ** -(index + 1)  # +-scale carries no range: vary it instead
            elif config.act_signed:
                threshold = nearest_po2(float(torch.quantile(pre.abs().flatten(), 0.99)))
            else:
                threshold = nearest_po2(float(torch.quantile(pre.clamp(min=0).flatten(), 0.99)))
            act_quant = _act_quantizer(config, threshold, signed=config.act_signed).eval()
            layers.append(act_quant)
            x = act_quant(pre)
    return nn.Sequential(*layers).eval()


def float64_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Evaluate the Brevitas model in float64 on a copy: `.double()` turns weights, biases,
    BatchNorm buffers and the quantizers' scale parameters into float64, and every quantizer
    then computes x / scale, rounds (half to even) and clamps in float64 (checked: outputs
    differ from a float32 run exactly on inputs 2**-35 away from rounding ties). With
    power-of-two scales the result is exact; BatchNorm is float64-rounded."""
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        y = model64(torch.as_tensor(np.asarray(x, dtype=np.float64)))
    if isinstance(y, tuple):  # a model with several outputs: one array each
        return tuple(getattr(part, "value", part).numpy() for part in y)
    y = getattr(y, "value", y)  # QuantTensor -> Tensor
    return y.numpy()


def export_qonnx_file(model: nn.Module, in_features: int, path, **options) -> Path:
    """Export `model` to one self-contained QONNX file at `path` (TorchScript exporter); options
    go to brevitas' export_qonnx (e.g. output_names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_qonnx(model.eval(), input_t=torch.randn(1, in_features), export_path=str(path),
                 dynamo=False, **options)
    # Fold any external-data side files back into the one .onnx file.
    proto = onnx.load(str(path), load_external_data=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def _c(weight_bits, act_bits, signed=False, **kwargs) -> MlpConfig:
    return MlpConfig(weight_bits=weight_bits, act_bits=act_bits, act_signed=signed, **kwargs)


PC, NR, BN = dict(per_channel=True), dict(narrow_range=True), dict(batchnorm=True)
NOBIAS, FBIAS = dict(bias="none"), dict(bias="float")

# Every value of every axis at least once, plus combinations that stress one thing each.
MATRIX: list[MlpConfig] = [
    # equal weight/activation widths, unsigned ReLU, per-tensor, 16-bit quantized bias
    _c(2, 2), _c(3, 3), _c(4, 4), _c(6, 6), _c(8, 8),
    _c(12, 12, bias_bits=32), _c(16, 16, bias_bits=32),
    # signed activations, mixed widths, per-channel weights
    _c(2, 3, True, **PC), _c(3, 2, True), _c(4, 6, True, **PC), _c(6, 4, True),
    _c(8, 12, True, **PC, bias_bits=24), _c(12, 8, True, bias_bits=24),
    _c(16, 16, True, **PC, bias_bits=32),  # widest: 16x16 products, 32-bit bias
    # extreme width mismatches
    _c(2, 16, bias_bits=24), _c(16, 2, bias_bits=24), _c(3, 12, True, **NOBIAS), _c(12, 3, **FBIAS),
    # narrow range: symmetric integer ranges, with per-channel scales
    _c(2, 2, **NR), _c(2, 2, True, **NR, **PC), _c(4, 4, True, **NR, **PC),
    _c(8, 8, **NR, **PC), _c(16, 16, True, **NR, **PC, bias_bits=32),
    # bias variants
    _c(4, 4, **NOBIAS), _c(8, 8, True, **NOBIAS, **PC),
    _c(4, 4, **FBIAS), _c(8, 8, True, **FBIAS, **PC),
    _c(16, 16, **FBIAS), _c(12, 12, True, **PC),  # the last one: a 16-bit bias that saturates
    # BatchNorm between the linear layer and the activation quantizer
    _c(4, 4, **BN), _c(8, 8, True, **BN, **PC),
    _c(6, 3, **BN, **NR, **FBIAS), _c(3, 6, True, **BN, **NOBIAS),
    # bipolar (+-scale) activations, also with BatchNorm as in binarized networks
    _c(2, 1, True), _c(4, 1, True, **BN), _c(8, 1, True, **BN, **PC, **NR),
    _c(16, 1, True, **FBIAS),
    _c(3, 1, True, **BN, **NOBIAS),
    # other shapes and seeds
    _c(4, 4, True, in_features=16, hidden=(16, 16, 12), seed=1),
    _c(6, 6, in_features=8, hidden=(16,), **BN, seed=2),
    _c(8, 2, **PC, **FBIAS, in_features=16, hidden=(12, 8), seed=3),
]
