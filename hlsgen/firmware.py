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

    def readers(self, edge: str) -> list[str]:
        """Who reads an edge, in order: consumer layer idents, and "(output)" for the design's output."""
        return [c.ident for c in self.consumers(edge)] + (["(output)"] if edge == self.output else [])

    def fanout(self, edge: str) -> list[tuple[str, str, str]]:
        """io stream: the clone stages an edge read by n > 1 layers needs, as (source, copy, rest)
        streams; the i-th reader reads the i-th copy, the last reader the last rest."""
        variable, readers = self.edge_variable(edge), self.readers(edge)
        chain, source = [], variable
        for index in range(len(readers) - 1):
            copy, rest = f"{variable}_to_{index}", f"{variable}_after_{index}"
            chain.append((source, copy, rest))
            source = rest
        return chain

    def reader_stream(self, edge: str, reader: str) -> str:
        """The stream `reader` reads `edge` from (the edge's own stream, or a clone's copy)."""
        readers, chain = self.readers(edge), self.fanout(edge)
        index = readers.index(reader)
        if not chain:
            return self.edge_variable(edge)
        return chain[index][1] if index < len(chain) else chain[-1][2]

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

    def steps(self, layer: Layer) -> int:
        """Iterations of a layer's stage per sample in io stream: one per token it reads (windows,
        flatten) or writes (pad, upsample), whichever is more."""
        inputs = [tokens_of(self.graph.edge(edge))[0] for edge in layer.inputs] or [self.input_tokens[0]]
        return max(max(inputs), layer.tokens)

    @property
    def interval(self) -> int:
        """Cycles between samples the pragmas request: io parallel, the slowest layer's II; io
        stream, the slowest stage's II times its steps per sample."""
        if self.io == "parallel":
            return max(layer.cost.ii for layer in self.layers)
        return max(layer.cost.ii * self.steps(layer) for layer in self.layers)

    @property
    def latency(self) -> int:
        """Cycles from a sample's first input to its last output, as the pragmas request (estimate):
        io parallel, the layers' depths added up; io stream, the slowest stage's steps (the stages
        overlap, pixel by pixel) plus every stage's depth."""
        depth = sum(layer.cost.latency for layer in self.layers)
        return depth if self.io == "parallel" else self.interval + depth


MIN_FIFO_DEPTH = 2  # a producer writes the next token while its consumer reads this one


def fifo_depths(design: Design) -> dict[tuple[str, str], tuple[int, str]]:
    """io stream: the depth of every join input whose branch arrives early, and why.

    A token's arrival is counted in tokens from the design's input: a window stage adds its fill,
    so where two branches of a fork meet again, the earlier one must hold the difference (plus the
    usual two slots) or the fork would stall on the later one. Capped at a whole sample's tokens.
    """
    arrival: dict[str, int] = {}
    for layer in design.layers:
        start = max((arrival[edge] for edge in layer.inputs), default=0) + layer.delay
        for edge in layer.outputs:
            arrival[edge] = start
    depths = {}
    for layer in design.layers:
        if len(layer.inputs) < 2:
            continue
        latest = max(arrival[edge] for edge in layer.inputs)
        for edge in layer.inputs:
            lag = latest - arrival[edge]
            if lag > 0:
                tokens = tokens_of(design.graph.edge(edge))[0]
                depth = min(max(MIN_FIFO_DEPTH, lag + MIN_FIFO_DEPTH), max(tokens, MIN_FIFO_DEPTH))
                depths[(edge, layer.ident)] = (depth, f"{layer.ident} reads it {lag} tokens before its other input "
                                                      "arrives (the other branch's windows fill first)")
    return depths


def build_design(model, backend) -> Design:
    graph = model if isinstance(model, HwGraph) else HwGraph(model)
    if len(graph.outputs) != 1:
        raise QonnxError(f"HLS generation supports one graph output, this graph has {len(graph.outputs)} "
                         f"({', '.join(graph.outputs)})")
    layers = []
    io = io_style(graph.model)
    for index, op in enumerate(graph.nodes):
        spec = kernel_for(op)
        spec.check_io(op, io)
        ident = identifier(index, op.name)
        data_inputs = [op.input_name(i) for i, port in enumerate(op.inputs)
                       if port.typed and not port.constant and op.input_name(i)]
        tokens, _ = tokens_of(op.output_edge())
        layers.append(Layer(
            ident=ident, node=op.name, op=op.op_type, kernel=spec.kernel(op, ident), header=spec.header_path(),
            config=spec.config(op, backend), arrays=spec.arrays(op, ident), storage=spec.storage(op, ident),
            inputs=data_inputs, outputs=list(op.node.output), cost=op.cost(io), tokens=tokens,
            knobs={name: op.attrs[name] for name in op.knob_names()}, delay=spec.stream_delay(op),
        ))
    return Design(graph, layers, io, graph.outputs[0])
