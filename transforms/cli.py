"""The `qonnx transform` verb: run a pipeline, a list of passes, or list them."""

from __future__ import annotations

import argparse

import numpy as np

from qonnx_ir import execute, hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.model import load, save
from qonnx_ir.types import FixedType

from .base import Context, LoweringOptions
from .pipelines import PASSES, PIPELINES, run_passes

EXAMPLE = """examples:
  qonnx transform model.onnx -o model.hw.onnx                       # the `lower` pipeline
  qonnx transform model.onnx -o model.hw.onnx --input-type 'fixed<12,4>' --softmax drop
  qonnx transform model.onnx -o clean.onnx --passes cleanup,gemm-to-matmul
  qonnx transform --list
"""


def add_lowering_arguments(parser, title: str = "lowering options") -> None:
    """The options `options_from` reads (all but --reuse); shared with `qonnx hls` and `qonnx verify`."""
    defaults = LoweringOptions()
    group = parser.add_argument_group(title)
    group.add_argument("--input-type", default=str(defaults.input_type),
                       help="type of an input without quantizer (default %(default)s, like hls4ml's <16,6>)")
    group.add_argument("--softmax", choices=("table", "drop"), default=defaults.softmax,
                       help="terminal softmax: table implementation or drop it (argmax unchanged)")
    group.add_argument("--softmax-table-size", type=int, default=defaults.softmax_table_size)
    group.add_argument("--softmax-exp-bits", type=int, default=defaults.softmax_exp_bits)
    group.add_argument("--softmax-out-type", default=str(defaults.softmax_out_type))
    group.add_argument("--multiplier-bits", type=int, default=defaults.multiplier_bits)
    group.add_argument("--threshold-max-bits", type=int, default=defaults.threshold_max_bits)
    group.add_argument("--output-frac-bits", type=int, default=defaults.output_frac_bits)


def register(subparsers) -> None:
    parser = subparsers.add_parser("transform", help="clean and lower a QONNX graph to the hardware dialect",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="input .onnx")
    parser.add_argument("-o", "--output", help="output .onnx")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pipeline", default="lower", help=f"named pipeline ({', '.join(PIPELINES)}); default lower")
    how.add_argument("--passes", help="comma-separated pass names, run in order to a fixed point")
    parser.add_argument("--list", action="store_true", help="list passes and pipelines")
    add_lowering_arguments(parser)
    parser.add_argument("--reuse", type=int, default=LoweringOptions().reuse_factor,
                        help="reuse factor written on every layer")
    parser.add_argument("--check-samples", type=int, default=256,
                        help="compare the lowered graph with the float QONNX graph (float64) on this many "
                             "random inputs U(-1, 1) (0: skip; default %(default)s)")
    parser.add_argument("--check-input", help="compare on these inputs (.npy) instead of random ones")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each pass that changed the graph")
    parser.set_defaults(func=transform_command)


def options_from(args) -> LoweringOptions:
    for name in ("softmax_table_size", "softmax_exp_bits", "multiplier_bits", "output_frac_bits", "reuse"):
        if getattr(args, name) < 1:
            raise QonnxError(f"--{name.replace('_', '-')} must be >= 1")
    if args.softmax_table_size < 4:
        raise QonnxError("--softmax-table-size must be >= 4")
    try:
        input_type, softmax_out_type = FixedType.parse(args.input_type), FixedType.parse(args.softmax_out_type)
    except QonnxError as error:
        raise QonnxError(f"--input-type/--softmax-out-type: {error}") from None
    return LoweringOptions(
        input_type=input_type, softmax=args.softmax,
        softmax_table_size=args.softmax_table_size, softmax_exp_bits=args.softmax_exp_bits,
        softmax_out_type=softmax_out_type, multiplier_bits=args.multiplier_bits,
        threshold_max_bits=args.threshold_max_bits, output_frac_bits=args.output_frac_bits,
        reuse_factor=args.reuse,
    )


def transform_command(args) -> None:
    if args.list:
        for name, step in PASSES.items():
            print(f"{name:22s} {step.description}")
        for name, groups in PIPELINES.items():
            print(f"pipeline {name}: {' -> '.join('(' + ', '.join(g) + ')' for g in groups)}")
        return
    if not args.model or not args.output:
        raise QonnxError("give a model and -o OUTPUT (or --list)")
    if args.passes:
        names = [n.strip() for n in args.passes.split(",") if n.strip()]
        unknown = [n for n in names if n not in PASSES]
        if unknown:
            raise QonnxError(f"unknown pass {unknown[0]!r} (see --list)")
        groups = [names]
    else:
        if args.pipeline not in PIPELINES:
            raise QonnxError(f"unknown pipeline {args.pipeline!r} (known: {', '.join(PIPELINES)})")
        groups = PIPELINES[args.pipeline]
    context = Context(options_from(args))
    original = load(args.model)
    model = load(original)
    run_passes(model, groups, context, progress=print if args.verbose else None)
    save(model, args.output)
    if context.report.lines:
        print(context.report)
    print(f"wrote {args.output} ({len(model.graph.node)} nodes)")
    if all(hw.is_hw(node) for node in model.graph.node) and (args.check_input or args.check_samples > 0):
        print(deviation_summary(original, model, args))


def deviation_summary(original, lowered, args) -> str:
    """How far the lowered graph is from the float QONNX graph evaluated in float64."""
    from qonnx_ir.commands import read_npy
    from qonnx_ir.reference import execute_qonnx

    if args.check_input:
        x, where = read_npy(args.check_input), args.check_input
    else:
        shape = [d.dim_value for d in original.graph.input[0].type.tensor_type.shape.dim[1:]]
        x = np.random.default_rng(0).uniform(-1, 1, (args.check_samples, *shape))
        where = f"{len(x)} random inputs U(-1, 1)"
    expected = next(iter(execute_qonnx(original, x, float64=True).values())).reshape(len(x), -1)
    actual = execute(lowered, x).reshape(len(x), -1)
    deviation = float(np.max(np.abs(actual - expected)))
    agreement = float(np.mean(actual.argmax(axis=1) == expected.argmax(axis=1)))
    exact = int(np.sum(actual == expected))
    return (f"check vs the float QONNX graph (float64) on {where}: max |difference| {deviation:.3g}, "
            f"{exact}/{actual.size} outputs identical, argmax agreement {agreement:.2%}")
