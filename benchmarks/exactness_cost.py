"""What exactness costs in hardware: the bits of every requantization, and the outputs it gets right.

For each model of the float-scale Brevitas matrix (tests/brevitas_float_zoo.py): lower it with the
default options and count the multiplier bits, offset bits, widest product, thresholds and table
bits of its rescaling layers, the accumulator bits of its layers, and how many of 1000 inputs'
outputs differ from Brevitas evaluated in float64. Prints Markdown.

    python benchmarks/exactness_cost.py                    # this tree's lowering, ~20 s
    git worktree add /tmp/before <commit>                  # an older lowering, for comparison:
    python benchmarks/exactness_cost.py --code /tmp/before # the same models, its qonnx_ir/transforms
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def costs(lowered) -> dict:
    """Sums over the graph's rescaling nodes (Requant, Table)."""
    from qonnx_ir.dialect import HwGraph

    total = dict(layers=0, multiplier_bits=0, offset_bits=0, widest_product=0, thresholds=0, table_bits=0,
                 accumulator_bits=0)
    for op in HwGraph(lowered).nodes:
        if op.op_type in ("Dense", "Conv"):
            total["accumulator_bits"] += op.output_edge().type.width
        if op.op_type == "Table":
            table = op.constant("table")
            total["layers"] += 1
            total["table_bits"] += table.size * op.output_edge().type.width
        elif op.op_type == "Requant":
            total["layers"] += 1
            if op.mode == "thresholds":
                total["thresholds"] += int(op.constant("thresholds").size)
            elif op.mode == "multiply_shift":
                multiplier, offset = op.per_channel(op.multiplier), op.per_channel(op.offset)
                m_bits = int(np.max(np.abs(multiplier))).bit_length() + 1
                total["multiplier_bits"] += m_bits
                total["offset_bits"] += int(np.max(np.abs(offset))).bit_length() + 1
                total["widest_product"] = max(total["widest_product"], op.input_edge("x").type.width + m_bits)
    return total


def row(name, c, wrong, outputs) -> str:
    return (f"| {name} | {c['layers']} | {c['accumulator_bits']} | {c['multiplier_bits']} | {c['offset_bits']} | "
            f"{c['widest_product']} | {c['thresholds']} | {c['table_bits']} | {wrong}/{outputs} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="the tree whose qonnx_ir and transforms to use")
    args = parser.parse_args()
    sys.path[:0] = [str(args.code.resolve()), str(ROOT / "tests")]
    from brevitas_float_zoo import MATRIX, export_qonnx_file, float64_forward, make_float_mlp

    from qonnx_ir import execute, load
    from transforms import lower

    start = time.perf_counter()
    print(f"lowering from {args.code.resolve()}\n")
    print("| model | rescales | accumulator bits | M bits | offset bits | widest product | thresholds | table bits "
          "| wrong outputs |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("accumulator_bits", "multiplier_bits", "offset_bits", "thresholds", "table_bits")
    sums = dict.fromkeys(keys, 0)
    wrong_total = outputs_total = 0
    with tempfile.TemporaryDirectory() as directory:
        for config in MATRIX:
            model = make_float_mlp(config)
            path = export_qonnx_file(model, config.in_features, Path(directory) / f"{config.id}.onnx")
            x = np.random.default_rng(1).uniform(-2, 2, (1000, config.in_features))
            reference = float64_forward(model, x)
            lowered, _ = lower(load(path))
            wrong = int(np.sum(execute(lowered, x) != reference))
            c = costs(lowered)
            print(row(config.id, c, wrong, reference.size))
            for key in keys:
                sums[key] += c[key]
            wrong_total += wrong
            outputs_total += reference.size
    print(f"\ntotals over {len(MATRIX)} models: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sums.items())
          + f"; wrong outputs {wrong_total}/{outputs_total} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
