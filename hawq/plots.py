"""PNG plots of a HAWQ study: per-layer Hessian traces, and accuracy against BOPs.

    plot_traces(traces, "out/traces.png")     # hawq.hessian results, or floats
    plot_pareto(rows, "out/pareto.png")       # the rows of hawq.pareto.pareto_sweep

Matplotlib's object-oriented API without pyplot: a `Figure` saved to PNG needs no display and
leaves the caller's backend and pyplot state alone (importing this module changes nothing).
Each function writes one PNG a person can open and returns its path. `note` puts a line of
text (e.g. "SYNTHETIC STAND-IN DATA") in red at the top of the figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

DPI = 120
HAWQ_COLOR, UNIFORM_COLOR, FLOAT_COLOR, NOTE_COLOR = "tab:red", "tab:blue", "0.4", "darkred"


def _field(value, name: str):
    """`value.name` or `value[name]` (a TraceEstimate, a dict), or None."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _trace_table(traces: Mapping, n_params: Mapping | None) -> list[tuple[str, float, float, int | None]]:
    """(layer, trace, std error or 0, number of weights or None) in the mapping's order."""
    table = []
    for name, value in traces.items():
        trace = value if isinstance(value, (int, float)) else _field(value, "trace")
        error = 0.0 if isinstance(value, (int, float)) else (_field(value, "std_error") or 0.0)
        count = (n_params or {}).get(name, None if isinstance(value, (int, float)) else _field(value, "n_params"))
        table.append((str(name), float(trace), float(error), None if count is None else int(count)))
    return table


def _log_or_symlog(axis, values: Sequence[float]) -> None:
    """Log scale; symmetric log when a value is <= 0 (a trace can be negative away from a minimum)."""
    if all(v > 0 for v in values):
        axis.set_yscale("log")
    else:
        positive = [abs(v) for v in values if v != 0]
        axis.set_yscale("symlog", linthresh=min(positive) if positive else 1.0)


def _save(figure, path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=DPI, format="png")
    return target


def _note(figure, note: str | None) -> None:
    if note:
        figure.text(0.5, 0.995, note, ha="center", va="top", color=NOTE_COLOR, fontsize=10, weight="bold")


def plot_traces(traces: Mapping, path, *, n_params: Mapping | None = None, title: str | None = None,
                note: str | None = None) -> Path:
    """Bar chart of each layer's Hessian trace Tr(H) and mean diagonal Tr(H)/n, log scale.

    traces: layer -> float, or an object / dict with `trace`, `std_error` and `n_params`
    (hawq.hessian.TraceEstimate). Error bars are one standard error of the estimate (Tr/n's is
    the trace's divided by n). The Tr/n panel needs n: from the values or from `n_params`.
    """
    table = _trace_table(traces, n_params)
    if not table:
        raise ValueError("plot_traces: no layers")
    with_n = all(count for *_, count in table)
    figure = Figure(figsize=(11 if with_n else 6, 4.2))
    axes = figure.subplots(1, 2 if with_n else 1, squeeze=False)
    names = [name for name, *_ in table]
    panels = [("Tr(H)", [t for _, t, _, _ in table], [e for _, _, e, _ in table])]
    if with_n:
        panels.append(("Tr(H) / n  (mean diagonal)", [t / n for _, t, _, n in table],
                       [e / n for _, _, e, n in table]))
    for axis, (label, values, errors) in zip(axes[0], panels):
        positions = range(len(values))
        axis.bar(positions, values, yerr=errors, capsize=4, color="tab:purple", alpha=0.8)
        axis.set_xticks(list(positions), [f"{n}\n(n={c})" if c else n for n, _, _, c in table], fontsize=8)
        axis.set_xlabel("layer")
        axis.set_ylabel(label)
        _log_or_symlog(axis, values)
        if all(v > 0 for v in values):  # bars from a decade below the smallest: heights stay comparable
            axis.set_ylim(bottom=10 ** math.floor(math.log10(min(values)) - 1e-9),
                          top=10 ** math.ceil(math.log10(max(v + e for v, e in zip(values, errors))) + 0.3))
        axis.grid(axis="y", which="both", alpha=0.3)
        for x, (value, error) in enumerate(zip(values, errors)):
            axis.annotate(f"{value:.3g}" + (f" ± {error:.2g}" if error else ""), (x, value + error),
                          textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    figure.suptitle(title or f"Hessian trace per layer ({len(names)} layers; bars: ±1 standard error)",
                    y=0.94 if note else 0.98)
    _note(figure, note)
    figure.tight_layout(rect=(0, 0, 1, 0.92 if note else 0.96))
    return _save(figure, path)


def _spread(rows: Sequence[Mapping]) -> tuple[list[float], list[float]]:
    """Asymmetric error bars: mean - min and max - mean (>= 0: the float mean of equal values can
    differ from them in the last bit)."""
    return [max(r["mean"] - r["min"], 0.0) for r in rows], [max(r["max"] - r["mean"], 0.0) for r in rows]


def plot_pareto(rows: Sequence[Mapping], path, *, reference: float | None = None, title: str | None = None,
                note: str | None = None) -> Path:
    """Test accuracy against BOPs: HAWQ configurations and uniform-precision baselines.

    rows: dicts with kind ("hawq" or "uniform"), label, bops, mean, min, max (hawq.pareto rows).
    Markers are the mean over seeds, error bars span min..max. `reference`: the float model's
    accuracy, drawn as a dashed line.
    """
    uniform = sorted((r for r in rows if r["kind"] == "uniform"), key=lambda r: r["bops"])
    hawq = sorted((r for r in rows if r["kind"] == "hawq"), key=lambda r: r["bops"])
    if not uniform and not hawq:
        raise ValueError("plot_pareto: no rows")
    figure = Figure(figsize=(8, 5))
    axis = figure.subplots()
    if uniform:
        axis.errorbar([r["bops"] for r in uniform], [r["mean"] for r in uniform], yerr=_spread(uniform),
                      fmt="o-", color=UNIFORM_COLOR, capsize=4, label="uniform w=a=b (mean, min..max)")
        for r in uniform:
            axis.annotate(r["label"], (r["bops"], r["mean"]), textcoords="offset points", xytext=(6, -12),
                          fontsize=8, color=UNIFORM_COLOR)
    if hawq:
        axis.errorbar([r["bops"] for r in hawq], [r["mean"] for r in hawq], yerr=_spread(hawq),
                      fmt="s", color=HAWQ_COLOR, capsize=4, markersize=7,
                      label="HAWQ mixed precision (mean, min..max)")
        for r in hawq:
            axis.annotate(r["label"], (r["bops"], r["mean"]), textcoords="offset points", xytext=(6, 6),
                          fontsize=8, color=HAWQ_COLOR)
    if reference is not None and math.isfinite(reference):
        axis.axhline(reference, ls="--", color=FLOAT_COLOR, lw=1, label=f"float model ({reference:.4f})")
    axis.set_xscale("log")
    axis.set_xlabel("BOPs per sample (MACs x weight bits x input activation bits)")
    axis.set_ylabel("test accuracy")
    seeds = max((len(r.get("accuracies", ())) for r in rows), default=0)
    axis.set_title(title or f"Accuracy vs BOPs after the same QAT ({seeds} seed{'s' * (seeds != 1)} per point)",
                   fontsize=11)
    axis.grid(which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    _note(figure, note)
    figure.tight_layout(rect=(0, 0, 1, 0.95 if note else 1))
    return _save(figure, path)
