"""What dense and convolution lowerings share: the weights' type and the bias on the accumulator grid."""

from __future__ import annotations

import numpy as np

from qonnx_ir.errors import QonnxError
from qonnx_ir.types import BIPOLAR, FixedType, Saturation, power_of_two_exponent

from .graph import add_constant, constant, fresh_name, quantized_constant


def weight_type(params: dict, scale: np.ndarray) -> tuple[FixedType, np.ndarray]:
    """(type, gain per output channel) with code * lsb * gain == the real weight.

    A power-of-two scale 2**-f (per tensor, or per channel as 2**-f times a power-of-two gain)
    is exact as fixed<bits, bits-f>; any other scale stays a gain.
    """
    if params["bipolar"]:
        return BIPOLAR, np.asarray(scale, dtype=np.float64)
    saturation = Saturation.SAT_SYM if params["narrow"] else Saturation.SAT
    exponents = [power_of_two_exponent(float(s)) for s in scale]
    if all(e is not None for e in exponents):
        smallest = min(exponents)
        gain = np.ldexp(1.0, np.asarray(exponents) - smallest)  # powers of two >= 1
        return FixedType(params["bits"], params["bits"] + smallest, params["signed"], saturation=saturation), gain
    return FixedType.integer(params["bits"], params["signed"], saturation=saturation), np.asarray(scale, np.float64)


def constant_or_quantized(model, tensor) -> np.ndarray | None:
    """A float constant, or the real values of Quant(constant); None for anything else."""
    value = constant(model, tensor)
    if value is not None:
        return value
    quantized = quantized_constant(model, tensor)
    if quantized is None:
        return None
    codes, scale, _ = quantized
    return codes * scale


def add_bias(model, name: str, bias_real: np.ndarray, acc_frac: int, acc_gain: np.ndarray) -> str | None:
    """The bias as integer codes on the accumulator grid (lsb 2**-acc_frac, gain per channel), stored;
    None when it is not exactly on that grid (a float bias: it stays a float Add, which the
    requantization after the layer evaluates exactly, or float-bias rounds with a WARNING).

    Exact for a bias quantized with scale s_x * s_w (Brevitas' bias quantizers) or any bias that
    happens to be a whole number of accumulator steps.
    """
    codes = bias_codes(bias_real, acc_frac, acc_gain, name)
    if np.any(codes * np.ldexp(acc_gain, -acc_frac) != bias_real):
        return None
    return store_bias(model, name, codes, acc_frac, acc_gain)


def bias_codes(bias_real: np.ndarray, acc_frac: int, acc_gain: np.ndarray, name: str) -> np.ndarray:
    """round_half_even(bias / accumulator step) as int64 (refusing an absurd ratio)."""
    grid = np.ldexp(acc_gain, -acc_frac)
    codes = np.round(bias_real / grid)
    if np.max(np.abs(codes), initial=0) >= 2.0**62:
        raise QonnxError(f"the bias ({np.max(np.abs(bias_real)):.3g}) is absurdly large for the accumulator "
                         f"grid (lsb {np.min(np.abs(grid)):.3g})", node=name)
    return codes.astype(np.int64)


def store_bias(model, name: str, codes: np.ndarray, acc_frac: int, acc_gain: np.ndarray) -> str:
    bias_type = FixedType.for_range(int(codes.min()), int(codes.max()), acc_frac)
    return add_constant(model, fresh_name(model, f"{name}/bias"), codes, bias_type, acc_gain)
