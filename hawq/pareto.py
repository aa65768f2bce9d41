"""Pareto sweep: HAWQ bit allocations at several budgets against uniform precision, same QAT for all.

    rows = pareto_sweep(float_model, (x_tr, y_tr), (x_va, y_va), (x_te, y_te), traces=traces,
                        budgets=[0.25, 0.5, 0.75], candidates=(2, 3, 4, 6, 8), act_rule=0,
                        epochs=30, lr=3e-3, out_dir="out/pareto")

For every budget, `hawq.allocate.allocate_bits` picks bits per layer from the sensitivities
(`hawq.sensitivity.sensitivities` of `traces`). A budget in [0, 1] is HAWQ-V3's alpha (the
fraction of the way from the all-lowest to the all-highest BOPs); a budget above 1 is an
absolute number of BOPs. The uniform baselines put weights and every input activation
(the model input included) at the same b bits, for each b of `uniform_bits`.

Every configuration, HAWQ or uniform, then goes through exactly the same steps for each seed:
`apply_bits` on the same float model (calibrated on `calibration`, by default the training
inputs) -> `train_qat` with the same epochs, learning rate and options (the seed sets the
mini-batch order) -> accuracy on the test set. So the spread over seeds is the spread of QAT,
not of the float model or the traces. Configurations with identical bits are trained once
and reported with `same_as`.

Written to `out_dir`: pareto.md (Markdown tables: every configuration, then each HAWQ point
against the cheapest uniform configuration with equal or higher BOPs), pareto.csv,
pareto.png, traces.png, traces.json (`hawq.sensitivity.write_traces_json`) and
bits_<name>.yaml per configuration. The standard deviation is the sample one (ddof=1; 0 for
one seed).
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from torch import nn

from qonnx_ir.errors import QonnxError

from .allocate import allocate_bits
from .apply import apply_bits
from .bitconfig import BitConfig
from .layers import LayerShape, layer_shapes
from .plots import plot_pareto, plot_traces
from .qat import accuracy, train_qat
from .sensitivity import sensitivities, trace_value, write_traces_json

DEFAULT_UNIFORM_BITS = (2, 3, 4, 6, 8)
DEFAULT_SEEDS = (0, 1, 2)
CSV_COLUMNS = ("name", "kind", "label", "budget_kind", "budget", "bits", "bops", "weight_bits", "omega",
               "mean", "std", "min", "max", "n_seeds", "accuracies", "epochs_run", "same_as", "note")


@dataclass
class Entry:
    """One configuration to train: a HAWQ allocation or a uniform baseline."""

    name: str  # file-safe: bits_<name>.yaml
    label: str  # short, for plots
    kind: str  # "hawq" or "uniform"
    budget_kind: str | None  # "alpha", "bops" or None (uniform)
    budget: float | None
    config: BitConfig


# -- configurations ---------------------------------------------------------------------------


def parse_budget(budget: float) -> tuple[str, float]:
    """("alpha", a) for a in [0, 1], ("bops", B) for B > 1."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.number)) or not math.isfinite(budget):
        raise QonnxError(f"a budget must be a finite number, not {budget!r}")
    if budget < 0:
        raise QonnxError(f"budget {budget} is negative: give alpha in [0, 1] or a number of BOPs above 1")
    return ("alpha", float(budget)) if budget <= 1 else ("bops", float(budget))


def hawq_entries(sens: Mapping, layers: Sequence[LayerShape], budgets: Sequence[float], *,
                 candidates: Sequence[int], act_rule, allocate_options: Mapping | None = None) -> list[Entry]:
    entries = []
    for budget in budgets:
        kind, value = parse_budget(budget)
        if kind == "alpha":
            config = allocate_bits(sens, layers, alpha=value, candidates=candidates, act_rule=act_rule,
                                   **(allocate_options or {}))
            name, label = f"hawq_a{value:.3g}", f" (α={value:.3g})"
        else:
            config = allocate_bits(sens, layers, budget=value, budget_kind="bops", candidates=candidates,
                                   act_rule=act_rule, **(allocate_options or {}))
            name, label = f"hawq_b{value:.0f}", ""  # the budget is the point's x position
        name = _unique(name, {e.name for e in entries})  # a budget given twice
        entries.append(Entry(name, f"HAWQ {short_bits(config, layers)}{label}", "hawq", kind, value, config))
    return entries


def _unique(name: str, taken: set[str]) -> str:
    suffix = 2
    unique = name
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def uniform_config(layers: Sequence[LayerShape], bits: int) -> BitConfig:
    """Weights and every input activation at `bits` (w=a=b)."""
    return BitConfig({layer.name: int(bits) for layer in layers}, {layer.name: int(bits) for layer in layers},
                     {"kind": "uniform", "bits": int(bits)})


def uniform_entries(layers: Sequence[LayerShape], uniform_bits: Sequence[int]) -> list[Entry]:
    return [Entry(f"uniform_{b}", f"w{b}a{b}", "uniform", None, None, uniform_config(layers, b))
            for b in sorted(set(int(b) for b in uniform_bits))]


def bits_text(config: BitConfig, layers: Sequence[LayerShape]) -> str:
    """'w4a4, w3a3, w6a6': weight / input activation bits per layer, in forward order."""
    return ", ".join(f"w{config.weights[l.name]}a{config.activations[l.name]}" for l in layers)


def short_bits(config: BitConfig, layers: Sequence[LayerShape]) -> str:
    """'w3/6/6' (and ' a4/6/8' when activations differ from weights), for plot labels."""
    weights = [config.weights[l.name] for l in layers]
    activations = [config.activations[l.name] for l in layers]
    text = "w" + "/".join(map(str, weights))
    return text if weights == activations else text + " a" + "/".join(map(str, activations))


def _bits_key(config: BitConfig) -> tuple:
    return tuple(sorted(config.weights.items())), tuple(sorted(config.activations.items()))


def omega(config: BitConfig, sens: Mapping) -> float | None:
    """Predicted loss increase of the configuration: sum of its layers' sensitivities."""
    try:
        return float(sum(sens[name][bits] for name, bits in config.weights.items()))
    except KeyError:
        return None


# -- training ---------------------------------------------------------------------------------


def train_and_test(float_model: nn.Module, config: BitConfig, train, val, test, *, seed: int, epochs: int,
                   lr: float, calibration, apply_options: Mapping | None = None,
                   qat_options: Mapping | None = None) -> tuple[float, dict, nn.Module]:
    """(test accuracy, QAT history, trained model) of one configuration and seed."""
    model = apply_bits(float_model, config, calibration=calibration, **(apply_options or {}))
    history = train_qat(model, train, val, epochs=epochs, lr=lr, seed=seed, progress=False,
                        **(qat_options or {}))
    return accuracy(model, *test), history, model


def summarize(accuracies: Sequence[float]) -> dict:
    return {"mean": statistics.fmean(accuracies),
            "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "min": min(accuracies), "max": max(accuracies), "n_seeds": len(accuracies)}


def _row(entry: Entry, layers, sens, result: dict, same_as: str | None) -> dict:
    costs = entry.config.costs(layers)
    return {"name": entry.name, "label": entry.label, "kind": entry.kind, "budget_kind": entry.budget_kind,
            "budget": entry.budget, "weights": dict(entry.config.weights),
            "activations": dict(entry.config.activations), "bits": bits_text(entry.config, layers),
            "bops": int(costs["bops"]), "weight_bits": int(costs["weight_bits"]),
            "omega": omega(entry.config, sens), "accuracies": list(result["accuracies"]),
            "epochs_run": list(result["epochs_run"]), "same_as": same_as, **summarize(result["accuracies"])}


# -- the sweep --------------------------------------------------------------------------------


def pareto_sweep(float_model: nn.Module, train, val, test, *, traces: Mapping, budgets: Sequence[float],
                 candidates: Sequence[int] = (2, 3, 4, 5, 6, 7, 8), act_rule=0,
                 uniform_bits: Sequence[int] = DEFAULT_UNIFORM_BITS, seeds: Sequence[int] = DEFAULT_SEEDS,
                 epochs: int = 30, lr: float = 1e-3, calibration=None, out_dir="out/pareto",
                 progress: bool = True, apply_options: Mapping | None = None,
                 qat_options: Mapping | None = None, allocate_options: Mapping | None = None,
                 note: str | None = None, setup: Mapping | None = None, keep_models: bool = False) -> list[dict]:
    """Train and test every configuration (module docstring); returns one row per configuration.

    train, val, test: (x, y) arrays. traces: layer -> Hessian trace (float or hawq.hessian
    TraceEstimate). apply_options go to apply_bits (input_signed, input_range, ...),
    qat_options to train_qat (batch_size, patience, teacher, distill_weight, ...),
    allocate_options to allocate_bits (pin, tie, budgets, ...). note: a line shown prominently
    in every output (e.g. that the data are synthetic). setup: extra "key: value" lines for
    pareto.md. keep_models: each row gets "models", seed -> trained Brevitas model.

    Row keys: name, label, kind (hawq | uniform), budget_kind, budget, weights, activations,
    bits, bops, weight_bits, omega, accuracies (per seed), epochs_run, same_as, mean, std,
    min, max, n_seeds.
    """
    if not seeds:
        raise QonnxError("pareto_sweep: give at least one seed")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = np.asarray(train[0][:1])  # the input shape: a convolution's output positions depend on it
    layers = layer_shapes(float_model, sample=sample)
    sens = sensitivities(float_model, traces, sorted(set(candidates) | set(uniform_bits)))
    entries = hawq_entries(sens, layers, budgets, candidates=candidates, act_rule=act_rule,
                           allocate_options=allocate_options) + uniform_entries(layers, uniform_bits)
    reference = accuracy(float_model, *test)
    settings = {"seeds": list(seeds), "epochs (max, same for every configuration)": epochs, "lr": lr,
                "candidates": sorted(set(candidates)), "act_rule": act_rule,
                "samples train / val / test": f"{len(train[0])} / {len(val[0])} / {len(test[0])}",
                "float model test accuracy": f"{reference:.4f}", **dict(setup or {})}
    # what is known before training is written first
    write_traces_json(out / "traces.json", float_model, traces, sens, meta={**settings, "note": note}, sample=sample)
    plot_traces(traces, out / "traces.png", n_params={l.name: l.n_weights for l in layers}, note=note)
    for entry in entries:
        if note:
            entry.config.meta["note"] = note
        entry.config.save(out / f"bits_{entry.name}.yaml")

    train_one = partial(train_and_test, float_model, train=train, val=val, test=test, epochs=epochs, lr=lr,
                        calibration=train[0] if calibration is None else calibration,
                        apply_options=apply_options, qat_options=qat_options)
    rows = _train_entries(entries, train_one, seeds, layers, sens, progress=progress, keep_models=keep_models)

    plot_pareto(rows, out / "pareto.png", reference=reference, note=note)
    write_csv(rows, out / "pareto.csv", note=note)
    (out / "pareto.md").write_text(markdown_report(rows, settings=settings, note=note))
    return rows


def _train_entries(entries: Sequence[Entry], train_one, seeds, layers, sens, *, progress: bool,
                   keep_models: bool) -> list[dict]:
    """One row per entry; `train_one(config, seed=...)` -> (accuracy, history, model).
    An entry with the bits of an earlier one reuses its results (same_as)."""
    from tqdm import tqdm

    results: dict[tuple, tuple[str, dict]] = {}  # bits -> (first entry's name, result)
    rows = []
    with tqdm(total=len(entries) * len(seeds), desc="pareto", unit="run", file=sys.stderr,
              disable=not progress) as bar:
        for entry in entries:
            key = _bits_key(entry.config)
            if key in results:
                same_as, result = results[key]
                bar.update(len(seeds))
            else:
                same_as, result = None, {"accuracies": [], "epochs_run": [], "models": {}}
                for seed in seeds:
                    bar.set_postfix(config=entry.name, seed=seed)
                    acc, history, model = train_one(entry.config, seed=seed)
                    result["accuracies"].append(acc)
                    result["epochs_run"].append(history["epochs_run"])
                    if keep_models:
                        result["models"][seed] = model
                    bar.update(1)
                results[key] = (entry.name, result)
            row = _row(entry, layers, sens, result, same_as)
            if keep_models:
                row["models"] = result["models"]
            rows.append(row)
    return rows


# -- reports ----------------------------------------------------------------------------------


def comparisons(rows: Sequence[Mapping]) -> list[dict]:
    """Each HAWQ row against the cheapest uniform row with equal or higher BOPs (if any)."""
    uniform = sorted((r for r in rows if r["kind"] == "uniform"), key=lambda r: r["bops"])
    out = []
    for row in (r for r in rows if r["kind"] == "hawq"):
        match = next((u for u in uniform if u["bops"] >= row["bops"]), None)
        if match is None:
            continue
        if _bits_key_of(row) == _bits_key_of(match):
            verdict = "identical bits"
        elif min(row["n_seeds"], match["n_seeds"]) < 2:
            verdict = "one seed: no spread to judge by"
        elif row["min"] > match["max"]:
            verdict = "HAWQ higher (seed ranges disjoint)"
        elif row["max"] < match["min"]:
            verdict = "uniform higher (seed ranges disjoint)"
        else:
            verdict = "seed ranges overlap"
        out.append({"hawq": row, "uniform": match, "difference": row["mean"] - match["mean"], "verdict": verdict})
    return out


def comparison_summary(rows: Sequence[Mapping]) -> str:
    """One sentence counting how the HAWQ points fared against uniform precision (no judgement added)."""
    found = comparisons(rows)
    if not found:
        return "No HAWQ configuration has a uniform configuration at equal or higher BOPs to compare with."
    higher = sum(c["difference"] > 0 for c in found)
    lower = sum(c["difference"] < 0 for c in found)
    judged = [c for c in found if "one seed" not in c["verdict"] and c["verdict"] != "identical bits"]
    disjoint = sum("disjoint" in c["verdict"] for c in judged)
    counts = (f"{len(found)} comparison(s): HAWQ's mean accuracy is higher in {higher}, lower in {lower}, "
              f"equal in {len(found) - higher - lower}")
    if not judged:
        return counts + " (one seed or identical bits: no spread over seeds to judge the differences by)."
    return (counts + f"; of the {len(judged)} with a spread over seeds, the seed ranges are disjoint in "
            f"{disjoint} (overlapping ranges: the difference is within the spread over seeds).")


def _bits_key_of(row: Mapping) -> tuple:
    return tuple(sorted(row["weights"].items())), tuple(sorted(row["activations"].items()))


def _fmt_budget(row: Mapping) -> str:
    if row["budget_kind"] == "alpha":
        return f"α={row['budget']:.3g}"
    if row["budget_kind"] == "bops":
        return f"≤{row['budget']:,.0f}"
    return "—"


def _fmt_omega(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def markdown_table(rows: Sequence[Mapping]) -> str:
    lines = ["| config | budget | bits per layer (w/a) | BOPs | weight bits | Ω (predicted) "
             "| accuracy mean | std | min | max | seeds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["bops"], r["kind"])):
        name = r["name"] + (f" (= {r['same_as']})" if r["same_as"] else "")
        lines.append(f"| {name} | {_fmt_budget(r)} | {r['bits']} | {r['bops']:,} | {r['weight_bits']:,} | "
                     f"{_fmt_omega(r['omega'])} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | "
                     f"{r['max']:.4f} | {r['n_seeds']} |")
    return "\n".join(lines)


def comparison_table(rows: Sequence[Mapping]) -> str:
    lines = ["| HAWQ config | BOPs | accuracy | uniform at ≥ BOPs | BOPs | accuracy | Δ mean (HAWQ − uniform) "
             "| verdict |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for c in comparisons(rows):
        h, u = c["hawq"], c["uniform"]
        lines.append(f"| {h['name']} | {h['bops']:,} | {h['mean']:.4f} [{h['min']:.4f}, {h['max']:.4f}] | "
                     f"{u['name']} | {u['bops']:,} | {u['mean']:.4f} [{u['min']:.4f}, {u['max']:.4f}] | "
                     f"{c['difference']:+.4f} | {c['verdict']} |")
    return "\n".join(lines)


def markdown_report(rows: Sequence[Mapping], *, settings: Mapping, note: str | None = None) -> str:
    parts = ["# HAWQ Pareto sweep: mixed precision vs uniform precision", ""]
    if note:
        parts += [f"**{note}**", ""]
    parts += [f"- {key}: {value}" for key, value in settings.items()]
    parts += ["- every configuration: apply_bits (calibrated, power-of-two scales) -> the same QAT -> "
              "test accuracy; accuracy columns are over seeds (std: sample, ddof=1)",
              "- Ω: sum over layers of the HAWQ sensitivity Tr(H)/n · ||Q(W) − W||², the ILP's objective", "",
              "## All configurations (by BOPs)", "", markdown_table(rows), "",
              "## HAWQ against uniform precision at equal or higher BOPs", "", comparison_table(rows), "",
              comparison_summary(rows), "",
              "Plots: pareto.png (accuracy vs BOPs), traces.png (Hessian trace per layer).", ""]
    return "\n".join(parts)


def write_csv(rows: Sequence[Mapping], path, *, note: str | None = None) -> Path:
    target = Path(path)
    with target.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**{key: r.get(key) for key in CSV_COLUMNS if key in r},
                             "accuracies": ";".join(f"{a:.6f}" for a in r["accuracies"]),
                             "epochs_run": ";".join(str(e) for e in r["epochs_run"]),
                             "same_as": r["same_as"] or "", "budget": "" if r["budget"] is None else r["budget"],
                             "budget_kind": r["budget_kind"] or "", "note": note or ""})
    return target


def trace_summary(traces: Mapping) -> dict[str, float]:
    """layer -> trace as a float (for printing)."""
    return {name: trace_value(value) for name, value in traces.items()}
