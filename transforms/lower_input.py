"""lower-input: the float graph input and its quantizer -> one InputQuant node.

    have: x -> [Reshape/Flatten] -> [Mul c1 / Add c2 / Sub c2 / Div c1 ...] -> Quant(s, bits)
    want: x -> InputQuant(pre_scale=a, pre_bias=b, out_type=<bits, bits+log2 s>)

with a, b the composed affine map (x*c1 - c2 is exactly x*a + b for one Mul and one
Add/Sub, so the float64 results are identical). A graph whose input reaches a MatMul
without any quantizer gets the configured input type (default fixed<16,6>).
"""

from __future__ import annotations

import numpy as np

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import quant_type

from .base import Context, Pass
from .graph import QUANT_OPS, constant, quant_parameters, remove_nodes, single_consumer

_AFFINE = ("Mul", "Add", "Sub", "Div")


class LowerInput(Pass):
    name = "lower-input"
    description = "graph input [-> flatten -> affine] -> Quant  =>  InputQuant"

    def apply(self, model, context: Context) -> bool:
        graph = model.graph
        source = graph.input[0].name
        if any(n.op_type == "InputQuant" and hw.is_hw(n) for n in graph.node):
            return False
        in_shape = [int(d.dim_value) for d in graph.input[0].type.tensor_type.shape.dim[1:]]
        features = int(np.prod(in_shape)) if in_shape else 1
        scale, bias = np.ones(1), np.zeros(1)
        chain, tensor, flattened = [], source, False
        node = single_consumer(model, tensor)
        while node is not None and (node.op_type in ("Flatten", "Identity") or _is_affine(model, node, tensor)):
            if node.op_type in _AFFINE:
                scale, bias = _compose(model, node, tensor, scale, bias, in_shape, flattened)
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
        else:
            out_type, gain = context.options.input_type, 1.0
            output = tensor if chain else source + "_quantized"
            origin = f"no input quantizer: configured input type {out_type}"
            if not chain:
                for consumer in model.find_consumers(source):
                    consumer.input[list(consumer.input).index(source)] = output
        name = "input_quant"
        new = hw.make_input_quant(
            name, source, output, in_shape=in_shape, out_type=out_type, gain=gain,
            pre_scale=_compact(scale, features), pre_bias=_compact(bias, features),
        )
        remove_nodes(model, chain)
        graph.node.insert(0, new)
        context.report.add(name, f"input {in_shape} -> {out_type} ({origin})")
        return True


def _is_affine(model, node, tensor) -> bool:
    if node.op_type not in _AFFINE:
        return False
    other = [name for name in node.input if name != tensor]
    return len(other) == 1 and constant(model, other[0]) is not None and not (node.op_type == "Div" and node.input[1] == tensor)


def _compose(model, node, tensor, scale, bias, in_shape, flattened):
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    value = constant(model, other)
    shape = (1, int(np.prod(in_shape))) if flattened else (1, *in_shape)
    value = np.broadcast_to(value, shape).reshape(-1)
    if node.op_type == "Mul":
        return scale * value, bias * value
    if node.op_type == "Div":
        return scale / value, bias / value
    if node.op_type == "Add":
        return scale, bias + value
    if node.input[0] == tensor:  # x - c
        return scale, bias - value
    return -scale, value - bias  # c - x


def _compact(values: np.ndarray, features: int) -> np.ndarray:
    values = np.broadcast_to(values, (features,))
    return values[:1] if np.all(values == values[0]) else values
