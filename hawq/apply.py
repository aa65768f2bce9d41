"""Build a Brevitas model with a mixed-precision bit configuration from a float PyTorch MLP or CNN.

    qmodel = apply_bits(float_model, config, calibration=x_train)     # config: hawq BitConfig

The float model is a tree of `nn.Linear`, `nn.Conv1d`, `nn.Conv2d`, `nn.ReLU`, `nn.BatchNorm1d`,
`nn.BatchNorm2d`, `nn.MaxPool1d`, `nn.MaxPool2d`, `nn.AvgPool1d`, `nn.AvgPool2d`,
`nn.AdaptiveAvgPool1d`, `nn.AdaptiveAvgPool2d`, `nn.Identity`, `nn.Flatten` and `nn.Dropout`
leaves inside containers (`nn.Sequential`, or any module whose forward calls its children,
possibly joining branches with `torch.cat` or `+`). It is not modified. Every scale in the
result is a power of two, so the Brevitas model evaluated in float64 is exact fixed-point
arithmetic and `transforms.lower` reproduces it bit for bit (DESIGN contract 3).

What becomes what (the quantizers are those of examples/digits_demo.py, tests/brevitas_zoo.py
and tests/cnn_zoo.py); a "layer" is a Linear or a convolution:

- model input: quantized before the first layer, with `config.activations[first]` bits
  (or `input_bits`), signed (`Int8ActPerTensorFixedPointMinMaxInit`, range [-r, r)) or
  unsigned (`Uint8ActPerTensorFixedPointMaxInit`, range [0, r)), r = `input_range`, else
  max |x| of `calibration`, else 1.0; the scale 2**ceil(log2 r) / 2**(bits-1 or bits) is a
  learned power of two.
- `nn.Linear` -> `QuantLinear`, `nn.Conv1d` / `nn.Conv2d` -> `QuantConv1d` / `QuantConv2d` (same
  kernel, stride, padding, dilation, groups; zero padding only, which lands on every grid),
  weights `Int8WeightPerTensorFixedPoint` at `config.weights[name]` bits (narrow range,
  per-tensor power-of-two scale from max |W|: exactly `hawq.quantizers.quantize_weight`),
  float weights and bias copied. The bias is an integer on the accumulator's scale (input
  scale * weight scale), `Int16Bias`, `Int24Bias` or `Int32Bias` (`bias_bits`; by default the
  smallest of them with at least input bits + weight bits + 6 bits, so a bias up to ~2**5 times
  max|x|*max|w| does not saturate). The output is float (return_quant_tensor=False): the last
  layer's output is the unquantized logits (or image).
- `nn.ReLU` -> `QuantReLU` with the input bits of the layer(s) that read it
  (`config.activations[reader]`). With `calibration` data its power-of-two threshold is
  initialised from the float model (`Uint8ActPerTensorFixedPointMaxInit`, max_val = the
  `calibration_percentile` of the ReLU's float output) and learned in QAT; without, it is
  the runtime-statistics quantizer of the digits demo (`Uint8ActPerTensorFixedPoint`: the
  first 300 training steps collect statistics, then the scale is learned; before any
  training the scale is 2**-bits). Beware: while it collects statistics, Brevitas' training
  forward uses the raw statistic / 2**bits, which is NOT a power of two; only eval mode (and so
  the export) rounds it up to one. Calibration avoids that train/eval mismatch. A ReLU with no
  layer after it stays a float `nn.ReLU` (exact: max(0, x) of exact values).
- `nn.MaxPool*`, `nn.Flatten`, `nn.Dropout`, `nn.Identity` (and `torch.flatten`, `.view`,
  `.reshape` in a forward): copied; a quantized tensor passes through them unchanged, so
  the layer after a max pool reads the ReLU's quantizer directly.
- `nn.AvgPool*`, `nn.AdaptiveAvgPool*` read by a layer: `nn.Sequential(pool=<the pool>,
  requant=<quantizer>)` under the pool's name. The mean leaves the input's grid (1/K need not be
  a power of two), so it is requantized at once, with its readers' input bits, calibrated on the
  pool's float output: a `QuantReLU` (exact on a mean of non-negative values) when the pool
  reads a ReLU's output through pools and reshapes only, else a signed `QuantIdentity`.
- `nn.BatchNorm1d` / `nn.BatchNorm2d`: copied; the affine map leaves the grid, so the layer
  that reads it requantizes (next point).
- A layer whose input is not a quantized activation (after a BatchNorm, right after another
  layer, after an `x + y`, or the first layer of a model that is not an `nn.Sequential`) gets an
  input quantizer inside the layer (`input_quant`), with `config.activations[name]` bits,
  calibrated the same way: unsigned when its input is non-negative by construction (a ReLU,
  then only pools, reshapes and joins), else signed.
- Joins: Brevitas adds or concatenates two quantized tensors only if they have the same scale,
  so the ReLUs (and pool requantizers) whose outputs meet in a `torch.cat` or an `x + y` share
  one quantizer (one learned scale, the largest calibrated threshold, one bit width); the same
  holds for one nn.ReLU module called at several places. A concatenation stays on that grid
  (its reader reads the shared quantizer); a sum has one more bit, so its reader requantizes
  it to its own input bits. All the layers that read one shared quantizer must have the same
  input bits (tie them in `allocate_bits`), else a one-line error says which.

Data flow: with `calibration`, one forward pass of the float model on it records which module
or function produced every tensor a layer reads (a torch function mode sees `torch.cat`, `+`,
reshapes); that pass also gives the thresholds. Without calibration, the data flow is taken to
be the registration order of the leaves (right for an nn.Sequential and for a forward that
calls its children in order without joins).

Names: every module keeps its qualified name, so a BitConfig keyed by the float model's layer
names applies to the result unchanged (`hawq.layers.quantizable_layers` finds the Brevitas
layers under the same names). For an `nn.Sequential` at the top, the result is an
`nn.Sequential` whose children are named "input_quant" (the new QuantIdentity) followed by the
float model's children under their original names ("0", "1", ...; indexing by position shifts
by one, lookup by name does not). Any other top-level module is copied and its leaves replaced
in place; its input is then quantized by the `input_quant` of the layers that read it.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from qonnx_ir.errors import QonnxError

from .layers import QUANTIZABLE, run_once
from .quantizers import MAX_WEIGHT_BITS, MIN_WEIGHT_BITS

INPUT_QUANT_NAME = "input_quant"
INPUT = "<input>"  # the source name of the model input's quantizer
LAYERS = QUANTIZABLE  # nn.Linear, nn.Conv1d, nn.Conv2d
PASS_THROUGH = (nn.Identity, nn.Flatten, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d)  # a QuantTensor stays one
AVERAGES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
SUPPORTED = LAYERS + (nn.ReLU,) + BATCHNORMS + AVERAGES + PASS_THROUGH
BIAS_BITS = (16, 24, 32)
BIAS_HEADROOM_BITS = 6
MAX_ACT_BITS = 24
_RESHAPES = (torch.flatten, torch.Tensor.flatten, torch.Tensor.view, torch.Tensor.reshape, torch.reshape)
_CATS = (torch.cat, torch.concat, torch.concatenate)
_ADDS = (torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)
_IN_PLACE = (torch.Tensor.add_, torch.Tensor.__iadd__)


def _brevitas():
    """Import Brevitas lazily (seconds) and quietly (it warns about optional packages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
        from brevitas.nn.mixin.base import QuantLayerMixin
        from brevitas.quant import fixed_point, scaled_int
    return dict(QuantIdentity=QuantIdentity, QuantLinear=QuantLinear, QuantReLU=QuantReLU,
                QuantConv1d=QuantConv1d, QuantConv2d=QuantConv2d,
                QuantLayerMixin=QuantLayerMixin, fixed_point=fixed_point,
                bias={16: scaled_int.Int16Bias, 24: scaled_int.Int24Bias, 32: scaled_int.Int32Bias})


# -- checks ---------------------------------------------------------------------------------

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


def _check_model(model: nn.Module, weights, activations) -> list[str]:
    """The layer names, after refusing what apply_bits cannot build."""
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
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.padding_mode != "zeros":
            raise QonnxError(f"apply_bits: '{name}' pads with mode '{module.padding_mode}'; only zero padding "
                             "(padding_mode='zeros') is on every quantizer's grid")
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) and module.return_indices:
            raise QonnxError(f"apply_bits: '{name}' returns indices; use return_indices=False")
    for name, module in model.named_modules():
        if list(module.children()) and list(module.parameters(recurse=False)):
            raise QonnxError(f"apply_bits: container '{name or type(module).__name__}' has parameters of its "
                             "own, which apply_bits cannot quantize; put them in an nn.Linear or nn.Conv2d")
    layers = [name for name, module in leaves if isinstance(module, LAYERS)]
    if not layers:
        raise QonnxError("apply_bits: the model has no nn.Linear, nn.Conv1d or nn.Conv2d layer")
    missing = [name for name in layers if name not in weights or name not in activations]
    if missing:
        raise QonnxError(f"apply_bits: the bit configuration has no bits for layer(s) {', '.join(missing)} "
                         f"(the model's layers are {', '.join(layers)})")
    unknown = sorted((set(weights) | set(activations)) - set(layers))
    if unknown:
        raise QonnxError(f"apply_bits: the bit configuration names layer(s) {', '.join(unknown)} that the "
                         f"model does not have (its layers are {', '.join(layers)})")
    return layers


# -- the data flow --------------------------------------------------------------------------

@dataclass
class _Event:
    """One step of the forward pass: a leaf module call or a torch function between modules."""

    kind: str  # "leaf" | "cat" | "add" | "reshape" | "other"
    inputs: list[int]  # ids of the tensors it reads
    output: int | None  # id of the tensor it returns
    name: str | None = None  # the leaf's qualified name


@dataclass
class _Flow:
    events: list[_Event]
    input_id: int
    thresholds: dict[str, dict] = field(default_factory=dict)  # ReLU / pool -> output percentiles, max over calls
    input_levels: dict[str, dict] = field(default_factory=dict)  # layer name -> percentiles of its input


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _percentile(values: torch.Tensor, q: float) -> float:
    flat = values.detach().double().flatten().numpy()
    return float(np.percentile(flat, q)) if flat.size else 0.0


def _traced_flow(model: nn.Module, x: torch.Tensor, percentile: float) -> _Flow:
    """Run the float model once on x, recording every leaf call and every torch function between
    them, with the calibration statistics."""
    events: list[_Event] = []
    keep: list[torch.Tensor] = [x]  # holds every recorded tensor, so no id is reused meanwhile
    depth = [0]  # > 0 inside a leaf: its own torch functions are not data flow
    flow = _Flow(events, id(x))
    leaves = dict(_leaves(model))

    def before(_module, _inputs):
        depth[0] += 1

    def after(name, module, inputs, output):
        tensors = _tensors(inputs)
        if isinstance(module, (nn.ReLU,) + AVERAGES):  # still inside the leaf: not data flow
            levels = flow.thresholds.setdefault(name, {"abs": 0.0, "positive": 0.0})
            levels["abs"] = max(levels["abs"], _percentile(output.abs(), percentile))
            levels["positive"] = max(levels["positive"], _percentile(output.clamp_min(0), percentile))
        elif isinstance(module, LAYERS) and tensors:
            flow.input_levels[name] = {"abs": _percentile(tensors[0].abs(), percentile),
                                       "positive": _percentile(tensors[0].clamp_min(0), percentile)}
        depth[0] -= 1
        keep.extend(tensors)
        keep.append(output)
        events.append(_Event("leaf", [id(t) for t in tensors], id(output), name))

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            output = func(*args, **kwargs)
            if depth[0] == 0 and isinstance(output, torch.Tensor):
                tensors = _tensors(args) + _tensors(kwargs)
                if func in _IN_PLACE:
                    raise QonnxError("apply_bits: the forward adds in place (x += y); write x = x + y so the "
                                     "join can be followed")
                kind = ("cat" if func in _CATS else "add" if func in _ADDS and len(tensors) == 2
                        else "reshape" if func in _RESHAPES else "other")
                keep.extend(tensors)
                keep.append(output)
                events.append(_Event(kind, [id(t) for t in tensors], id(output)))
            return output

    hooks = []
    for name, module in leaves.items():
        hooks.append(module.register_forward_pre_hook(before))
        hooks.append(module.register_forward_hook(lambda m, i, o, name=name: after(name, m, i, o)))
    run_once(model, x, hooks, "apply_bits: the float model fails on the calibration data", Recorder())
    return flow


def _registration_flow(model: nn.Module) -> _Flow:
    """Without data: the leaves in registration order, each reading the previous one's output."""
    events = [_Event("leaf", [index], index + 1, name) for index, (name, _) in enumerate(_leaves(model))]
    return _Flow(events, 0)


# -- the plan: what every quantizer is ------------------------------------------------------

@dataclass
class _State:
    source: str | None = None  # the quantizer whose output this tensor is, unchanged
    model_input: bool = False  # the model input, through reshapes only
    nonnegative: bool = False


class _Groups:
    """Union-find over quantizer sources: sources joined by a cat or an add share one quantizer."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, source: str) -> str:
        self.parent.setdefault(source, source)
        while self.parent[source] != source:
            source = self.parent[source]
        return source

    def union(self, sources) -> str:
        roots = [self.find(s) for s in sources]
        for root in roots[1:]:
            self.parent[root] = roots[0]
        return roots[0]

    def members(self, root: str) -> list[str]:
        return [s for s in self.parent if self.find(s) == root]


@dataclass
class _Plan:
    layers: dict[str, dict]  # layer name -> {"weight_bits", "in_bits", "input_quant": spec or None}
    # ReLU or average pool -> {"bits", "signed", "owner" (the member that builds the shared quantizer), "group"}
    quantizers: dict[str, dict]
    input_bits: int | None  # bits of the prepended QuantIdentity (top-level Sequential)


def _plan(model, flow: _Flow, layer_names, weights, activations, *, input_bits, input_signed,
          top_is_sequential) -> _Plan:
    """Follow the data flow: which quantizer each tensor comes from, which layers read which
    quantizer, which need their own; then the bits of every (shared) quantizer."""
    modules = dict(model.named_modules())
    states = {flow.input_id: _State(INPUT if top_is_sequential else None, True, not input_signed)}
    groups = _Groups()
    signed: dict[str, bool] = {}  # source -> signed
    if top_is_sequential:
        groups.find(INPUT)
        signed[INPUT] = input_signed
    readers: dict[str, str] = {}  # layer -> the source it reads directly
    requantized: dict[str, _State] = {}  # layer -> the state of its input, when it needs an input quantizer
    first_event: dict[str, int] = {INPUT: -1} if top_is_sequential else {}
    layer_events: list[tuple[int, str]] = []
    for index, event in enumerate(flow.events):
        ins = [states.get(t, _State()) for t in event.inputs]
        first = ins[0] if ins else _State()
        if event.kind == "leaf":
            module = modules[event.name]
            if isinstance(module, LAYERS):
                if event.name in readers or event.name in requantized:
                    raise QonnxError(f"apply_bits: layer '{event.name}' is called more than once in a forward pass; "
                                     "give each use its own layer")
                layer_events.append((index, event.name))
                if first.source is not None:
                    readers[event.name] = first.source
                else:
                    requantized[event.name] = first
                out = _State()
            elif isinstance(module, (nn.ReLU,) + AVERAGES):
                # a ReLU quantizes; an average's mean leaves the grid, so a requantizer follows it
                groups.find(event.name)
                first_event.setdefault(event.name, index)
                nonnegative = isinstance(module, nn.ReLU) or first.nonnegative
                signed[event.name] = signed.get(event.name, False) or not nonnegative
                out = _State(event.name, False, nonnegative)
            elif isinstance(module, PASS_THROUGH):
                out = first
            else:  # BatchNorm
                out = _State()
        elif event.kind == "reshape":
            out = first
        elif event.kind in ("cat", "add") and ins:
            nonnegative = all(s.nonnegative for s in ins)
            if all(s.source is not None for s in ins):  # (the model input's source is never joined: a
                root = groups.union([s.source for s in ins])  # Sequential has no joins)
                out = _State(root if event.kind == "cat" else None, False, nonnegative)
            else:  # Brevitas returns a float tensor: its reader requantizes
                out = _State(None, False, nonnegative)
        else:
            out = _State()
        if event.output is not None:
            states[event.output] = out

    missing = [name for name in layer_names if name not in readers and name not in requantized]
    if missing:
        raise QonnxError(f"apply_bits: layer(s) {', '.join(missing)} are not used by the forward pass on the "
                         "calibration data")

    # bits of every shared quantizer: those of the layers that read it
    bits_of: dict[str, int] = {}
    for root in {groups.find(s) for s in groups.parent}:
        members = groups.members(root)
        if len({signed[m] for m in members}) > 1:
            raise QonnxError(f"apply_bits: {', '.join(repr(m) for m in members)} are joined (cat or add) but not "
                             "all are non-negative: one quantizer cannot be signed and unsigned")
        reading = sorted(layer for layer, source in readers.items() if groups.find(source) == root)
        wanted = {int(activations[layer]) for layer in reading}
        if INPUT in members and input_bits is not None:
            bits_of[root] = int(input_bits)
            continue
        if len(wanted) > 1:
            sources = [m for m in members if m != INPUT]
            what = (f"the quantized output of {', '.join(repr(m) for m in sources)}" if sources else "the model input")
            raise QonnxError(f"apply_bits: layers {', '.join(reading)} read {what} (one shared quantizer) but "
                             f"have input bits {', '.join(str(activations[l]) for l in reading)}; give them the "
                             f"same activation bits (allocate_bits(..., tie=[{reading}]))")
        if wanted:
            bits_of[root] = wanted.pop()
            continue
        if not any(isinstance(modules.get(m), nn.ReLU) for m in members) and INPUT not in members:
            continue  # a pool no layer reads directly: whatever follows it quantizes
        # a ReLU read by no layer directly (e.g. before a BatchNorm or an add): the next layer's bits
        start = min(first_event.get(m, len(flow.events)) for m in members)
        following = next((name for index, name in layer_events if index > start), None)
        if following is not None:
            bits_of[root] = int(activations[following])

    plan_layers = {}
    for name in layer_names:
        weight_bits = _check_int(f"weights[{name}]", weights[name], MIN_WEIGHT_BITS, MAX_WEIGHT_BITS)
        if name in readers:
            root = groups.find(readers[name])
            plan_layers[name] = {"weight_bits": weight_bits, "in_bits": bits_of[root], "input_quant": None}
            continue
        state = requantized[name]
        is_signed = input_signed if state.model_input else not state.nonnegative
        bits = input_bits if (state.model_input and input_bits is not None) else activations[name]
        bits = _check_int(f"activations[{name}]", bits, 2 if is_signed else 1, MAX_ACT_BITS)
        plan_layers[name] = {"weight_bits": weight_bits, "in_bits": bits,
                             "input_quant": {"bits": bits, "signed": is_signed, "model_input": state.model_input}}

    quantizers, owners = {}, {}
    for name in (s for s in first_event if s != INPUT):  # in forward order
        root = groups.find(name)
        if root not in bits_of:
            continue  # no layer after it: a float ReLU / a plain pool
        owner = owners.setdefault(root, name)
        bits = _check_int(f"activation bits of '{name}'", bits_of[root], 2 if signed[name] else 1, MAX_ACT_BITS)
        quantizers[name] = {"bits": bits, "signed": signed[name], "owner": owner, "group": groups.members(root)}
    prepended = None
    if top_is_sequential:
        default = bits_of.get(groups.find(INPUT), activations[layer_names[0]])
        prepended = _check_int("input bits", default, 2 if input_signed else 1, MAX_ACT_BITS)
    return _Plan(plan_layers, quantizers, prepended)


# -- building the modules -------------------------------------------------------------------

def _positive(threshold: float | None) -> float:
    """A usable max_val: thresholds of dead units (0) fall back to 1."""
    return float(threshold) if threshold is not None and threshold > 0 and np.isfinite(threshold) else 1.0


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


def _explicit_padding(name: str, conv) -> tuple[int, ...]:
    """'valid' / 'same' as numbers (symmetric only: an exported Conv pads both sides alike)."""
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if any(total % 2 for total in totals):
        raise QonnxError(f"apply_bits: '{name}' has padding='same' with an even kernel, which pads one side more; "
                         "give the padding as numbers")
    return tuple(total // 2 for total in totals)


def _quant_layer(bre, name: str, layer, weight_bits: int, input_bits: int, bias_bits, input_kwargs: dict):
    has_bias = layer.bias is not None
    common = dict(bias=has_bias, weight_quant=bre["fixed_point"].Int8WeightPerTensorFixedPoint,
                  weight_bit_width=weight_bits,
                  bias_quant=bre["bias"][_bias_bits(bias_bits, input_bits, weight_bits)] if has_bias else None,
                  return_quant_tensor=False, **input_kwargs)
    if isinstance(layer, nn.Linear):
        quant = bre["QuantLinear"](layer.in_features, layer.out_features, **common)
    else:
        kind = bre["QuantConv1d"] if isinstance(layer, nn.Conv1d) else bre["QuantConv2d"]
        quant = kind(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                     padding=_explicit_padding(name, layer), dilation=layer.dilation, groups=layer.groups, **common)
    quant.to(dtype=layer.weight.dtype)
    with torch.no_grad():
        quant.weight.copy_(layer.weight.detach())
        if has_bias:
            quant.bias.copy_(layer.bias.detach())
    return quant


def apply_bits(model: nn.Module, config, *, input_bits: int | None = None, input_signed: bool = True,
               input_range: float | None = None, calibration=None, calibration_percentile: float = 99.99,
               bias_bits: int | None = None) -> nn.Module:
    """A new Brevitas model computing `model` with the bits of `config` (see the module docstring).

    config:       a hawq BitConfig (or anything with `weights` and `activations` mappings, or a
                  dict with those keys): weights[name] = weight bits of layer `name` (a Linear or
                  a convolution), activations[name] = bits of its input activation.
    input_bits:   bits of the model input (default: config.activations[first layer]).
    input_signed: quantize the model input as signed (default) or unsigned (e.g. pixels in [0, 1]).
    input_range:  r: the input quantizer covers [-r, r) or [0, r) (rounded up to a power of two).
    calibration:  float inputs (N, features), (N, C, L) or (N, C, H, W) to trace the data flow and
                  initialise every activation threshold from the float model; without it, hidden
                  activations use runtime statistics and the data flow is the registration order.
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
    layer_names = _check_model(model, weights, activations)
    if input_bits is not None:
        _check_int("input bits", input_bits, 2 if input_signed else 1, MAX_ACT_BITS)
    top_is_sequential = type(model) is nn.Sequential

    x = None
    if calibration is not None:
        x = torch.as_tensor(np.asarray(calibration) if not isinstance(calibration, torch.Tensor) else calibration)
        x = x.to(next(model.parameters()).dtype)
        if x.dim() < 2 or len(x) == 0:
            raise QonnxError(f"apply_bits: calibration must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
        flow = _traced_flow(model, x, calibration_percentile)
    else:
        flow = _registration_flow(model)
    plan = _plan(model, flow, layer_names, weights, activations, input_bits=input_bits, input_signed=input_signed,
                 top_is_sequential=top_is_sequential)

    if x is not None:
        input_threshold = float(x.abs().max()) if input_signed else float(x.clamp_min(0).max())
    else:
        input_threshold = None
    input_threshold = _positive(input_range if input_range is not None else input_threshold)

    result = copy.deepcopy(model)
    modules = dict(model.named_modules())
    built: dict[str, nn.Module] = {}  # ReLU / pool name -> its quantizer module
    owners_first = sorted(_leaves(model), key=lambda leaf: leaf[0] not in plan.quantizers
                          or plan.quantizers[leaf[0]]["owner"] != leaf[0])  # a shared quantizer before its users
    for name, module in owners_first:
        if name in plan.layers:
            entry = plan.layers[name]
            input_kwargs = {}
            spec = entry["input_quant"]
            if spec is not None:
                if spec["model_input"]:
                    threshold = input_threshold
                elif name in flow.input_levels:
                    threshold = _positive(flow.input_levels[name]["abs" if spec["signed"] else "positive"])
                else:
                    threshold = None
                input_kwargs = _act_kwargs(bre, spec["bits"], spec["signed"], threshold, prefix="input_")
            replacement = _quant_layer(bre, name, modules[name], entry["weight_bits"], entry["in_bits"], bias_bits,
                                       input_kwargs)
        elif name in plan.quantizers:
            entry = plan.quantizers[name]
            # unsigned: a QuantReLU (exact on a mean of non-negative values too); signed: a QuantIdentity
            kind = bre["QuantIdentity"] if entry["signed"] else bre["QuantReLU"]
            if entry["owner"] != name:  # one quantizer for a join: the owner's
                with warnings.catch_warnings():  # Brevitas notes that the layer's own act_impl goes unused
                    warnings.simplefilter("ignore")
                    quantizer = kind(act_quant=built[entry["owner"]].act_quant, return_quant_tensor=True)
            else:
                key = "abs" if entry["signed"] else "positive"
                levels = [flow.thresholds[m][key] for m in entry["group"] if m in flow.thresholds]
                threshold = _positive(max(levels)) if levels else None
                quantizer = kind(**_act_kwargs(bre, entry["bits"], entry["signed"], threshold),
                                 return_quant_tensor=True)
            built[name] = quantizer
            if isinstance(module, nn.ReLU):
                replacement = quantizer
            else:  # the pool, then its requantizer
                replacement = nn.Sequential(OrderedDict([("pool", copy.deepcopy(module)), ("requant", quantizer)]))
        else:
            continue  # copied with the deep copy
        if name:
            result.set_submodule(name, replacement)
        else:
            result = replacement  # the model is a single layer / ReLU

    if top_is_sequential:
        names = [child for child, _ in result.named_children()]
        input_name = INPUT_QUANT_NAME
        while input_name in names:
            input_name += "_"
        quant_input = bre["QuantIdentity"](
            **_act_kwargs(bre, plan.input_bits, input_signed, input_threshold), return_quant_tensor=True)
        result = nn.Sequential(OrderedDict([(input_name, quant_input), *result.named_children()]))
    result.train(model.training)
    return result
