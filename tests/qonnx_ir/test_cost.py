"""`qonnx info`: per-layer MACs / BOPs / weight bits, checked against qonnx's own inference_cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.inference_cost import inference_cost

from qonnx_ir.cost import format_table, info_command, layer_costs
from qonnx_ir.dialect import EdgeType
from qonnx_ir.dialect.builder import GraphBuilder
from qonnx_ir.ops.dense import Dense
from qonnx_ir.ops.requant import Requant
from qonnx_ir.errors import QonnxError
from qonnx_ir.model import load
from qonnx_ir.types import FixedType

from paths import SHARED_MODELS as MODELS
JET = MODELS / "jet_tagging_qkeras_w6a6.onnx"
TFC = MODELS / "mnist_tfc_w2a2.onnx"

pytestmark = pytest.mark.filterwarnings("ignore:Some old-style domain attributes")


def _qonnx_reference(path: Path) -> dict:
    # Dense counting: the jet tagger's weights are pruned, and qonnx's default
    # discount_sparsity=True would count only the non-zero weights.
    return inference_cost(str(path), output_json=None, output_onnx=None, discount_sparsity=False, cost_breakdown=True)


@pytest.mark.parametrize(
    "path, widths",
    [(JET, [16, 64, 32, 32, 5]), (TFC, [784, 64, 64, 64, 10])],
    ids=["jet_tagging_w6a6", "mnist_tfc_w2a2"],
)
def test_raw_qonnx_matches_qonnx_inference_cost(path, widths):
    model = load(path)
    before = model.model.SerializeToString()
    rows = layer_costs(model)
    assert model.model.SerializeToString() == before, "layer_costs changed the caller's model"

    reference = _qonnx_reference(path)
    per_node = reference["node_cost"]
    assert [r.name for r in rows] == list(per_node)
    for row in rows:
        assert row.macs == per_node[row.name]["total_macs"], row.name
        assert row.bops == per_node[row.name]["total_bops"], row.name
        assert row.weight_memory_bits == per_node[row.name]["total_mem_w_bits"], row.name
    total = reference["total_cost"]
    assert sum(r.bops for r in rows) == total["total_bops"]
    assert sum(r.macs for r in rows) == total["total_macs"]
    assert sum(r.weight_memory_bits for r in rows) == total["total_mem_w_bits"]

    # independent of qonnx: a dense MLP does in*out MACs per layer
    assert [(r.in_shape, r.out_shape) for r in rows] == [((a,), (b,)) for a, b in zip(widths, widths[1:])]
    assert sum(r.macs for r in rows) == sum(a * b for a, b in zip(widths, widths[1:]))


def test_jet_tagger_counts_float_input_as_32_bits():
    rows = layer_costs(load(JET))
    first = rows[0]
    assert (first.in_type, first.act_bits, first.weight_bits_each) == ("FLOAT32", 32, 6)
    assert first.bops == 16 * 64 * 6 * 32
    assert all((r.act_bits, r.weight_bits_each) == (6, 6) for r in rows[1:])


def _tiny_hw_model(n_in=4, n_out=3):
    in_type, weight_type = FixedType.parse("fixed<6,2>"), FixedType.parse("fixed<4,1>")
    out_type = FixedType.parse("ufixed<5,3>")
    weight = np.arange(n_in * n_out).reshape(n_in, n_out) % 7 - 3
    bias = np.array([1, -2, 0])[:n_out]
    builder = GraphBuilder((n_in,))
    q = builder.input_quant(in_type, name="quant_in")
    w = builder.constant("fc1_w", weight, weight_type)
    b = builder.constant("fc1_b", bias, FixedType.for_range(-2, 1, in_type.frac_bits + weight_type.frac_bits))
    acc = builder.node(Dense, "fc1", [q, w, b])
    y = builder.node(Requant, "requant1", [acc], out=EdgeType(out_type, (n_out,)), mode="shift", shift=[3])
    return builder.build(y), in_type, weight_type


def test_hardware_dialect_graph():
    model, in_type, weight_type = _tiny_hw_model(n_in=4, n_out=3)
    rows = layer_costs(model)
    assert [(r.name, r.op) for r in rows] == [("quant_in", "InputQuant"), ("fc1", "Dense"), ("requant1", "Requant")]
    quant, dense, requant = rows
    assert (quant.macs, quant.bops, quant.out_type) == (0, 0, str(in_type))
    assert (dense.in_shape, dense.out_shape) == ((4,), (3,))
    assert dense.macs == 4 * 3
    assert dense.bops == 4 * 3 * weight_type.width * in_type.width == 288
    assert dense.weight_memory_bits == 4 * 3 * 4
    assert (dense.in_type, dense.weight_type) == (str(in_type), str(weight_type))
    assert (requant.in_shape, requant.out_shape, requant.macs, requant.bops) == ((3,), (3,), 0, 0)

    table = format_table(rows)
    assert "fc1" in table and "Dense" in table
    assert table.splitlines()[-1].split() == ["total", "12", "288", "48"]


def test_info_command_table_and_json(tmp_path, capsys):
    model, _, _ = _tiny_hw_model()
    path = tmp_path / "tiny.hw.onnx"
    onnx.save(model.model, path)

    assert info_command(argparse.Namespace(model=str(path), json=False)) == 0
    assert "requant1" in capsys.readouterr().out

    assert info_command(argparse.Namespace(model=str(path), json=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in report["layers"]] == ["quant_in", "fc1", "requant1"]
    assert report["totals"] == {"macs": 12, "bops": 288, "weights": 12, "weight_bits": 48}


def test_non_onnx_file_is_a_qonnx_error(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf\n")
    with pytest.raises(QonnxError):
        info_command(argparse.Namespace(model=str(path), json=False))


def test_conv_and_gemm_match_qonnx_inference_cost():
    """A float Conv -> Flatten -> Gemm(transB): every operand counts 32 bits."""
    rng = np.random.default_rng(0)
    conv_w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv_w")
    gemm_w = numpy_helper.from_array(rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32), "gemm_w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "conv_w"], ["c"], kernel_shape=[3, 3]),
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("Gemm", ["f", "gemm_w"], ["y"], transB=1),
        ],
        "conv_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[conv_w, gemm_w],
    )
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    rows = layer_costs(model)
    assert [(r.op, r.in_shape, r.out_shape) for r in rows] == [("Conv", (3, 8, 8), (8, 6, 6)), ("Gemm", (288,), (10,))]
    assert [r.macs for r in rows] == [8 * 6 * 6 * 3 * 3 * 3, 288 * 10]
    reference = inference_cost(model, discount_sparsity=False)["total_cost"]
    assert sum(r.bops for r in rows) == reference["total_bops"] == sum(r.macs for r in rows) * 32 * 32


def test_mixed_graph_is_a_qonnx_error():
    model, _, _ = _tiny_hw_model()
    model.graph.node.append(helper.make_node("Relu", ["requant1_out"], ["z"], name="relu"))
    with pytest.raises(QonnxError, match="relu"):
        layer_costs(model)


@pytest.mark.parametrize("index", [0, 4, 9, 14, 16], ids=lambda i: __import__("cnn_zoo").MATRIX[i].id)
def test_cnn_macs_and_bops_equal_qonnx_inference_cost(index, tmp_path):
    """Conv (grouped, strided, dilated, 1-D and 2-D) and dense layers: ours == qonnx-inference-cost, layer by layer.

    One difference is ours on purpose: a concatenation of two 4-bit branches on different grids
    is 5-bit codes in hardware (the branches are aligned to the finer grid), and a layer reading
    it multiplies 5-bit inputs; qonnx counts the branches' 4 bits."""
    from cnn_zoo import MATRIX, export_cnn_file, make_cnn
    from transforms import lower

    config = MATRIX[index]
    path = export_cnn_file(make_cnn(config), config, tmp_path / "cnn.onnx")
    reference = _qonnx_reference(path)
    lowered, _ = lower(load(path))
    rows = [r for r in layer_costs(lowered) if r.op in ("Conv", "Dense")]
    per_node = reference["node_cost"] if "node_cost" in reference else reference
    qonnx_macs = [sum(v for k, v in cost.items() if k.startswith("op_mac_")) for cost in per_node.values()
                  if any(k.startswith("op_mac_") for k in cost)]
    assert [r.macs for r in rows] == [int(m) for m in qonnx_macs]
    if config.join == "concat":
        assert sum(r.bops for r in rows) > int(reference["total_cost"]["total_bops"])
    else:
        assert sum(r.bops for r in rows) == int(reference["total_cost"]["total_bops"])
    assert sum(r.weight_memory_bits for r in rows) == int(reference["total_cost"]["total_mem_w_bits"])
