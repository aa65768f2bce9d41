"""What a model costs: per-layer MACs, BOPs and weight bits (`qonnx info`).

BOPs follow qonnx's `qonnx-inference-cost` (qonnx.util.inference_cost): for every layer
with weights, MACs x bits(weight) x bits(activation input). Biases, BatchNorm, activations
and quantizers cost nothing; an unquantized float tensor counts as 32 bits. MACs are dense
(qonnx's `discount_sparsity=False`): every weight is counted, zero or not.

Two kinds of graph are understood:

- a hardware-dialect graph (`qonnx_ir.hw`): one row per node, types from its attributes,
  batch-free shapes (a Dense weight is (in, out), so MACs = in * out);
- a raw QONNX graph: one row per MatMul / Gemm / Conv. A copy is cleaned up
  (qonnx.util.cleanup.cleanup_model), prepared exactly as `qonnx-inference-cost` prepares
  it (shape and datatype inference, weight quantizers folded into typed initializers) and
  the numbers come from qonnx's own inference-cost analysis.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from qonnx.analysis.inference_cost import inference_cost as qonnx_inference_cost
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.general import GiveUniqueParameterTensors, RemoveStaticGraphInputs, RemoveUnusedTensors
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from .dialect.graph import HwGraph, is_hw
from .dialect.op import ArithmeticCost
from .errors import QonnxError
from .model import load
from .quant import QUANT_OPS, check_quantizer

FLOAT_BITS = 32  # what qonnx counts for a FLOAT32 tensor
NO_TYPE = "-"


@dataclass
class LayerCost(ArithmeticCost):
    name: str
    op: str
    in_shape: tuple[int, ...]  # without the batch dimension
    out_shape: tuple[int, ...]
    in_type: str
    weight_type: str
    accum_type: str
    out_type: str
    macs: int
    weight_bits_each: int  # 0 when the layer has no weights
    act_bits: int
    n_weights: int
    # hardware estimates from the node's knobs (hardware-dialect graphs only)
    multipliers: int = 0
    ii: int = 0
    latency: int = 0


def layer_costs(model: ModelWrapper) -> list[LayerCost]:
    """One LayerCost per hardware layer, in graph order. Never changes `model`."""
    if any(is_hw(node) for node in model.graph.node):
        return _hw_costs(HwGraph(model))
    for node in model.graph.node:  # qonnx's analysis asserts on bad quantizers; say it in one line
        if node.op_type in QUANT_OPS:
            check_quantizer(model, node)
    return _qonnx_costs(model)


# -- hardware dialect --------------------------------------------------------------


def _hw_costs(graph: HwGraph) -> list[LayerCost]:
    rows = []
    for op in graph.nodes:
        cost = op.cost()
        out = op.output_edge()
        first = op.inputs[0] if op.inputs else None
        if first is not None and first.typed:
            x = op.input_edge(0)
            in_shape, in_type = x.shape, str(x.type)
        else:  # InputQuant reads the float graph input
            in_shape, in_type = op.input_shape, "float32"
        weight_port = next((p for p in op.inputs if p.name == "weight"), None)
        weight_type = str(op.input_edge("weight").type) if weight_port is not None else NO_TYPE
        accum_type = str(out.type) if weight_port is not None else NO_TYPE
        rows.append(LayerCost(op.name, op.op_type, tuple(in_shape), out.shape, in_type, weight_type, accum_type,
                              str(out.type), cost.macs, cost.weight_bits_each, cost.act_bits, cost.n_weights,
                              cost.multipliers, cost.ii, cost.latency))
    return rows


def format_edges(graph: HwGraph) -> str:
    """Every edge of a hardware-dialect graph: shape, type, gain, producer and consumers."""
    header = ("edge", "shape", "type", "gain", "from", "to")
    body = []
    for op in graph.nodes:
        for name in op.node.output:
            edge = graph.edge(name)
            gain = "1" if edge.is_fixed_point else (f"{edge.gain[0]:.6g}" if edge.per_tensor_gain is not None
                                                      else f"{edge.gain.size} per channel")
            consumers = [c.name for c in graph.consumers_of(name)] + (["(output)"] if name in graph.outputs else [])
            body.append((name, "x".join(map(str, edge.shape)), _short(str(edge.type)), gain, op.name,
                         ", ".join(consumers)))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- raw QONNX ---------------------------------------------------------------------

_LAYER_OPS = ("MatMul", "Gemm", "Conv")
# ops between a layer and the quantizer that ends it (bias, BatchNorm, activation, reshapes)
_PASS_THROUGH = {"Add", "Sub", "Mul", "Div", "Relu", "BatchNormalization", "Identity", "Reshape", "Flatten",
                 "Transpose", "Clip", "Squeeze", "Unsqueeze"}
_QUANTIZERS = {"Quant", "IntQuant", "BipolarQuant", "MultiThreshold", "Trunc"}


def _prepare(model: ModelWrapper) -> ModelWrapper:
    """A cleaned copy, prepared the way qonnx.util.inference_cost.inference_cost prepares it."""
    copy = cleanup_model(load(model))  # load() copies: cleanup rewrites op domains in place
    for transformation in (
        InferShapes(),
        GiveUniqueParameterTensors(),
        InferDataTypes(allow_scaledint_dtypes=True),
        FoldConstants(exclude_op_types=[]),  # weight quantizers -> typed integer-valued initializers
        RemoveUnusedTensors(),
        RemoveStaticGraphInputs(),
        InferDataTypes(allow_scaledint_dtypes=True),
    ):
        copy = copy.transform(transformation)
    return copy


def _check_shapes(model: ModelWrapper, node) -> None:
    for tensor in (node.input[0], node.input[1], node.output[0]):
        shape = model.get_tensor_shape(tensor)
        if not shape or any(d <= 0 for d in shape):
            raise QonnxError(
                f"tensor '{tensor}' has an unknown or dynamic shape {shape}: give the model input a fixed shape",
                node=node.name,
            )


def _layer_output_type(model: ModelWrapper, node) -> str:
    """The datatype of the quantizer that ends this layer, else of the last tensor reached."""
    tensor = node.output[0]
    while True:
        consumers = model.find_consumers(tensor) or []
        if len(consumers) != 1:
            break
        (consumer,) = consumers
        if consumer.op_type in _QUANTIZERS:
            return model.get_tensor_datatype(consumer.output[0]).name
        if consumer.op_type not in _PASS_THROUGH:
            break
        tensor = consumer.output[0]
    return model.get_tensor_datatype(tensor).name


def _qonnx_costs(model: ModelWrapper) -> list[LayerCost]:
    prepared = _prepare(model)
    layers = [node for node in prepared.graph.node if node.op_type in _LAYER_OPS]
    for node in layers:
        _check_shapes(prepared, node)
    per_node = prepared.analysis(lambda m: qonnx_inference_cost(m, discount_sparsity=False, cost_breakdown=True))
    per_node = per_node["node_cost"]
    rows = []
    for node in layers:
        cost = per_node[node.name]
        in_dtype = prepared.get_tensor_datatype(node.input[0])
        weight_dtype = prepared.get_tensor_datatype(node.input[1])
        macs = sum(v for k, v in cost.items() if k.startswith("op_mac_"))
        n_weights = sum(v for k, v in cost.items() if k.startswith("mem_w_"))
        in_shape = prepared.get_tensor_shape(node.input[0])
        out_shape = prepared.get_tensor_shape(node.output[0])
        rows.append(LayerCost(
            node.name, node.op_type, tuple(in_shape[1:]), tuple(out_shape[1:]),
            in_dtype.name, weight_dtype.name, prepared.get_tensor_datatype(node.output[0]).name,
            _layer_output_type(prepared, node),
            int(round(macs)), weight_dtype.bitwidth(), in_dtype.bitwidth(), int(round(n_weights)),
        ))
    return rows


# -- presentation ------------------------------------------------------------------


def totals(rows: list[LayerCost]) -> dict[str, int]:
    return {
        "macs": sum(r.macs for r in rows),
        "bops": sum(r.bops for r in rows),
        "weights": sum(r.n_weights for r in rows),
        "weight_bits": sum(r.weight_memory_bits for r in rows),
    }


def _short(type_name: str) -> str:
    """fixed<6,2,RND_CONV,SAT> -> fixed<6,2> (the default modes; FixedType.parse reads both)."""
    return type_name.replace(",RND_CONV,SAT>", ">")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def format_table(rows: list[LayerCost]) -> str:
    header = ("layer", "op", "shape", "input", "weight", "accumulator", "output", "MACs", "BOPs", "weight bits")
    body = [
        (r.name, r.op, f"{_shape(r.in_shape)} -> {_shape(r.out_shape)}", _short(r.in_type), _short(r.weight_type),
         _short(r.accum_type), _short(r.out_type), f"{r.macs:,}", f"{r.bops:,}", f"{r.weight_memory_bits:,}")
        for r in rows
    ]
    total = totals(rows)
    footer = ("total", "", "", "", "", "", "", f"{total['macs']:,}", f"{total['bops']:,}", f"{total['weight_bits']:,}")
    widths = [max(len(line[i]) for line in [header, *body, footer]) for i in range(len(header))]
    numeric = range(7, len(header))

    def render(line) -> str:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [render(header), rule, *(render(line) for line in body), rule, render(footer)]
    if not rows:
        lines.insert(2, "(no layers)")
    return "\n".join(lines)


def costs_as_json(rows: list[LayerCost]) -> dict:
    layers = [{**asdict(r), "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
               "bops": r.bops, "weight_memory_bits": r.weight_memory_bits} for r in rows]
    return {"layers": layers, "totals": totals(rows)}


# -- CLI ---------------------------------------------------------------------------

INFO_EXAMPLE = """example:
  qonnx info model.onnx            layer table of a QONNX or hardware-dialect model
  qonnx info model.hw.onnx --json  the same rows and totals as JSON

BOPs = MACs x weight bits x input activation bits (qonnx-inference-cost's definition;
an unquantized float input counts 32 bits, biases are not counted)."""


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = parser.description or "Per-layer shapes, types, MACs, BOPs and weight bits of a model."
    parser.epilog = parser.epilog or INFO_EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", metavar="MODEL", help="a QONNX (.onnx) or hardware-dialect (.hw.onnx) model")
    parser.add_argument("--json", action="store_true", help="print the rows and totals as JSON")


def info_command(args: argparse.Namespace) -> int:
    model = load(args.model)
    rows = layer_costs(model)
    hardware = any(is_hw(node) for node in model.graph.node)
    if args.json:
        report = {"model": str(args.model), **costs_as_json(rows)}
        if hardware:
            graph = HwGraph(model)
            report["edges"] = [{"name": name, "shape": list(graph.edge(name).shape), "type": str(graph.edge(name).type),
                                "gain": [float(g) for g in graph.edge(name).gain]}
                               for op in graph.nodes for name in op.node.output]
        print(json.dumps(report, indent=2))
    else:
        print(format_table(rows))
        if hardware:
            print()
            print(format_edges(HwGraph(model)))
    return 0
