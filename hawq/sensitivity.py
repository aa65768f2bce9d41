"""Per-layer, per-bit-width sensitivity: the HAWQ-v2/v3 second-order estimate of the loss increase.

For layer l with n_l weights W_l, Hessian trace Tr(H_l) (`hawq.hessian`) and candidate width b:

    Omega_l(b) = Tr(H_l) / n_l * || Q_b(W_l) - W_l ||_2^2

Tr(H_l)/n_l is the average curvature per weight; the squared quantization error is that of
`hawq.quantizers.quantize_weight`, i.e. exactly the weights `apply_bits` will produce.

Omega_l(b) never increases with b for these quantizers: the scale 2**ceil(log2 max|W|) /
2**(b-1) halves with each extra bit while the clipping bound P - s grows, so the grid at b is
a subset of the grid at b + 1; rounding to the nearest point of a clamped grid is the nearest
grid point, so no weight's error grows (and float sums of non-increasing terms do not grow).

The traces file (`write_traces_json`) is what `qonnx hawq` and the allocator read:

    {"layers": [{"name": "0", "in_features": 16, "out_features": 32, "trace": 1.9,
                 "std_error": 0.05, "sensitivity": {"2": 0.31, "3": 0.07, ...}}, ...],
     "meta": {...}}

A convolution (or a Linear used at several positions) adds its shape, which its cost needs
(`hawq.layers.LayerShape`; in_features/out_features are then its channels):

    {"name": "conv1", "in_features": 1, "out_features": 8, "kind": "conv2d", "kernel": [3, 3],
     "groups": 1, "out_positions": 64, "macs": 4608, "trace": ..., ...}

"kind" and "macs" are for the reader; "kernel", "groups" and "out_positions" default to [], 1
and 1, so files without them (every MLP's, and files written before) read as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from qonnx_ir.errors import QonnxError

from qonnx_ir.files import write_text_atomically
from .layers import LayerShape, layer_shapes, quantizable_layers
from .quantizers import quantize_weight

DEFAULT_CANDIDATES = (2, 3, 4, 5, 6, 7, 8)


def trace_value(trace) -> float:
    """A trace given as a float or as an object with `.trace` (e.g. hawq.hessian's results)."""
    value = getattr(trace, "trace", trace)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise QonnxError(f"a Hessian trace must be a number or have a numeric .trace, got {trace!r}") from None
    if not math.isfinite(value):
        raise QonnxError(f"a Hessian trace is {value}; the trace estimate failed (NaN/inf)")
    return value


def trace_std_error(trace) -> float | None:
    value = getattr(trace, "std_error", None)
    return None if value is None else float(value)


def quantization_error(weight: torch.Tensor, bits: int) -> float:
    """|| Q_bits(W) - W ||_2^2, accumulated in float64."""
    w = weight.detach()
    return float(torch.sum((quantize_weight(w, bits).double() - w.double()) ** 2))


def sensitivities(model: nn.Module, traces: Mapping, candidates: Iterable[int] = DEFAULT_CANDIDATES
                  ) -> dict[str, dict[int, float]]:
    """layer name -> {bits: Omega_l(bits)} for every quantizable layer of `model` (forward order).

    `traces` maps each layer name to its Hessian trace (a float or an object with `.trace`).
    A negative trace (possible for a non-convex loss away from a minimum) gives a negative
    Omega; it is kept as is, the allocator decides what to do with it.
    """
    candidates = sorted({int(bits) for bits in candidates})
    if not candidates:
        raise QonnxError("sensitivities: no candidate bit widths given")
    layers = quantizable_layers(model)
    if not layers:
        raise QonnxError("sensitivities: the model has no nn.Linear, nn.Conv1d or nn.Conv2d layer")
    missing = [name for name in layers if name not in traces]
    if missing:
        raise QonnxError(f"sensitivities: no Hessian trace for layer(s) {', '.join(missing)}")
    result: dict[str, dict[int, float]] = {}
    for name, layer in layers.items():
        per_weight = trace_value(traces[name]) / layer.weight.numel()
        result[name] = {bits: per_weight * quantization_error(layer.weight, bits) for bits in candidates}
    return result


def shape_fields(shape: LayerShape) -> dict:
    """The traces-file fields of a layer's shape (the extra ones only where they are not the default)."""
    fields = {"name": shape.name, "in_features": shape.in_features, "out_features": shape.out_features}
    if shape.kernel or shape.groups != 1 or shape.out_positions != 1:
        fields.update(kind=shape.kind, kernel=list(shape.kernel), groups=shape.groups,
                      out_positions=shape.out_positions, macs=shape.macs)
    return fields


def write_traces_json(path, model: nn.Module, traces: Mapping, sens: Mapping, meta: Mapping | None = None, *,
                      input_shape=None, sample=None) -> Path:
    """Write the traces file (format in the module docstring) atomically; returns its path.

    input_shape / sample: as for `hawq.layers.layer_shapes` (needed for a model with convolutions).
    """
    layers = []
    for shape in layer_shapes(model, input_shape, sample=sample):
        if shape.name not in traces or shape.name not in sens:
            raise QonnxError(f"write_traces_json: layer '{shape.name}' has no "
                             f"{'trace' if shape.name not in traces else 'sensitivity'}")
        layers.append({
            **shape_fields(shape),
            "trace": trace_value(traces[shape.name]), "std_error": trace_std_error(traces[shape.name]),
            "sensitivity": {str(int(bits)): float(value) for bits, value in sorted(sens[shape.name].items())},
        })
    text = json.dumps({"layers": layers, "meta": _plain(dict(meta or {}))}, indent=2) + "\n"
    target = Path(path)
    return write_text_atomically(target, text)


def load_traces_file(path) -> dict:
    """The parsed traces file, with one-line errors for a missing, unreadable or malformed file."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise QonnxError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QonnxError(f"{source}: cannot read ({' '.join(str(error).split())})") from None
    except ValueError as error:
        raise QonnxError(f"{source}: not valid JSON ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise QonnxError(f"{source}: expected {{\"layers\": [...], \"meta\": {{...}}}}")
    return data


def read_traces_json(path) -> tuple[dict[str, float], dict[str, dict[int, float]], dict]:
    """(traces, sensitivities, meta) from a traces file: name -> trace, name -> {bits: Omega}."""
    source = Path(path)
    data = load_traces_file(source)
    traces, sens = {}, {}
    for index, layer in enumerate(data["layers"]):
        try:
            name = str(layer["name"])
            traces[name] = float(layer["trace"])
            sens[name] = {int(bits): float(value) for bits, value in layer["sensitivity"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise QonnxError(f"{source}: layers[{index}] needs 'name', a numeric 'trace' and a "
                             "'sensitivity' mapping bits -> number") from None
    return traces, sens, data.get("meta") or {}


def _plain(value):
    """JSON-safe: numpy/torch scalars -> Python numbers, tuples -> lists, keys -> str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
