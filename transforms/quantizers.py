"""The nodes that end a requantization chain - Quant, BipolarQuant, Trunc (v1 and v2) - read as one
interface: the output's type and gain, and the function from real values to output codes
exactly as qonnx computes it (in float64), which thresholds are computed from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from onnx import NodeProto
from qonnx.custom_op.general.intquant import int_quant
from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2

from qonnx_ir.errors import QonnxError
from qonnx_ir.types import (
    BIPOLAR,
    QONNX_ROUNDING,
    FixedType,
    Saturation,
    check_bit_width,
    power_of_two_exponent,
    quant_type,
)
from qonnx_ir.validate import check_scale

from . import exact as ex
from .graph import attribute, constant, quant_parameters

TERMINATORS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")  # IntQuant: qonnx >= 0.4's name for Quant


@dataclass
class Terminator:
    node: NodeProto
    out_type: FixedType
    gain: float  # the output edge's gain
    step: float  # real value of one output code
    quantize: Callable[[np.ndarray], np.ndarray]  # real values -> output codes, as qonnx computes them
    # exactly: does the real value v (a Fraction or an exact.Surd) give an output code >= k?
    reached: Callable[[object, int], bool] = None
    # True when a single rounded shift can reproduce it from inputs whose code is worth `step`
    single_rounding: Callable[[np.ndarray], bool] = lambda step: True
    exact_only: bool = False  # no multiplier approximation: thresholds (up to their limit) or a refusal
    rounding: str | None = None  # qonnx rounding mode of a single-rounding quantizer (an exact multiplier needs it)


def terminator(model, node: NodeProto) -> Terminator:
    if node.op_type == "Trunc":
        return _trunc(model, node)
    params = quant_parameters(model, node)
    if params["scale"].size != 1:
        raise QonnxError("activation quantizers must have one scale (per tensor)", node=node.name)
    s_out = float(params["scale"].ravel()[0])
    scale = Fraction(s_out)
    if params["bipolar"]:
        return Terminator(node, BIPOLAR, s_out, s_out, lambda v: np.where(v >= 0, 1.0, -1.0),
                          reached=lambda v, k: ex.sign(v) >= 0)
    out_type, gain = quant_type(params["bits"], params["signed"], params["narrow"], params["rounding"], s_out, node.name)
    mode = params["rounding"]

    def quantize(values):
        return np.round(int_quant(values, s_out, 0.0, np.float64(params["bits"]), params["signed"], params["narrow"],
                                  params["rounding"]) / s_out)

    return Terminator(node, out_type, gain, s_out, quantize, reached=lambda v, k: ex.boundary(k, mode).reached(v / scale),
                      rounding=mode)


def _parameter(model, node, position: int, what: str) -> np.ndarray:
    value = constant(model, node.input[position])
    if value is None:
        raise QonnxError(f"Trunc parameter '{what}' is not a constant: fold it or export it as one", node=node.name)
    return value


def _trunc(model, node) -> Terminator:
    """qonnx Trunc: round(x / scale), then a power-of-two division, (v2: a clamp), and a rounding."""
    scale = _parameter(model, node, 1, "scale")
    zeropt = _parameter(model, node, 2, "zeropt")
    if scale.size != 1 or np.any(zeropt != 0):
        raise QonnxError("Trunc needs one scale and zero point 0", node=node.name)
    check_scale(scale, "Trunc", node.name)
    scale = float(scale.ravel()[0])
    mode = str(attribute(node, "rounding_mode", "FLOOR")).upper()
    signed, narrow = bool(attribute(node, "signed", 1)), bool(attribute(node, "narrow", 0))
    in_bits = check_bit_width(float(_parameter(model, node, 3, "in_bits").ravel()[0]), node.name)
    out_bits = check_bit_width(float(_parameter(model, node, len(node.input) - 1, "out_bits").ravel()[0]), node.name)
    rounding = {"ROUND": "ROUND", "HALF_EVEN": "ROUND", "FLOOR": "FLOOR"}.get(mode, "FLOOR")
    if len(node.input) == 6:  # v2: an output scale, and a clamp to out_bits
        out_scale = _parameter(model, node, 4, "out_scale")
        check_scale(out_scale, "Trunc", node.name)
        out_scale = float(out_scale.ravel()[0])
        out_type, gain = quant_type(out_bits, signed, narrow, rounding, out_scale, node.name)
        shift = int(round(math.log2(out_scale / scale)))  # qonnx: trunc_scale = 2 ** round(log2(out / in))

        def quantize(values):
            return trunc_v2(values, scale, 0.0, in_bits, narrow, signed, out_scale, out_bits, mode) / out_scale
    else:  # v1: no clamp; the output is in units of the input scale
        out_scale = scale
        shift = in_bits - out_bits
        low, high = -(2 ** (in_bits - 1)) if signed else 0, 2 ** (in_bits - (1 if signed else 0)) - 1
        ends = [trunc_v1(np.float64(v * scale), scale, 0.0, in_bits, out_bits, mode) / scale for v in (low, high)]
        exponent = power_of_two_exponent(scale)
        out_type = FixedType.for_range(int(min(ends)), int(max(ends)), -exponent if exponent is not None else 0).with_(
            saturation=Saturation.SAT, rounding=QONNX_ROUNDING[rounding])
        gain = 1.0 if exponent is not None else scale

        def quantize(values):
            return trunc_v1(values, scale, 0.0, in_bits, out_bits, mode) / scale

    def reached(v, k: int) -> bool:
        # rounding_fx(m / 2**shift) >= k for the integer m = round_half_even(v / scale) <=> m >= the smallest such m
        level = ex.boundary(k, mode)
        edge = level.value * Fraction(2) ** shift
        smallest = math.floor(edge) + 1 if level.strict else math.ceil(edge)
        return ex.boundary(smallest, "ROUND").reached(v / Fraction(scale))

    def single_rounding(step: np.ndarray) -> bool:
        # the first rounding, round(x / scale), is exact when every input code is a whole number of `scale`s
        ratios = [power_of_two_exponent(float(s) / scale) for s in np.atleast_1d(step)]
        return mode in ("ROUND", "HALF_EVEN", "FLOOR") and all(r is not None and r >= 0 for r in ratios)

    # One output code is worth `out_scale`, but its code is round(x / scale) / 2**shift, rounded: the step of
    # the input's real values per code is scale * 2**shift (v1: out_bits < in_bits divides by 2**shift; v2: the
    # same as out_scale when out_scale / scale is a power of two).
    step = scale * 2.0**shift
    return Terminator(node, out_type, gain, step, quantize, reached, single_rounding, exact_only=True)

