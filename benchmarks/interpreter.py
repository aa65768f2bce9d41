"""Samples per second of qonnx_ir.execute on the jet tagger, next to qonnx's execute_onnx.

    python benchmarks/interpreter.py [--samples 100000] [--reference-samples 2000]

Both run the same inputs (representable in the default input type fixed<16,6>) as one
batch: qonnx's execute_onnx on the original graph with its batch dimension set to N
(qonnx_ir.reference.execute_qonnx, float32 as qonnx runs it), ours on the lowered graph.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "jet_tagging_qkeras_w6a6.onnx"))
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    from qonnx_ir import execute, load
    from qonnx_ir.reference import execute_qonnx
    from transforms import lower

    original = load(args.model)
    lowered, _ = lower(original)
    rng = np.random.default_rng(0)
    x = np.clip(np.round(rng.normal(0, 4, (args.samples, 16)) * 1024) / 1024, -32, 32 - 2**-10)

    execute(lowered, x[:1000])  # warm up BLAS
    best = min(_timed(lambda: execute(lowered, x)) for _ in range(args.repeats))
    ours = args.samples / best

    theirs = args.samples / min(
        _timed(lambda: execute_qonnx(original, x, float64=False)) for _ in range(args.repeats))
    print(f"model: {Path(args.model).name}")
    print(f"qonnx_ir.execute     : {ours:14,.0f} samples/s  ({args.samples:,} samples, best of {args.repeats})")
    print(f"qonnx execute_onnx   : {theirs:14,.0f} samples/s  ({args.samples:,} samples, one batch, best of {args.repeats})")
    print(f"ratio                : {ours / theirs:14,.0f} x")
    print(f"target >= 1,000,000 samples/s: {'met' if ours >= 1e6 else 'NOT met'}")


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
