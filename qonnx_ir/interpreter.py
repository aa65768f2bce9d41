"""The bit-exact interpreter of the hardware dialect (the oracle the C++ must match).

`execute(model, x)` validates the graph (`HwGraph`), then runs its ops in topological order,
each by its own exact `evaluate` (`qonnx_ir/ops/`), on a batch of any size. It returns the
real values `code * lsb * gain` of the graph output(s) in float64, or their integer codes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from threadpoolctl import threadpool_limits

from .dialect.graph import HwGraph

CHUNK = 8192  # samples per chunk at most: chunks run on all cores
CHUNK_BYTES = 16 * 2**20  # and a chunk's largest intermediate, at 8 bytes a value, about this big


def chunk_samples(graph: HwGraph) -> int:
    """Samples per chunk: as many as keep the largest array an op builds (a CNN's im2col rows,
    `HwOp.working_values`) within CHUNK_BYTES, at least 1 and at most CHUNK. An MLP's largest
    array is a few hundred bytes per sample: chunks of CHUNK. A 3x16x16 CNN's first convolution
    copies 6,912 values per sample (226 MB for CHUNK samples as float32): chunks of 303 run
    it ~30 % faster (benchmarks/cnn.py --section interp)."""
    largest = max((op.working_values() for op in graph.nodes), default=1)
    return max(1, min(CHUNK, CHUNK_BYTES // (8 * largest)))


def _chunks(x: np.ndarray, chunk: int, workers: int) -> list[np.ndarray]:
    """x in pieces of at most `chunk` samples, as equal as can be, their number a multiple of
    `workers` (20,000 samples in chunks of 8192 on 2 cores: 4 x 5000, not 8192, 8192, 3616)."""
    count = -(-len(x) // chunk)
    count = -(-count // workers) * workers
    size = -(-len(x) // count)
    return [x[start:start + size] for start in range(0, len(x), size)]


def hw_graph(model) -> HwGraph:
    return model if isinstance(model, HwGraph) else HwGraph(model)


def real_values(graph: HwGraph, tensor: str, codes: np.ndarray) -> np.ndarray:
    """code * lsb * gain of an edge, in float64 (gains run along the last axis)."""
    return np.asarray(codes, dtype=np.float64) * graph.edge(tensor).real_scale


def execute(model: ModelWrapper | HwGraph, x: np.ndarray, *, codes: bool = False, return_all: bool = False):
    """Run a hardware-dialect graph on a batch x of shape (N, ...).

    Returns the real values of the graph output (a dict {name: values} when the graph has
    several), or their integer codes with codes=True, in the user's layout (an image output
    channels first, as PyTorch gives it); return_all=True returns {tensor name: codes} for
    every edge, as the edges hold them (channels last).
    """
    graph = hw_graph(model)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    chunk = chunk_samples(graph)
    if return_all or len(x) <= chunk:
        results = _execute(graph, x, return_all)
    else:
        workers = os.cpu_count() or 1
        chunks = _chunks(x, chunk, workers)
        # numpy and BLAS release the GIL: one chunk per core, one BLAS thread each
        with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda chunk: _execute(graph, chunk, False), chunks))
        results = {name: np.concatenate([part[name] for part in parts]) for name in graph.outputs}
    if return_all:
        return results
    if not codes:
        results = {name: real_values(graph, name, results[name]) for name in graph.outputs}
    results = {name: graph.to_user_layout(name, values) for name, values in results.items()}
    return results[graph.outputs[0]] if len(graph.outputs) == 1 else results


def by_output(graph: HwGraph, result) -> dict[str, np.ndarray]:
    """execute's result as {graph output name: values} in the graph's output order, however many outputs."""
    return result if isinstance(result, dict) else {graph.outputs[0]: result}


def _execute(graph: HwGraph, x: np.ndarray, return_all: bool) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {graph.input: x}
    for op in graph.nodes:
        inputs = [values[name] if name in values else graph.constant(name) if name else None for name in op.node.input]
        for name, result in zip(op.node.output, op.evaluate(inputs)):
            values[name] = result
    if return_all:
        return values
    return {name: values[name] for name in graph.outputs}
