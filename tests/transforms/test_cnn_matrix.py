"""Brevitas CNNs across the layer matrix (tests/cnn_zoo.py): export -> lower -> interpreter == Brevitas in
float64, every element of 500 inputs, inputs given as PyTorch's NCHW arrays and outputs returned as
PyTorch returns them. A float (unquantized) bias and BatchNorm included: the lowering is exact and
says so (no WARNING).
"""

from __future__ import annotations

import numpy as np
import pytest
from cnn_zoo import INPUT_RANGE, MATRIX, CnnConfig, export_cnn_file, float64_forward, make_cnn

from qonnx_ir import HwGraph, cli, execute, load
from transforms import lower

SAMPLES = 500


def _inputs(config, seed=1):
    return np.random.default_rng(seed).uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, *config.input_shape))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """config -> (Brevitas model, QONNX path), built once per module."""
    directory = tmp_path_factory.mktemp("cnn")
    cache = {}

    def get(config: CnnConfig):
        if config not in cache:
            model = make_cnn(config)
            cache[config] = (model, export_cnn_file(model, config, directory / f"{config.id}.onnx"))
        return cache[config]

    return get


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.id)
def test_lowered_cnn_equals_brevitas_in_float64(config, exported):
    model, path = exported(config)
    lowered, context = lower(load(path))
    x = _inputs(config)
    actual = execute(lowered, x)
    report = str(context.report)
    assert context.report.exact, report
    expected = float64_forward(model, x)
    assert actual.shape == expected.shape  # an image output comes back channels first, as PyTorch gives it
    mismatches = int(np.sum(actual != expected))
    assert mismatches == 0, f"{mismatches} of {actual.size} outputs differ; report:\n{report}"
    assert len(np.unique(expected)) > 3  # not a degenerate comparison


def test_flatten_follows_pytorchs_channels_first_order(exported):
    """A model mixing conv and dense: no transpose anywhere for the user, and the order is PyTorch's."""
    config = MATRIX[0]
    model, path = exported(config)
    lowered, _ = lower(load(path))
    graph = HwGraph(lowered)
    (flatten,) = [op for op in graph.nodes if op.op_type == "Flatten"]
    image = flatten.input_edge("x")
    assert len(image.shape) == 3 and flatten.output_edge().shape == (image.size,)
    x = _inputs(config)[:50]
    codes = execute(graph, x, return_all=True)
    inside, outside = codes[flatten.node.input[0]], codes[flatten.node.output[0]]  # channels last -> torch order
    assert np.array_equal(outside, np.transpose(inside, (0, 3, 1, 2)).reshape(len(x), -1))
    assert graph.nodes[0].layout == "channels_first"  # inputs are PyTorch's NCHW arrays


def _conv_graph(qonnx_graph, **conv):
    weights = np.random.default_rng(0).integers(-4, 4, (3, 2, 3, 3))
    g = qonnx_graph("x", (1, 2, 6, 6))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.node("Conv", [q, g.quantized_weight(weights, 2**-3, 4)], kernel_shape=[3, 3], **conv)
    return g.build(t, (1, 3, 4, 4))


@pytest.mark.parametrize("op, attrs, message", [
    ("MaxPool", dict(kernel_shape=[2, 2], ceil_mode=1), "ceil-mode pooling is not supported"),
    ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2]), "dilated pooling is not supported"),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
     "leaves the padding out of the mean"),
    ("Resize-linear", dict(), "mode linear is not supported"),
])
def test_unsupported_variants_are_one_line_errors(qonnx_graph, op, attrs, message, tmp_path, capsys):
    g = qonnx_graph("x", (1, 2, 6, 6))
    q = g.quant("x", scale=2**-4, bits=8)
    if op == "Resize-linear":
        scales = g.constant(np.array([1, 1, 2, 2], dtype=np.float32))
        t = g.node("Resize", [q, "", scales], mode="linear")
        shape = (1, 2, 12, 12)
    else:
        t = g.node(op, [q], **attrs)
        shape = (1, 2, 3, 3)
    _transform_fails(g.build(t, shape, opset=13), message, tmp_path, capsys)


def _transform_fails(model, message: str, tmp_path, capsys) -> None:
    """`qonnx transform` exits 2 with one line naming the node, and writes nothing."""
    source, out_dir = tmp_path / "m.onnx", tmp_path / "out"
    model.save(str(source))
    out_dir.mkdir()
    code = cli.main(["transform", str(source), "-o", str(out_dir / "m.hw.onnx")])
    err = capsys.readouterr().err
    (node,) = [n.name for n in model.graph.node if n.op_type not in ("Quant", "Constant")]
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err and f"'{node}'" in err, err
    assert list(out_dir.iterdir()) == []


def test_a_conv_with_a_non_constant_weight_is_refused(qonnx_graph, tmp_path, capsys):
    g = qonnx_graph("x", (1, 2, 6, 6))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.node("Conv", [q, q], kernel_shape=[3, 3])  # the weight is the data itself
    _transform_fails(g.build(t, (1, 2, 4, 4)), "Conv weights are not quantized constants", tmp_path, capsys)


def test_asymmetric_and_auto_padding_are_exact(qonnx_graph):
    from qonnx_ir.reference import execute_qonnx

    x = np.random.default_rng(1).normal(0, 2, (200, 2, 6, 6))
    for conv, shape in ((dict(pads=[0, 1, 2, 1]), (1, 3, 6, 6)), (dict(auto_pad="SAME_UPPER", strides=[2, 2]), (1, 3, 3, 3)),
                        (dict(auto_pad="SAME_LOWER"), (1, 3, 6, 6))):
        model = _conv_graph(qonnx_graph, **conv)
        model.graph.output[0].type.tensor_type.shape.dim[2].dim_value = shape[2]
        model.graph.output[0].type.tensor_type.shape.dim[3].dim_value = shape[3]
        lowered, _ = lower(model)
        assert np.array_equal(execute(lowered, x), execute_qonnx(model, x)["y"]), conv
