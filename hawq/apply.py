"""Build a Brevitas model with a mixed-precision bit configuration from a float PyTorch MLP.

    qmodel = apply_bits(float_model, config, calibration=x_train)     # config: hawq BitConfig

The float model is a tree of `nn.Linear`, `nn.ReLU`, `nn.Identity`, `nn.Flatten`,
`nn.Dropout` and `nn.BatchNorm1d` leaves inside containers (`nn.Sequential`, or any module
whose forward calls its children in registration order). It is not modified. Every scale in
the result is a power of two, so the Brevitas model evaluated in float64 is exact fixed-point
arithmetic and `transforms.lower` reproduces it bit for bit (DESIGN contract 3).

What becomes what (the quantizers are those of examples/digits_demo.py and tests/brevitas_zoo.py):

- model input: quantized before the first Linear, with `config.activations[first]` bits
  (or `input_bits`), signed (`Int8ActPerTensorFixedPointMinMaxInit`, range [-r, r)) or
  unsigned (`Uint8ActPerTensorFixedPointMaxInit`, range [0, r)), r = `input_range`, else
  max |x| of `calibration`, else 1.0; the scale 2**ceil(log2 r) / 2**(bits-1 or bits) is a
  learned power of two.
- `nn.Linear` -> `QuantLinear`, weights `Int8WeightPerTensorFixedPoint` at
  `config.weights[name]` bits (narrow range, per-tensor power-of-two scale from max |W|:
  exactly `hawq.quantizers.quantize_weight`), float weights and bias copied. The bias is an
  integer on the accumulator's scale (input scale * weight scale), `Int16Bias`, `Int24Bias`
  or `Int32Bias` (`bias_bits`; by default the smallest of them with at least
  input bits + weight bits + 6 bits, so a bias up to ~2**5 times max|x|*max|w| does not
  saturate). The output is float (return_quant_tensor=False): the last layer's output is the
  unquantized logits.
- `nn.ReLU` -> `QuantReLU` with `config.activations[next Linear]` bits (the input activation
  of the Linear that consumes it). With `calibration` data its power-of-two threshold is
  initialised from the float model (`Uint8ActPerTensorFixedPointMaxInit`, max_val = the
  `calibration_percentile` of the ReLU's float output) and learned in QAT; without, it is
  the runtime-statistics quantizer of the digits demo (`Uint8ActPerTensorFixedPoint`: the
  first 300 training steps collect statistics, then the scale is learned; before any
  training the scale is 2**-bits). Beware: while it collects statistics, Brevitas' training
  forward uses the raw statistic / 2**bits, which is NOT a power of two; only eval mode (and so
  the export) rounds it up to one. Calibration avoids that train/eval mismatch. A ReLU after
  the last Linear stays a float `nn.ReLU` (exact: max(0, x) of exact values).
- A Linear whose input is not the output of a quantized activation (after a BatchNorm1d, right
  after another Linear, or the first Linear of a model that is not an `nn.Sequential`) gets a
  signed input quantizer inside the QuantLinear (`input_quant`), with
  `config.activations[name]` bits, calibrated the same way.
- `nn.Identity`, `nn.Flatten`, `nn.Dropout`, `nn.BatchNorm1d`: copied unchanged.

Names: every module keeps its qualified name, so a BitConfig keyed by the float model's Linear
names applies to the result unchanged (`hawq.layers.quantizable_layers` finds the QuantLinear
layers under the same names). For an `nn.Sequential` at the top, the result is an
`nn.Sequential` whose children are named "input_quant" (the new QuantIdentity) followed by the
float model's children under their original names ("0", "1", ...; indexing by position shifts
by one, lookup by name does not). Any other top-level module is copied and its leaves replaced
in place; its input is then quantized by the first QuantLinear's `input_quant` (no new module).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from qonnx_ir.errors import QonnxError

from .quantizers import MAX_WEIGHT_BITS, MIN_WEIGHT_BITS

INPUT_QUANT_NAME = "input_quant"
PASS_THROUGH = (nn.Identity, nn.Flatten, nn.Dropout)
SUPPORTED = (nn.Linear, nn.ReLU, nn.BatchNorm1d) + PASS_THROUGH
BIAS_BITS = (16, 24, 32)
BIAS_HEADROOM_BITS = 6
MAX_ACT_BITS = 24


def _brevitas():
    """Import Brevitas lazily (seconds) and quietly (it warns about optional packages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
        from brevitas.nn.mixin.base import QuantLayerMixin
        from brevitas.quant import fixed_point, scaled_int
    return dict(QuantIdentity=QuantIdentity, QuantLinear=QuantLinear, QuantReLU=QuantReLU,
                QuantLayerMixin=QuantLayerMixin, fixed_point=fixed_point,
                bias={16: scaled_int.Int16Bias, 24: scaled_int.Int24Bias, 32: scaled_int.Int32Bias})


# -- the plan: which leaf becomes what ----------------------------------------------------------

def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if not list(module.children())]


def _bits_tables(config) -> tuple[Mapping[str, int], Mapping[str, int]]:
    if isinstance(config, Mapping):
        weights, activations = config.get("weights"), config.get("activations")
    else:
        weights, activations = getattr(config, "weights", None), getattr(config, "activations", None)
    if not isinstance(weights, Mapping) or not isinstance(activations, Mapping):
        raise QonnxError("apply_bits: config needs 'weights' and 'activations' mappings layer -> bits "
                         "(a hawq BitConfig)")
    return weights, activations


def _check_int(what: str, bits, low: int, high: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise QonnxError(f"apply_bits: {what} = {bits!r}: bits must be an integer")
    if not low <= int(bits) <= high:
        raise QonnxError(f"apply_bits: {what} = {bits}: must be in {low}..{high} here")
    return int(bits)


def _plan(model: nn.Module, weights, activations, input_bits, input_signed, top_is_sequential):
    """Walk the leaves in registration (= forward) order; return one entry per leaf:
    (name, kind, details) with kind in linear | relu | float_relu | copy."""
    bre = _brevitas()
    for name, module in model.named_modules():
        if isinstance(module, bre["QuantLayerMixin"]):
            raise QonnxError(f"apply_bits: '{name}' ({type(module).__name__}) is already a Brevitas layer; "
                             "give the float model")
    leaves = _leaves(model)
    for name, module in leaves:
        if not isinstance(module, SUPPORTED):
            raise QonnxError(f"apply_bits: '{name}' is a {type(module).__name__}; supported layers are "
                             f"{', '.join(t.__name__ for t in SUPPORTED)}")
    for name, module in model.named_modules():
        if list(module.children()) and list(module.parameters(recurse=False)):
            raise QonnxError(f"apply_bits: container '{name or type(module).__name__}' has parameters of its "
                             "own, which apply_bits cannot quantize; put them in an nn.Linear")
    linears = [name for name, module in leaves if isinstance(module, nn.Linear)]
    if not linears:
        raise QonnxError("apply_bits: the model has no nn.Linear layer")
    missing = [name for name in linears if name not in weights or name not in activations]
    if missing:
        raise QonnxError(f"apply_bits: the bit configuration has no bits for layer(s) {', '.join(missing)} "
                         f"(the model's Linear layers are {', '.join(linears)})")
    unknown = sorted((set(weights) | set(activations)) - set(linears))
    if unknown:
        raise QonnxError(f"apply_bits: the bit configuration names layer(s) {', '.join(unknown)} that the "
                         f"model does not have (its Linear layers are {', '.join(linears)})")

    plan = []
    quantized = top_is_sequential  # a QuantIdentity is prepended to a top-level Sequential
    first = True
    for index, (name, module) in enumerate(leaves):
        if isinstance(module, nn.Linear):
            weight_bits = _check_int(f"weights[{name}]", weights[name], MIN_WEIGHT_BITS, MAX_WEIGHT_BITS)
            entry = {"weight_bits": weight_bits}
            if not quantized:
                signed = input_signed if first else True
                bits = input_bits if (first and input_bits is not None) else activations[name]
                entry["input_quant"] = {"bits": _check_int(f"activations[{name}]", bits, 2 if signed else 1,
                                                           MAX_ACT_BITS),
                                        "signed": signed, "model_input": first}
            plan.append((name, "linear", entry))
            quantized, first = False, False
        elif isinstance(module, nn.ReLU):
            consumer = next((n for n, m in leaves[index + 1:] if isinstance(m, nn.Linear)), None)
            if consumer is None:
                plan.append((name, "float_relu", {}))
                quantized = False
            else:
                bits = _check_int(f"activations[{consumer}]", activations[consumer], 1, MAX_ACT_BITS)
                plan.append((name, "relu", {"bits": bits, "consumer": consumer}))
                quantized = True
        else:
            plan.append((name, "copy", {}))
            if isinstance(module, nn.BatchNorm1d):
                quantized = False
    return plan


# -- calibration ----------------------------------------------------------------------------

def _percentile(values: torch.Tensor, q: float) -> float:
    flat = values.detach().double().flatten().numpy()
    return float(np.percentile(flat, q)) if flat.size else 0.0


def _calibrate(model: nn.Module, plan, calibration, percentile: float, input_signed: bool) -> dict[str, float]:
    """Thresholds from the float model: 'input' -> max |x| (or max x); each ReLU -> the
    percentile of its output; each Linear with an input quantizer -> percentile of |input|."""
    x = torch.as_tensor(np.asarray(calibration) if not isinstance(calibration, torch.Tensor) else calibration)
    x = x.to(next(model.parameters()).dtype)
    thresholds = {"input": float(x.abs().max()) if input_signed else float(x.clamp_min(0).max())}
    modules = dict(model.named_modules())
    hooks = []
    for name, kind, entry in plan:
        if kind == "relu":
            hooks.append(modules[name].register_forward_hook(
                lambda _m, _i, out, name=name: thresholds.__setitem__(name, _percentile(out, percentile))))
        elif kind == "linear" and "input_quant" in entry and not entry["input_quant"]["model_input"]:
            hooks.append(modules[name].register_forward_pre_hook(
                lambda _m, inputs, name=name: thresholds.__setitem__(
                    name, _percentile(inputs[0].abs(), percentile))))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return thresholds


def _positive(threshold: float | None) -> float:
    """A usable max_val: thresholds of dead units (0) fall back to 1."""
    return float(threshold) if threshold is not None and threshold > 0 and np.isfinite(threshold) else 1.0


# -- building the modules -------------------------------------------------------------------

def _act_kwargs(bre, bits: int, signed: bool, threshold: float | None, prefix: str = "") -> dict:
    """Keyword arguments of a power-of-two activation quantizer (prefix 'input_' inside a layer)."""
    fp = bre["fixed_point"]
    if threshold is None:  # runtime statistics, as the digits demo's ReLUs
        quant = fp.Int8ActPerTensorFixedPoint if signed else fp.Uint8ActPerTensorFixedPoint
        kwargs = {"bit_width": bits}
    elif signed:
        quant = fp.Int8ActPerTensorFixedPointMinMaxInit
        kwargs = {"bit_width": bits, "min_val": -threshold, "max_val": threshold}
    else:
        quant = fp.Uint8ActPerTensorFixedPointMaxInit
        kwargs = {"bit_width": bits, "max_val": threshold}
    return {f"{prefix}quant" if prefix else "act_quant": quant, **{prefix + k: v for k, v in kwargs.items()}}


def _bias_bits(bias_bits, input_bits: int, weight_bits: int) -> int:
    if bias_bits is not None:
        return bias_bits
    need = input_bits + weight_bits + BIAS_HEADROOM_BITS
    return next((bits for bits in BIAS_BITS if bits >= need), BIAS_BITS[-1])


def _quant_linear(bre, linear: nn.Linear, weight_bits: int, input_bits: int, bias_bits, input_kwargs: dict):
    has_bias = linear.bias is not None
    layer = bre["QuantLinear"](
        linear.in_features, linear.out_features, bias=has_bias,
        weight_quant=bre["fixed_point"].Int8WeightPerTensorFixedPoint, weight_bit_width=weight_bits,
        bias_quant=bre["bias"][_bias_bits(bias_bits, input_bits, weight_bits)] if has_bias else None,
        return_quant_tensor=False, **input_kwargs)
    with torch.no_grad():
        layer.weight.copy_(linear.weight.detach())
        if has_bias:
            layer.bias.copy_(linear.bias.detach())
    return layer


def apply_bits(model: nn.Module, config, *, input_bits: int | None = None, input_signed: bool = True,
               input_range: float | None = None, calibration=None, calibration_percentile: float = 99.99,
               bias_bits: int | None = None) -> nn.Module:
    """A new Brevitas model computing `model` with the bits of `config` (see the module docstring).

    config:       a hawq BitConfig (or anything with `weights` and `activations` mappings, or a
                  dict with those keys): weights[name] = weight bits of Linear `name`,
                  activations[name] = bits of its input activation.
    input_bits:   bits of the model input (default: config.activations[first Linear]).
    input_signed: quantize the model input as signed (default) or unsigned (e.g. pixels in [0, 1]).
    input_range:  r: the input quantizer covers [-r, r) or [0, r) (rounded up to a power of two).
    calibration:  float inputs (N, features) to initialise every activation threshold from the
                  float model; without it, hidden activations use runtime statistics.
    bias_bits:    16, 24 or 32 for every bias; default per layer (see the module docstring).

    Returns the new model in the float model's training mode; the float model is untouched.
    Raises QonnxError (one line) for unsupported layers or a configuration that does not fit.
    """
    if not isinstance(model, nn.Module):
        raise QonnxError(f"apply_bits: expected a torch nn.Module, got {type(model).__name__}")
    if bias_bits is not None and bias_bits not in BIAS_BITS:
        raise QonnxError(f"apply_bits: bias_bits must be one of {BIAS_BITS} or None, got {bias_bits!r}")
    if input_range is not None and not (np.isfinite(input_range) and input_range > 0):
        raise QonnxError(f"apply_bits: input_range must be a positive number, got {input_range!r}")
    if not 0 < calibration_percentile <= 100:
        raise QonnxError(f"apply_bits: calibration_percentile must be in (0, 100], got {calibration_percentile}")
    bre = _brevitas()
    weights, activations = _bits_tables(config)
    top_is_sequential = type(model) is nn.Sequential
    plan = _plan(model, weights, activations, input_bits, input_signed, top_is_sequential)
    linears = [name for name, kind, _ in plan if kind == "linear"]
    first_input_bits = input_bits if input_bits is not None else activations[linears[0]]
    first_input_bits = _check_int("input bits", first_input_bits, 2 if input_signed else 1, MAX_ACT_BITS)

    thresholds: dict[str, float] = {}
    if calibration is not None:
        thresholds = _calibrate(model, plan, calibration, calibration_percentile, input_signed)
    input_threshold = _positive(input_range if input_range is not None else thresholds.get("input", 1.0))

    result = copy.deepcopy(model)
    modules = dict(model.named_modules())
    for name, kind, entry in plan:
        if kind == "linear":
            # bits of the activation this layer consumes (only used to size the bias)
            input_kwargs = {}
            in_bits = first_input_bits if name == linears[0] else activations[name]
            if "input_quant" in entry:
                spec = entry["input_quant"]
                in_bits = spec["bits"]
                threshold = input_threshold if spec["model_input"] else (
                    _positive(thresholds[name]) if name in thresholds else None)
                input_kwargs = _act_kwargs(bre, in_bits, spec["signed"], threshold, prefix="input_")
            replacement = _quant_linear(bre, modules[name], entry["weight_bits"], in_bits, bias_bits, input_kwargs)
        elif kind == "relu":
            threshold = _positive(thresholds[name]) if name in thresholds else None
            replacement = bre["QuantReLU"](**_act_kwargs(bre, entry["bits"], False, threshold),
                                           return_quant_tensor=True)
        else:
            continue  # copied with the deep copy
        if name:
            result.set_submodule(name, replacement)
        else:
            result = replacement  # the model is a single Linear / ReLU

    if top_is_sequential:
        names = [child for child, _ in result.named_children()]
        input_name = INPUT_QUANT_NAME
        while input_name in names:
            input_name += "_"
        quant_input = bre["QuantIdentity"](
            **_act_kwargs(bre, first_input_bits, input_signed, input_threshold), return_quant_tensor=True)
        result = nn.Sequential(OrderedDict([(input_name, quant_input), *result.named_children()]))
    result.train(model.training)
    return result
