"""The hlsgen verbs: `qonnx hls` (write a project), `qonnx csim` (compile and run it),
`qonnx verify` (lower, generate, compile and compare with the interpreter in one go).

Entry points in pyproject.toml (`qonnx.commands`). Bad input raises QonnxError (exit 2),
a failed comparison CheckFailed (exit 1). Given raw QONNX, `hls` and `verify` lower it first
with `transforms.lower` and the same options as `qonnx transform`.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qonnx_ir import execute
from qonnx_ir.commands import OUTPUT_FILES, check_outputs_file, read_inputs, write_outputs
from qonnx_ir.dialect import HwGraph, is_hw
from qonnx_ir.dialect.knobs import IO_STYLES, Knobs
from qonnx_ir.errors import CheckFailed, QonnxError
from qonnx_ir.files import writable_ancestor
from qonnx_ir.interpreter import by_output
from qonnx_ir.model import load
from qonnx_ir.ops.dense import STRATEGIES

from .backends import BACKENDS
from .project import COMPILER, Project, check_project_directory, generate

HLS_EXAMPLE = """examples:
  qonnx hls model.onnx -o prj --backend vitis                  # raw QONNX: lowered first
  qonnx hls model.hw.onnx -o prj --backend vitis --io stream --reuse 4 --part xcu250-figd2104-2L-e
  qonnx hls model.hw.onnx -o prj --backend catapult --tech nangate-45nm_beh --clock-ns 10
  qonnx hls model.onnx -o prj --backend vitis --config cfg.yaml --tb-input x.npy

cfg.yaml (every key optional; layer names as in your model, see `qonnx info`):
  reuse_factor: 4          # every layer that has one (Dense); any value from 1 to its products
  strategy: latency        # or resource: weights in a ROM instead of registers
  io: stream               # or parallel
  layers:
    MatMul_1: {reuse_factor: 8, strategy: resource}

For every layer and knob, the first that applies: its `layers:` entry, the command line
(--reuse, --strategy, --io), the config's top-level key, the value already in the model
(`qonnx transform --reuse`), the default (reuse 1, latency, parallel).
"""

CSIM_EXAMPLE = f"""example:
  qonnx hls model.onnx -o prj --backend vitis
  qonnx csim prj --input x.npy -o y.npy            # y.npy == `qonnx run model.hw.onnx` bit for bit
  qonnx csim prj --input x.npy -o codes.npy --codes
  qonnx csim prj --input x.npy -o y.npz            # a model with several outputs

{OUTPUT_FILES}

The shared library is cached in prj/build/ under a hash of the sources: an unchanged
project is not recompiled.
"""

VERIFY_EXAMPLE = """examples:
  qonnx verify model.onnx                                  # both backends, both io styles
  qonnx verify model.hw.onnx --backend vitis --io stream --samples 200
  qonnx verify model.onnx --input x.npy -o prj/ --reuse 4  # keep the projects in prj/

Exit code 0 when every build is bit-exact with qonnx_ir's interpreter, 1 otherwise.
"""



# ---------------------------------------------------------------------------------------------
# registration


def register_hls(subparsers) -> None:
    parser = subparsers.add_parser("hls", help="write a Vitis or Catapult HLS project from a model",
                                   epilog=HLS_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="QONNX (lowered first) or hardware-dialect .onnx")
    parser.add_argument("-o", "--output", required=True, help="project directory (written atomically)")
    parser.add_argument("--backend", required=True, metavar="{vitis,catapult}", help="HLS tool")
    parser.add_argument("--io", metavar="{parallel,stream}",
                        help="top-level interface: arrays or streams (default: the model's, else parallel)")
    parser.add_argument("--reuse", type=positive_int, help="reuse factor of every layer that has one (see below)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="latency (weights in registers) or resource (a ROM)")
    parser.add_argument("--config", help="YAML: reuse_factor, strategy, io, per-layer settings (see below)")
    target = parser.add_argument_group("target (Vitis: --part; Catapult: --part for an FPGA or --tech for an ASIC)")
    target.add_argument("--part", help=f"FPGA part (Vitis default {BACKENDS['vitis'].default_part})")
    target.add_argument("--tech", help=f"Catapult ASIC library (default {BACKENDS['catapult'].default_tech})")
    target.add_argument("--clock-ns", type=float, default=5.0, help="clock period in ns (default %(default)s)")
    parser.add_argument("--top", default="qnn_top", help="top function name (default %(default)s)")
    parser.add_argument("--tb-input", help="testbench inputs (.npy, N x features) instead of random U(-1, 1)")
    parser.add_argument("--tb-samples", type=positive_int, default=100,
                        help="random testbench samples when no --tb-input (default %(default)s)")
    _add_lowering_arguments(parser)
    parser.set_defaults(func=hls_command)


def register_csim(subparsers) -> None:
    parser = subparsers.add_parser("csim", help="compile a project's C++ with g++ (cached) and run it",
                                   epilog=CSIM_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="directory written by `qonnx hls`")
    parser.add_argument("--input", required=True, help="inputs as .npy, shape (N, features)")
    parser.add_argument("-o", "--output", required=True,
                        help="where to write the outputs: .npy (one output) or .npz (every output, by name)")
    parser.add_argument("--codes", action="store_true", help="write integer codes instead of real values")
    parser.set_defaults(func=csim_command)


def register_verify(subparsers) -> None:
    parser = subparsers.add_parser("verify", help="lower, generate, compile and compare with the interpreter",
                                   epilog=VERIFY_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="QONNX (lowered first) or hardware-dialect .onnx")
    parser.add_argument("--backend", default="both", metavar="{vitis,catapult,both}", help="default %(default)s")
    parser.add_argument("--io", default="both", metavar="{parallel,stream,both}", help="default %(default)s")
    parser.add_argument("--reuse", type=positive_int, help="reuse factor of every layer that has one")
    parser.add_argument("--strategy", choices=STRATEGIES, help="latency or resource, for every layer that has one")
    parser.add_argument("--config", help="YAML as for `qonnx hls`")
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help="random inputs U(-1, 1) when no --input (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default %(default)s)")
    parser.add_argument("--input", help="inputs (.npy, N x features) instead of random ones")
    parser.add_argument("-o", "--output", help="keep the projects in this directory (default: a temporary one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the lowering report")
    _add_lowering_arguments(parser)
    parser.set_defaults(func=verify_command)


def positive_int(text: str) -> int:
    from transforms.cli import positive_int as parse

    return parse(text)


def _add_lowering_arguments(parser) -> None:
    from transforms.cli import add_lowering_arguments

    add_lowering_arguments(parser, "lowering (raw QONNX input only; as for `qonnx transform`)")


# ---------------------------------------------------------------------------------------------
# shared steps


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices:
        raise QonnxError(f"unknown {what} {value!r} (choose {', '.join(choices)})")


def _check_target(backend: str, part: str | None, tech: str | None) -> None:
    if backend == "vitis" and tech:
        raise QonnxError(f"--tech {tech!r}: Vitis targets an FPGA part, not an ASIC technology: use --part "
                         "(or --backend catapult)")
    if part and tech:
        raise QonnxError("give either --part (an FPGA) or --tech (an ASIC library), not both")


def read_config(path: str | None) -> dict:
    """The YAML configuration, checked for unknown keys and impossible values (not yet layer names)."""
    if path is None:
        return {}
    import yaml

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise QonnxError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QonnxError(f"{path}: cannot read it ({error})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise QonnxError(f"{path}: not valid YAML{where} ({problem})") from None
    Knobs.from_config(config, path)  # unknown keys and malformed layers, before any work
    return config or {}


def _lowered(args, progress=print, report=True):
    """The hardware-dialect model: loaded as is, or raw QONNX lowered with the command's options."""
    from transforms.base import check_strict, recorded_warnings, warning_line

    model = load(args.model)
    if all(is_hw(node) for node in model.graph.node):
        warnings = recorded_warnings(model)  # what `qonnx transform` found when it lowered this file
        if warnings:
            print(warning_line(warnings))
        check_strict(warnings, args.strict)
        return model, False
    from transforms import lower
    from transforms.cli import options_from

    options = options_from(args)
    progress(f"lowering {args.model} (QONNX) to the hardware dialect ...")
    lowered, context = lower(model, options)
    if context.report.warnings:
        print(warning_line(context.report.warnings))
    if report and context.report.lines:
        print(context.report)
    check_strict(context.report.warnings, args.strict)
    return lowered, True


def _input_shape(model) -> tuple[int, ...]:
    return HwGraph(model).nodes[0].input_shape


def vendor_command(project: Path) -> str | None:
    """The tool command the project's README gives (its first ```sh block), run from the project."""
    readme = project / "README.md"
    if not readme.is_file():
        return None
    match = re.search(r"```sh\n([^\n]+)\n", readme.read_text())
    return f"cd {shlex.quote(str(project))} && {match.group(1).strip()}" if match else None


def _files(project: Path) -> str:
    """'27 files: firmware/ (18), tb_data/ (4), bridge/qnn_top_bridge.cpp, README.md, ...' (build/ not counted)."""
    files = sorted(path.relative_to(project) for path in project.rglob("*") if path.is_file())
    files = [file for file in files if file.parts[0] != "build"]
    folders: dict[str, list[Path]] = {}
    for file in files:
        folders.setdefault(file.parts[0] if len(file.parts) > 1 else "", []).append(file)
    listing = [f"{folder}/ ({len(inside)})" if len(inside) > 1 else str(inside[0])
               for folder, inside in folders.items() if folder]
    listing += [str(file) for file in folders.get("", [])]
    return f"{len(files)} files: {', '.join(listing)}"


def _check_output_directory(path: str) -> None:
    """Before any work: a new, empty or previous-project directory, somewhere writable."""
    check_project_directory(Path(path))
    writable_ancestor(Path(path))


# ---------------------------------------------------------------------------------------------
# qonnx hls


def hls_command(args) -> None:
    _check_choice(args.backend, tuple(BACKENDS), "backend")
    if args.io is not None:
        _check_choice(args.io, IO_STYLES, "io style")
    if not math.isfinite(args.clock_ns) or args.clock_ns <= 0:
        raise QonnxError(f"--clock-ns must be a positive number of nanoseconds (got {args.clock_ns:g})")
    _check_target(args.backend, args.part, args.tech)
    _check_output_directory(args.output)
    config = read_config(args.config)
    model, was_lowered = _lowered(args)
    tb_inputs = read_inputs(args.tb_input, _input_shape(model)) if args.tb_input else None
    project = generate(model, args.output, backend=args.backend, io=args.io, reuse=args.reuse, strategy=args.strategy,
                       config=config, source=args.config or "config", part=args.part, tech=args.tech,
                       clock_ns=args.clock_ns, top=args.top, tb_inputs=tb_inputs, tb_samples=args.tb_samples)
    print(summary(project, was_lowered))


def _outputs(meta: dict) -> str:
    if "outputs" not in meta:
        return f"{meta['n_out']} x {meta['output_type']}"
    return ", ".join(f"{o['port']}: {o['n']} x {o['type']} ({o['tensor']})" for o in meta["outputs"])


def summary(project: Project, was_lowered: bool) -> str:
    from transforms.base import recorded_warnings, warning_line

    warnings = recorded_warnings(project.graph.model)  # the summary's first line says it, when not exact
    return "\n".join(([warning_line(warnings)] if warnings else []) + [_summary(project, was_lowered)])


def _summary(project: Project, was_lowered: bool) -> str:
    meta = project.metadata
    backend = BACKENDS[meta["backend"]]
    if meta["backend"] == "vitis" or meta.get("part"):
        target = f"part {meta.get('part') or backend.default_part + ' (default)'}"
    else:
        target = f"technology {meta.get('tech') or backend.default_tech + ' (default)'}"
    lines = [
        f"wrote {project.path} ({'lowered from QONNX, ' if was_lowered else ''}backend {meta['backend']}, "
        f"io {meta['io']}, top {meta['top']}, {target}, clock {meta['clock_ns']:g} ns)",
        f"  interface: {meta['n_in']} x {meta['input_type']} -> {_outputs(meta)}",
        "  layers:",
    ]
    width = max(len(layer["ident"]) for layer in meta["layers"])
    kernel_width = max(len(layer["kernel"]) for layer in meta["layers"])
    for layer in meta["layers"]:
        knobs = f"reuse {layer['reuse_factor']}, {layer['strategy']}, " if "reuse_factor" in layer else ""
        lines.append(f"    {layer['ident']:<{width}}  {layer['op']:<10} {layer['kernel']:<{kernel_width}}  "
                     f"{knobs}II {layer['ii']}, latency ~{layer['latency']}")
    lines.append(f"  requested: a new sample every {meta['interval']} cycle(s), latency ~{meta['latency']} cycles")
    lines.append(f"  {_files(project.path)}")
    command = vendor_command(project.path)
    lines.append(f"  run {meta['backend']}:  {command}" if command else "  run the vendor tool: see README.md (not written)")
    lines.append(f"  C simulation: qonnx csim {shlex.quote(str(project.path))} --input x.npy -o y.npy")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# qonnx csim


def csim_command(args) -> None:
    project = Project(args.project)
    check_outputs_file(args.output, project.graph.outputs)
    x = read_inputs(args.input, project.graph.nodes[0].input_shape)
    compiled = _compile(project, print)
    print(_compile_line(project, compiled))
    start = time.perf_counter()
    y = project.predict(x, codes=args.codes)
    seconds = time.perf_counter() - start
    written = write_outputs(args.output, by_output(project.graph, y))
    print(f"ran {len(x)} samples in {seconds:.3f} s ({_rate(len(x), seconds)} samples/s): "
          f"{written}{' (integer codes)' if args.codes else ''}")


def _compile(project: Project, progress):
    if shutil.which(COMPILER[0]) is None:
        raise QonnxError(f"{COMPILER[0]} is not on PATH: install it to run the C simulation")
    return project.compile(progress=progress)


def _compile_line(project: Project, compiled) -> str:
    library = compiled.library.relative_to(project.path)
    if compiled.cached:
        return f"{project.path.name}: cached build {library} (sources unchanged), headers from {compiled.headers}"
    return f"{project.path.name}: compiled {library} in {compiled.seconds:.1f} s, headers from {compiled.headers}"


def _rate(samples: int, seconds: float) -> str:
    return f"{samples / seconds:,.0f}" if seconds > 0 else "inf"


# ---------------------------------------------------------------------------------------------
# qonnx verify


def verify_command(args) -> None:
    _check_choice(args.backend, (*BACKENDS, "both"), "backend")
    _check_choice(args.io, (*IO_STYLES, "both"), "io style")
    backends = tuple(BACKENDS) if args.backend == "both" else (args.backend,)
    styles = IO_STYLES if args.io == "both" else (args.io,)
    if args.output:
        _check_container(Path(args.output), backends, styles)
    config = read_config(args.config)
    model, was_lowered = _lowered(args, report=args.verbose)
    shape = _input_shape(model)
    if args.input:
        x, where = read_inputs(args.input, shape), args.input
    else:
        x = np.random.default_rng(args.seed).uniform(-1, 1, (args.samples, *shape))
        where = f"{args.samples} random inputs U(-1, 1) (seed {args.seed})"
    knobs = dict(reuse=args.reuse, strategy=args.strategy, config=config, source=args.config or "config")
    graph = HwGraph(model)
    start = time.perf_counter()
    expected_codes = _flat(graph, execute(graph, x, codes=True), len(x))
    interpreter_seconds = time.perf_counter() - start
    expected = _flat(graph, execute(graph, x), len(x))

    if args.output:
        rows = _verify_in(Path(args.output), model, knobs, backends, styles, x, expected_codes, expected)
        kept = f"projects kept in {args.output}"
    else:
        with tempfile.TemporaryDirectory(prefix="qonnx-verify-") as directory:
            rows = _verify_in(Path(directory), model, knobs, backends, styles, x, expected_codes, expected)
        kept = "projects deleted (keep them with -o DIR)"
    from transforms.base import recorded_warnings, warning_line

    warnings = recorded_warnings(model)
    if warnings:  # the first line of the summary
        print(warning_line(warnings))
    print(_report(args.model, was_lowered, where, x, expected, interpreter_seconds, rows, kept, graph))
    failed = [row for row in rows if row["mismatches"]]
    if failed:
        names = ", ".join(f"{row['backend']}/{row['io']}" for row in failed)
        raise CheckFailed(f"{len(failed)} of {len(rows)} builds differ from the interpreter: {names}")


def _check_container(directory: Path, backends, styles) -> None:
    """verify -o DIR holds one project per build: DIR must be a real directory (or new), and
    each project folder in it new, empty or a previous project."""
    if directory.is_symlink():
        raise QonnxError(f"{directory} is a symbolic link: give the directory itself")
    if directory.exists() and not directory.is_dir():
        raise QonnxError(f"{directory} exists and is not a directory: choose another -o")
    writable_ancestor(directory / "x")
    for backend in backends:
        for io in styles:
            check_project_directory(directory / f"{backend}_{io}")


def _verify_in(directory: Path, model, knobs, backends, styles, x, expected_codes, expected) -> list[dict]:
    projects = []
    for backend in backends:
        for io in styles:
            print(f"generating {backend}/{io} ...")
            projects.append(generate(model, directory / f"{backend}_{io}", backend=backend, io=io, tb_inputs=x[:100],
                                     **knobs))
    # g++ runs in its own process: the backends compile side by side, each backend's projects
    # one after the other (they share one precompiled vendor header, built by the first)
    chains: dict[str, list[Project]] = {}
    for project in projects:
        chains.setdefault(project.metadata["backend"], []).append(project)
    with ThreadPoolExecutor(max_workers=max(1, min(len(chains), _cpus()))) as pool:
        done = pool.map(lambda chain: [(p.path, _compile(p, print)) for p in chain], chains.values())
        results = dict(pair for chain in done for pair in chain)
    compiled = [results[project.path] for project in projects]
    rows = []
    for project, result in zip(projects, compiled):
        start = time.perf_counter()
        codes = _flat(project.graph, project.predict(x, codes=True), len(x))
        seconds = time.perf_counter() - start
        real = _flat(project.graph, project.predict(x), len(x))
        rows.append({
            "backend": project.metadata["backend"], "io": project.metadata["io"], "compiled": result,
            "rate": _rate(len(x), seconds), "mismatches": int(np.sum(codes != expected_codes)),
            "max_difference": float(np.max(np.abs(real - expected))),
        })
    return rows


def _flat(graph: HwGraph, result, samples: int) -> np.ndarray:
    """(samples, values): every output of a sample on one row, in the graph's output order."""
    outputs = by_output(graph, result)
    return np.concatenate([np.asarray(outputs[name]).reshape(samples, -1) for name in graph.outputs], axis=1)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _report(model_path, was_lowered, where, x, expected, interpreter_seconds, rows, kept, graph) -> str:
    outputs = expected.size
    ports = "" if len(graph.outputs) == 1 else " (" + ", ".join(
        f"y{index} {name}: {graph.edge(name).size}" for index, name in enumerate(graph.outputs)) + ")"
    lines = [
        f"verify {model_path}{' (lowered from QONNX)' if was_lowered else ''}: {where}, "
        f"{expected.shape[1]} outputs each{ports}",
        f"interpreter (qonnx_ir.execute): {_rate(len(x), interpreter_seconds)} samples/s",
        f"{'backend':<9} {'io':<9} {'g++ compile':<16} {'samples/s':>10} {'mismatches':>16} {'max |difference|':>17}",
    ]
    for row in rows:
        compiled = row["compiled"]
        compile_text = "cached" if compiled.cached else f"{compiled.seconds:.1f} s"
        mismatches = f"{row['mismatches']} / {outputs}"
        lines.append(f"{row['backend']:<9} {row['io']:<9} {compile_text:<16} {row['rate']:>10} "
                     f"{mismatches:>16} {row['max_difference']:>17.3g}")
    if len({row["backend"] for row in rows if not row["compiled"].cached}) > 1 and _cpus() > 1:
        lines.append("(the two backends compiled side by side: their seconds overlap)")
    origins: dict[str, list[str]] = {}
    for row in rows:
        backends = origins.setdefault(row["compiled"].headers, [])
        if row["backend"] not in backends:
            backends.append(row["backend"])
    lines.append("headers: " + "; ".join(f"{' and '.join(b)} from {origin}" for origin, b in origins.items()))
    exact = sum(1 for row in rows if not row["mismatches"])
    verdict = "bit-exact" if exact == len(rows) else "NOT bit-exact"
    lines.append(f"result: {verdict}: {exact} of {len(rows)} builds equal the interpreter on all {outputs} outputs; {kept}")
    return "\n".join(lines)
