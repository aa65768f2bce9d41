"""A mixed-precision bit configuration: bits per layer, saved as YAML or JSON.

    weights:      {fc1: 8, fc2: 4, fc3: 8}    bits of each layer's weights
    activations:  {fc1: 8, fc2: 6, fc3: 6}    bits of each layer's INPUT activation
    meta:         {...}                        free-form: how it was chosen (objective, costs, budget)

Layer names are the qualified module names of `hawq.layers`. Every width is an integer in
1..32 and both tables name the same layers; `BitConfig.load` checks this and reports any
problem as a one-line `QonnxError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qonnx_ir.errors import QonnxError

from qonnx_ir.files import write_text_atomically
from .cost import COST_MODELS, CostModel
from .layers import LayerShape

MIN_BITS, MAX_BITS = 1, 32
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
FIELDS = ("weights", "activations", "meta")


@dataclass
class BitConfig:
    weights: dict[str, int]
    activations: dict[str, int]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_tables(self.weights, self.activations, self.meta)

    # -- costs ------------------------------------------------------------------------

    def layer_costs(self, layers: Sequence[LayerShape],
                    cost_models: Mapping[str, CostModel] = COST_MODELS) -> dict[str, dict[str, float]]:
        """cost model name -> layer name -> cost of that layer at its bits."""
        missing = [layer.name for layer in layers if layer.name not in self.weights]
        if missing:
            raise QonnxError(f"bit configuration has no bits for layer(s) {', '.join(missing)}")
        return {kind: {layer.name: model.cost(layer, self.weights[layer.name], self.activations[layer.name])
                       for layer in layers}
                for kind, model in cost_models.items()}

    def costs(self, layers: Sequence[LayerShape],
              cost_models: Mapping[str, CostModel] = COST_MODELS) -> dict[str, float]:
        """cost model name -> total cost of `layers` at these bits."""
        return {kind: sum(per_layer.values()) for kind, per_layer in self.layer_costs(layers, cost_models).items()}

    # -- files ------------------------------------------------------------------------

    def as_dict(self) -> dict:
        return {"weights": dict(self.weights), "activations": dict(self.activations), "meta": self.meta}

    def save(self, path: str | os.PathLike) -> Path:
        """Write .yaml/.yml/.json (by suffix), atomically: nothing half-written on failure."""
        target = Path(path)
        kind = format_of(target)
        if kind == "json":
            text = json.dumps(self.as_dict(), indent=2) + "\n"
        else:
            text = yaml.safe_dump(self.as_dict(), sort_keys=False, default_flow_style=False)
        return write_text_atomically(target, text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BitConfig:
        source = Path(path)
        kind = format_of(source)
        try:
            text = source.read_text()
        except FileNotFoundError:
            raise QonnxError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise QonnxError(f"{source}: cannot read ({_one_line(error)})") from None
        try:
            data = json.loads(text) if kind == "json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise QonnxError(f"{source}: not valid {kind.upper()} ({_one_line(error)})") from None
        if not isinstance(data, dict):
            raise QonnxError(f"{source}: expected a mapping with 'weights' and 'activations'")
        unknown = sorted(set(map(str, data)) - set(FIELDS))
        if unknown:
            raise QonnxError(f"{source}: unknown key(s) {', '.join(unknown)} (expected {', '.join(FIELDS)})")
        for key in ("weights", "activations"):
            if not isinstance(data.get(key), dict):
                raise QonnxError(f"{source}: '{key}' must be a mapping layer -> bits")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise QonnxError(f"{source}: 'meta' must be a mapping")
        try:
            return cls(dict(data["weights"]), dict(data["activations"]), meta)
        except QonnxError as error:
            raise QonnxError(f"{source}: {error}") from None


def _check_tables(weights, activations, meta) -> None:
    if not isinstance(weights, dict) or not isinstance(activations, dict) or not isinstance(meta, dict):
        raise QonnxError("weights and activations must be mappings layer -> bits, meta a mapping")
    for table_name, table in (("weights", weights), ("activations", activations)):
        for name, bits in table.items():
            if not isinstance(name, str) or not name:
                raise QonnxError(f"{table_name}: layer name {name!r} is not a non-empty string")
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise QonnxError(f"{table_name}[{name}] = {bits!r}: bits must be an integer")
            if not MIN_BITS <= bits <= MAX_BITS:
                raise QonnxError(f"{table_name}[{name}] = {bits}: bits must be in {MIN_BITS}..{MAX_BITS}")
    if set(weights) != set(activations):
        only_w = sorted(set(weights) - set(activations))
        only_a = sorted(set(activations) - set(weights))
        detail = "; ".join(part for part in (
            f"only in weights: {', '.join(only_w)}" if only_w else "",
            f"only in activations: {', '.join(only_a)}" if only_a else "") if part)
        raise QonnxError(f"weights and activations must name the same layers ({detail})")


def format_of(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise QonnxError(f"{path}: unknown bit-configuration format (use .yaml, .yml or .json)")
    return kind


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def plain(value):
    """`value` with numpy scalars and tuples turned into plain Python (YAML/JSON-safe)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value
