"""QONNX exports found in the wild lower exactly, or are refused naming the node (issue 9, point 4).

- qonnx's `IntQuant` spelling of Quant;
- QCDQ: Brevitas' `export_onnx_qcdq` (same hardware graph as its QONNX export) and onnxruntime's
  static quantization in QDQ format;
- HAWQ's exporter (domain `hawq2qonnx`: integer weights behind Quant(scale 1), float rescales,
  Round, Trunc), built with onnx.helper the way it writes them;
- older PyTorch export patterns (Transpose / Reshape of weights, opset 11 and IR 6, initializers
  listed as inputs, symbolic output dims, shared scales, BatchNorm with 3-bit activations).

Oracles are independent of the code under test: Brevitas in float64 (`float64_forward`), and
`evaluate` below, a float64 evaluation of the graph's own constants written from the ONNX and
qonnx specifications. Equality is exact (np.array_equal) on many inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from brevitas.export import export_onnx_qcdq
from brevitas_zoo import INPUT_RANGE, MATRIX, export_qonnx_file, float64_forward, make_mlp
from export_graphs import HAWQ, WEIGHT_BITS, hawq_mlp, hawq_mlp_without_activation_quant, qdq_mlp
from onnx import TensorProto, helper, numpy_helper

from qonnx_ir import execute, load
from qonnx_ir.cli import main as qonnx
from qonnx_ir.dialect import read_edge_type
from qonnx_ir.errors import QonnxError
from transforms import PIPELINES, Context, lower, run_passes
from transforms.pipelines import INGEST

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

QUANT_DOMAIN = "qonnx.custom_op.general"
SAMPLES = 2000


# -- oracles and comparisons -------------------------------------------------------------------


def round_half_even(values: np.ndarray) -> np.ndarray:
    floor = np.floor(values)
    fraction = values - floor
    return np.where((fraction > 0.5) | ((fraction == 0.5) & (np.mod(floor, 2.0) == 1.0)), floor + 1.0, floor)


def _quant_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - narrow


def _per_axis(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis] = scale.size
    return scale.reshape(shape)


_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int32): (-(2**31), 2**31 - 1)}


def evaluate(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The graph's value in float64, op by op in file order, from the ONNX / qonnx definitions."""
    graph = proto.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values[graph.input[0].name] = np.asarray(x, dtype=np.float64)
    for node in graph.node:
        a = [values[name] if name else None for name in node.input]
        attrs = {entry.name: helper.get_attribute_value(entry) for entry in node.attribute}
        f = [None if v is None else np.asarray(v, dtype=np.float64) for v in a]
        op = node.op_type
        if op in ("Quant", "IntQuant"):
            low, high = _quant_range(int(f[3]), attrs.get("signed", 1), attrs.get("narrow", 0))
            assert attrs.get("rounding_mode", b"ROUND") == b"ROUND" and not np.any(f[2])
            result = round_half_even(np.clip(f[0] / f[1], low, high)) * f[1]
        elif op == "Trunc":  # qonnx Trunc v1, FLOOR
            assert attrs["rounding_mode"] == b"FLOOR"
            result = np.floor(round_half_even(f[0] / f[1]) / 2.0 ** (f[3] - f[4])) * f[1]
        elif op == "QuantizeLinear":
            zero = a[2] if len(a) > 2 and a[2] is not None else np.uint8(0)
            low, high = _INT_RANGES[zero.dtype]
            scale = _per_axis(f[1], f[0].ndim, attrs.get("axis", 1))
            result = np.clip(round_half_even(f[0] / scale) + np.asarray(zero, np.float64), low, high)
        elif op == "DequantizeLinear":
            scale = _per_axis(f[1], f[0].ndim, attrs.get("axis", 1))
            zero = 0.0 if len(f) < 3 or f[2] is None else _per_axis(f[2], f[0].ndim, attrs.get("axis", 1))
            result = (f[0] - zero) * scale
        elif op == "Clip":  # bounds: inputs since opset 11, attributes before
            low = f[1] if len(f) > 1 and f[1] is not None else attrs.get("min", -np.inf)
            high = f[2] if len(f) > 2 and f[2] is not None else attrs.get("max", np.inf)
            result = np.clip(f[0], low, high)
        elif op == "BatchNormalization":
            shape = (1, -1) + (1,) * (f[0].ndim - 2)
            scale, bias, mean, var = (v.reshape(shape) for v in f[1:5])
            result = (f[0] - mean) / np.sqrt(var + attrs.get("epsilon", 1e-5)) * scale + bias
        elif op == "Reshape":
            target = [d if d != 0 else f[0].shape[i] for i, d in enumerate(a[1].astype(np.int64))]
            result = f[0].reshape(target)
        elif op == "Constant":
            result = numpy_helper.to_array(attrs["value"])
        elif op == "Transpose":
            result = np.transpose(f[0], attrs.get("perm"))
        else:
            result = {"Div": np.divide, "Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "MatMul": np.matmul,
                      "Round": lambda v: round_half_even(v), "Relu": lambda v: np.maximum(v, 0.0)}[op](*f)
        values[node.output[0]] = result
    return values[graph.output[0].name]


def hardware_signature(model) -> list:
    """A lowered graph without its names: per node the op, attributes and, per input and output,
    the constant's values and the edge's type, shape and gain; then the graph's ports."""
    def tensor(name):
        values = model.get_initializer(name)
        edge = read_edge_type(model, name)
        return (None if values is None else (str(values.dtype), values.shape, values.tolist()),
                None if edge is None else (edge.type, edge.shape, np.asarray(edge.gain, np.float64).ravel().tolist()))

    nodes = [(node.op_type, node.domain, sorted((a.name, str(helper.get_attribute_value(a))) for a in node.attribute),
              [tensor(name) for name in node.input], [tensor(name) for name in node.output])
             for node in model.graph.node]
    ports = [(str(value.type.tensor_type), tensor(value.name)[1])
             for value in [*model.graph.input, *model.graph.output]]
    return nodes + ports


def uniform(shape, seed=1, low=-INPUT_RANGE, high=INPUT_RANGE):
    return np.random.default_rng(seed).uniform(low, high, shape)


def lowers_exactly(model, x) -> object:
    """Lower `model` (a ModelProto): exact report, interpreter == float64 evaluation of the graph."""
    lowered, context = lower(load(model))
    assert context.report.exact, str(context.report)
    expected = evaluate(model, x)
    actual = execute(lowered, x)
    assert np.array_equal(actual, expected), f"{int(np.sum(actual != expected))} of {actual.size} outputs differ"
    return lowered


def refused(model) -> str:
    with pytest.raises(QonnxError) as error:
        lower(load(model))
    message = str(error.value)
    assert "\n" not in message
    return message


# -- IntQuant -----------------------------------------------------------------------------------


def _small_mlp(qonnx_graph, rng):
    g = qonnx_graph("x", (1, 6))
    q = g.quant("x", scale=2**-3, bits=6)
    h = g.matmul(q, g.quantized_weight(rng.integers(-8, 8, (6, 7)), 2**-3, bits=4))
    h = g.node("Relu", [h])
    h = g.quant(h, scale=2**-2, bits=4, signed=False)
    y = g.matmul(h, g.quantized_weight(rng.integers(-8, 8, (7, 3)), 2**-4, bits=4))
    return g.build(y, (1, 3))


def test_int_quant_is_read_as_quant(qonnx_graph):
    quant = _small_mlp(qonnx_graph, np.random.default_rng(0))
    int_quant = onnx.ModelProto()
    int_quant.CopyFrom(quant.model)
    for node in int_quant.graph.node:
        if node.op_type == "Quant":
            node.op_type = "IntQuant"
    assert sum(node.op_type == "IntQuant" for node in int_quant.graph.node) == 4
    x = uniform((SAMPLES, 6))
    lowered = lowers_exactly(int_quant, x)
    assert hardware_signature(lowered) == hardware_signature(lower(load(quant))[0])


def test_int_quant_parameters_are_checked_like_quant(qonnx_graph):
    model = _small_mlp(qonnx_graph, np.random.default_rng(0)).model
    model.graph.node[0].op_type = "IntQuant"
    bits = model.graph.node[0].input[3]
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == bits))
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.0), bits))
    with pytest.raises(QonnxError) as error:
        load(model)
    assert str(error.value) == f"node '{model.graph.node[0].name}': bit width 0 is not supported (must be a whole " \
                               "number 1..32)"


# -- QCDQ: Brevitas --------------------------------------------------------------------------

# QCDQ spells 8-bit quantizers as int8/uint8, fewer bits as a Clip of them; Brevitas refuses to export
# bipolar ones, and a 12- or 16-bit one has no 8-bit container: so weights and activations of 2..8 bits.
QCDQ_CONFIGS = [c for c in MATRIX if c.id in (
    "w4a4u-bq16",          # Clip to 4 bits: signed weights, unsigned ReLU activations
    "w2a3s-pc-bq16",       # 2-bit per-channel weights, 3-bit signed activations
    "w8a8u-nr-pc-bq16",    # narrow: signed weights Clip(-127, 127), unsigned activations Clip(0, 254)
    "w8a8s-pc-nobias",     # int8 without a Clip, no bias
    "w4a4u-bq16-bn",       # BatchNorm between the layer and its quantizer
    "w6a3u-nr-bf-bn",      # 3-bit narrow unsigned Clip(0, 6), float bias, BatchNorm
)]


def _export_both(config, tmp_path):
    model = make_mlp(config)
    qonnx_path = export_qonnx_file(model, config.in_features, tmp_path / "model.onnx")
    qcdq_path = tmp_path / "model.qcdq.onnx"
    export_onnx_qcdq(model.eval(), torch.randn(1, config.in_features), export_path=str(qcdq_path), dynamo=False)
    return model, qonnx_path, qcdq_path


def test_qcdq_configs_are_in_the_matrix():
    assert len(QCDQ_CONFIGS) == 6


@pytest.mark.parametrize("config", QCDQ_CONFIGS, ids=lambda c: c.id)
def test_brevitas_qcdq_lowers_to_the_hardware_graph_of_its_qonnx_export(config, tmp_path):
    model, qonnx_path, qcdq_path = _export_both(config, tmp_path)
    ops = {node.op_type for node in onnx.load(str(qcdq_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not ops & {"Quant", "BipolarQuant"}
    from_qcdq, context = lower(load(qcdq_path))
    assert context.report.exact, str(context.report)
    assert hardware_signature(from_qcdq) == hardware_signature(lower(load(qonnx_path))[0])
    x = uniform((SAMPLES, config.in_features))
    assert np.array_equal(execute(from_qcdq, x), float64_forward(model, x))


def test_qonnx_transform_reads_a_qcdq_file(tmp_path):
    config = QCDQ_CONFIGS[0]
    _, qonnx_path, qcdq_path = _export_both(config, tmp_path)
    assert qonnx(["transform", str(qcdq_path), "-o", str(tmp_path / "qcdq.hw.onnx")]) == 0
    assert hardware_signature(load(tmp_path / "qcdq.hw.onnx")) == hardware_signature(lower(load(qonnx_path))[0])


# -- QCDQ: onnxruntime static quantization (QDQ format), and hand-made QDQ -------------------------


def _float_mlp(rng) -> onnx.ModelProto:
    arrays = {"W1": rng.normal(0, 0.3, (16, 24)), "b1": rng.normal(0, 0.1, 24), "W2": rng.normal(0, 0.3, (24, 5)),
              "b2": rng.normal(0, 0.1, 5)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
             helper.make_node("MatMul", ["r", "W2"], ["o"], name="fc2"),
             helper.make_node("Add", ["o", "b2"], ["y"], name="fc2_bias")]
    graph = helper.make_graph(nodes, "float_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_onnxruntime_static_quantization_lowers_exactly(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    onnx.save(_float_mlp(rng), str(tmp_path / "float.onnx"))
    batches = iter([{"x": rng.uniform(-2, 2, (1, 16)).astype(np.float32)} for _ in range(64)])

    class Calibration(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "qdq.onnx"), Calibration(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    qdq = onnx.load(str(tmp_path / "qdq.onnx"))
    dequantized = [n for n in qdq.graph.node if n.op_type == "DequantizeLinear"]
    assert any(any(a.name == "axis" for a in n.attribute) for n in dequantized)  # per-channel int8 weights
    lowered = lowers_exactly(qdq, uniform((SAMPLES, 16)))
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant", "Requant", "Requant", "Dense",
                                                       "Requant", "Requant"]


@pytest.mark.parametrize("variant", [dict(), dict(constant_nodes=True), dict(opset=10)],
                         ids=["initializers", "constant-nodes", "opset-10-clip-attributes"])
def test_hand_made_qdq_with_clip_and_per_channel_weights_lowers_exactly(variant):
    lowered = lowers_exactly(qdq_mlp(**variant), uniform((SAMPLES, 8)))
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant", "Dense"]
    assert read_edge_type(lowered, lowered.graph.input[0].name) is None
    first = next(n for n in lowered.graph.node if n.op_type == "InputQuant")
    assert read_edge_type(lowered, first.output[0]).type.width == 4  # int8 narrowed by Clip(-8, 7)


def test_asymmetric_qdq_is_refused_naming_the_quantizer():
    message = refused(qdq_mlp(zero=np.int8(3), clip=None))
    assert message == ("node 'input_quantize': QuantizeLinear zero point 3 is not 0: asymmetric quantization is not "
                       "supported (quantize symmetrically, e.g. onnxruntime's ActivationSymmetric=True)")


def test_a_clip_that_no_bit_width_spans_is_refused_naming_it():
    message = refused(qdq_mlp(clip=(-100, 100)))
    assert message == ("node 'input_clip': the integer range [-100, 100] is not that of a whole number of bits "
                       "(signed [-2**(b-1), 2**(b-1)-1], unsigned [0, 2**b-1], or their narrow forms): it cannot be "
                       "read as a quantizer")


def test_refusal_through_the_command_line_is_one_line(tmp_path, capsys):
    onnx.save(qdq_mlp(zero=np.int8(3), clip=None), str(tmp_path / "asym.onnx"))
    code = qonnx(["transform", str(tmp_path / "asym.onnx"), "-o", str(tmp_path / "asym.hw.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "node 'input_quantize': QuantizeLinear zero point 3 is not 0" in err
    assert not (tmp_path / "asym.hw.onnx").exists()


# -- HAWQ's exporter ------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [hawq_mlp, hawq_mlp_without_activation_quant])
def test_hawq_export_lowers_to_its_float64_value(build):
    model = build()
    assert {n.domain for n in model.graph.node} == {"", HAWQ}
    lowered = lowers_exactly(model, uniform((SAMPLES, 16), low=-4.0, high=4.0))
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant", "Dense", "Requant", "Dense"]
    dense = [n for n in lowered.graph.node if n.op_type == "Dense"]
    assert all(read_edge_type(lowered, n.input[1]).type.width == bits for n, bits in zip(dense, WEIGHT_BITS))


@pytest.mark.parametrize("build, data_ops", [
    (hawq_mlp, ["Div", "Quant", "MatMul", "Add", "Relu", "Div", "Quant", "MatMul", "Add", "Relu", "Div", "Quant",
                "MatMul", "Add"]),
    (hawq_mlp_without_activation_quant, ["Div", "Quant", "MatMul", "Add", "Div", "Relu", "Quant", "MatMul", "Add",
                                         "Relu", "Trunc", "MatMul", "Add"]),
], ids=["activation-quant", "integer-only"])
def test_hawq_preparation_gives_standard_qonnx(build, data_ops):
    """After the ingest passes and cleanup: Brevitas-like QONNX (no Round, no Mul); a second run changes nothing."""
    model = load(build())
    run_passes(model, PIPELINES["cleanup"], Context())
    assert [n.op_type for n in model.graph.node if model.get_initializer(n.input[0]) is None] == data_ops
    assert {n.domain for n in model.graph.node} == {"", QUANT_DOMAIN}
    before = model.model.SerializeToString()
    assert [step.apply(model, Context()) for step in INGEST] == [False] * len(INGEST)
    assert model.model.SerializeToString() == before


def test_ingest_passes_leave_standard_qonnx_alone(qonnx_graph):
    model = load(_small_mlp(qonnx_graph, np.random.default_rng(0)))
    before = model.model.SerializeToString()
    assert [step.apply(model, Context()) for step in INGEST] == [False] * len(INGEST)
    assert model.model.SerializeToString() == before


def test_hawq_rescale_becomes_the_weight_scale():
    lowered, context = lower(load(hawq_mlp()))
    report = str(context.report)
    for name in ("Mul_0", "Mul_1", "Mul_2"):
        assert f"{name}: float rescale moved into the weight (and bias) quantizer scales" in report
    for name in ("Round_0", "Round_1", "Round_2"):
        assert f"{name}: Round of whole numbers removed (it changes nothing)" in report
    output = read_edge_type(lowered, "global_out")  # the last layer's rescale is its output's gain: exact
    assert np.array_equal(output.gain, numpy_helper.to_array(next(i for i in hawq_mlp().graph.initializer
                                                                   if i.name == "rescale2")).astype(np.float64))


def test_qonnx_transform_reads_a_hawq_file(tmp_path):
    onnx.save(hawq_mlp(), str(tmp_path / "hawq.onnx"))
    assert qonnx(["transform", str(tmp_path / "hawq.onnx"), "-o", str(tmp_path / "hawq.hw.onnx")]) == 0
    x = uniform((500, 16), low=-4.0, high=4.0)
    assert np.array_equal(execute(load(tmp_path / "hawq.hw.onnx"), x), evaluate(hawq_mlp(), x))


def test_hawq_round_of_a_float_without_a_clamp_is_refused_naming_it():
    """HAWQ's older QuantAct: Round(Div(y, s_prev)) before the Quant - a second rounding no quantizer has."""
    model = hawq_mlp()
    nodes = list(model.graph.node)
    quant = next(n for n in nodes if n.name == "Quant_a0")
    model.graph.node.insert(nodes.index(quant), helper.make_node("Round", [quant.input[0]], ["pre_round"],
                                                                 name="Round_pre_a0"))
    quant.input[0] = "pre_round"
    assert refused(model) == (
        "node 'Round_pre_a0': Round could not be lowered: not a quantizer: Round of a value not known to be whole, "
        "with no Clip to the range of b bits beside it (read are Round of whole numbers, and Round + Clip to b bits as "
        "a Quant with scale 1) (also left: 'Quant_b2', 'Quant_w2', 'Quant_b1', 'Quant_w1', 'Relu_0', ...)")


# -- older PyTorch export patterns ------------------------------------------------------------------


def _layers(qonnx_graph, rng, weight, *, in_features=6, out_features=4, opset=11):
    """Quant(x) -> MatMul(x, weight(g, codes, scale)) -> Relu -> Quant -> output, with a hand-built weight path."""
    g = qonnx_graph("x", (1, in_features))
    q = g.quant("x", scale=2**-3, bits=6)
    h = g.matmul(q, weight(g, rng.integers(-7, 8, (in_features, out_features))))
    y = g.quant(g.node("Relu", [h]), scale=2**-2, bits=5, signed=False)
    return g.build(y, (1, out_features), opset=opset)


def _transposed(g, codes):  # PyTorch's Linear weight is (out, in): exported as Quant -> Transpose
    return g.node("Transpose", [g.quantized_weight(codes.T, 2**-3, bits=4)], perm=[1, 0])


def _reshaped_per_tensor(g, codes):  # a flat constant reshaped to (in, out)
    return g.node("Reshape", [g.quantized_weight(codes.ravel(), 2**-3, bits=4),
                              _int64(g, [-1, codes.shape[1]])])


def _reshaped_per_channel(g, codes):  # (in, out, 1) with a scale per output channel, reshaped keeping that axis
    scale = (2.0 ** -np.arange(2, 2 + codes.shape[1])).reshape(1, -1, 1)
    return g.node("Reshape", [g.quantized_weight(codes[:, :, None], scale, bits=4), _int64(g, [0, -1])])


def _int64(g, values):
    name = g.fresh("shape")
    g.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name


@pytest.mark.parametrize("weight", [_transposed, _reshaped_per_tensor, _reshaped_per_channel],
                         ids=["transpose", "reshape-per-tensor", "reshape-per-channel"])
def test_weights_through_transpose_or_reshape(qonnx_graph, weight):
    model = _layers(qonnx_graph, np.random.default_rng(0), weight).model
    lowered = lowers_exactly(model, uniform((SAMPLES, 6)))
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant"]


def test_reshape_that_mixes_weight_channels_is_refused(qonnx_graph):
    def mixed(g, codes):  # (out, in) per output channel, reshaped (not transposed) to (in, out)
        scale = (2.0 ** -np.arange(2, 2 + codes.shape[1])).reshape(-1, 1)
        return g.node("Reshape", [g.quantized_weight(codes.T, scale, bits=4), _int64(g, list(codes.shape))])

    model = _layers(qonnx_graph, np.random.default_rng(0), mixed).model
    (reshape,) = [node.name for node in model.graph.node if node.op_type == "Reshape"]
    assert refused(model) == (f"node '{reshape}': Reshape of a per-channel quantized constant to [6, 4] mixes its "
                              "channels (the scale varies along several axes): reshape the weights before quantizing "
                              "them")


def _ir_6(model):
    model.ir_version = 6  # onnx 1.6 / torch 1.4 era, with opset 11 (the builder's default)


def _initializers_as_inputs(model):  # torch.onnx.export(keep_initializers_as_inputs=True), the pre-IR-4 default
    del model.graph.value_info[:]  # (ModelWrapper declared the initializers; torch's exporter does not)
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))


def _symbolic_output(model):  # dynamic_axes={"x": {0: "batch"}, "y": {0: "batch", 1: "classes"}}
    output = model.graph.output[0].type.tensor_type.shape
    output.dim[0].dim_param, output.dim[1].dim_param = "batch", "classes"
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"


@pytest.mark.parametrize("mutate", [_ir_6, _initializers_as_inputs, _symbolic_output],
                         ids=["opset-11-ir-6", "initializers-as-inputs", "symbolic-output"])
def test_older_pytorch_file_conventions(qonnx_graph, mutate):
    model = _layers(qonnx_graph, np.random.default_rng(1), _transposed, opset=11).model
    mutate(model)
    lowered = lowers_exactly(model, uniform((SAMPLES, 6)))
    assert [value.name for value in lowered.graph.input] == ["x"]
    assert read_edge_type(lowered, "y").shape == (4,)


def test_scale_initializers_shared_by_several_quantizers(qonnx_graph):
    rng = np.random.default_rng(2)
    g = qonnx_graph("x", (1, 6))
    shared = {name: g.constant(value, name) for name, value in (("scale", 2**-3), ("zero", 0.0), ("bits", 4.0))}

    def quant(x, signed=True):
        return g.node("Quant", [x, shared["scale"], shared["zero"], shared["bits"]], domain=QUANT_DOMAIN,
                      signed=int(signed), narrow=0, rounding_mode="ROUND")

    h = g.matmul(quant("x"), quant(g.constant(rng.integers(-8, 8, (6, 5)) * 2**-3, "w")))
    h = quant(g.node("Relu", [h]), signed=False)
    y = g.matmul(h, quant(g.constant(rng.integers(-8, 8, (5, 3)) * 2**-3, "w")))
    model = g.build(y, (1, 3)).model
    assert len({n.input[1] for n in model.graph.node if n.op_type == "Quant"}) == 1
    lowers_exactly(model, uniform((SAMPLES, 6)))


def test_batchnorm_after_matmul_with_3_bit_activations(qonnx_graph):
    rng = np.random.default_rng(4)
    g = qonnx_graph("x", (1, 8))
    h = g.matmul(g.quant("x", scale=2**-3, bits=6), g.quantized_weight(rng.integers(-7, 8, (8, 6)), 2**-3, bits=4))
    parameters = [g.constant(v) for v in (rng.uniform(0.5, 2, 6), rng.normal(0, 1, 6), rng.normal(0, 2, 6),
                                          rng.uniform(1, 8, 6))]
    h = g.node("BatchNormalization", [h, *parameters], epsilon=2.0**-16)
    h = g.quant(g.node("Relu", [h]), scale=2**-1, bits=3, signed=False)
    y = g.matmul(h, g.quantized_weight(rng.integers(-7, 8, (6, 3)), 2**-2, bits=4))
    lowered = lowers_exactly(g.build(y, (1, 3)).model, uniform((SAMPLES, 8), low=-4.0, high=4.0))
    assert [n.op_type for n in lowered.graph.node] == ["InputQuant", "Dense", "Requant", "Dense"]
