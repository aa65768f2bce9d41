"""Hardware knobs (reuse factor, strategy, io style), resolved once into the model.

The CLI (`--reuse`, `--strategy`, `--io`), a YAML config (`--config`) and the Python API
(`hlsgen.generate(..., reuse=4)`) all build one `Knobs` and call `apply_knobs`; the code
generator then reads node attributes (and the io style from the model's metadata) only.

For every node and knob, the first that applies: the config's `layers:` entry for the node,
the global setting (an argument, else the config's top-level key), the attribute already in
the model (e.g. from `qonnx transform --reuse`), the op's default. A global setting is fitted
to each layer (`HwOp.fit_knob`: a reuse factor beyond a layer's products becomes its products);
a layer's own entry is taken as given and validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qonnx.core.modelwrapper import ModelWrapper

from ..errors import QonnxError
from .graph import is_hw

IO_STYLES = ("parallel", "stream")
IO_KEY = "hw_io"
GLOBAL_KNOBS = ("reuse_factor", "strategy")
CONFIG_KEYS = (*GLOBAL_KNOBS, "io", "layers")


@dataclass
class Knobs:
    reuse_factor: int | None = None
    strategy: str | None = None
    io: str | None = None
    layers: dict[str, dict] = field(default_factory=dict)  # node name -> {knob: value}
    source: str = "config"  # named in errors about a layer entry

    @classmethod
    def from_config(cls, config: dict | None, source: str = "config") -> Knobs:
        """Knobs from a parsed YAML mapping, with one-line errors for anything unknown."""
        config = config or {}
        if not isinstance(config, dict):
            raise QonnxError(f"{source}: expected a mapping of {', '.join(CONFIG_KEYS)}")
        _known_keys(config, CONFIG_KEYS, source, "")
        layers = config.get("layers") or {}
        if not isinstance(layers, dict):
            raise QonnxError(f"{source}: layers must map layer names to settings")
        checked = {}
        for name, settings in layers.items():
            settings = settings or {}
            if not isinstance(settings, dict):
                raise QonnxError(f"{source}: layers.{name} must map knobs to values")
            _known_keys(settings, GLOBAL_KNOBS, source, f"layers.{name}.")
            checked[str(name)] = dict(settings)
        return cls(config.get("reuse_factor"), config.get("strategy"), config.get("io"), checked, source)

    def override(self, *, reuse_factor=None, strategy=None, io=None) -> Knobs:
        """These knobs with the given global settings taking precedence (the CLI's and the API's)."""
        return Knobs(self.reuse_factor if reuse_factor is None else reuse_factor,
                     self.strategy if strategy is None else strategy,
                     self.io if io is None else io, dict(self.layers), self.source)


def _known_keys(mapping: dict, allowed, source: str, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise QonnxError(f"{source}: unknown key {prefix}{key} (known: {', '.join(allowed)})")


def io_style(model: ModelWrapper) -> str:
    for prop in model.model.metadata_props:
        if prop.key == IO_KEY:
            return prop.value
    return "parallel"


def _set_io(model: ModelWrapper, io: str) -> bool:
    for prop in model.model.metadata_props:
        if prop.key == IO_KEY:
            changed = prop.value != io
            prop.value = io
            return changed
    entry = model.model.metadata_props.add()
    entry.key, entry.value = IO_KEY, io
    return True


def apply_knobs(model: ModelWrapper, knobs: Knobs) -> bool:
    """Write every knob into the model (in place); returns whether anything changed."""
    from .graph import GraphView

    if knobs.io is not None and knobs.io not in IO_STYLES:
        raise QonnxError(f"io style {knobs.io!r} is not one of {', '.join(IO_STYLES)}")
    view = GraphView(model)
    ops = {node.name: view.op(node) for node in model.graph.node if is_hw(node)}
    for name, settings in knobs.layers.items():
        if name not in ops:
            tunable = [n for n, op in ops.items() if op.knob_names()]
            raise QonnxError(f"{knobs.source}: layer {name!r} is not in the model (layers with knobs: "
                             f"{', '.join(tunable) or 'none'})")
        for knob in settings:
            if knob not in ops[name].knob_names():
                takers = [n for n, op in ops.items() if knob in op.knob_names()]
                raise QonnxError(f"{knobs.source}: layer {name!r} is a {ops[name].op_type}; {knob} applies to "
                                 f"{', '.join(takers) or 'no layer of this model'}")
    changed = False
    for name, op in ops.items():
        wanted = {}
        for knob in op.knob_names():
            layer_value = knobs.layers.get(name, {}).get(knob)
            value = layer_value if layer_value is not None else getattr(knobs, knob, None)
            if value is None:
                continue
            where = f"layers.{name}.{knob}" if layer_value is not None else knob
            try:
                value = op.attribute_spec(knob).check(value, name)
                wanted[knob] = value if layer_value is not None else op.fit_knob(knob, value)
            except QonnxError as error:
                why = str(error).split(f"{knob}={value!r} ", 1)[-1]
                raise QonnxError(f"{knobs.source}: {where} = {value!r} {why}") from None
        changed |= op.set_attributes(**wanted)
    if knobs.io is not None:
        changed |= _set_io(model, knobs.io)
    return changed

