"""The `qonnx transform` verb: run a pipeline, a list of passes, or list them."""

from __future__ import annotations

import argparse

import numpy as np

from qonnx_ir import execute
from qonnx_ir.commands import read_inputs
from qonnx_ir.dialect import is_hw
from qonnx_ir.dialect.knobs import Knobs, apply_knobs
from qonnx_ir.errors import QonnxError
from qonnx_ir.files import check_output_file
from qonnx_ir.model import load, save
from qonnx_ir.types import FixedType

from .base import (
    OPTION_RANGES,
    SOFTMAX_CHOICES,
    Context,
    LoweringOptions,
    check_port_type,
    check_strict,
    option_flag,
    record_warnings,
    warning_line,
)
from .pipelines import PASSES, PIPELINES, run_passes

EXAMPLE = """examples:
  qonnx transform model.onnx -o model.hw.onnx                       # the `lower` pipeline
  qonnx transform model.onnx -o model.hw.onnx --input-type 'fixed<12,4>' --softmax drop
  qonnx transform model.onnx -o clean.onnx --passes cleanup,gemm-to-matmul
  qonnx transform --list
"""


def _bounded(name: str):
    low, high = OPTION_RANGES[name]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = option_flag(name)
    return parse


def _port_type(option: str):
    def parse(text: str) -> FixedType:
        try:
            fixed = FixedType.parse(text)
            check_port_type(fixed, option)
        except QonnxError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return fixed

    parse.__name__ = option
    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_lowering_arguments(parser, title: str = "lowering options") -> None:
    """The options `options_from` reads; shared with `qonnx hls` and `qonnx verify`. Checked at parse time."""
    defaults = LoweringOptions()
    group = parser.add_argument_group(title)
    group.add_argument("--input-type", type=_port_type("input-type"), default=defaults.input_type,
                       help="type of an input without quantizer (default %(default)s, like hls4ml's <16,6>)")
    group.add_argument("--softmax", choices=SOFTMAX_CHOICES, default=defaults.softmax,
                       help="terminal softmax: table implementation or drop it (argmax unchanged)")
    for name, what in (("softmax_table_size", "entries of the exp table"), ("softmax_exp_bits", "bits of exp(0)"),
                       ("multiplier_bits", "cap on the bits of a requantization multiplier; where the exact "
                                           "multiplier needs more, an approximate one is used (a WARNING)"),
                       ("threshold_max_bits", "outputs of at most this many bits use thresholds"),
                       ("activation_table_bits", "activation functions on inputs of at most 2**this codes "
                                                 "become exact tables"),
                       ("output_frac_bits", "fraction bits of an output without quantizer")):
        low, high = OPTION_RANGES[name]
        default = getattr(defaults, name)
        shown = "none: exact" if default is None else "%(default)s"
        group.add_argument(f"--{option_flag(name)}", type=_bounded(name), default=default,
                           help=f"{what} ({low}..{high}, default {shown})")
    group.add_argument("--softmax-out-type", type=_port_type("softmax-out-type"), default=defaults.softmax_out_type)
    group.add_argument("--strict", action="store_true",
                       help="fail (exit 1, nothing written) if the lowering is not exact anywhere")


def options_from(args) -> LoweringOptions:
    return LoweringOptions(**{name: getattr(args, name) for name in LoweringOptions.names()})


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
    parser.add_argument("--reuse", type=positive_int, help="reuse factor written on every layer that has one")
    parser.add_argument("--strategy", choices=("latency", "resource"), help="strategy written on every layer that has one")
    parser.add_argument("--check-samples", type=int, default=256,
                        help="compare the lowered graph with the float QONNX graph (float64) on this many "
                             "random inputs U(-1, 1) (0: skip; default %(default)s)")
    parser.add_argument("--check-input", help="compare on these inputs (.npy) instead of random ones")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each pass that changed the graph")
    parser.set_defaults(func=transform_command)


def transform_command(args) -> None:
    if args.list:
        for name, step in PASSES.items():
            print(f"{name:22s} {step.description}")
        for name, groups in PIPELINES.items():
            print(f"pipeline {name}: {' -> '.join('(' + ', '.join(g) + ')' for g in groups)}")
        return
    if not args.model or not args.output:
        raise QonnxError("give a model and -o OUTPUT (or --list)")
    if args.check_samples < 0:
        raise QonnxError("--check-samples must be >= 0")
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
    check_output_file(args.output)
    context = Context(options_from(args))
    original = load(args.model)
    check_x = None
    if args.check_input:
        check_x = read_inputs(args.check_input, _input_shape(original))
    model = load(original, validate=False)
    run_passes(model, groups, context, progress=print if args.verbose else None)
    lowered = all(is_hw(node) for node in model.graph.node)
    if args.reuse is not None or args.strategy is not None:
        if not lowered:
            raise QonnxError("--reuse and --strategy apply to a lowered graph (run the lower pipeline)")
        apply_knobs(model, Knobs(reuse_factor=args.reuse, strategy=args.strategy, source="--reuse/--strategy"))
    warnings = context.report.warnings
    if warnings:
        print(warning_line(warnings))
    if context.report.lines:
        print(context.report)
    check_strict(warnings, args.strict)
    if lowered:
        record_warnings(model, context.report)
    summary = deviation_summary(original, model, check_x, args) if lowered and (
        check_x is not None or args.check_samples > 0) else None
    save(model, args.output)
    print(f"wrote {args.output} ({len(model.graph.node)} nodes)")
    if summary:
        print(summary)


def _input_shape(model) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


def deviation_summary(original, lowered, check_x, args) -> str:
    """How far the lowered graph is from the float QONNX graph evaluated in float64."""
    from qonnx_ir.reference import execute_qonnx

    if check_x is not None:
        x, where = check_x, args.check_input
    else:
        x = np.random.default_rng(0).uniform(-1, 1, (args.check_samples, *_input_shape(original)))
        where = f"{len(x)} random inputs U(-1, 1)"
    try:
        expected = next(iter(execute_qonnx(original, x, float64=True).values())).reshape(len(x), -1)
    except Exception as error:  # onnxruntime and qonnx's executor raise many unrelated types
        return f"check vs the float QONNX graph skipped: qonnx's executor cannot run it ({type(error).__name__})"
    actual = execute(lowered, x).reshape(len(x), -1)
    deviation = float(np.max(np.abs(actual - expected)))
    agreement = float(np.mean(actual.argmax(axis=1) == expected.argmax(axis=1)))
    exact = int(np.sum(actual == expected))
    return (f"check vs the float QONNX graph (float64) on {where}: max |difference| {deviation:.3g}, "
            f"{exact}/{actual.size} outputs identical, argmax agreement {agreement:.2%}")
