"""The typed dataflow graph: a read view of a model (GraphView) and a validated one (HwGraph).

`GraphView` answers the questions passes and ops ask (producer, consumers, an edge's type,
a constant's integer codes) in O(1) after one scan; it never changes the model, so build a
new one after editing. `HwGraph` is a complete hardware-dialect graph, validated node by node
by its op specs: the interpreter, `qonnx info` and the code generator read only this.
"""

from __future__ import annotations

from functools import cached_property

import networkx as nx
import numpy as np
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from ..errors import QonnxError
from ..limits import MAX_CONSTANT_BITS
from .edges import DATAFLOW_RANKS, EdgeType, read_edge_type
from .op import DOMAIN, OPSET, HwOp
from . import registry


LAYOUT_KEY = "hw_layout"


def is_hw(node) -> bool:
    return node.domain == DOMAIN


class GraphView:
    """Queries on a model: producers, consumers, edge types, integer constants (cached)."""

    def __init__(self, model: ModelWrapper):
        self.model = model
        graph = model.graph
        self.producers = {name: node for node in graph.node for name in node.output if name}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.graph_outputs = [output.name for output in graph.output]
        self._edges: dict[str, EdgeType | None] = {}
        self._constants: dict[str, np.ndarray | None] = {}

    def producer(self, tensor: str):
        return self.producers.get(tensor)

    def consumers_of(self, tensor: str) -> list:
        return self.consumers.get(tensor, [])

    def edge(self, tensor: str) -> EdgeType | None:
        if tensor not in self._edges:
            self._edges[tensor] = read_edge_type(self.model, tensor)
        return self._edges[tensor]

    def constant(self, tensor: str) -> np.ndarray | None:
        """An initializer as exact integers (int64); QonnxError if it holds anything else."""
        if tensor not in self._constants:
            init = self.initializers.get(tensor)
            if init is None:
                self._constants[tensor] = None
            else:
                self._constants[tensor] = integer_codes(numpy_helper.to_array(init), tensor)
        return self._constants[tensor]

    def op_class(self, node) -> type[HwOp]:
        op_class = registry.op_class(node.op_type)
        if not is_hw(node) or op_class is None:
            raise QonnxError(f"{node.op_type} ({node.domain or 'ai.onnx'}) is not a hardware-dialect op: "
                             "lower the graph first (qonnx transform)", node=node.name)
        return op_class

    def op(self, node) -> HwOp:
        return self.op_class(node)(node, self)


def integer_codes(values: np.ndarray, tensor: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise QonnxError(f"constant '{tensor}' holds values that are not integer codes")
    elif values.dtype.kind not in "iu":
        raise QonnxError(f"constant '{tensor}' holds {values.dtype} values, not integer codes")
    limit = 2**MAX_CONSTANT_BITS
    if values.size and (np.max(values) >= limit or np.min(values) <= -limit):
        raise QonnxError(f"constant '{tensor}' holds a code wider than {MAX_CONSTANT_BITS} bits")
    codes = values.astype(np.int64)
    codes.setflags(write=False)
    return codes


class HwGraph(GraphView):
    """A validated hardware-dialect graph: every node a registered op, every edge typed.

    `nodes` are the ops in topological order; `input` is the float graph input, `outputs`
    the graph outputs (edges of integer codes).
    """

    def __init__(self, model: ModelWrapper):
        super().__init__(model)
        graph = model.graph
        for node in graph.node:
            self.op_class(node)  # a QONNX node is named before any opset question
        _check_opset(model)
        data_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        if len(data_inputs) != 1:
            raise QonnxError(f"a hardware-dialect graph has one data input, this one has {len(data_inputs)}")
        self.input = data_inputs[0]
        self.outputs = list(self.graph_outputs)
        self.nodes: list[HwOp] = [self.op(node) for node in _topological(graph.node)]
        for op in self.nodes:
            for name in op.node.output:
                edge = self.edge(name)
                if edge is not None and len(edge.shape) not in DATAFLOW_RANKS:
                    raise QonnxError(f"edge '{name}' has shape {edge.shape}: dataflow edges are "
                                     f"{', '.join(DATAFLOW_RANKS.values())}", node=op.name)
            op.validate()
        if not self.nodes or self.nodes[0].op_type != "InputQuant" or self.nodes[0].input_name(0) != self.input:
            raise QonnxError("a hardware-dialect graph starts with one InputQuant on its input (re-run qonnx transform)")
        for output in self.outputs:
            if output not in self.producers:
                raise QonnxError(f"graph output '{output}' is produced by no node")

    def channels_first(self, output: str) -> bool:
        """True when the user's graph gives this output channels first (N, C, ...): the edge inside is
        channels last, and the interpreter and the C simulation hand it back in the user's layout."""
        return any(p.key == f"{LAYOUT_KEY}:{output}" and p.value == "channels_first"
                   for p in self.model.model.metadata_props)

    def to_user_layout(self, output: str, values: np.ndarray) -> np.ndarray:
        return np.moveaxis(values, -1, 1) if self.channels_first(output) and values.ndim > 2 else values

    def to_edge_layout(self, output: str, values: np.ndarray) -> np.ndarray:
        """The inverse of to_user_layout: an output in the user's layout back to the edge's (channels last)."""
        return np.moveaxis(values, 1, -1) if self.channels_first(output) and values.ndim > 2 else values

    @cached_property
    def ops_by_name(self) -> dict[str, HwOp]:
        return {op.name: op for op in self.nodes}

    def producer_op(self, tensor: str) -> HwOp | None:
        node = self.producers.get(tensor)
        return self.ops_by_name.get(node.name) if node is not None else None

    def consumer_ops(self, tensor: str) -> list[HwOp]:
        return [self.ops_by_name[node.name] for node in self.consumers_of(tensor)]


def _check_opset(model: ModelWrapper) -> None:
    versions = {o.domain: o.version for o in model.model.opset_import}
    version = versions.get(DOMAIN)
    if version is None:
        raise QonnxError(f"the model does not import the hardware-dialect domain {DOMAIN}: lower it first (qonnx transform)")
    if version != OPSET:
        raise QonnxError(f"the model uses version {version} of the hardware dialect, this hawq2hls reads version "
                         f"{OPSET}: lower the QONNX model again (qonnx transform)")


def _topological(nodes) -> list:
    """Nodes in an order where every producer comes before its consumers (ties keep file order)."""
    nodes = list(nodes)
    graph = nx.DiGraph()
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    graph.add_nodes_from(range(len(nodes)))
    for index, node in enumerate(nodes):
        for name in node.input:
            if name in producer:
                graph.add_edge(producer[name], index)
    try:
        order = list(nx.lexicographical_topological_sort(graph))
    except nx.NetworkXUnfeasible:
        raise QonnxError("the graph has a cycle") from None
    return [nodes[index] for index in order]
