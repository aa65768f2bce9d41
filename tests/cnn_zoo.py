"""Small Brevitas CNNs over a matrix of layer and quantization settings, for bit-exactness tests.

Every scale is a power of two (the ``*FixedPoint*`` quantizers, as in brevitas_zoo.py), so a
float64 evaluation of the Brevitas model is exact and can be compared with ``np.array_equal``.

Model layout (``make_cnn``)::

    QuantIdentity (input; signed)
    block 1: QuantConv (C_in -> C, kernel, stride, padding) -> [BatchNorm] -> activation quantizer
             -> pooling (max | TruncAvgPool2d | avg after a quantizer | global average | none)
    block 2: QuantConv (C -> C, kernel, padding same, groups 1 or depthwise) -> [BatchNorm]
             -> activation quantizer (the same module as block 1's when the blocks are joined,
             so both branches share one scale)
    join:    none | residual add of block 1's and block 2's outputs | concat along channels,
             then a quantizer (for add)
    Flatten (PyTorch's channels-first order) -> QuantLinear without bias (logits, unquantized)

head="early_exit" gives the model three outputs, (block 1's pooled image, early logits from a
QuantLinear on that image, the final logits): the pooled image fans out to the graph output,
the early head and block 2.

1-D models use QuantConv1d, MaxPool1d and AvgPool1d on (N, C, L) inputs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from brevitas.inject.enum import RestrictValueType
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, TruncAvgPool2d
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPointMinMaxInit,
    Int8WeightPerChannelFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPointMaxInit,
)
from brevitas.quant.scaled_int import Int24Bias
from torch import nn

from brevitas_zoo import export_qonnx_file as _export_mlp_file  # noqa: F401  (same export settings)
from brevitas_zoo import nearest_po2, randomize_batchnorm

INPUT_RANGE = 2.0
_CALIBRATION = 256


@dataclass(frozen=True)
class CnnConfig:
    dims: int = 2  # 1: Conv1d on (N, C, L); 2: Conv2d on (N, C, H, W)
    kernel: int = 3
    stride: int = 1
    padding: str = "same"  # "same" | "none"
    depthwise: bool = False  # block 2 is depthwise (groups = channels)
    bias: str = "quant"  # "quant" | "float" | "none"
    batchnorm: bool = False
    pool: str = "max"  # "max" | "trunc_avg" | "avg" | "global" | "none"
    join: str = "none"  # "none" | "add" | "concat"
    weight_bits: int = 4
    act_bits: int = 4  # 1: bipolar
    act_signed: bool = False
    per_channel: bool = False
    in_channels: int = 1
    channels: int = 4
    size: int = 8  # H = W (2-D) or L (1-D)
    dilation: int = 1  # block 1's convolution
    zeropad: bool = False  # nn.ZeroPad2d / ConstantPad1d(1) in front of block 2 (whose conv then pads nothing)
    upsample: bool = False  # nearest upsampling by 2 after the pooling
    head: str = "dense"  # "dense": Flatten -> QuantLinear; "image": the quantized image of block 2 is the output;
    # "early_exit": outputs (pooled image of block 1, early logits on it, final logits)
    seed: int = 0

    @property
    def id(self) -> str:
        parts = [f"{self.dims}d", f"k{self.kernel}", f"s{self.stride}", f"p{self.padding}", f"w{self.weight_bits}",
                 f"a{self.act_bits}{'s' if self.act_signed else ''}", f"pool-{self.pool}"]
        parts += [name for name, on in (("dw", self.depthwise), ("bn", self.batchnorm), ("pc", self.per_channel))
                  if on]
        parts += [f"bias-{self.bias}"] if self.bias != "quant" else []
        parts += [f"join-{self.join}"] if self.join != "none" else []
        parts += [f"d{self.dilation}"] if self.dilation != 1 else []
        parts += [name for name, on in (("zeropad", self.zeropad), ("up", self.upsample), ("image", self.head == "image"),
                                        ("exit", self.head == "early_exit")) if on]
        parts += [f"seed{self.seed}"] if self.seed else []
        return "-".join(parts)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.size) if self.dims == 1 else (self.in_channels, self.size, self.size)


def _act(config: CnnConfig, threshold: float, signed: bool) -> nn.Module:
    if config.act_bits == 1:
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, min_val=-threshold, max_val=threshold,
                             restrict_scaling_type=RestrictValueType.POWER_OF_TWO, return_quant_tensor=True)
    common = dict(bit_width=config.act_bits, max_val=threshold, return_quant_tensor=True)
    if signed:
        return QuantIdentity(act_quant=Int8ActPerTensorFixedPointMinMaxInit, min_val=-threshold, **common)
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPointMaxInit, **common)


def _conv(config: CnnConfig, c_in: int, c_out: int, groups: int, stride: int, rng, dilation: int = 1,
          padded: bool = True) -> nn.Module:
    conv_class = QuantConv1d if config.dims == 1 else QuantConv2d
    padding = dilation * (config.kernel - 1) // 2 if config.padding == "same" and padded else 0
    layer = conv_class(
        c_in, c_out, config.kernel, stride=stride, padding=padding, groups=groups, dilation=dilation,
        bias=config.bias != "none",
        weight_quant=Int8WeightPerChannelFixedPoint if config.per_channel else Int8WeightPerTensorFixedPoint,
        weight_bit_width=config.weight_bits, bias_quant=Int24Bias if config.bias == "quant" else None,
        return_quant_tensor=False)
    weight = rng.standard_normal(tuple(layer.weight.shape)) / math.sqrt(layer.weight[0].numel())
    axes = tuple(range(1, weight.ndim)) if config.per_channel else None
    group_max = np.abs(weight).max(axis=axes, keepdims=True)
    target = (1 - 2.0**-8) * 2.0 ** np.ceil(np.log2(group_max))  # the full range; the same scale in f32 and f64
    layer.weight.data = torch.from_numpy(weight * (target / group_max)).float()
    if layer.bias is not None:
        layer.bias.data = torch.from_numpy(rng.uniform(-0.3, 0.3, c_out)).float()
    return layer


class _Cnn(nn.Module):
    def __init__(self, config: CnnConfig, rng):
        super().__init__()
        self.config = config
        c, dims = config.channels, config.dims
        self.input = _act(config, 1.0 if config.act_bits == 1 else INPUT_RANGE, signed=True)
        self.conv1 = _conv(config, config.in_channels, c, 1, config.stride, rng, dilation=config.dilation)
        batchnorm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.bn1 = batchnorm(c, eps=2.0**-16) if config.batchnorm else nn.Identity()
        self.act1 = nn.Identity()  # set by calibrate()
        self.pool = self._pool()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if config.upsample else nn.Identity()
        pad = (nn.ConstantPad1d(1, 0.0) if dims == 1 else nn.ZeroPad2d(1)) if config.zeropad else nn.Identity()
        self.zeropad = pad
        self.conv2 = _conv(config, c, c, c if config.depthwise else 1, 1, rng, padded=not config.zeropad)
        self.bn2 = batchnorm(c, eps=2.0**-16) if config.batchnorm else nn.Identity()
        self.act2 = nn.Identity()
        self.join_quant = nn.Identity()
        self.fc = None
        self.fc_early = None

    def _pool(self) -> nn.Module:
        config, dims = self.config, self.config.dims
        if config.pool == "max":
            return nn.MaxPool1d(2) if dims == 1 else nn.MaxPool2d(2)
        if config.pool == "trunc_avg":
            return TruncAvgPool2d(2, bit_width=max(config.act_bits + 2, 2), return_quant_tensor=True)
        if config.pool == "avg":
            return nn.AvgPool1d(2) if dims == 1 else nn.AvgPool2d(2)
        if config.pool == "global":
            return nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        return nn.Identity()

    def blocks(self, x):
        return self.pooled_and_blocks(x)[1]

    def pooled_and_blocks(self, x):
        """(block 1's pooled image, the output of the blocks)."""
        x = self.input(x)
        a = self.act1(self.bn1(self.conv1(x)))
        p = self.pool(a)
        if self.config.pool in ("avg", "global"):
            p = self.pool_quant(p)
        p = self.upsample(p)
        b = self.act2(self.bn2(self.conv2(self.zeropad(p))))
        if self.config.join == "add":
            return p, self.join_quant(getattr(p, "value", p) + getattr(b, "value", b))
        if self.config.join == "concat":
            return p, torch.cat([getattr(p, "value", p), getattr(b, "value", b)], dim=1)
        return p, b

    def forward(self, x):
        p, y = self.pooled_and_blocks(x)
        if self.config.head == "image":
            return getattr(y, "value", y)
        logits = self.fc(torch.flatten(getattr(y, "value", y), 1))
        if self.config.head == "early_exit":
            p = getattr(p, "value", p)
            return p, self.fc_early(torch.flatten(p, 1)), logits
        return logits


def _threshold(pre: torch.Tensor, config: CnnConfig, signed: bool) -> float:
    values = pre.abs() if signed else pre.clamp(min=0)
    return nearest_po2(float(torch.quantile(values.flatten()[:100000], 0.99)))


def make_cnn(config: CnnConfig) -> nn.Module:
    """Build the (eval-mode) CNN for `config`, its quantizers calibrated on U(-2, 2) inputs."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    model = _Cnn(config, rng).eval()
    x = torch.from_numpy(rng.uniform(-INPUT_RANGE, INPUT_RANGE, (_CALIBRATION, *config.input_shape))).float()
    signed = config.act_signed
    with torch.no_grad():
        h = model.input(x)
        pre = model.conv1(h)
        if config.batchnorm:
            randomize_batchnorm(model.bn1, pre, rng)
            pre = model.bn1(pre)
        model.act1 = _act(config, 0.5 if config.act_bits == 1 else _threshold(pre, config, signed), signed).eval()
        a = model.act1(pre)
        p = model.pool(a)
        if config.pool in ("avg", "global"):
            value = getattr(p, "value", p)
            model.pool_quant = _act(config, 0.5 if config.act_bits == 1 else _threshold(value, config, signed),
                                    signed).eval()
            p = model.pool_quant(p)
        p = model.upsample(p)
        pre2 = model.conv2(model.zeropad(p))
        if config.batchnorm:
            randomize_batchnorm(model.bn2, pre2, rng)
            pre2 = model.bn2(pre2)
        if config.join != "none" and config.pool not in ("avg", "global"):
            model.act2 = model.act1 if config.pool != "trunc_avg" else _act(config, _threshold(pre2, config, signed),
                                                                            signed).eval()
        else:
            model.act2 = _act(config, 0.25 if config.act_bits == 1 else _threshold(pre2, config, signed), signed).eval()
        b = model.act2(pre2)
        if config.join == "add":
            total = getattr(p, "value", p) + getattr(b, "value", b)
            model.join_quant = _act(config, _threshold(total, config, True), True).eval()
        y = model.blocks(x)
        if config.head == "image":
            return model.eval()
        model.fc = _logits(config, torch.flatten(getattr(y, "value", y), 1).shape[1], rng)
        if config.head == "early_exit":
            model.fc_early = _logits(config, torch.flatten(getattr(p, "value", p), 1).shape[1], rng)
    return model.eval()


def _logits(config: CnnConfig, features: int, rng) -> nn.Module:
    """A QuantLinear to 3 unquantized logits, without bias."""
    layer = QuantLinear(features, 3, weight_quant=Int8WeightPerTensorFixedPoint,
                        weight_bit_width=config.weight_bits, bias=False, return_quant_tensor=False).eval()
    weight = rng.standard_normal((3, features)) / math.sqrt(features)
    target = (1 - 2.0**-8) * 2.0 ** np.ceil(np.log2(np.abs(weight).max()))
    layer.weight.data = torch.from_numpy(weight * target / np.abs(weight).max()).float()
    return layer


def float64_forward(model: nn.Module, x: np.ndarray):
    """The model's output in float64 (a tuple of arrays for a model with several outputs)."""
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        y = model64(torch.as_tensor(np.asarray(x, dtype=np.float64)))
    if isinstance(y, tuple):
        return tuple(getattr(part, "value", part).numpy() for part in y)
    return getattr(y, "value", y).numpy()


def export_cnn_file(model: nn.Module, config: CnnConfig, path, **options):
    """Export to one self-contained QONNX file; options go to brevitas' export_qonnx (e.g. output_names)."""
    from pathlib import Path

    import onnx
    from brevitas.export import export_qonnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_qonnx(model.eval(), input_t=torch.randn(1, *config.input_shape), export_path=str(path), dynamo=False,
                 **options)
    proto = onnx.load(str(path), load_external_data=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def _c(**kwargs) -> CnnConfig:
    return CnnConfig(**kwargs)


# Every value of every axis at least once (dims, kernel 1/3/5, stride 1/2, padding, groups,
# bias, BatchNorm, pooling, joins, weight bits 2..8, activations bipolar..8 bits).
MATRIX: list[CnnConfig] = [
    _c(),
    _c(kernel=1, pool="none", weight_bits=2, act_bits=2),
    _c(kernel=5, padding="same", weight_bits=8, act_bits=8, act_signed=True),
    _c(stride=2, padding="none", pool="none", weight_bits=3, act_bits=3),
    _c(depthwise=True, channels=6, in_channels=2, bias="none"),
    _c(batchnorm=True, per_channel=True, weight_bits=6, act_bits=6),
    _c(pool="trunc_avg", weight_bits=4, act_bits=4),
    _c(pool="avg", act_bits=5, weight_bits=5),
    _c(pool="global", act_bits=4, act_signed=True),
    _c(join="add", act_bits=4),
    _c(join="concat", act_bits=3, weight_bits=5, batchnorm=True),
    _c(join="add", depthwise=True, act_signed=True, act_bits=6, weight_bits=4, per_channel=True),
    _c(act_bits=1, weight_bits=2, act_signed=True, pool="max", batchnorm=True),
    _c(bias="float", weight_bits=6, act_bits=4),
    _c(dims=1, kernel=3, in_channels=2, size=16),
    _c(dims=1, kernel=5, stride=2, padding="none", pool="none", in_channels=2, size=16, act_bits=8, weight_bits=8),
    _c(dims=1, kernel=3, depthwise=True, channels=4, in_channels=2, size=16, pool="avg", join="concat", batchnorm=True),
    _c(dims=1, kernel=1, in_channels=3, size=12, pool="global", join="none", act_bits=2, weight_bits=2, seed=1),
    # dilation, explicit zero padding, nearest upsampling, an image as the output (autoencoder-like)
    _c(dilation=2, size=10, pool="none", weight_bits=4, act_bits=4),
    _c(zeropad=True, pool="max", act_bits=5, weight_bits=3),
    _c(upsample=True, pool="max", head="image", act_bits=4, weight_bits=4),
    _c(dims=1, zeropad=True, upsample=True, in_channels=2, size=16, head="image", act_bits=3, act_signed=True),
]
