"""Hardware dialect -> the design: one Layer per node (from its kernel spec), wired by edge names.

The code generator reads only the validated graph (`HwGraph`) and its node attributes; every
knob (reuse factor, strategy, io style) was resolved into them before (`qonnx_ir.dialect.knobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from qonnx_ir.dialect import HwGraph
from qonnx_ir.dialect.knobs import io_style
from qonnx_ir.types import FixedType

from .kernels import Layer, kernel_for
from .kernels.base import tokens_of
from .names import identifier


OUTPUT = "(output)"  # the reader of a graph output edge: the top function's output port


@dataclass(frozen=True)
class OutputPort:
    """One output port of the top function: a graph output, in the graph's output order.

    A design with one output keeps the plain names (`y`, `N_OUT`, `OUT_TOKENS`, `result_t`, ...);
    with several, port k is `y<k>` with `N_OUT<k>`, `OUT<k>_TOKENS`, `result<k>_t`, ... and its
    codes start at value `OUT<k>_OFFSET` of a sample's concatenated outputs (the testbench data
    and the bridge's buffer hold y0's codes, then y1's, ...).
    """

    edge: str  # the graph output edge
    suffix: str  # "" (the only output) or the port's index
    offset: int  # first value of this port in a sample's concatenated outputs
    size: int  # values per sample
    tokens: int  # io stream: tokens per sample
    token_size: int  # io stream: values per token

    @property
    def name(self) -> str:
        return f"y{self.suffix}"

    def constant(self, what: str) -> str:
        """N_OUT<k>, OUT<k>_TOKENS, OUT<k>_TOKEN_SIZE, OUT<k>_OFFSET for what = N, TOKENS, TOKEN_SIZE, OFFSET."""
        return f"N_OUT{self.suffix}" if what == "N" else f"OUT{self.suffix}_{what}"

    def type_name(self, what: str = "") -> str:
        """result<k>_t, result<k>_token_t, result<k>_code_t for what = "", "token", "code"."""
        return f"result{self.suffix}_{what + '_' if what else ''}t"

    @property
    def at(self) -> str:
        """Index prefix of the port's first value in a sample's concatenated outputs ("" for port 0 of 1)."""
        return f"{self.constant('OFFSET')} + " if self.suffix else ""


@dataclass
class Design:
    graph: HwGraph
    layers: list[Layer]
    io: str
    outputs: list[str]  # the graph output edges, in the graph's order

    @property
    def ports(self) -> list[OutputPort]:
        ports, offset = [], 0
        for index, edge in enumerate(self.outputs):
            fields = self.graph.edge(edge)
            tokens, token_size = tokens_of(fields)
            suffix = str(index) if len(self.outputs) > 1 else ""
            ports.append(OutputPort(edge, suffix, offset, fields.size, tokens, token_size))
            offset += fields.size
        return ports

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
        """Who reads an edge, in order: consumer layer idents, and OUTPUT for a graph output."""
        return [c.ident for c in self.consumers(edge)] + ([OUTPUT] if edge in self.outputs else [])

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

    def output_type(self, port: OutputPort) -> FixedType:
        return self.graph.edge(port.edge).type

    @property
    def input_tokens(self) -> tuple[int, int]:
        return tokens_of(self.graph.edge(self.layers[0].outputs[0]))

    @property
    def n_in(self) -> int:
        return self.graph.edge(self.layers[0].outputs[0]).size

    @property
    def n_out(self) -> int:
        """Output values per sample, every port's together."""
        return sum(port.size for port in self.ports)

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
    Several output ports are such a join too (the reader OUTPUT): a consumer that takes a sample's
    outputs together waits for the latest, so an early port's stream holds the difference.
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
                depths[(edge, layer.ident)] = (_depth(design, edge, lag),
                                               f"{layer.ident} reads it {lag} tokens before its other input "
                                               "arrives (the other branch's windows fill first)")
    if len(design.ports) > 1:
        last = max(design.ports, key=lambda port: arrival[port.edge])
        for port in design.ports:
            lag = arrival[last.edge] - arrival[port.edge]
            depth = _depth(design, port.edge, lag)
            if depth > MIN_FIFO_DEPTH:  # (a vector waits in the usual two slots)
                depths[(port.edge, OUTPUT)] = (depth, f"output {port.name} is ready {lag} tokens before output "
                                                      f"{last.name} (a consumer that reads a sample's outputs "
                                                      "together waits for it)")
    return depths


def _depth(design: Design, edge: str, lag: int) -> int:
    tokens = tokens_of(design.graph.edge(edge))[0]
    return min(max(MIN_FIFO_DEPTH, lag + MIN_FIFO_DEPTH), max(tokens, MIN_FIFO_DEPTH))


def build_design(model, backend) -> Design:
    graph = model if isinstance(model, HwGraph) else HwGraph(model)
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
    return Design(graph, layers, io, list(graph.outputs))
