"""The weight quantizer of `hawq.apply`, in plain torch (for sensitivities without Brevitas).

`apply_bits` quantizes every Linear's weights with Brevitas' `Int8WeightPerTensorFixedPoint`
at `weight_bit_width=bits`. For a weight tensor W that quantizer computes (brevitas 0.13):

    m     = max(max|W|, 1e-10)                  scaling statistic AbsMax, clamped (scaling_min_val)
    P     = 2 ** ceil(log2(m))                  power-of-two restriction, CeilSte in the log domain
    s     = P / 2 ** (bits - 1)                 PowerOfTwoIntScaling: 2**(bits-1) for signed
    Q(W)  = clamp(round(W / s), -(2**(bits-1) - 1), 2**(bits-1) - 1) * s
                                                ROUND = half to even; narrow range (symmetric)

Note the divisor is 2**(bits-1) although the narrow range ends at 2**(bits-1) - 1: the largest
representable weight is P - s, so a max |w| within s/2 of P (in particular one that is
exactly a power of two) is clipped. `quantize_weight` reproduces this bit for bit, in the
dtype of W (log2 and ceil in that dtype, as Brevitas does), which `tests/hawq` checks against
`QuantLinear.quant_weight()`.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_WEIGHT_BITS = 2  # a 1-bit narrow signed grid is {0}: no weights at all
MAX_WEIGHT_BITS = 24  # integers beyond 2**24 are no longer exact in float32 (Brevitas' dtype)
SCALING_MIN_VAL = 1e-10  # Brevitas' MaxStatsScaling.scaling_min_val


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an integer, got {bits!r}")
    if not MIN_WEIGHT_BITS <= bits <= MAX_WEIGHT_BITS:
        raise ValueError(f"weight bits must be in {MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS}, got {bits}")
    return bits


def weight_scale(w: Tensor, bits: int) -> Tensor:
    """The power-of-two per-tensor scale s of `quantize_weight` (a 0-d tensor, dtype of `w`)."""
    _check_bits(bits)
    w = w.detach()
    m = w.abs().max().clamp_min(SCALING_MIN_VAL)
    return torch.exp2(torch.ceil(torch.log2(m))) / 2.0 ** (bits - 1)


def weight_integers(w: Tensor, bits: int) -> Tensor:
    """The integer codes round(W / s) clamped to the narrow range, as a tensor of w's dtype."""
    limit = 2 ** (_check_bits(bits) - 1) - 1
    return torch.clamp(torch.round(w.detach() / weight_scale(w, bits)), -limit, limit)


def quantize_weight(w: Tensor, bits: int) -> Tensor:
    """Q_bits(W): exactly the value of the Brevitas weight quantizer `apply_bits` uses.

    Not differentiable (it is for measuring the quantization error, not for training).
    """
    return weight_integers(w, bits) * weight_scale(w, bits)
