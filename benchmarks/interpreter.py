"""Samples per second of qonnx_ir.execute on the jet tagger, next to qonnx's execute_onnx.

    python benchmarks/interpreter.py [--samples 100000] [--reference-samples 2000]

qonnx's execute_onnx runs one exported graph per call with batch 1 (as exported), so it
is timed on fewer samples and reported per sample; our interpreter runs the whole batch.
Both see the same inputs (representable in the default input type fixed<16,6>).
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
    parser.add_argument("--reference-samples", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    import qonnx.core.onnx_exec as oxe
    from qonnx.util.cleanup import cleanup_model

    from qonnx_ir import execute, load
    from transforms import lower

    original = load(args.model)
    lowered, _ = lower(original)
    rng = np.random.default_rng(0)
    x = np.clip(np.round(rng.normal(0, 4, (args.samples, 16)) * 1024) / 1024, -32, 32 - 2**-10)

    execute(lowered, x[:1000])  # warm up BLAS
    best = min(_timed(lambda: execute(lowered, x)) for _ in range(args.repeats))
    ours = args.samples / best

    cleaned = cleanup_model(original)
    name = cleaned.graph.input[0].name
    sample = x[: args.reference_samples].astype(np.float32)
    start = time.perf_counter()
    for row in sample:
        oxe.execute_onnx(cleaned, {name: row[None, :]})
    theirs = len(sample) / (time.perf_counter() - start)

    print(f"model: {Path(args.model).name}")
    print(f"qonnx_ir.execute     : {ours:14,.0f} samples/s  ({args.samples:,} samples, best of {args.repeats})")
    print(f"qonnx execute_onnx   : {theirs:14,.0f} samples/s  ({len(sample):,} samples, one call each)")
    print(f"ratio                : {ours / theirs:14,.0f} x")
    print(f"target >= 1,000,000 samples/s: {'met' if ours >= 1e6 else 'NOT met'}")


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
