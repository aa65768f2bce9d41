"""Acceptance on the two real QONNX zoo models in ../shared/models (nobody here wrote them).

The oracle is qonnx's own executor on the ORIGINAL graph, run in float64 (`execute_qonnx`).
The jet tagger has power-of-two scales everywhere, so its logits must be reproduced exactly;
the softmax is a table whose worst error is bounded by `error_bound`. The MNIST TFC model has
float BatchNorm rescales: its low-bit activations (thresholds) must be exact, its final float
rescale is within half an output lsb, and argmax agrees.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from qonnx_ir import HwGraph, cli, execute, load
from qonnx_ir.dialect import is_hw, read_edge_type
from qonnx_ir.quant import attribute
from qonnx_ir.interpreter import real_values
from qonnx_ir.reference import execute_qonnx
from transforms import LoweringOptions, lower
from transforms.lower_softmax import error_bound

pytestmark = pytest.mark.filterwarnings("ignore:Some old-style domain attributes")

SAMPLES = 1000


def _hw(model, op_type):
    return [node for node in model.graph.node if is_hw(node) and node.op_type == op_type]


def _jet_inputs(seed: int = 0) -> np.ndarray:
    """Values representable in fixed<16,6> (codes * 2**-10), a realistic spread (sigma 4) and a
    few rows at the type's extremes, which drive the accumulators to their worst case."""
    rng = np.random.default_rng(seed)
    codes = np.round(rng.normal(0.0, 4.0, (SAMPLES, 16)) * 2**10)
    codes[:4] = [[-(2**15)] * 16, [2**15 - 1] * 16, [-(2**15), 2**15 - 1] * 8, [2**15 - 1, -(2**15)] * 8]
    return np.clip(codes, -(2**15), 2**15 - 1) * 2**-10


def _tfc_inputs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (SAMPLES, 1, 28, 28))


@pytest.fixture(scope="module")
def jet(zoo_paths):
    path = zoo_paths["jet"]
    x = _jet_inputs()
    cleaned = cleanup_model(ModelWrapper(str(path)))  # the naming execute_qonnx's context uses
    (softmax,) = [n for n in cleaned.graph.node if n.op_type == "Softmax"]
    reference = execute_qonnx(path, x, float64=True, return_all=True)
    output_name = ModelWrapper(str(path)).graph.output[0].name
    lowered, context = lower(path)
    return dict(path=path, x=x, lowered=lowered, context=context, reference_logits=reference[softmax.input[0]],
                reference_softmax=reference[output_name])


@pytest.fixture(scope="module")
def tfc(zoo_paths):
    path = zoo_paths["tfc"]
    x = _tfc_inputs()
    reference = execute_qonnx(path, x, float64=True, return_all=True)
    output_name = ModelWrapper(str(path)).graph.output[0].name
    lowered, context = lower(path)
    return dict(path=path, x=x, lowered=lowered, context=context, reference=reference,
                reference_output=reference[output_name])


# -- jet tagger ---------------------------------------------------------------------


def test_jet_lowers_to_one_node_per_layer(jet):
    assert [n.op_type for n in jet["lowered"].graph.node] == ["InputQuant"] + ["Dense", "Requant"] * 3 + ["Dense", "Softmax"]
    (input_quant,) = _hw(jet["lowered"], "InputQuant")
    assert str(read_edge_type(jet["lowered"], input_quant.output[0]).type) == "fixed<16,6>"  # no input quantizer: the default type
    assert all(attribute(n, "mode") == "shift" for n in _hw(jet["lowered"], "Requant"))


def test_jet_logits_equal_the_float64_qonnx_graph_exactly(jet):
    codes = execute(jet["lowered"], jet["x"], return_all=True)
    last_dense = _hw(jet["lowered"], "Dense")[-1]
    logits = real_values(HwGraph(jet["lowered"]), last_dense.output[0], codes[last_dense.output[0]])
    reference = jet["reference_logits"]
    assert reference.dtype == np.float64 and logits.shape == reference.shape == (SAMPLES, 5)
    assert np.array_equal(logits, reference)
    assert len(np.unique(reference)) > 500  # not a degenerate comparison


def test_jet_table_softmax_is_within_the_reported_bound(jet, record_property):
    lowered = jet["lowered"]
    (softmax,) = _hw(lowered, "Softmax")
    logits = read_edge_type(lowered, softmax.input[0])
    assert logits.gain.size == 1
    bound = error_bound(
        lowered.get_initializer(softmax.input[1]).size, attribute(softmax, "table_shift"),
        logits.type.lsb * float(logits.gain[0]), attribute(softmax, "exp_bits"),
        read_edge_type(lowered, softmax.output[0]).type.frac_bits, classes=5,
        guard_bits=attribute(softmax, "guard_bits"),
    )
    (line,) = [line for line in jet["context"].report.lines if line.startswith(softmax.name)]
    reported = float(re.search(r"\|error\| <= ([0-9.e+-]+)", line).group(1))
    assert reported == float(f"{bound:.3g}")  # the report states the bound of this very table

    y = execute(lowered, jet["x"])
    reference = jet["reference_softmax"]
    error = float(np.max(np.abs(y - reference)))
    record_property("jet_softmax_max_error", error)
    record_property("jet_softmax_bound", bound)
    print(f"jet table softmax: max |error| {error:.3g} <= bound {bound:.3g}")
    assert error <= bound
    assert np.array_equal(np.argmax(y, axis=1), np.argmax(reference, axis=1))  # 100 % argmax agreement


def test_jet_with_softmax_dropped_outputs_the_logits_exactly(jet):
    lowered, context = lower(jet["path"], LoweringOptions(softmax="drop"))
    assert not _hw(lowered, "Softmax") and not [n for n in lowered.graph.node if n.op_type == "Softmax"]
    assert np.array_equal(execute(lowered, jet["x"]), jet["reference_logits"])


# -- MNIST TFC ------------------------------------------------------------------------


def test_tfc_argmax_agrees_with_the_float64_qonnx_graph(tfc, record_property):
    y = execute(tfc["lowered"], tfc["x"])
    reference = tfc["reference_output"]
    assert y.shape == reference.shape == (SAMPLES, 10)
    agreement = float(np.mean(np.argmax(y, axis=1) == np.argmax(reference, axis=1)))
    deviation = float(np.max(np.abs(y - reference)))
    record_property("tfc_argmax_agreement", agreement)
    record_property("tfc_max_deviation", deviation)
    print(f"TFC: argmax agreement {agreement:.2%}, max |deviation| {deviation:.3g}")
    assert agreement >= 0.995
    # the last layer is a float rescale to a fixed-point output with 16 fraction bits: within
    # half an lsb (2**-17) plus the multiplier's approximation (< 1e-4 lsb, reported)
    assert deviation <= 2**-17 + 2**-16 * 1e-4


def test_tfc_threshold_activations_equal_the_float64_quantizers_exactly(tfc):
    lowered = tfc["lowered"]
    thresholds = [n for n in _hw(lowered, "Requant") if attribute(n, "mode") == "thresholds"]
    assert len(thresholds) == 3
    # the reference's activation quantizers: the Quant after each BatchNormalization
    cleaned = cleanup_model(ModelWrapper(str(tfc["path"])))
    quantizers = [n for n in cleaned.graph.node
                  if n.op_type == "Quant" and (p := cleaned.find_producer(n.input[0])) is not None
                  and p.op_type == "BatchNormalization"]
    assert len(quantizers) == 3
    codes = execute(lowered, tfc["x"], return_all=True)
    for requant, quant in zip(thresholds, quantizers):
        reference = tfc["reference"][quant.output[0]]
        scale = cleaned.get_initializer(quant.input[1]).astype(np.float64)
        reference_codes = reference / scale
        assert np.array_equal(reference_codes, np.round(reference_codes))  # the reference really is on the grid
        ours = np.asarray(codes[requant.output[0]], dtype=np.float64)
        assert np.array_equal(ours, reference_codes), requant.name
        assert np.array_equal(real_values(HwGraph(lowered), requant.output[0], codes[requant.output[0]]), reference)
        assert set(np.unique(ours)) == {-1.0, 0.0, 1.0}  # every ternary level occurs


# -- the command line on both models ------------------------------------------------


@pytest.mark.parametrize("which", ["jet", "tfc"])
def test_cli_transform_then_run(zoo_paths, tmp_path, which, capsys):
    path = zoo_paths[which]
    lowered_file = tmp_path / "model.hw.onnx"
    assert cli.main(["transform", str(path), "-o", str(lowered_file)]) == 0
    model = load(lowered_file)
    assert model.graph.node and all(node.domain == "qonnx_ir.hw" for node in model.graph.node)

    x = _jet_inputs(seed=5)[:64] if which == "jet" else _tfc_inputs(seed=5)[:64]
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["run", str(lowered_file), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, execute(model, x))
    assert np.array_equal(y, execute(lower(path)[0], x))  # the file holds what `lower` builds

    # a batch of N gives the same as N single runs (interpreter and CLI)
    singles = np.concatenate([execute(model, x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(y, singles)
    for i in (0, 17):
        np.save(tmp_path / "one.npy", x[i : i + 1])
        assert cli.main(["run", str(lowered_file), "--input", str(tmp_path / "one.npy"), "-o", str(tmp_path / "one_y.npy")]) == 0
        assert np.array_equal(np.load(tmp_path / "one_y.npy"), y[i : i + 1])
