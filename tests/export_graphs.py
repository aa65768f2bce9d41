"""QONNX graphs written the way other exporters write them, built with onnx.helper: hand-made QDQ
(onnxruntime / QCDQ style) and HAWQ's hawq2qonnx export (see transforms/ingest.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Qdq:
    """A hand-made QDQ graph: x -> QuantizeLinear -> [Clip] -> DequantizeLinear -> MatMul(DQ(int8 W)) -> ..."""

    def constant(self, name, value):
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def __init__(self, opset=13):
        self.nodes, self.initializers, self.opset = [], [], opset

    def qdq(self, x, name, scale, zero=np.int8(0), clip=None):
        scale = self.constant(f"{name}_scale", np.float32(scale))
        zero = self.constant(f"{name}_zero", zero)
        self.nodes.append(helper.make_node("QuantizeLinear", [x, scale, zero], [f"{name}_q"], name=f"{name}_quantize"))
        codes = f"{name}_q"
        if clip is not None and self.opset >= 11:
            bounds = [self.constant(f"{name}_clip_{i}", np.int8(v)) for i, v in enumerate(clip)]
            self.nodes.append(helper.make_node("Clip", [codes, *bounds], [f"{name}_clipped"], name=f"{name}_clip"))
            codes = f"{name}_clipped"
        elif clip is not None:
            self.nodes.append(helper.make_node("Clip", [codes], [f"{name}_clipped"], name=f"{name}_clip",
                                               min=float(clip[0]), max=float(clip[1])))
            codes = f"{name}_clipped"
        self.nodes.append(helper.make_node("DequantizeLinear", [codes, scale, zero], [f"{name}_dq"],
                                           name=f"{name}_dequantize"))
        return f"{name}_dq"

    def weight(self, name, codes, scale, axis=None):
        inputs = [self.constant(f"{name}_int8", codes.astype(np.int8)), self.constant(f"{name}_scale", scale)]
        self.nodes.append(helper.make_node("DequantizeLinear", inputs, [f"{name}_dq"], name=f"{name}_dequantize",
                                           **({} if axis is None else {"axis": axis})))
        return f"{name}_dq"

    def node(self, op, inputs, name):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name))
        return name

    def build(self, output, outputs):
        for node in self.nodes:
            node.output[:] = ["y" if o == output else o for o in node.output]
        graph = helper.make_graph(self.nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])],
                                  self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=8)


def qdq_mlp(zero=np.int8(0), clip=(-8, 7), constant_nodes=False, opset=13):
    rng = np.random.default_rng(3)
    g = Qdq(opset)
    x = g.qdq("x", "input", 2**-4, zero=zero, clip=clip)
    h = g.node("MatMul", [x, g.weight("w1", rng.integers(-100, 100, (8, 6)), np.float32(2**-7))], "fc1")
    h = g.node("Relu", [h], "relu1")
    h = g.qdq(h, "act1", 2**-2)
    scales = (2.0 ** -rng.integers(5, 9, 4)).astype(np.float32)
    per_channel = opset >= 13  # DequantizeLinear's axis came with opset 13
    w2 = g.weight("w2", rng.integers(-127, 128, (6, 4)), scales if per_channel else scales[:1],
                  axis=1 if per_channel else None)
    model = g.build(g.node("MatMul", [h, w2], "fc2"), 4)
    if constant_nodes:  # torch.onnx.export writes the input quantizer's parameters as Constant nodes
        for name in ("input_scale", "input_zero", "input_clip_0", "input_clip_1"):
            init = next(i for i in model.graph.initializer if i.name == name)
            model.graph.initializer.remove(init)
            model.graph.node.insert(0, helper.make_node("Constant", [], [name], name=f"{name}_constant", value=init))
    return model


HAWQ = "hawq2qonnx"


class Hawq:
    """Graphs as HAWQ's ExportManager writes them (see transforms/ingest.py): opset 11, domain hawq2qonnx."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers = [], []

    def constant(self, name, value):
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op, inputs, name, domain="", **attrs):
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, domain=domain, **attrs))
        return f"{name}_out"

    def quant(self, x, scale, bits, name, signed=1):
        inputs = [x, self.constant(f"{name}_scale", scale), self.constant(f"{name}_zero_point", 0.0),
                  self.constant(f"{name}_bit_width", float(bits))]
        return self.node("Quant", inputs, name, HAWQ, signed=signed, narrow=0, rounding_mode="ROUND")

    def linear(self, x, index, fan_in, fan_out, weight_bits):
        """Div back to codes is the caller's; MatMul(Quant(W_int, 1)) + Quant(b_int, 1), Round."""
        weights = self.rng.integers(-(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1), (fan_in, fan_out))
        bias = self.rng.integers(-3000, 3000, fan_out)
        w = self.quant(self.constant(f"fc{index}.weight", weights), 1.0, weight_bits, f"Quant_w{index}")
        b = self.quant(self.constant(f"fc{index}.bias", bias), 1.0, 32, f"Quant_b{index}")
        y = self.node("Add", [self.node("MatMul", [x, w], f"MatMul_{index}"), b], f"Add_{index}")
        return self.node("Round", [y], f"Round_{index}")

    def build(self, output, fan_out) -> onnx.ModelProto:
        for node in self.nodes:
            node.output[:] = ["global_out" if o == output else o for o in node.output]
        graph = helper.make_graph(self.nodes, "hawq", [helper.make_tensor_value_info("global_in", TensorProto.FLOAT,
                                                                                     [1, 16])],
                                  [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, fan_out])],
                                  self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11), helper.make_opsetid(HAWQ, 1)],
                                 ir_version=6)


WIDTHS, WEIGHT_BITS = (16, 24, 12, 5), (6, 4, 8)


def hawq_mlp(seed=0) -> onnx.ModelProto:
    """The current exporter: activation Quant(x, s_a) then Div(s_a) in each layer, Mul(s_w * s_a) after
    its Round (per output channel in layers 1 and 3, per tensor in 2), realistic float scales."""
    g = Hawq(seed)
    s_in = np.float32(0.0314)
    x = g.node("Div", [g.quant("global_in", s_in, 8, "Quant_in"), g.constant("div_in", s_in)], "Div_in")
    s_prev = s_in
    for index, (fan_in, fan_out, bits) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:], WEIGHT_BITS)):
        y = g.linear(x, index, fan_in, fan_out, bits)
        s_w = g.rng.uniform(0.005, 0.02, fan_out if index != 1 else 1).astype(np.float32)
        y = g.node("Mul", [y, g.constant(f"rescale{index}", (s_w * s_prev).astype(np.float32))], f"Mul_{index}")
        if index == len(WEIGHT_BITS) - 1:
            return g.build(y, fan_out)
        y = g.node("Relu", [y], f"Relu_{index}")
        s_prev = np.float32(g.rng.uniform(0.02, 0.2))
        x = g.node("Div", [g.quant(y, s_prev, 8, f"Quant_a{index}"), g.constant(f"div_a{index}", s_prev)],
                   f"Div_a{index}")


def hawq_mlp_without_activation_quant(seed=1) -> onnx.ModelProto:
    """The integer-only style: Div(s) + Round + Clip at the input, a float rescale then Round + Clip to 8 bits
    after layer 1, a Trunc (qonnx Trunc v1, FLOOR: 16 -> 8 bits) after layer 2, Mul(s) at the output."""
    g = Hawq(seed)
    x = g.node("Round", [g.node("Div", ["global_in", g.constant("div_in", np.float32(0.0314))], "Div_in")], "Round_in")
    x = g.node("Clip", [x, g.constant("clip_in_low", -128), g.constant("clip_in_high", 127)], "Clip_in")
    y = g.linear(x, 0, 16, 24, 6)
    y = g.node("Mul", [y, g.constant("rescale0", g.rng.uniform(1e-3, 4e-3, 24).astype(np.float32))], "Mul_0")
    y = g.node("Div", [y, g.constant("po2_0", 2.0**-2)], "Div_0")
    y = g.node("Round", [g.node("Relu", [y], "Relu_0")], "Round_a0")
    x = g.node("Clip", [y, g.constant("clip_low0", -128), g.constant("clip_high0", 127)], "Clip_a0")
    y = g.node("Relu", [g.linear(x, 1, 24, 12, 4)], "Relu_1")
    trunc = [y, *(g.constant(f"trunc_{what}", value)
                  for what, value in (("scale", 1.0), ("zero", 0.0), ("in_bits", 16.0), ("out_bits", 8.0)))]
    x = g.node("Trunc", trunc, "Trunc_1", HAWQ, rounding_mode="FLOOR")
    y = g.linear(x, 2, 12, 5, 8)
    return g.build(g.node("Mul", [y, g.constant("rescale2", g.rng.uniform(1e-3, 4e-3, 5).astype(np.float32))],
                          "Mul_2"), 5)
