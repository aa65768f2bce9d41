"""float-bias: float ops after a layer that a pooling stands between, and float biases nothing absorbs.

A float bias (Brevitas' default) stays a float Add after the Dense / Conv (transforms/weights.py),
and an average pool leaves its Div K, so the requantization that follows evaluates them exactly.
Two things can stand in the way:

- a pooling or a Flatten before the quantizer (Conv -> bias -> MaxPool -> ReLU -> Quant, or
  GlobalAveragePool -> Div K -> Flatten -> Quant): these commute with the float ops, so the ops
  move past them - exactly, in real arithmetic:
      max(f(x_1), ..., f(x_k)) = f(max(x_1, ..., x_k))   for a non-decreasing f (Add, Mul > 0, Relu, ...)
      mean(a x_i + b) = a mean(x_i) + b                   for an affine f and a pooling without padding
      flatten(f(x)) = f'(flatten(x))                      f' with each channel's constants repeated
- anything else that is not a float op (a residual Add, a Concat, a Flatten) before a quantizer:
  then the bias is rounded onto the accumulator grid and the deviation reported as a WARNING.
"""

from __future__ import annotations

import numpy as np

from qonnx_ir.dialect import GraphView, is_hw
from qonnx_ir.ops.conv import Conv
from qonnx_ir.ops.dense import Dense

from . import float_chain
from .base import Context, Pass
from .graph import (
    add_float_initializer,
    attribute,
    fresh_name,
    remove_dead_nodes,
    remove_nodes,
    set_edge,
    single_consumer,
    typed,
)
from .weights import bias_codes, constant_or_quantized, store_bias

MAX_POOLS = ("MaxPool", "GlobalMaxPool")
MEAN_POOLS = ("AveragePool", "GlobalAveragePool")
AFFINE = ("mul", "div", "add", "rsub")


class FloatBias(Pass):
    name = "float-bias"
    description = "float ops move past a pooling; a float bias that no requantization can absorb is rounded (WARNING)"
    consumes = ("Add",)

    def apply(self, model, context: Context) -> bool:
        changed = False
        for producer in [n for n in model.graph.node if is_hw(n)]:
            tensor = producer.output[0]
            walk = _walk(model, tensor)
            if walk is None:
                continue
            nodes, ops, blocker = walk
            if blocker is not None and _commutes(model, blocker, ops, typed(model, tensor).channels):
                if blocker.op_type == "Flatten":
                    _repeat_constants(model, nodes, tensor)
                _move_before(model, tensor, nodes, blocker)
                context.report.add(blocker.name, f"{len(nodes)} float op(s) moved past the {blocker.op_type} "
                                                 "(exact: it commutes with them)")
                changed = True
            elif blocker is not None and producer.op_type in ("Dense", "Conv") and ops and ops[0].kind == "add" \
                    and not GraphView(model).op(producer).has_input("bias"):
                _round_bias(model, producer, nodes[0], blocker, context)
                changed = True
        if changed:
            remove_dead_nodes(model)
        return changed


def _walk(model, tensor: str):
    """(float nodes, their ops, the node after them) when float ops after `tensor` end at a node that
    is neither a float op, a quantizer, a Softmax nor the graph output; None otherwise."""
    channels = typed(model, tensor).channels
    nodes, ops = [], []
    while True:
        node = single_consumer(model, tensor)
        if node is None or is_hw(node) or node.op_type in ("Quant", "BipolarQuant", "Trunc", "Softmax"):
            return None
        if node.op_type in float_chain.ELEMENTWISE:
            op = float_chain.read_op(model, node, tensor, channels)
            if op is not None:
                nodes.append(node)
                ops.append(op)
                tensor = node.output[0]
                continue
        if not nodes:
            return None
        return nodes, ops, node


def _commutes(model, pool, ops, channels: int) -> bool:
    if pool.op_type == "Flatten":
        return attribute(pool, "axis", 1) == 1
    if pool.op_type in MAX_POOLS:
        return bool(np.all(float_chain.slope_sign(ops, channels) > 0))
    if pool.op_type in MEAN_POOLS:
        return all(op.kind in AFFINE for op in ops) and not any(attribute(pool, "pads", None) or ()) and \
            str(attribute(pool, "auto_pad", "NOTSET")) in ("NOTSET", "VALID")
    return False


def _move_before(model, tensor: str, nodes, pool) -> None:
    """tensor -> nodes -> pool -> v   becomes   tensor -> pool -> p -> nodes -> v."""
    pooled = fresh_name(model, f"{pool.output[0]}_pooled")
    output, last = pool.output[0], nodes[-1].output[0]
    pool.input[0], pool.output[0] = tensor, pooled
    for index, name in enumerate(nodes[0].input):
        if name == tensor:
            nodes[0].input[index] = pooled
    nodes[-1].output[0] = output
    model.graph.node.remove(pool)
    model.graph.node.insert(list(model.graph.node).index(nodes[0]), pool)
    for info in list(model.graph.value_info):
        if info.name in (last, output):
            model.graph.value_info.remove(info)  # the float shapes changed places; nothing reads them


def _repeat_constants(model, nodes, tensor: str) -> None:
    """Per-channel constants of the float ops, repeated for the flattened (channels-first) order."""
    edge = typed(model, tensor)
    positions = int(np.prod(edge.shape[:-1]))
    if positions == 1:
        return
    for node in nodes:
        for index, name in enumerate(node.input):
            value = constant_or_quantized(model, name)
            if value is None or value.size != edge.channels or value.size == 1:
                continue
            repeated = np.repeat(np.asarray(value, np.float64).reshape(-1), positions)
            node.input[index] = add_float_initializer(model, f"{name}_flattened", repeated)


def _round_bias(model, producer, add, blocker, context: Context) -> None:
    layer = GraphView(model).op(producer)
    other = add.input[1] if add.input[0] == producer.output[0] else add.input[0]
    x, weight = layer.input_edge("x"), layer.input_edge("weight")
    channels = typed(model, producer.output[0]).channels
    bias = np.broadcast_to(np.asarray(constant_or_quantized(model, other), np.float64).reshape(-1), (channels,))
    acc_frac = x.type.frac_bits + weight.type.frac_bits
    acc_gain = float(x.gain[0]) * np.broadcast_to(weight.channel_gain(), (channels,))
    codes = bias_codes(bias, acc_frac, acc_gain, producer.name)
    deviation = float(np.max(np.abs(codes * np.ldexp(acc_gain, -acc_frac) - bias)))
    producer.input.append(store_bias(model, producer.name, codes, acc_frac, acc_gain))
    remove_nodes(model, [add])
    producer.output[0] = add.output[0]  # consumers and a graph output keep reading the same name
    (acc,) = (Dense if producer.op_type == "Dense" else Conv)(producer, GraphView(model)).infer()
    set_edge(model, producer.output[0], acc)
    message = (f"float bias rounded onto the accumulator grid (lsb {float(np.min(np.abs(np.ldexp(acc_gain, -acc_frac)))):.3g}"
               f"): max deviation {deviation:.3g}, because {blocker.op_type} {blocker.name!r} stands between it and "
               "the next quantizer")
    if deviation:
        context.report.warn(producer.name, message)
    else:
        context.report.add(producer.name, message)
