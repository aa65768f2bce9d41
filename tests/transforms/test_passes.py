"""Each pass alone: the structure it produces, the numbers before and after, idempotence,
and "does not apply -> False".

Numbers are checked against independent oracles: qonnx's own executor run in float64
(`execute_qonnx`) on the graph before the pass, and a float64 evaluation of qonnx's Quant
written out in conftest.py (`quant_codes`, round half to even spelt without np.round).
Equality is exact (np.array_equal) wherever the contract is exactness.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from qonnx_ir import execute, load
from qonnx_ir.dialect import GraphView, is_hw, read_edge_type
from qonnx_ir.quant import attribute
from qonnx_ir.errors import QonnxError
from qonnx_ir.reference import execute_qonnx
from qonnx_ir.types import FixedType, Saturation
from transforms import PASSES, Context, LoweringOptions, lower, run_passes

pytestmark = pytest.mark.filterwarnings("ignore:Some old-style domain attributes")

LAYER_GROUP = [["lower-dense", "lower-requant"]]


def apply(model: ModelWrapper, name: str, context: Context | None = None) -> bool:
    return PASSES[name].apply(model, context or Context())


def prepared(source, names: list[str], context: Context | None = None) -> ModelWrapper:
    """A copy of `source` with the named passes applied once each, in order."""
    model = load(source)
    for name in names:
        apply(model, name, context)
    return model


def hw_nodes(model, op_type):
    return [node for node in model.graph.node if is_hw(node) and node.op_type == op_type]


def edge_type(model, tensor):
    """The fixed-point type stored on an edge (or a constant) of a lowered graph."""
    return read_edge_type(model, tensor).type


def copy_model(model: ModelWrapper) -> ModelWrapper:
    return ModelWrapper(copy.deepcopy(model.model))


# The data path of the two zoo models after cleanup (weight quantizers aside: 4 in TFC, 8 in the jet tagger).
TFC_DATA_OPS = (
    ["Reshape", "Mul", "Sub", "Quant"]
    + ["MatMul", "BatchNormalization", "Quant"] * 3
    + ["MatMul", "Sub", "Div", "Mul", "Add"]  # the last BatchNorm, exported decomposed
)
JET_DATA_OPS = ["MatMul", "Add", "Relu", "Quant"] * 3 + ["MatMul", "Add", "Softmax"]


# ==================================================================================
# (a) + (b): structure and numbers, pass by pass
# ==================================================================================


def test_cleanup_folds_shape_plumbing_keeps_names_and_numbers(zoo_paths, helpers):
    raw = load(zoo_paths["tfc"])
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Pow", "Transpose"} <= set(helpers.ops(raw))
    model = copy_model(raw)
    assert apply(model, "cleanup") is True
    assert helpers.data_ops(model) == TFC_DATA_OPS
    assert helpers.ops(model).count("Quant") == 4 + 4  # weight quantizers (Transpose folded into them) + data path
    assert {n.name for n in model.graph.node} <= {n.name for n in raw.graph.node}  # the file's names are kept
    assert model.graph.input[0].name == raw.graph.input[0].name
    x = np.random.default_rng(0).uniform(0, 1, (200, 1, 28, 28))
    (before,), (after,) = execute_qonnx(raw, x).values(), execute_qonnx(model, x).values()
    assert after.dtype == np.float64
    assert np.array_equal(before, after)


def test_cleanup_of_the_jet_tagger(zoo_paths, helpers):
    raw = load(zoo_paths["jet"])
    model = copy_model(raw)
    apply(model, "cleanup")
    assert helpers.data_ops(model) == JET_DATA_OPS
    assert helpers.ops(model).count("Quant") == 8 + 3
    x = np.round(np.random.default_rng(1).normal(0, 3, (200, 16)) * 2**10) * 2**-10
    (before,), (after,) = execute_qonnx(raw, x).values(), execute_qonnx(model, x).values()
    assert np.array_equal(before, after)


def test_fold_input_plumbing_turns_the_tfc_reshape_into_flatten(zoo_paths, helpers):
    # On the raw file (shapes inferred, nothing else): the Shape/Gather/Unsqueeze/Concat
    # arithmetic is folded and the batch-freezing Reshape(x, [1, -1]) becomes Flatten(axis=1).
    raw = load(zoo_paths["tfc"]).transform(InferShapes())
    model = copy_model(raw)
    assert apply(model, "fold-input-plumbing") is True
    assert not {"Shape", "Gather", "Unsqueeze", "Concat", "Pow", "Reshape"} & set(helpers.ops(model))
    (flatten,) = [n for n in model.graph.node if n.op_type == "Flatten"]
    assert flatten.input[0] == model.graph.input[0].name
    assert [a.i for a in flatten.attribute if a.name == "axis"] == [1]
    x = np.random.default_rng(2).uniform(0, 1, (200, 1, 28, 28))
    (before,), (after,) = execute_qonnx(raw, x).values(), execute_qonnx(model, x).values()
    assert np.array_equal(before, after)


def test_fold_input_plumbing_after_cleanup_only_replaces_the_reshape(zoo_paths, helpers):
    cleaned = prepared(zoo_paths["tfc"], ["cleanup"])
    model = copy_model(cleaned)
    assert apply(model, "fold-input-plumbing") is True
    assert helpers.data_ops(model) == ["Flatten"] + TFC_DATA_OPS[1:]
    x = np.random.default_rng(3).uniform(0, 1, (100, 1, 28, 28))
    (before,), (after,) = execute_qonnx(cleaned, x).values(), execute_qonnx(model, x).values()
    assert np.array_equal(before, after)


def test_fold_input_plumbing_alone_on_the_raw_tfc_file(zoo_paths, helpers):
    model = load(zoo_paths["tfc"])
    apply(model, "fold-input-plumbing")
    assert "Flatten" in helpers.ops(model) and "Shape" not in helpers.ops(model)


def _gemm_graph(qonnx_graph, weights, alpha=1.0, beta=1.0, opset=9):
    in_features = weights.shape[1]
    g = qonnx_graph("x", (1, in_features))
    q = g.quant("x", scale=2**-4, bits=8)
    w = g.quantized_weight(weights, 2**-3, 4)  # (out, in): Gemm with transB=1, as Keras/PyTorch export
    c = g.constant(np.arange(weights.shape[0]) * 2**-6 - 2**-3)
    y = g.node("Gemm", [q, w, c], transB=1, alpha=alpha, beta=beta)
    return g.build(y, (1, weights.shape[0]), opset=opset)


def test_gemm_to_matmul_gives_transpose_matmul_add_with_identical_numbers(qonnx_graph, helpers):
    weights = np.random.default_rng(4).integers(-8, 8, (3, 5))
    original = _gemm_graph(qonnx_graph, weights)
    model = copy_model(original)
    assert apply(model, "gemm-to-matmul") is True
    assert helpers.ops(model) == ["Quant", "Quant", "Transpose", "MatMul", "Add"]
    x = np.random.default_rng(5).normal(0, 3, (500, 5))
    before, after = execute_qonnx(original, x)["y"], execute_qonnx(model, x)["y"]
    assert np.array_equal(before, after)  # dyadic values: float64 is exact, any order


def test_gemm_with_alpha_or_beta_is_refused_with_a_clear_error(qonnx_graph):
    weights = np.random.default_rng(4).integers(-8, 8, (3, 5))
    model = copy_model(_gemm_graph(qonnx_graph, weights, alpha=0.5, beta=2.0))
    with pytest.raises(QonnxError, match="alpha or beta other than 1 is not supported"):
        apply(model, "gemm-to-matmul")


@pytest.mark.parametrize("shape", [(4, 4), (3, 5)], ids=["square", "3x5"])
def test_lowered_gemm_with_transposed_weights_computes_the_gemm(qonnx_graph, helpers, shape):
    # GemmToMatMul emits Transpose without `perm` (ONNX: reverse the axes); a square weight
    # matrix used untransposed would go unnoticed by any shape check.
    weights = np.random.default_rng(6).integers(-8, 8, shape)
    original = _gemm_graph(qonnx_graph, weights)
    lowered, _ = lower(original)
    assert helpers.ops(lowered) == ["InputQuant", "Dense"]
    (dense,) = hw_nodes(lowered, "Dense")
    assert np.array_equal(lowered.get_initializer(dense.input[1]), weights.T)
    x = np.random.default_rng(7).normal(0, 3, (300, shape[1]))
    assert np.array_equal(execute(lowered, x), execute_qonnx(original, x)["y"])


def test_lower_input_folds_flatten_and_affine_preprocessing_of_tfc(zoo_paths, helpers):
    cleaned = prepared(zoo_paths["tfc"], ["cleanup", "fold-input-plumbing"])
    # what the graph says, read independently of the pass
    by_type = {n.op_type: n for n in reversed(cleaned.graph.node) if n.op_type in ("Mul", "Sub")}  # first ones
    input_quant = [n for n in cleaned.graph.node if n.op_type == "Quant"][4]
    scale = cleaned.get_initializer(input_quant.input[1]).item()
    bits = int(cleaned.get_initializer(input_quant.input[3]).item())
    model = copy_model(cleaned)
    assert apply(model, "lower-input") is True
    assert helpers.data_ops(model) == ["InputQuant"] + TFC_DATA_OPS[4:]
    (node,) = hw_nodes(model, "InputQuant")
    out_type = edge_type(model, node.output[0])
    assert out_type.lsb == scale and out_type.width == bits and out_type.saturation is Saturation.SAT_SYM
    assert [(kind, list(values)) for kind, values in GraphView(model).op(node).pre_op_list()] == [
        ("mul", [cleaned.get_initializer(by_type["Mul"].input[1]).item()]),
        ("sub", [cleaned.get_initializer(by_type["Sub"].input[1]).item()]),
    ]
    assert GraphView(model).op(node).input_shape == (1, 28, 28)
    assert node.output[0] == input_quant.output[0]  # the first MatMul now reads the InputQuant


@pytest.mark.parametrize("input_type", [None, "fixed<12,4>", "ufixed<8,1,TRN>"])
def test_lower_input_without_quantizer_uses_the_configured_type(zoo_paths, helpers, input_type):
    model = prepared(zoo_paths["jet"], ["cleanup"])
    options = LoweringOptions() if input_type is None else LoweringOptions(input_type=FixedType.parse(input_type))
    context = Context(options)
    assert apply(model, "lower-input", context) is True
    assert helpers.data_ops(model) == ["InputQuant"] + JET_DATA_OPS
    (node,) = hw_nodes(model, "InputQuant")
    assert edge_type(model, node.output[0]) == (FixedType(16, 6, True) if input_type is None else FixedType.parse(input_type))
    first_matmul = [n for n in model.graph.node if n.op_type == "MatMul"][0]
    assert first_matmul.input[0] == node.output[0]
    assert any("no input quantizer" in line for line in context.report.lines)


def _input_chain_graph(qonnx_graph, chain, scale=2**-4, bits=8, signed=True, narrow=False, rounding="ROUND"):
    """x -> chain of (op, constant, x_is_first) -> Quant -> y."""
    g = qonnx_graph("x", (1, 4))
    tensor = "x"
    for op, value, first in chain:
        const = g.constant(value)
        tensor = g.node(op, [tensor, const] if first else [const, tensor])
    y = g.quant(tensor, scale=scale, bits=bits, signed=signed, narrow=narrow, rounding=rounding)
    return g.build(y, (1, 4))


def _input_grid(scale, pre_scale, pre_bias, rng):
    """Inputs whose preprocessed value lands on quantizer codes, on ties (k + 0.5) and just off them."""
    codes = rng.integers(-140, 140, (3000, 4)) + rng.choice([0.0, 0.5, 0.25], (3000, 4))
    return (codes * scale - pre_bias) / pre_scale


@pytest.mark.parametrize(
    "chain, rounding, narrow, signed",
    [
        ([("Mul", 2.0, True), ("Sub", 1.0, True)], "ROUND", False, True),  # TFC's preprocessing
        ([("Mul", 0.5, True), ("Add", 0.25, True)], "FLOOR", False, True),
        ([("Sub", 0.75, True)], "ROUND", True, True),
        ([("Mul", 4.0, False)], "ROUND", False, False),
        ([], "ROUND", True, True),
    ],
)
def test_lower_input_reproduces_the_input_quantizer_exactly(qonnx_graph, helpers, chain, rounding, narrow, signed):
    original = _input_chain_graph(qonnx_graph, chain, rounding=rounding, narrow=narrow, signed=signed)
    model = prepared(original, ["cleanup"])
    assert apply(model, "lower-input") is True
    assert helpers.ops(model) == ["InputQuant"]
    pre_scale = np.prod([v for op, v, _ in chain if op == "Mul"]) if chain else 1.0
    pre_bias = sum(v if op == "Add" else -v for op, v, _ in chain if op in ("Add", "Sub"))
    x = _input_grid(2**-4, pre_scale, pre_bias, np.random.default_rng(8))
    expected = helpers.quant_codes(x * pre_scale + pre_bias, scale=2**-4, bits=8, signed=signed, narrow=narrow,
                                   rounding=rounding) * 2**-4
    assert np.array_equal(execute_qonnx(original, x)["y"], expected)  # the hand evaluation is qonnx's
    assert np.array_equal(execute(model, x), expected)


def test_lower_input_reproduces_standardisation_exactly(qonnx_graph):
    rng = np.random.default_rng(9)
    mean = np.float32(rng.normal(0, 1, 4)).astype(np.float64)
    std = np.float32(rng.uniform(0.3, 3, 4)).astype(np.float64)
    original = _input_chain_graph(qonnx_graph, [("Sub", mean, True), ("Div", std, True)])
    model = prepared(original, ["cleanup", "lower-input"])
    x = (rng.integers(-100, 100, (5000, 4)) + 0.5) * 2**-4 * std + mean
    assert np.array_equal(execute(model, x), execute_qonnx(original, x)["y"])


def _dense_graph(qonnx_graph, weights, bias_codes, relu=False, out_quant=None):
    """x -> Quant(2**-4, 8) -> MatMul(Quant(W, 2**-3, 4)) -> Add(Quant(b, 2**-7, 12)) [-> Relu] [-> Quant]."""
    g = qonnx_graph("x", (1, weights.shape[0]))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.matmul(q, g.quantized_weight(weights, 2**-3, 4))
    if bias_codes is not None:
        t = g.node("Add", [t, g.quantized_weight(bias_codes, 2**-7, 12)])
    if relu:
        t = g.node("Relu", [t])
    if out_quant is not None:
        t = g.quant(t, **out_quant)
    return g.build(t, (1, weights.shape[1]))


def test_lower_dense_makes_integer_weights_and_bias_and_keeps_the_numbers(qonnx_graph, helpers):
    rng = np.random.default_rng(10)
    weights, bias = rng.integers(-8, 8, (6, 4)), rng.integers(-2048, 2048, 4)
    original = _dense_graph(qonnx_graph, weights, bias)
    model = prepared(original, ["cleanup", "lower-input"])
    assert helpers.ops(model) == ["InputQuant", "Quant", "Quant", "MatMul", "Add"]
    assert apply(model, "lower-dense") is True
    assert helpers.ops(model) == ["InputQuant", "Dense"]
    (dense,) = hw_nodes(model, "Dense")
    assert np.array_equal(model.get_initializer(dense.input[1]), weights)
    assert np.array_equal(model.get_initializer(dense.input[2]), bias)  # 2**-7 = 2**-4 * 2**-3: on the grid
    assert edge_type(model, dense.output[0]).lsb == 2**-7
    assert edge_type(model, dense.input[1]) == FixedType(4, 1, True)  # the weights' scale 2**-3 is their type's lsb
    x = np.concatenate([rng.normal(0, 3, (2000, 6)), rng.integers(-128, 128, (500, 6)) * 2**-4, [[8.0] * 6, [-8.0] * 6]])
    assert np.array_equal(execute(model, x), execute_qonnx(original, x)["y"])


def test_lower_dense_on_the_jet_tagger_lowers_the_first_layer_only(zoo_paths, helpers):
    cleaned = prepared(zoo_paths["jet"], ["cleanup"])
    matmul = [n for n in cleaned.graph.node if n.op_type == "MatMul"][0]
    weight_quant = cleaned.find_producer(matmul.input[1])
    w_float = cleaned.get_initializer(weight_quant.input[0]).astype(np.float64)
    w_scale = cleaned.get_initializer(weight_quant.input[1]).astype(np.float64)
    w_bits = int(cleaned.get_initializer(weight_quant.input[3]).item())
    expected_codes = helpers.quant_codes(w_float, scale=w_scale, bits=w_bits, signed=True, narrow=False, rounding="ROUND")
    model = prepared(cleaned, ["lower-input"])
    context = Context()
    assert apply(model, "lower-dense", context) is True
    # the later MatMuls still read float tensors: skipped, with the reason recorded
    assert helpers.data_ops(model) == ["InputQuant", "Dense"] + JET_DATA_OPS[2:]
    assert helpers.ops(model).count("Quant") == 6 + 3  # this layer's weight and bias quantizers are gone
    assert sum("no fixed-point type yet" in line for line in context.skipped) == 3
    (dense,) = hw_nodes(model, "Dense")
    assert np.array_equal(model.get_initializer(dense.input[1]), expected_codes)


def test_lower_requant_on_the_jet_tagger_gives_shift_with_relu(zoo_paths, helpers):
    model = prepared(zoo_paths["jet"], ["cleanup", "lower-input", "lower-dense"])
    assert apply(model, "lower-requant") is True
    assert helpers.data_ops(model) == ["InputQuant", "Dense", "Requant"] + JET_DATA_OPS[4:]
    (requant,) = hw_nodes(model, "Requant")
    assert attribute(requant, "mode") == "shift"
    assert not attribute(requant, "clip", [])  # an unsigned output saturates at 0: the Relu is free
    assert edge_type(model, requant.output[0]) == FixedType(6, 0, False)  # qkeras quantized_relu(6, 0)


def test_lower_requant_on_tfc_gives_thresholds(zoo_paths, helpers):
    model = prepared(zoo_paths["tfc"], ["cleanup", "fold-input-plumbing", "lower-input", "lower-dense"])
    assert apply(model, "lower-requant") is True
    assert helpers.data_ops(model) == ["InputQuant", "Dense", "Requant"] + TFC_DATA_OPS[7:]
    (requant,) = hw_nodes(model, "Requant")
    assert attribute(requant, "mode") == "thresholds"
    thresholds = model.get_initializer(requant.input[1])
    assert thresholds.shape == (64, 2)  # ternary output: two thresholds per channel
    assert np.all(thresholds[:, 0] <= thresholds[:, 1])


@pytest.mark.parametrize("softmax", ["table", "drop"])
def test_lower_softmax_structure(zoo_paths, helpers, softmax):
    context = Context(LoweringOptions(softmax=softmax))
    model = prepared(zoo_paths["jet"], ["cleanup", "lower-input"], context)
    run_passes(model, LAYER_GROUP, context)
    assert helpers.ops(model)[-2:] == ["Dense", "Softmax"] and not is_hw(model.graph.node[-1])
    assert apply(model, "lower-softmax", context) is True
    if softmax == "table":
        assert helpers.ops(model) == ["InputQuant"] + ["Dense", "Requant"] * 3 + ["Dense", "Softmax"]
        (node,) = hw_nodes(model, "Softmax")
        table = model.get_initializer(node.input[1])
        assert table[0] == 2 ** attribute(node, "exp_bits")  # exp(0) exact: the largest logit wins
        assert np.all(np.diff(table) <= 0)
        assert node.output[0] == model.graph.output[0].name
    else:
        assert helpers.ops(model) == ["InputQuant"] + ["Dense", "Requant"] * 3 + ["Dense"]
        assert model.graph.node[-1].output[0] == model.graph.output[0].name


def _logits_graph(qonnx_graph, *, softmax: bool, second_head: bool):
    """x -> Dense -> 8-bit logits [-> Softmax = y], and optionally a second head reading the logits."""
    g = qonnx_graph("x", (1, 4))
    logits = g.quant(g.matmul(g.quant("x", scale=2**-4, bits=8),
                              g.quantized_weight(np.arange(12).reshape(4, 3) % 5 - 2, 2**-3, 4)), scale=2**-3, bits=8)
    head = g.quant(g.matmul(logits, g.quantized_weight(np.arange(6).reshape(3, 2) % 3 - 1, 2**-2, 3)),
                   scale=2**-2, bits=8) if second_head else None
    model = g.build(g.node("Softmax", [logits], axis=-1) if softmax else logits, (1, 3))
    if second_head:
        model.graph.output.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, [1, 2]))
    return model, head


def test_dropped_softmax_whose_logits_feed_another_head_keeps_both_outputs_exact(qonnx_graph):
    x = np.random.default_rng(3).uniform(-2, 2, (300, 4))
    model, head = _logits_graph(qonnx_graph, softmax=True, second_head=True)
    without_softmax, _ = _logits_graph(qonnx_graph, softmax=False, second_head=True)
    lowered, _ = lower(model, LoweringOptions(softmax="drop"))
    got, want = execute(lowered, x), execute_qonnx(without_softmax, x)
    assert list(got) == ["y", head]
    assert np.array_equal(got["y"], want["y"]) and np.array_equal(got[head], want[head])


def test_dropping_a_softmax_whose_logits_are_a_graph_output_is_refused(qonnx_graph):
    model, _ = _logits_graph(qonnx_graph, softmax=True, second_head=False)
    logits = next(n for n in model.graph.node if n.op_type == "Softmax").input[0]
    model.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, 3]))
    with pytest.raises(QonnxError, match=f"'{logits}' is already one") as error:
        lower(model, LoweringOptions(softmax="drop"))
    assert error.value.node.startswith("Softmax")


def test_softmax_after_quantized_logits_stays_within_its_reported_bound(qonnx_graph):
    classes = 10
    g = qonnx_graph("x", (1, classes))
    t = g.matmul(g.quant("x", scale=2**-3, bits=8), g.quantized_weight(np.eye(classes), 1.0, 2))
    t = g.node("Softmax", [g.quant(t, scale=2**-3, bits=8)], axis=-1)
    original = g.build(t, (1, classes))
    lowered, context = lower(original)
    reported = float(context.report.lines[-1].rsplit("<= ", 1)[1])
    rng = np.random.default_rng(15)
    codes = np.concatenate([[[43, -101, -36, -70, -36, -63, -6, -17, -60, -27]], rng.integers(-128, 128, (3000, classes))])
    x = codes * 2**-3
    error = np.max(np.abs(execute(lowered, x) - execute_qonnx(original, x)["y"]))
    assert error <= reported


def test_lower_input_does_not_invent_an_input_type_when_the_graph_has_a_quantizer(zoo_paths):
    model = prepared(zoo_paths["tfc"], ["cleanup"])  # Reshape not yet turned into Flatten
    context = Context()
    apply(model, "lower-input", context)
    assert not any("no input quantizer" in line for line in context.report.lines)


# ==================================================================================
# (c) idempotence and (d) passes that do not apply
# ==================================================================================


IDEMPOTENCE_CASES = {
    # pass: (model, passes that prepare the graph for it)
    "cleanup": ("tfc", []),
    "fold-input-plumbing": ("tfc", ["cleanup"]),
    "lower-input": ("tfc", ["cleanup", "fold-input-plumbing"]),
    "lower-dense": ("jet", ["cleanup", "lower-input"]),
    "lower-requant": ("jet", ["cleanup", "lower-input", "lower-dense"]),
    "lower-softmax": ("jet", ["cleanup", "lower-input", "layers"]),
}


@pytest.mark.parametrize(
    "name", list(IDEMPOTENCE_CASES) + ["gemm-to-matmul"],
)
def test_a_second_application_changes_nothing(zoo_paths, qonnx_graph, helpers, name):
    context = Context()
    if name == "gemm-to-matmul":
        model = _gemm_graph(qonnx_graph, np.ones((3, 5)))
    else:
        which, preparation = IDEMPOTENCE_CASES[name]
        model = load(zoo_paths[which])
        for step in preparation:
            if step == "layers":
                run_passes(model, LAYER_GROUP, context)
            else:
                apply(model, step, context)
    before = helpers.serialized(model)
    assert apply(model, name, context) is True
    once = helpers.serialized(model)
    assert once != before
    assert apply(model, name, context) is False
    assert helpers.serialized(model) == once


@pytest.mark.parametrize(
    "name, which, preparation, reason",
    [
        ("gemm-to-matmul", "jet", ["cleanup"], None),
        ("fold-input-plumbing", "jet", ["cleanup"], None),
        ("lower-dense", "jet", ["cleanup"], "no fixed-point type yet"),
        ("lower-requant", "jet", ["cleanup"], None),
        ("lower-softmax", "jet", ["cleanup"], "no fixed-point type yet"),
        ("lower-softmax", "tfc", ["lower"], None),
        ("lower-input", "jet", ["lower"], None),
        ("cleanup", "jet", ["lower"], None),
        ("size-accumulators", "jet", ["lower"], None),
        ("size-accumulators", "tfc", ["lower"], None),
        ("check-supported", "tfc", [], None),
        ("check-lowered", "tfc", ["lower"], None),
    ],
)
def test_a_pass_that_does_not_apply_returns_false_and_changes_nothing(zoo_paths, helpers, name, which, preparation, reason):
    if preparation == ["lower"]:
        model, _ = lower(zoo_paths[which])
    else:
        model = prepared(zoo_paths[which], preparation)
    before = helpers.serialized(model)
    context = Context()
    assert apply(model, name, context) is False
    assert helpers.serialized(model) == before
    if reason:
        assert context.skipped and all(reason in line for line in context.skipped)


def test_check_lowered_names_the_first_node_left_over(zoo_paths):
    model = prepared(zoo_paths["jet"], ["cleanup", "lower-input"])
    with pytest.raises(QonnxError, match="Quant"):
        apply(model, "check-lowered")


# ==================================================================================
# (e) shift-mode Requant: exhaustive against a hand evaluation of qonnx's Quant
# ==================================================================================

SHIFT_WEIGHTS = np.array([[3, -5, 7, -8], [-8, 6, 1, 7]])  # every accumulator extreme is reached
ALL_INPUT_CODES = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1).reshape(-1, 2)


@pytest.mark.parametrize(
    "out_scale, bits, signed, narrow, rounding, relu",
    [
        (2**-2, 6, True, False, "ROUND", False),
        (2**-2, 6, True, False, "FLOOR", False),
        (2**-2, 6, True, True, "ROUND", False),
        (2**-3, 5, True, True, "FLOOR", False),
        (2**-3, 6, False, False, "ROUND", True),
        (2**-1, 4, False, True, "ROUND", True),
        (2**-7, 8, True, False, "ROUND", False),  # same lsb: a pure saturating cast
        (2**-9, 12, True, False, "ROUND", False),  # finer output: a left shift, then saturation
        (2**0, 3, True, False, "ROUND", True),  # signed output after a Relu
    ],
)
def test_shift_requant_equals_quant_semantics_on_every_input(qonnx_graph, helpers, out_scale, bits, signed, narrow, rounding, relu):
    out_quant = dict(scale=out_scale, bits=bits, signed=signed, narrow=narrow, rounding=rounding)
    original = _dense_graph(qonnx_graph, SHIFT_WEIGHTS, None, relu=relu, out_quant=out_quant)
    lowered, _ = lower(original)
    assert helpers.ops(lowered) == ["InputQuant", "Dense", "Requant"]
    (requant,) = hw_nodes(lowered, "Requant")
    assert attribute(requant, "mode") == "shift"
    # a Relu before a signed output clips it at code 0; unsigned: saturation at 0 is the Relu
    assert list(attribute(requant, "clip", [])) == ([0, 2 ** (bits - 1) - 1] if relu and signed else [])
    assert set(attribute(requant, "shift")) == {helpers.log2_exact(out_scale) + 7}  # accumulator lsb 2**-7
    out_type = edge_type(lowered, requant.output[0])
    assert out_type.lsb == out_scale and out_type.signed == signed

    # every input code pair, and every pair of input ties (k + 1/2) of the 8-bit input quantizer
    x = np.concatenate([ALL_INPUT_CODES * 2**-4, (ALL_INPUT_CODES + 0.5) * 2**-4, [[9.0, -9.0], [-9.0, 9.0]]])
    input_codes = helpers.quant_codes(x, scale=2**-4, bits=8, signed=True, narrow=False, rounding="ROUND")
    accumulator = (input_codes * 2**-4) @ (SHIFT_WEIGHTS * 2**-3)  # exact in float64
    if relu:
        accumulator = np.maximum(accumulator, 0.0)
    expected = helpers.quant_codes(accumulator, **out_quant) * out_scale
    assert np.array_equal(execute(lowered, x), expected)
    assert np.array_equal(execute_qonnx(original, x)["y"], expected)

    # the grid really probes the rounding: ties where half-even differs from half-up, and clamping
    ratio = accumulator / out_scale
    low, high = (-(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1 - int(narrow))
    inside = (ratio > low) & (ratio < high)
    if out_scale > 2**-7:
        ties = inside & (ratio - np.floor(ratio) == 0.5)
        assert np.count_nonzero(ties & (np.mod(np.floor(ratio), 2) == 0)) > 100  # half-up would round these up
    assert np.count_nonzero(ratio > high) > 0
    if signed:
        assert np.count_nonzero(ratio < low) > 0 or relu


# ==================================================================================
# (f) BatchNormalization between MatMul and the activation quantizer
# ==================================================================================

BN_CHANNELS = 5
# Columns (1, 7) and (-1, 7) etc.: over all 8-bit input pairs the accumulator takes every integer
# between its extremes, so the grid below checks every accumulator code of every channel.
BN_WEIGHTS = np.array([[1, -1, 1, 7, -1], [7, 7, -7, 1, -7]])


def _bn_graph(qonnx_graph, gamma, out_quant, seed, relu=False, bipolar=False):
    rng = np.random.default_rng(seed)
    g = qonnx_graph("x", (1, 2))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.matmul(q, g.quantized_weight(BN_WEIGHTS, 2**-3, 4))
    beta, mean, var = rng.normal(0, 0.4, BN_CHANNELS), rng.normal(0, 1.0, BN_CHANNELS), rng.uniform(0.5, 4, BN_CHANNELS)
    t = g.node("BatchNormalization", [t, g.constant(gamma), g.constant(beta), g.constant(mean), g.constant(var)], epsilon=1e-3)
    if relu:
        t = g.node("Relu", [t])
    if bipolar:
        t = g.node("BipolarQuant", [t, g.constant(out_quant["scale"])], domain="qonnx.custom_op.general")
    else:
        t = g.quant(t, **out_quant)
    return g.build(t, (1, BN_CHANNELS))


def _gamma(rng, negative):
    gamma = rng.uniform(0.4, 2.0, BN_CHANNELS)
    return gamma * np.where(negative, -1.0, 1.0)


@pytest.mark.parametrize(
    "out_quant, negative, relu, bipolar",
    [
        (dict(scale=0.37, bits=3, signed=True), [False] * 5, False, False),
        (dict(scale=0.37, bits=3, signed=True), [True, False, True, False, True], False, False),
        (dict(scale=0.21, bits=3, signed=False), [False, True, False, True, True], True, False),
        (dict(scale=0.5, bits=2, signed=True, narrow=True), [False, True, False, False, True], False, False),
        (dict(scale=0.3, bits=4, signed=True, rounding="FLOOR"), [True, True, False, False, False], False, False),
        (dict(scale=0.9), [False, True, True, False, False], False, True),
    ],
    ids=["3bit", "3bit-negative-gamma", "3bit-unsigned-relu-negative-gamma", "ternary-narrow", "4bit-floor", "bipolar"],
)
def test_batchnorm_to_low_bit_quant_gives_thresholds_identical_to_float64(qonnx_graph, helpers, out_quant, negative, relu, bipolar):
    rng = np.random.default_rng(11)
    original = _bn_graph(qonnx_graph, _gamma(rng, np.array(negative)), out_quant, seed=12, relu=relu, bipolar=bipolar)
    lowered, _ = lower(original)
    assert helpers.ops(lowered) == ["InputQuant", "Dense", "Requant"]
    (requant,) = hw_nodes(lowered, "Requant")
    assert attribute(requant, "mode") == "thresholds"
    x = np.concatenate([ALL_INPUT_CODES * 2**-4, rng.normal(0, 4, (2000, 2))])
    expected = execute_qonnx(original, x)["y"]
    actual = execute(lowered, x)
    assert np.array_equal(actual, expected), f"{np.count_nonzero(actual != expected)} outputs differ"
    # the comparison is not vacuous: every output level is produced
    scale = out_quant["scale"]
    levels = np.unique(np.round(expected / scale))
    assert len(levels) == (2 if bipolar else 2 ** out_quant["bits"] - int(out_quant.get("narrow", False)))


@pytest.mark.parametrize("negative", [[False] * 5, [True, False, False, True, False]], ids=["positive", "negative-gamma"])
@pytest.mark.parametrize("signed, relu", [(True, False), (False, True)])
def test_batchnorm_to_8bit_quant_gives_exact_thresholds(qonnx_graph, helpers, negative, signed, relu):
    rng = np.random.default_rng(13)
    out_quant = dict(scale=0.0123, bits=8, signed=signed)
    original = _bn_graph(qonnx_graph, _gamma(rng, np.array(negative)), out_quant, seed=14, relu=relu)
    lowered, context = lower(original)
    (requant,) = hw_nodes(lowered, "Requant")
    # BatchNorm divides by sqrt(var + eps): no exact multiplier, but 255 exact thresholds per channel
    assert attribute(requant, "mode") == "thresholds"
    assert context.report.exact, str(context.report)
    x = rng.normal(0, 3, (2000, 2))
    expected = execute_qonnx(original, x)["y"]
    actual = execute(lowered, x)
    mismatched = np.flatnonzero(actual.ravel() != expected.ravel())
    details = [(float(actual.ravel()[i] / 0.0123), float(expected.ravel()[i] / 0.0123)) for i in mismatched[:10]]
    assert mismatched.size == 0, f"{mismatched.size} of {actual.size} outputs differ (codes ours, float64): {details}"
    assert len(np.unique(expected)) > 100  # a real spread of the 8-bit codes is exercised
    assert any("255 thresholds per channel" in line for line in context.report.lines)


# ==================================================================================
# (g) size-accumulators: minimal types, checked by brute force
# ==================================================================================


def _tiny_layer(qonnx_graph, weights, bias_codes):
    """3-bit input (codes -4..3, lsb 2**-2), 4-bit weights (lsb 2**-3), bias on the 2**-5 grid, 4-bit output."""
    g = qonnx_graph("x", (1, weights.shape[0]))
    q = g.quant("x", scale=2**-2, bits=3)
    t = g.matmul(q, g.quantized_weight(weights, 2**-3, 4))
    t = g.node("Add", [t, g.quantized_weight(bias_codes, 2**-5, 10)])
    t = g.quant(t, scale=2**-3, bits=4)
    return g.build(t, (1, weights.shape[1]))


ALL_3BIT_TRIPLES = np.array(np.meshgrid(*[np.arange(-4, 4)] * 3)).reshape(3, -1).T  # all 512 inputs


def _brute_force_fields(helpers, weights, bias, frac_bits):
    accumulators = ALL_3BIT_TRIPLES @ weights + bias
    return helpers.narrowest_type_fields(int(accumulators.min()), int(accumulators.max()), frac_bits)


@pytest.mark.parametrize("seed", range(6))
def test_accumulator_types_are_the_narrowest_that_hold_every_input(qonnx_graph, helpers, seed):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-8, 8, (3, 4))
    bias = rng.integers(-300, 300, 4) if seed % 2 else rng.integers(0, 40, 4)
    lowered, _ = lower(_tiny_layer(qonnx_graph, weights, bias))
    (dense,) = hw_nodes(lowered, "Dense")
    (requant,) = hw_nodes(lowered, "Requant")
    accum = edge_type(lowered, dense.output[0])
    assert (accum.width, accum.int_bits, accum.signed) == _brute_force_fields(helpers, weights, bias, 5)
    assert edge_type(lowered, requant.input[0]) == accum
    bias_type = edge_type(lowered, dense.input[2])
    assert (bias_type.width, bias_type.int_bits, bias_type.signed) == helpers.narrowest_type_fields(int(bias.min()), int(bias.max()), 5)
    # and the interpreter never finds an overflow on the whole input space
    assert execute(lowered, ALL_3BIT_TRIPLES * 2**-2, codes=True).shape == (512, 4)


def test_size_accumulators_resizes_after_the_weights_are_edited(qonnx_graph, helpers):
    rng = np.random.default_rng(20)
    weights, bias = rng.integers(-2, 3, (3, 4)), rng.integers(-5, 5, 4)
    lowered, _ = lower(_tiny_layer(qonnx_graph, weights, bias))
    (dense,) = hw_nodes(lowered, "Dense")
    (requant,) = hw_nodes(lowered, "Requant")
    small = edge_type(lowered, dense.output[0])
    new_weights, new_bias = np.array([[7, -8, 7, 0], [-8, 7, 7, 1], [7, 7, -8, 0]]), np.array([500, -511, 3, 0])
    lowered.set_initializer(dense.input[1], new_weights.astype(np.float32))
    lowered.set_initializer(dense.input[2], new_bias.astype(np.float64))
    assert apply(lowered, "size-accumulators") is True
    accum = edge_type(lowered, dense.output[0])
    assert accum.width > small.width
    assert (accum.width, accum.int_bits, accum.signed) == _brute_force_fields(helpers, new_weights, new_bias, 5)
    assert edge_type(lowered, requant.input[0]) == accum
    snapshot = helpers.serialized(lowered)
    assert apply(lowered, "size-accumulators") is False
    assert helpers.serialized(lowered) == snapshot


def test_jet_accumulators_are_the_narrowest_for_the_worst_corner_inputs(zoo_paths, helpers):
    cleaned = cleanup_model(ModelWrapper(str(zoo_paths["jet"])))
    weight_scales = [cleaned.get_initializer(cleaned.find_producer(n.input[1]).input[1]).item()
                     for n in cleaned.graph.node if n.op_type == "MatMul"]
    lowered, _ = lower(zoo_paths["jet"])
    denses = hw_nodes(lowered, "Dense")
    assert len(denses) == len(weight_scales) == 4
    for dense, weight_scale in zip(denses, weight_scales):
        in_type = edge_type(lowered, dense.input[0])
        lo, hi = in_type.min_code, in_type.max_code
        weights = lowered.get_initializer(dense.input[1]).astype(np.int64)
        bias = lowered.get_initializer(dense.input[2]).astype(np.int64)
        # x_i ranges over [lo, hi] independently: each output's extremes are at a corner,
        # term by term the worse of w*lo and w*hi (Python integers: no overflow).
        lows = [sum(min(int(w) * lo, int(w) * hi) for w in column) + int(b) for column, b in zip(weights.T, bias)]
        highs = [sum(max(int(w) * lo, int(w) * hi) for w in column) + int(b) for column, b in zip(weights.T, bias)]
        accum = edge_type(lowered, dense.output[0])
        assert accum.lsb == in_type.lsb * weight_scale  # the accumulator grid is input lsb x weight scale
        assert (accum.width, accum.int_bits, accum.signed) == helpers.narrowest_type_fields(min(lows), max(highs), accum.frac_bits)
