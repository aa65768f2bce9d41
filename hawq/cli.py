"""The `qonnx hawq` verb: `qonnx hawq sensitivity ...` and `qonnx hawq allocate ...`.

`allocate` reads a traces file and writes a bit configuration (hawq.bitconfig). The traces
file is JSON, written by `qonnx hawq sensitivity` (or by hand, or by a training script):

    {
      "layers": [
        {"name": "fc1",                 qualified module name (hawq.layers), forward order
         "in_features": 16, "out_features": 64,     features (channels for a convolution)
         "kernel": [3, 3], "groups": 1, "out_positions": 36,
                                        optional (default [], 1, 1): a convolution's kernel, groups
                                        and output positions per sample (MACs = weights x positions)
         "trace": 12.5,                 mean Hessian trace of the layer's weights, Tr(H)/n (optional here)
         "std_error": 0.4,              standard error of that estimate (optional here)
         "sensitivity": {"2": 3.1e-2, "3": 7.7e-3, ..., "8": 1.9e-6},
                                        Omega(b) per weight width b (string keys, lower is better)
         "act_sensitivity": {"4": ..., "8": ...}},   optional: Omega of the INPUT activation per width
        ...
      ],
      "meta": {...}                     free-form: model, data, estimator settings
    }

`allocate` needs name, in_features, out_features and sensitivity (and a convolution's kernel,
groups and out_positions); the other fields ("kind", "macs", ...) are carried for the record.
`sensitivity` is implemented in `hawq.sensitivity_cli` (see `register_sensitivity`), imported
only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from qonnx_ir.errors import QonnxError

if TYPE_CHECKING:  # hawq.layers imports torch: only when a command runs, not for every `qonnx`
    from .layers import LayerShape

ALLOCATE_EXAMPLE = """examples:
  qonnx hawq allocate traces.json --alpha 0.5 -o bits.yaml
  qonnx hawq allocate traces.json --budget-bops 2e6 --budget-weight-bits 40000 \\
      --candidates 2,3,4,6,8 --pin fc1=8 --pin fc4=8 --tie fc2,fc3 -o bits.yaml
  qonnx hawq allocate traces.json --alpha 0.3 --act-rule free --act-candidates 4,6,8 -o bits.json

--alpha A puts the budget A of the way from the all-lowest to the all-highest cost (HAWQ-V3).
--act-rule K ties input activation bits to weight bits (a = w + K; default 0: wNaN);
'free' chooses them from --act-candidates; 'fixed' keeps them at the one --act-candidates width.
--pin LAYER=W or LAYER=W:A fixes a layer; --tie L1,L2 gives layers the same bits.
BOPs = MACs x weight bits x input activation bits, as `qonnx info` counts them."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("hawq", help="Hessian-aware mixed precision: sensitivity, bit allocation",
                                   description="Hessian-aware mixed precision (HAWQ-V3 style).")
    parser.set_defaults(func=lambda args: _missing_subcommand(parser))
    commands = parser.add_subparsers(dest="hawq_command", metavar="COMMAND")
    register_sensitivity(commands)
    register_allocate(commands)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- sensitivity (implemented in hawq.sensitivity_cli) -------------------------------------------


def register_sensitivity(commands) -> None:
    """`qonnx hawq sensitivity ARGS...`: everything after the word goes to hawq.sensitivity_cli.

    Contract: `hawq.sensitivity_cli.run(args)` gets this namespace; `args.argv` is the list of
    arguments after `sensitivity` (including --help), which the module parses with its own
    parser (prog "qonnx hawq sensitivity"). It is imported only here, when the command runs,
    so `qonnx` starts without torch. It writes the traces file documented above.
    """
    # no option prefix here, so "--help" and every other option reach args.argv untouched
    parser = commands.add_parser("sensitivity", add_help=False, prefix_chars="\0",
                                 help="per-layer Hessian traces and sensitivities -> traces.json")
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(func=sensitivity_command)


def sensitivity_command(args):
    try:
        sensitivity_cli = importlib.import_module("hawq.sensitivity_cli")
    except ModuleNotFoundError as error:
        if error.name != "hawq.sensitivity_cli":  # the module exists but lacks a dependency: a bug
            raise
        raise QonnxError("`qonnx hawq sensitivity` is not available yet (hawq.sensitivity_cli is missing)") from None
    return sensitivity_cli.run(args)


# -- allocate -----------------------------------------------------------------------------------


def register_allocate(commands) -> None:
    parser = commands.add_parser("allocate", help="ILP: bits per layer within a BOPs / weight-memory budget",
                                 description="Choose weight and activation bits per layer that minimise the "
                                             "total sensitivity within the budget(s).",
                                 epilog=ALLOCATE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", help="traces.json (from `qonnx hawq sensitivity`)")
    parser.add_argument("-o", "--output", required=True, help="bit configuration to write (.yaml, .yml or .json)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-bops", metavar="N", help="absolute BOPs budget (e.g. 2e6)")
    budget.add_argument("--alpha", metavar="A", help="budget as a fraction in [0, 1] between lowest and highest cost")
    parser.add_argument("--alpha-kind", default="bops", metavar="MODEL",
                        help="cost model --alpha applies to (bops or weight_bits; default %(default)s)")
    parser.add_argument("--budget-weight-bits", metavar="M", help="absolute weight-memory budget in bits")
    parser.add_argument("--candidates", metavar="B,B,...",
                        help="weight widths to choose from (default: every width with a sensitivity in every layer)")
    parser.add_argument("--act-rule", default="0", metavar="K|free|fixed",
                        help="activation bits: a = w + K, 'free' or 'fixed' (default %(default)s)")
    parser.add_argument("--act-candidates", metavar="B,B,...", help="activation widths for --act-rule free/fixed")
    parser.add_argument("--pin", action="append", default=[], metavar="LAYER=W[:A]", help="fix a layer's bits")
    parser.add_argument("--tie", action="append", default=[], metavar="L1,L2[,...]", help="layers with equal bits")
    parser.add_argument("--time-limit", default="10", metavar="S", help="solver time limit in seconds (default 10)")
    parser.set_defaults(func=allocate_command)


def allocate_command(args) -> int:
    from .allocate import allocate_bits
    from .bitconfig import format_of

    output = Path(args.output)
    format_of(output)  # an unknown suffix is an error before any work
    layers, sensitivities, act_sensitivities, _ = read_traces(args.traces)

    budgets = {}
    if args.budget_weight_bits is not None:
        budgets["weight_bits"] = _parse_number(args.budget_weight_bits, "--budget-weight-bits")
    alpha = None if args.alpha is None else _parse_number(args.alpha, "--alpha")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise QonnxError(f"--alpha must be in [0, 1], not {args.alpha}")
    budget = None if args.budget_bops is None else _parse_number(args.budget_bops, "--budget-bops")
    if budget is None and alpha is None and not budgets:
        raise QonnxError("give a budget: --budget-bops N, --alpha A or --budget-weight-bits M")

    if args.candidates is not None:
        candidates = _parse_bits(args.candidates, "--candidates")
    else:
        common = set.intersection(*(set(table) for table in sensitivities.values()))
        if not common:
            raise QonnxError(f"{args.traces}: no weight width has a sensitivity in every layer")
        candidates = sorted(common)
    act_rule = _parse_act_rule(args.act_rule)
    act_candidates = None if args.act_candidates is None else _parse_bits(args.act_candidates, "--act-candidates")

    config = allocate_bits(
        sensitivities, layers, budget=budget, budget_kind=args.alpha_kind if alpha is not None else "bops",
        alpha=alpha, budgets=budgets, candidates=candidates, act_rule=act_rule, act_candidates=act_candidates,
        act_sensitivities=act_sensitivities, pin=_parse_pins(args.pin), tie=_parse_ties(args.tie),
        time_limit=_parse_number(args.time_limit, "--time-limit"))
    config.meta["traces"] = str(args.traces)
    print(format_allocation(config, layers))
    if act_rule == "free" and act_sensitivities is None:
        print("note: the traces have no act_sensitivity, so activation bits were chosen by cost alone "
              "(the lowest --act-candidates width)")
    config.save(output)
    print(f"wrote {output}")
    return 0


def format_allocation(config, layers: list[LayerShape]) -> str:
    per_layer = config.layer_costs(layers)
    sensitivity = config.meta.get("layer_sensitivity", {})
    header = ("layer", "in", "out", "kernel", "MACs", "w bits", "a bits", "sensitivity", "BOPs", "weight bits")
    rows = [(l.name, str(l.in_features), str(l.out_features), "x".join(map(str, l.kernel)) or "-", f"{l.macs:,}",
             str(config.weights[l.name]), str(config.activations[l.name]),
             f"{sensitivity.get(l.name, float('nan')):.4g}", f"{per_layer['bops'][l.name]:,}",
             f"{per_layer['weight_bits'][l.name]:,}") for l in layers]
    rows.append(("total", "", "", "", f"{sum(l.macs for l in layers):,}", "", "",
                 f"{config.meta.get('objective', float('nan')):.4g}", f"{sum(per_layer['bops'].values()):,}",
                 f"{sum(per_layer['weight_bits'].values()):,}"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    meta = config.meta
    for kind, limit in meta.get("budget", {}).items():
        low, high = meta["cost_range"][kind]
        alpha = meta.get("alpha", {}).get(kind)
        how = f" (alpha {alpha:g} between {low:,.0f} and {high:,.0f})" if alpha is not None else ""
        lines.append(f"budget {kind}: {meta['costs'][kind]:,} <= {limit:,.0f}{how}")
    lines.append(f"solver {meta.get('solver')}: {meta.get('status')} in {meta.get('solve_seconds', 0):.3f} s")
    return "\n".join(lines)


# -- the traces file ----------------------------------------------------------------------------


def read_traces(path) -> tuple[list[LayerShape], dict, dict | None, dict]:
    """(layers, sensitivities, act_sensitivities or None, meta) from a traces.json file."""
    from .layers import LayerShape
    from .sensitivity import load_traces_file

    source = Path(path)
    data = load_traces_file(source)
    if not data["layers"]:
        raise QonnxError(f"{source}: expected {{\"layers\": [...], \"meta\": {{...}}}} with at least one layer")
    layers, sensitivities, act_sensitivities = [], {}, {}
    for position, entry in enumerate(data["layers"]):
        where = f"{source}: layers[{position}]"
        if not isinstance(entry, dict):
            raise QonnxError(f"{where} is not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise QonnxError(f"{where}: 'name' must be a non-empty string")
        where = f"{source}: layer {name}"
        if name in sensitivities:
            raise QonnxError(f"{where} appears twice")
        shape = {}
        for key, default in (("in_features", None), ("out_features", None), ("groups", 1), ("out_positions", 1)):
            value = entry.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QonnxError(f"{where}: '{key}' must be a positive integer, not {value!r}")
            shape[key] = value
        kernel = entry.get("kernel", [])
        if (not isinstance(kernel, list) or len(kernel) > 2
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in kernel)):
            raise QonnxError(f"{where}: 'kernel' must be a list of at most 2 positive integers, not {kernel!r}")
        try:
            layers.append(LayerShape(name, kernel=tuple(kernel), **shape))
        except QonnxError as error:
            raise QonnxError(f"{source}: {error}") from None
        sensitivities[name] = _read_table(entry.get("sensitivity"), f"{where}: 'sensitivity'", required=True)
        if entry.get("act_sensitivity") is not None:
            act_sensitivities[name] = _read_table(entry["act_sensitivity"], f"{where}: 'act_sensitivity'")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise QonnxError(f"{source}: 'meta' must be an object")
    return layers, sensitivities, act_sensitivities or None, meta


def _read_table(table, where: str, required: bool = False) -> dict[int, float]:
    if not isinstance(table, dict) or (required and not table):
        raise QonnxError(f"{where} must be an object {{\"bits\": value, ...}}")
    out = {}
    for key, value in table.items():
        try:
            bits = int(key)
        except ValueError:
            raise QonnxError(f"{where}: key {key!r} is not a bit width") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise QonnxError(f"{where}[{key}] = {value!r} is not a finite number")
        out[bits] = float(value)
    return out


# -- argument parsing (as QonnxError, so a typo is one line and exit 2) --------------------------


def _parse_number(text: str, option: str) -> float:
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise QonnxError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise QonnxError(f"{option}: {text!r} is not a finite number")
    return value


def _parse_int(text: str, option: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise QonnxError(f"{option}: {text!r} is not an integer") from None


def _parse_bits(text: str, option: str) -> list[int]:
    values = [_parse_int(part, option) for part in text.split(",") if part.strip()]
    if not values:
        raise QonnxError(f"{option}: give comma-separated bit widths, e.g. 2,4,8")
    return values


def _parse_act_rule(text: str):
    if text == "free":
        return "free"
    if text == "fixed":
        return None
    try:
        return int(text)
    except ValueError:
        raise QonnxError(f"--act-rule: {text!r} is not an integer offset, 'free' or 'fixed'") from None


def _parse_pins(pins: list[str]) -> dict:
    out = {}
    for text in pins:
        name, sep, bits = text.partition("=")
        if not sep or not name:
            raise QonnxError(f"--pin {text!r}: expected LAYER=W or LAYER=W:A")
        if name in out:
            raise QonnxError(f"--pin: layer {name} is pinned twice")
        w, colon, a = bits.partition(":")
        out[name] = (_parse_int(w, "--pin"), _parse_int(a, "--pin")) if colon else _parse_int(w, "--pin")
    return out


def _parse_ties(ties: list[str]) -> list[list[str]]:
    return [[name.strip() for name in text.split(",") if name.strip()] for text in ties]
