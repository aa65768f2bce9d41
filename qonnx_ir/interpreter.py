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

CHUNK = 8192  # samples per chunk: intermediates stay in cache, chunks run on all cores


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
    if return_all or len(x) <= CHUNK:
        results = _execute(graph, x, return_all)
    else:
        chunks = [x[start:start + CHUNK] for start in range(0, len(x), CHUNK)]
        # numpy and BLAS release the GIL: one chunk per core, one BLAS thread each
        with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = list(pool.map(lambda chunk: _execute(graph, chunk, False), chunks))
        results = {name: np.concatenate([part[name] for part in parts]) for name in graph.outputs}
    if return_all:
        return results
    if not codes:
        results = {name: real_values(graph, name, results[name]) for name in graph.outputs}
    results = {name: graph.to_user_layout(name, values) for name, values in results.items()}
    return results[graph.outputs[0]] if len(graph.outputs) == 1 else results


def _execute(graph: HwGraph, x: np.ndarray, return_all: bool) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {graph.input: x}
    for op in graph.nodes:
        inputs = [values[name] if name in values else graph.constant(name) if name else None for name in op.node.input]
        for name, result in zip(op.node.output, op.evaluate(inputs)):
            values[name] = result
    if return_all:
        return values
    return {name: values[name] for name in graph.outputs}
