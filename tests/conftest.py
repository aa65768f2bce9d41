"""Options and shared helpers for the whole suite: hand-made QONNX graphs, the zoo models, and a
float64 evaluation of qonnx's Quant written out independently of the code under test.

The helpers are handed to tests through fixtures (no `from conftest import ...`).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from paths import SHARED_MODELS
JET = SHARED_MODELS / "jet_tagging_qkeras_w6a6.onnx"
TFC = SHARED_MODELS / "mnist_tfc_w2a2.onnx"
QUANT_DOMAIN = "qonnx.custom_op.general"


class QonnxGraph:
    """Builds a single-input single-output QONNX graph with onnx.helper, node by node.

        g = QonnxGraph("x", (1, 2))
        q = g.quant("x", scale=2**-4, bits=8)
        y = g.matmul(q, weights=..., weight_scale=2**-3, weight_bits=4)
        model = g.build(y, (1, 3))
    """

    def __init__(self, input_name: str, input_shape: tuple[int, ...]):
        self.input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def constant(self, values, base: str = "c") -> str:
        name = self.fresh(base)
        array = np.asarray(values, dtype=np.float32)
        self.initializers.append(onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], domain: str = "", **attrs) -> str:
        output = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), domain=domain, **attrs))
        return output

    def quant(self, x: str, *, scale, bits: int, signed: bool = True, narrow: bool = False, rounding: str = "ROUND") -> str:
        inputs = [x, self.constant(scale, "scale"), self.constant(0.0, "zeropt"), self.constant(float(bits), "bitwidth")]
        return self.node("Quant", inputs, domain=QUANT_DOMAIN, signed=int(signed), narrow=int(narrow), rounding_mode=rounding)

    def quantized_weight(self, codes, scale, bits: int, signed: bool = True) -> str:
        """Quant(initializer) whose float values are exactly codes * scale (so the codes are known)."""
        values = np.asarray(codes, dtype=np.float64) * np.asarray(scale, dtype=np.float64)
        return self.quant(self.constant(values, "w"), scale=scale, bits=bits, signed=signed)

    def matmul(self, x: str, weight: str) -> str:
        return self.node("MatMul", [x, weight])

    def build(self, output: str, output_shape: tuple[int, ...], opset: int = 11) -> ModelWrapper:
        """The model whose graph output "y" is the tensor `output`."""
        for node in self.nodes:
            node.input[:] = ["y" if name == output else name for name in node.input]
            node.output[:] = ["y" if name == output else name for name in node.output]
        graph = helper.make_graph(
            self.nodes, "hand", [self.input],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))], self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(QUANT_DOMAIN, 1)],
            producer_name="tests",
        )
        return ModelWrapper(model)


def round_half_even(values: np.ndarray) -> np.ndarray:
    """Round to nearest, ties to even, spelt out (no np.round): floor, then decide by the fraction."""
    floor = np.floor(values)
    fraction = values - floor  # exact for |values| < 2**52
    floor_is_odd = np.mod(floor, 2.0) == 1.0
    return np.where((fraction > 0.5) | ((fraction == 0.5) & floor_is_odd), floor + 1.0, floor)


def quant_codes(values, *, scale: float, bits: int, signed: bool, narrow: bool, rounding: str) -> np.ndarray:
    """qonnx Quant with zero point 0, written from its specification: codes of clamp-then-round(x / s)."""
    if signed:
        low, high = -(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1
    else:
        low, high = 0, 2**bits - 1 - (1 if narrow else 0)
    scaled = np.clip(np.asarray(values, dtype=np.float64) / scale, low, high)
    return round_half_even(scaled) if rounding == "ROUND" else np.floor(scaled)


def narrowest_type_fields(low: int, high: int, frac_bits: int) -> tuple[int, int, bool]:
    """(width, int_bits, signed) of the narrowest two's complement / unsigned container of [low, high]."""
    signed = low < 0
    for width in range(1, 200):
        if signed:
            fits = -(2 ** (width - 1)) <= low and high <= 2 ** (width - 1) - 1
        else:
            fits = high <= 2**width - 1
        if fits:
            return width, width - frac_bits, signed
    raise AssertionError("no width found")


def serialized(model: ModelWrapper) -> bytes:
    return model.model.SerializeToString()


def ops(model: ModelWrapper) -> list[str]:
    return [node.op_type for node in model.graph.node]


def data_ops(model: ModelWrapper) -> list[str]:
    """Op types on the data path: every node except quantizers of initializers (weights, biases)."""
    return [node.op_type for node in model.graph.node if model.get_initializer(node.input[0]) is None]


def log2_exact(value: float) -> int:
    mantissa, exponent = math.frexp(value)
    assert mantissa == 0.5, value
    return exponent - 1


@pytest.fixture
def qonnx_graph():
    """The QonnxGraph class (build a hand-made QONNX graph)."""
    return QonnxGraph


@pytest.fixture(scope="session")
def zoo_paths():
    for path in (JET, TFC):
        if not path.is_file():
            pytest.fail(f"zoo model {path} is missing: ../shared must sit beside the repository")
    return {"jet": JET, "tfc": TFC}


class Helpers:
    round_half_even = staticmethod(round_half_even)
    quant_codes = staticmethod(quant_codes)
    narrowest_type_fields = staticmethod(narrowest_type_fields)
    serialized = staticmethod(serialized)
    ops = staticmethod(ops)
    data_ops = staticmethod(data_ops)
    log2_exact = staticmethod(log2_exact)


@pytest.fixture
def helpers():
    return Helpers


def pytest_addoption(parser):
    parser.addoption(
        "--hls-full", action="store_true",
        help="run every lowering-matrix model through all 8 HLS variants (backend x io x reuse), "
             "not the 4 that cover each pairing per model (about 2x the compile time)",
    )
