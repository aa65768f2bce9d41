"""lower-input: the float graph input and its quantizer -> one InputQuant node.

    have: x -> [Flatten] -> [Mul c1 / Add c2 / Sub c2 / Div c1 ...] -> Quant(s, bits)
    want: x -> InputQuant(pre_ops=[(mul, c1), (sub, c2), ...]) -> q:<bits, bits+log2 s>

The float ops are kept in graph order, not composed, so the float64 results are
identical to the graph's (x*(1/s) is not x/s in floating point). A graph whose input
reaches its first MatMul without any quantizer gets the configured input type
(default fixed<16,6>).
"""

from __future__ import annotations

import numpy as np

from qonnx_ir.dialect import EdgeType, is_hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.ops.input_quant import InputQuant, to_channels_last
from qonnx_ir.types import quant_type

from .base import Context, Pass
from .graph import (
    QUANT_OPS,
    constant,
    fresh_name,
    quant_parameters,
    remove_nodes,
    set_edge,
    single_consumer,
)

_AFFINE = ("Mul", "Add", "Sub", "Div")


class LowerInput(Pass):
    name = "lower-input"
    description = "graph input [-> flatten -> affine] -> Quant  =>  InputQuant"
    consumes = ("Quant", "BipolarQuant", "Mul", "Div", "Add", "Sub")
    produces = ("InputQuant",)

    def apply(self, model, context: Context) -> bool:
        graph = model.graph
        source = graph.input[0].name
        if any(n.op_type == "InputQuant" and is_hw(n) for n in graph.node):
            return False
        in_shape = [int(d.dim_value) for d in graph.input[0].type.tensor_type.shape.dim[1:]]
        features = int(np.prod(in_shape)) if in_shape else 1
        pre_ops: list[tuple[str, np.ndarray]] = []
        chain, tensor, flattened = [], source, False
        node = single_consumer(model, tensor)
        while node is not None and (node.op_type in ("Flatten", "Identity") or _is_affine(model, node, tensor)):
            if node.op_type in _AFFINE:
                pre_ops.append(_pre_op(model, node, tensor, in_shape, flattened, features))
            flattened |= node.op_type == "Flatten"
            chain.append(node)
            tensor = node.output[0]
            node = single_consumer(model, tensor)
        if node is not None and node.op_type in QUANT_OPS and node.input[0] == tensor:
            params = quant_parameters(model, node)
            if params["scale"].size != 1:
                raise QonnxError("the input quantizer must have one scale (per tensor)", node=node.name)
            out_type, gain = quant_type(
                params["bits"], params["signed"], params["narrow"], params["rounding"], float(params["scale"].ravel()[0]), node.name
            )
            chain.append(node)
            output = node.output[0]
            origin = f"quantizer {node.name}"
            name = node.name
        elif node is not None and node.op_type in ("MatMul", "Gemm", "Conv") and node.input[0] == tensor:
            out_type, gain = context.options.input_type, 1.0
            output = tensor if chain else fresh_name(model, source + "_quantized")
            origin = f"no input quantizer: configured input type {out_type}"
            name = fresh_name(model, "input_quant")
            if not chain:
                node.input[0] = output
        else:
            stop = node.name if node is not None else source
            context.skip(stop, "the graph input reaches neither a quantizer nor a first layer through "
                               "Flatten/Identity/constant Mul/Add/Sub/Div (run fold-input-plumbing first?)")
            return False
        # an image or a sequence (N, C, ...) not flattened first stays one: channels last inside
        channels_first = len(in_shape) > 1 and not flattened
        new = InputQuant.make(name, [source], [output], pre_ops=[kind for kind, _ in pre_ops],
                              pre_sizes=[int(np.size(v)) for _, v in pre_ops],
                              pre_values=[float(v) for _, values in pre_ops for v in np.ravel(values)],
                              layout="channels_first" if channels_first else None)
        remove_nodes(model, chain)
        graph.node.insert(0, new)
        shape = to_channels_last(tuple(in_shape)) if channels_first else (features,)
        set_edge(model, output, EdgeType(out_type, shape, gain))
        context.report.add(name, f"input {in_shape} -> {out_type} ({origin})")
        return True


def _is_affine(model, node, tensor) -> bool:
    if node.op_type not in _AFFINE:
        return False
    other = [name for name in node.input if name != tensor]
    return len(other) == 1 and constant(model, other[0]) is not None and not (node.op_type == "Div" and node.input[1] == tensor)


def _pre_op(model, node, tensor, in_shape, flattened, features) -> tuple[str, np.ndarray]:
    """One float op in front of the quantizer, kept as it is so float64 results are identical."""
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    value = constant(model, other)
    shape = (1, features) if flattened else (1, *in_shape)
    value = np.broadcast_to(value, shape).reshape(-1)
    if np.all(value == value[0]):
        value = value[:1]
    kind = node.op_type.lower()
    if node.op_type == "Sub" and node.input[0] != tensor:
        kind = "rsub"  # c - x
    return kind, value
