"""Edges of the hardware dialect: every tensor's shape, fixed-point type and gain, stored once.

An edge is a named tensor of integer *codes*. Its real value is `code * type.lsb * gain[c]`
(c the channel, the last axis; one gain for the whole tensor or one per channel). Shapes
leave out the batch: `(F,)`, `(L, C)` or `(H, W, C)`, channels last.

In the file, an edge's type lives in the graph's `quantization_annotation` (the ONNX field
qonnx also uses for its tensor datatypes), under the keys `hw_type`, `hw_shape` and, when it
is not 1, `hw_gain`; its `value_info` states the same shape with a symbolic batch `N`.
Constants (weights, biases) are edges too: an integer initializer with its type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from onnx import StringStringEntryProto, TensorAnnotation, TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from ..errors import QonnxError
from ..limits import MAX_SAMPLE_ELEMENTS
from ..types import FixedType

TYPE_KEY, SHAPE_KEY, GAIN_KEY = "hw_type", "hw_shape", "hw_gain"
_ONE = np.ones(1)


def _as_gain(gain) -> np.ndarray:
    values = np.atleast_1d(np.asarray(gain, dtype=np.float64)).ravel()
    values.setflags(write=False)
    return values


@dataclass(frozen=True, eq=False)
class EdgeType:
    """What the codes on an edge mean: shape (no batch, channels last), type and gain."""

    type: FixedType
    shape: tuple[int, ...]
    gain: np.ndarray = field(default_factory=lambda: _ONE)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "gain", _as_gain(self.gain))
        if not self.shape or any(d < 1 for d in self.shape):
            raise QonnxError(f"edge shape {self.shape} has an empty dimension")
        if math.prod(self.shape) > MAX_SAMPLE_ELEMENTS:
            raise QonnxError(f"edge shape {self.shape} holds more than {MAX_SAMPLE_ELEMENTS} values per sample")
        if self.gain.size not in (1, self.channels):
            raise QonnxError(f"{self.gain.size} gains for {self.channels} channels (give 1 or one per channel)")
        if not np.all(np.isfinite(self.gain)) or np.any(self.gain == 0):
            raise QonnxError("an edge gain must be finite and non-zero")

    @property
    def channels(self) -> int:
        return self.shape[-1]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def real_scale(self) -> np.ndarray:
        """The real value of one code step, per channel (or one for the tensor)."""
        return self.type.lsb * self.gain

    @property
    def is_fixed_point(self) -> bool:
        """True when code * lsb is the real value already (power-of-two scales)."""
        return bool(np.all(self.gain == 1.0))

    @property
    def per_tensor_gain(self) -> float | None:
        return float(self.gain[0]) if np.all(self.gain == self.gain[0]) else None

    def channel_gain(self) -> np.ndarray:
        return np.broadcast_to(self.gain, (self.channels,))

    def with_(self, **changes) -> EdgeType:
        values = {"type": self.type, "shape": self.shape, "gain": self.gain, **changes}
        return EdgeType(**values)

    def same_as(self, other: EdgeType) -> bool:
        return (self.type == other.type and self.shape == other.shape
                and np.array_equal(np.broadcast_to(self.gain, (self.channels,)),
                                   np.broadcast_to(other.gain, (other.channels,))))

    def describe(self) -> str:
        gain = "" if self.is_fixed_point else (
            f" x{self.gain[0]:.6g}" if self.per_tensor_gain is not None else f" x gain[{self.gain.size}]")
        return f"{'x'.join(map(str, self.shape))} {self.type}{gain}"


# -- reading and writing the annotations ---------------------------------------------------


def _annotation(model: ModelWrapper, tensor: str) -> TensorAnnotation | None:
    for annotation in model.graph.quantization_annotation:
        if annotation.tensor_name == tensor:
            return annotation
    return None


def _entries(annotation: TensorAnnotation | None) -> dict[str, str]:
    if annotation is None:
        return {}
    return {entry.key: entry.value for entry in annotation.quant_parameter_tensor_names}


def has_edge_type(model: ModelWrapper, tensor: str) -> bool:
    return TYPE_KEY in _entries(_annotation(model, tensor))


def read_edge_type(model: ModelWrapper, tensor: str) -> EdgeType | None:
    """The tensor's EdgeType, or None if it has none (a raw QONNX tensor)."""
    entries = _entries(_annotation(model, tensor))
    if TYPE_KEY not in entries:
        return None
    where = f"tensor '{tensor}'"
    try:
        fixed = FixedType.parse(entries[TYPE_KEY])
        shape = tuple(int(d) for d in entries.get(SHAPE_KEY, "").split("x"))
        gain = [float(g) for g in entries[GAIN_KEY].split(",")] if GAIN_KEY in entries else [1.0]
        return EdgeType(fixed, shape, np.asarray(gain))
    except (ValueError, QonnxError) as error:
        raise QonnxError(f"{where}: unreadable hardware-dialect annotation ({error})") from None


def write_edge_type(model: ModelWrapper, tensor: str, edge: EdgeType, *, elem_type: int = TensorProto.INT64) -> None:
    """Store the edge's type (annotation) and shape (value_info with a symbolic batch)."""
    annotation = _annotation(model, tensor)
    if annotation is None:
        annotation = model.graph.quantization_annotation.add()
        annotation.tensor_name = tensor
    kept = [e for e in annotation.quant_parameter_tensor_names if e.key not in (TYPE_KEY, SHAPE_KEY, GAIN_KEY)]
    del annotation.quant_parameter_tensor_names[:]
    annotation.quant_parameter_tensor_names.extend(kept)
    entries = {TYPE_KEY: str(edge.type), SHAPE_KEY: "x".join(map(str, edge.shape))}
    if not edge.is_fixed_point:
        entries[GAIN_KEY] = ",".join(repr(float(g)) for g in edge.gain)  # repr round-trips float64 exactly
    annotation.quant_parameter_tensor_names.extend(StringStringEntryProto(key=k, value=v) for k, v in entries.items())
    if model.get_initializer(tensor) is None and tensor not in {i.name for i in model.graph.input}:
        _set_value_info(model, tensor, ["N", *edge.shape], elem_type)


def remove_edge_type(model: ModelWrapper, tensor: str) -> None:
    annotation = _annotation(model, tensor)
    if annotation is not None:
        model.graph.quantization_annotation.remove(annotation)


def _set_value_info(model: ModelWrapper, tensor: str, dims: list, elem_type: int) -> None:
    info = helper.make_tensor_value_info(tensor, elem_type, dims)
    for collection in (model.graph.value_info, model.graph.output):
        for existing in collection:
            if existing.name == tensor:
                existing.CopyFrom(info)
                return
    model.graph.value_info.append(info)


DATAFLOW_RANKS = {1: "(F,)", 2: "(L, C)", 3: "(H, W, C)"}


def constant_edge(codes: np.ndarray, fixed: FixedType, gain=1.0) -> EdgeType:
    """The EdgeType of a constant (weights, biases): its shape is the array's; gains run along the last axis."""
    return EdgeType(fixed, tuple(np.shape(codes)) or (1,), gain)
