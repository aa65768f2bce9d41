"""One op, one spec per floor (DESIGN.md): every registered hardware op has its semantics and cost
(qonnx_ir/ops), one lowering pass (transforms), one kernel spec and header (hlsgen). A toy op
added in a fixture - new files in tests/toy_op/ plus one list entry per floor, nothing else -
goes through the whole flow: lowering, the interpreter, both backends' C++."""

from __future__ import annotations

import numpy as np
import pytest

from hlsgen import generate, kernels
from qonnx_ir import execute
from qonnx_ir.dialect import HwOp, registry
from qonnx_ir.reference import execute_qonnx
from transforms import lower, pipelines
from toy_op.lower_negate import LowerNegate
from toy_op.negate_kernel import NegateKernel
from toy_op.negate_op import Negate


def _producers(op_type: str) -> list[str]:
    return [step.name for step in pipelines.LOWERINGS if op_type in step.produces]


@pytest.mark.parametrize("op", registry.OPS, ids=lambda op: op.op_type)
def test_every_registered_op_has_semantics_cost_lowering_and_kernel(op):
    assert op.evaluate is not HwOp.evaluate, "exact semantics (evaluate)"
    assert op.cost is not HwOp.cost, "cost (MACs, BOPs, weights, hardware estimates)"
    assert op.summary and op.__doc__ is None or op.summary, "a one-line summary"
    assert len(_producers(op.op_type)) == 1, f"one lowering pass produces {op.op_type}: {_producers(op.op_type)}"
    (spec,) = [k for k in kernels.KERNELS if k.op_type == op.op_type]
    assert spec.header_path().is_file(), spec.header_path()
    names = [attr.name for attr in op.attribute_specs()]
    assert len(names) == len(set(names)), "each attribute spelt once"


def test_every_lowering_pass_and_kernel_belongs_to_a_registered_op():
    registered = set(registry.op_types())
    assert {op for step in pipelines.LOWERINGS for op in step.produces} == registered
    assert {spec.op_type for spec in kernels.KERNELS} == registered


@pytest.fixture
def toy_op(monkeypatch):
    """Negate registered on every floor: one list entry each, and nothing else changed."""
    monkeypatch.setattr(registry, "OPS", [*registry.OPS, Negate])
    monkeypatch.setattr(pipelines, "LOWERINGS", [*pipelines.LOWERINGS, LowerNegate()])
    monkeypatch.setattr(kernels, "KERNELS", [*kernels.KERNELS, NegateKernel()])
    return Negate


def _negate_graph(qonnx_graph):
    """x -> Quant(2**-4, 8b) -> MatMul(Quant W) -> Neg -> Quant(2**-3, 6b) -> y."""
    weights = np.random.default_rng(3).integers(-8, 8, (6, 4))
    g = qonnx_graph("x", (1, 6))
    q = g.quant("x", scale=2**-4, bits=8)
    t = g.matmul(q, g.quantized_weight(weights, 2**-3, 4))
    t = g.node("Neg", [t])
    t = g.quant(t, scale=2**-3, bits=6)
    return g.build(t, (1, 4))


def test_the_toy_op_is_unknown_without_its_list_entries(qonnx_graph):
    from qonnx_ir.errors import QonnxError

    with pytest.raises(QonnxError, match="op Neg is not supported"):
        lower(_negate_graph(qonnx_graph))


def test_a_toy_op_goes_through_the_whole_flow(toy_op, qonnx_graph, tmp_path):
    original = _negate_graph(qonnx_graph)
    lowered, _ = lower(original)
    assert [node.op_type for node in lowered.graph.node] == ["InputQuant", "Dense", "Negate", "Requant"]
    x = np.random.default_rng(4).normal(0, 2, (500, 6))
    expected = execute(lowered, x)
    assert np.array_equal(expected, execute_qonnx(original, x)["y"])  # power-of-two scales: exact
    codes = execute(lowered, x, codes=True)
    for backend in ("vitis", "catapult"):
        for io in ("parallel", "stream"):
            project = generate(lowered, tmp_path / f"{backend}_{io}", backend=backend, io=io)
            assert (project.path / "firmware" / "qnn" / "negate.h").is_file()
            assert np.array_equal(project.predict(x, codes=True), codes), (backend, io)
