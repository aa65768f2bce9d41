"""Hardware dialect -> the design: one Layer per node (from its kernel spec), wired by edge names.

The code generator reads only the validated graph (`HwGraph`) and its node attributes; every
knob (reuse factor, strategy, io style) was resolved into them before (`qonnx_ir.dialect.knobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from qonnx_ir.dialect import HwGraph
from qonnx_ir.dialect.knobs import io_style
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import FixedType

from .kernels import Layer, kernel_for
from .kernels.base import tokens_of
from .names import identifier


@dataclass
class Design:
    graph: HwGraph
    layers: list[Layer]
    io: str
    output: str  # the graph output edge

    @property
    def producer(self) -> dict[str, Layer]:
        return {edge: layer for layer in self.layers for edge in layer.outputs}

    def consumers(self, edge: str) -> list[Layer]:
        return [layer for layer in self.layers if edge in layer.inputs]

    def edge_variable(self, edge: str) -> str:
        layer = self.producer[edge]
        index = layer.outputs.index(edge)
        return f"{layer.ident}_out" if index == 0 else f"{layer.ident}_out{index}"

    @property
    def input_type(self) -> FixedType:
        return self.graph.edge(self.layers[0].outputs[0]).type

    @property
    def output_type(self) -> FixedType:
        return self.graph.edge(self.output).type

    @property
    def input_tokens(self) -> tuple[int, int]:
        return tokens_of(self.graph.edge(self.layers[0].outputs[0]))

    @property
    def output_tokens(self) -> tuple[int, int]:
        return tokens_of(self.graph.edge(self.output))

    @property
    def n_in(self) -> int:
        return self.graph.edge(self.layers[0].outputs[0]).size

    @property
    def n_out(self) -> int:
        return self.graph.edge(self.output).size

    @property
    def interval(self) -> int:
        """Cycles between samples the pragmas request: io parallel, the slowest layer's II; io
        stream, the slowest stage's II times its tokens per sample."""
        if self.io == "parallel":
            return max(layer.cost.ii for layer in self.layers)
        return max(layer.cost.ii * layer.tokens for layer in self.layers)

    @property
    def latency(self) -> int:
        """Cycles from a sample's first input to its last output, as the pragmas request (estimate)."""
        return sum(layer.cost.latency for layer in self.layers)


def build_design(model, backend) -> Design:
    graph = model if isinstance(model, HwGraph) else HwGraph(model)
    if len(graph.outputs) != 1:
        raise QonnxError(f"HLS generation supports one graph output, this graph has {len(graph.outputs)} "
                         f"({', '.join(graph.outputs)})")
    layers = []
    for index, op in enumerate(graph.nodes):
        spec = kernel_for(op)
        ident = identifier(index, op.name)
        data_inputs = [op.input_name(i) for i, port in enumerate(op.inputs)
                       if port.typed and not port.constant and op.input_name(i)]
        tokens, _ = tokens_of(op.output_edge())
        layers.append(Layer(
            ident=ident, node=op.name, op=op.op_type, kernel=spec.kernel(op, ident), header=spec.header_path(),
            config=spec.config(op, backend), arrays=spec.arrays(op, ident), storage=spec.storage(op, ident),
            inputs=data_inputs, outputs=list(op.node.output), cost=op.cost(), tokens=tokens,
            knobs={name: op.attrs[name] for name in op.knob_names()},
        ))
    return Design(graph, layers, io_style(graph.model), graph.outputs[0])
