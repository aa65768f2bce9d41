"""The interpreter's batch chunks: sized by the largest array an op builds, balanced over the cores,
and the same numbers whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
from paths import JET_TAGGER

import qonnx_ir.interpreter as interpreter
from qonnx_ir import HwGraph, execute, load
from qonnx_ir.interpreter import CHUNK, CHUNK_BYTES, _chunks, chunk_samples
from transforms import lower


@pytest.fixture
def conv_graph(qonnx_graph):
    """Quant -> Conv 3x3 (3 -> 8 channels, no padding) on 3x16x16 inputs."""
    g = qonnx_graph("x", (1, 3, 16, 16))
    q = g.quant("x", scale=2**-4, bits=8)
    weights = np.random.default_rng(0).integers(-7, 8, (8, 3, 3, 3))
    y = g.node("Conv", [q, g.quantized_weight(weights, 2**-3, 4)], kernel_shape=[3, 3])
    return HwGraph(lower(g.build(y, (1, 8, 14, 14)))[0])


def test_an_mlp_runs_in_chunks_of_8192():
    graph = HwGraph(lower(load(JET_TAGGER))[0])
    assert max(op.working_values() for op in graph.nodes) == 64  # the widest layer; weights do not count
    assert chunk_samples(graph) == CHUNK == 8192


def test_a_cnn_chunk_holds_its_im2col_rows_in_the_byte_budget(conv_graph):
    conv = next(op for op in conv_graph.nodes if op.op_type == "Conv")
    assert conv.working_values() == 14 * 14 * 3 * 3 * 3  # positions x kernel x input channels
    assert CHUNK_BYTES == 16 * 2**20
    assert chunk_samples(conv_graph) == 16 * 2**20 // (8 * 5292) == 396


def test_chunks_are_balanced_over_the_cores():
    sizes = [len(part) for part in _chunks(np.arange(20_000), 8192, 2)]
    assert sizes == [5000] * 4
    sizes = [len(part) for part in _chunks(np.arange(100_000), 8192, 2)]
    assert sizes == [7143] * 13 + [100_000 - 13 * 7143]
    assert [len(part) for part in _chunks(np.arange(5), 1, 2)] == [1] * 5


def test_chunked_results_equal_one_pass(conv_graph, monkeypatch):
    x = np.random.default_rng(1).uniform(-8, 8, (1000, 3, 16, 16))
    whole = execute(conv_graph, x, return_all=True)[conv_graph.outputs[0]]  # return_all: never chunked
    calls = []
    original = interpreter._execute
    monkeypatch.setattr(interpreter, "_execute", lambda g, part, all_: calls.append(len(part)) or original(g, part, all_))
    chunked = execute(conv_graph, x, codes=True)
    assert len(calls) >= 3 and max(calls) <= 396 and sum(calls) == 1000
    assert np.array_equal(chunked, conv_graph.to_user_layout(conv_graph.outputs[0], whole))
