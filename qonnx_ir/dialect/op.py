"""What a hardware-dialect op is: typed attributes, ports, type rules, validation, semantics, cost.

One class per op (in `qonnx_ir/ops/`), registered in `qonnx_ir/dialect/registry.py`:

    class Dense(HwOp):
        op_type = "Dense"
        inputs = (Port("x"), Port("weight", constant=True), Port("bias", constant=True, optional=True))
        reuse_factor = Attr(int, 1, minimum=1, knob=True)      # the attribute's name is spelt once, here

        def infer(self): ...      # output edge types that follow from the inputs
        def validate(self): ...   # everything else a file must satisfy
        def evaluate(self, inputs): ...   # exact integer semantics
        def cost(self, io="parallel"): ...       # MACs, BOPs, weights, and the hardware estimates

An op instance is a view of one NodeProto in a graph (`GraphView`): `op.reuse_factor`
reads the typed attribute, `op.input_edge("x")` the input's EdgeType, `op.constant("weight")`
the integer codes of a constant input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from onnx import AttributeProto, NodeProto, helper

from ..errors import QonnxError
from .edges import EdgeType

if TYPE_CHECKING:
    from .graph import GraphView

DOMAIN = "qonnx_ir.hw"
OPSET = 2  # 1: the flat-chain dialect (types on node attributes); 2: typed edges
REQUIRED = object()

_KINDS = {
    int: AttributeProto.INT, float: AttributeProto.FLOAT, str: AttributeProto.STRING,
    "ints": AttributeProto.INTS, "floats": AttributeProto.FLOATS, "strs": AttributeProto.STRINGS,
}


class Attr:
    """A typed node attribute. Its name is the name it is assigned to on the op class."""

    def __init__(self, kind, default: Any = REQUIRED, *, choices: tuple | None = None, minimum=None, maximum=None,
                 knob: bool = False, doc: str = ""):
        if kind not in _KINDS:
            raise TypeError(f"unknown attribute kind {kind!r}")
        self.kind, self.default, self.choices = kind, default, choices
        self.minimum, self.maximum, self.knob, self.doc = minimum, maximum, knob, doc
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, op, owner=None):
        if op is None:
            return self
        return op.attrs[self.name]

    def check(self, value, where: str):
        """The value normalised to the attribute's kind; QonnxError naming the node otherwise."""
        def bad(why: str):
            return QonnxError(f"attribute {self.name}={value!r} {why}", node=where)

        try:
            if self.kind is int:
                if isinstance(value, bool) or int(value) != value:
                    raise bad("is not an integer")
                value = int(value)
            elif self.kind is float:
                value = float(value)
                if not math.isfinite(value):
                    raise bad("is not finite")
            elif self.kind is str:
                value = value.decode() if isinstance(value, bytes) else str(value)
            elif self.kind == "ints":
                value = tuple(int(v) for v in value)
            elif self.kind == "floats":
                value = tuple(float(v) for v in value)
                if not all(math.isfinite(v) for v in value):
                    raise bad("holds a value that is not finite")
            else:
                value = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in value)
        except (TypeError, ValueError, OverflowError):
            raise bad(f"is not of kind {getattr(self.kind, '__name__', self.kind)}") from None
        items = value if isinstance(value, tuple) else (value,)
        if self.choices is not None and any(v not in self.choices for v in items):
            raise bad(f"is not one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and any(v < self.minimum for v in items):
            raise bad(f"is below {self.minimum}")
        if self.maximum is not None and any(v > self.maximum for v in items):
            raise bad(f"is above {self.maximum}")
        return value

    def read(self, node: NodeProto):
        for attribute in node.attribute:
            if attribute.name == self.name:
                if attribute.type != _KINDS[self.kind]:
                    raise QonnxError(f"attribute {self.name} has the wrong ONNX kind "
                                     f"({AttributeProto.AttributeType.Name(attribute.type)})", node=node.name)
                return self.check(helper.get_attribute_value(attribute), node.name)
        if self.default is REQUIRED:
            raise QonnxError(f"{node.op_type} needs the attribute {self.name}", node=node.name)
        return self.default

    def proto(self, value) -> AttributeProto:
        if self.kind in ("ints", "floats", "strs"):
            return helper.make_attribute(self.name, list(value), attr_type=_KINDS[self.kind])
        return helper.make_attribute(self.name, value, attr_type=_KINDS[self.kind])


@dataclass(frozen=True)
class Port:
    """One input of an op: a data edge, or a constant (an integer initializer with its type)."""

    name: str
    constant: bool = False
    optional: bool = False
    typed: bool = True  # False only for the float graph input that InputQuant reads


class ArithmeticCost:
    """BOPs and weight memory from macs, weight_bits_each, act_bits and n_weights
    (qonnx-inference-cost's definitions): shared by Cost and qonnx_ir.cost.LayerCost."""

    @property
    def bops(self) -> int:
        return self.macs * self.weight_bits_each * self.act_bits

    @property
    def weight_memory_bits(self) -> int:
        return self.n_weights * self.weight_bits_each


@dataclass
class Cost(ArithmeticCost):
    """What one node costs: arithmetic (qonnx-inference-cost's MACs and BOPs), memory, and the
    hardware estimates that follow from its knobs (multipliers, II and latency in cycles)."""

    macs: int = 0
    weight_bits_each: int = 0  # 0 when the node has no weights
    act_bits: int = 0  # bits of the input activation a MAC multiplies
    n_weights: int = 0
    multipliers: int = 0  # multipliers the kernel instantiates (after sharing by the reuse factor)
    ii: int = 1  # initiation interval the pragmas request: cycles per sample (io parallel), per token (io stream)
    latency: int = 0  # cycles from the first input to the last output, as the pragmas request (estimate)


class HwOp:
    """Base class of the hardware-dialect ops (see the module docstring)."""

    op_type: ClassVar[str] = ""
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("y",)
    summary: ClassVar[str] = ""  # one line for `qonnx info` and the docs

    def __init__(self, node: NodeProto, graph: GraphView):
        self.node, self.graph, self.name = node, graph, node.name
        self.attrs = {spec.name: spec.read(node) for spec in self.attribute_specs()}
        known = {spec.name for spec in self.attribute_specs()}
        unknown = [a.name for a in node.attribute if a.name not in known]
        if unknown:
            raise QonnxError(f"{self.op_type} has unknown attribute(s) {', '.join(unknown)}", node=node.name)

    # -- declaration ------------------------------------------------------------------------
    @classmethod
    def attribute_specs(cls) -> list[Attr]:
        specs: dict[str, Attr] = {}
        for klass in reversed(cls.__mro__):
            specs.update({name: value for name, value in vars(klass).items() if isinstance(value, Attr)})
        return list(specs.values())

    @classmethod
    def attribute_spec(cls, name: str) -> Attr:
        return next(spec for spec in cls.attribute_specs() if spec.name == name)

    @classmethod
    def knob_names(cls) -> list[str]:
        return [spec.name for spec in cls.attribute_specs() if spec.knob]

    @classmethod
    def make(cls, name: str, inputs: list[str], outputs: list[str], **attrs) -> NodeProto:
        """A NodeProto of this op; attributes are checked against their declarations."""
        specs = {spec.name: spec for spec in cls.attribute_specs()}
        unknown = sorted(set(attrs) - set(specs))
        if unknown:
            raise TypeError(f"{cls.op_type} has no attribute(s) {unknown}")
        node = helper.make_node(cls.op_type, list(inputs), list(outputs), name=name, domain=DOMAIN)
        for key, value in attrs.items():
            if value is None:
                continue
            node.attribute.append(specs[key].proto(specs[key].check(value, name)))
        return node

    def set_attributes(self, **attrs) -> bool:
        """Write attributes on the node (checked); returns whether anything changed."""
        specs = {spec.name: spec for spec in self.attribute_specs()}
        changed = False
        for key, value in attrs.items():
            value = specs[key].check(value, self.name)
            if self.attrs.get(key) == value and any(a.name == key for a in self.node.attribute):
                continue
            for existing in [a for a in self.node.attribute if a.name == key]:
                self.node.attribute.remove(existing)
            self.node.attribute.append(specs[key].proto(value))
            self.attrs[key] = value
            changed = True
        return changed

    def fit_knob(self, name: str, value):
        """A knob given for every layer, fitted to this one (e.g. a reuse factor capped at the
        layer's products); a value given for this layer alone is taken as it is and validated."""
        return value

    # -- access -----------------------------------------------------------------------------
    def _port_index(self, port: str | int) -> int:
        if isinstance(port, int):
            return port
        for index, spec in enumerate(self.inputs):
            if spec.name == port:
                return index
        raise KeyError(f"{self.op_type} has no input {port!r}")

    def input_name(self, port: str | int) -> str:
        index = self._port_index(port)
        return self.node.input[index] if index < len(self.node.input) else ""

    def has_input(self, port: str | int) -> bool:
        return bool(self.input_name(port))

    def input_edge(self, port: str | int = 0) -> EdgeType:
        name = self.input_name(port)
        edge = self.graph.edge(name)
        if edge is None:
            raise QonnxError(f"input '{name}' has no fixed-point type: the graph is not a valid "
                             "hardware-dialect graph (re-run qonnx transform)", node=self.name)
        return edge

    def constant(self, port: str | int) -> np.ndarray | None:
        """Integer codes of a constant input (int64, or Python ints past 62 bits), or None if absent."""
        name = self.input_name(port)
        return self.graph.constant(name) if name else None

    def output_edge(self, index: int = 0) -> EdgeType:
        name = self.node.output[index]
        edge = self.graph.edge(name)
        if edge is None:
            raise QonnxError(f"output '{name}' has no fixed-point type (re-run qonnx transform)", node=self.name)
        return edge

    def fail(self, message: str) -> QonnxError:
        return QonnxError(message, node=self.name)

    # -- rules, semantics, cost (each op overrides what applies) ----------------------------
    def infer(self) -> list[EdgeType | None]:
        """The output edge types that follow from the inputs; None where the lowering chooses it."""
        return [None] * len(self.outputs)

    def check_output(self, index: int, edge: EdgeType) -> None:
        """Rules for an output whose type the lowering chose (infer gave None)."""

    def validate(self) -> None:
        """Arity, constants, and every stored output type against the type rules."""
        required = [p for p in self.inputs if not p.optional]
        if not len(required) <= len(self.node.input) <= len(self.inputs):
            raise self.fail(f"{self.op_type} takes {len(required)}..{len(self.inputs)} inputs, the node has "
                            f"{len(self.node.input)}")
        if len(self.node.output) != len(self.outputs):
            raise self.fail(f"{self.op_type} has {len(self.outputs)} output(s), the node has {len(self.node.output)}")
        for index, port in enumerate(self.inputs):
            name = self.input_name(index)
            if not name:
                if not port.optional:
                    raise self.fail(f"input {port.name} is missing")
                continue
            if port.constant and self.graph.constant(name) is None:
                raise self.fail(f"input {port.name} ('{name}') must be a constant (an initializer)")
            if not port.constant and name in self.graph.initializers:
                raise self.fail(f"input {port.name} ('{name}') must be data, not a constant")
            if port.typed:
                edge = self.input_edge(index)
                if port.constant:
                    self._check_constant_fits(port, self.graph.constant(name), edge)
        for index, inferred in enumerate(self.infer()):
            stored = self.output_edge(index)
            if inferred is None:
                self.check_output(index, stored)
            elif not inferred.same_as(stored):
                raise self.fail(f"output '{self.node.output[index]}' is stored as {stored.describe()} but its inputs "
                                f"give {inferred.describe()}: the file is inconsistent (re-run qonnx transform)")

    def _check_constant_fits(self, port: Port, codes: np.ndarray, edge: EdgeType) -> None:
        if codes.shape != edge.shape and not (codes.ndim == 0 and edge.shape == (1,)):
            raise self.fail(f"constant {port.name} has shape {codes.shape}, its type says {edge.shape}")
        if codes.size and (codes.min() < edge.type.min_code or codes.max() > edge.type.max_code):
            raise self.fail(f"constant {port.name} holds codes in [{codes.min()}, {codes.max()}] that do not fit "
                            f"its type {edge.type}")
        if edge.type.bipolar and np.any(codes == 0):
            raise self.fail(f"constant {port.name} is bipolar: its codes are -1 or +1")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        """Exact integer semantics: codes of every data input (batch first) -> codes of the outputs."""
        raise NotImplementedError

    def cost(self, io: str = "parallel") -> Cost:
        return Cost(act_bits=self.input_edge(0).type.width if self.inputs else 0)

    def working_values(self) -> int:
        """Values per sample of the largest array `evaluate` builds (the interpreter sizes its batch
        chunks by it): by default its largest data edge; ops that copy more (windows) say so."""
        names = [name for name in [*self.node.input, *self.node.output] if name and name not in self.graph.initializers]
        edges = [self.graph.edge(name) for name in names]
        return max([edge.size for edge in edges if edge is not None], default=1)
