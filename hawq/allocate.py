"""Choose bits per layer: an integer linear program over per-layer sensitivities (HAWQ-V3 style).

Each layer l picks exactly one choice c = (weight bits, input activation bits). With one
binary variable x[l, c] per pair:

    minimise    sum_{l,c} x[l,c] * (Omega_l(w_c) + Omega^act_l(a_c))
    subject to  sum_c x[l,c] = 1                                   for every layer l
                sum_{l,c} x[l,c] * cost_k(l, w_c, a_c) <= budget_k  for every budgeted cost model k
                x[l,c] = x[m,c'] summed per bit value             for every tie (l, m)
                x[l,c] in {0, 1}

Omega_l(b) is the sensitivity of layer l at b weight bits (lower is better, e.g. HAWQ's
Tr(H)/n * ||Q_b(W) - W||^2); Omega^act_l is the optional sensitivity of its input activation
(0 by default: then only the cost decides activation bits). The choices of a layer follow
`act_rule`:

    k (int)   a = w + k for every weight width w (tied; k = 0 is the jet-tagging study's wN aN)
    "free"    every (w, a) in candidates x act_candidates
    None      activations are not allocated: a = the one width in act_candidates (default 8)

A budget is absolute, or a fraction alpha in [0, 1] of the way from the all-lowest to the
all-highest cost (HAWQ-V3: budget = low + alpha * (high - low), low/high summed per layer over
its allowed choices). Solved exactly with HiGHS through `scipy.optimize.milp`. When choices
of a layer have equal sensitivity (free activation bits without activation sensitivities),
a second ILP picks the cheapest of the equally good configurations, so activation bits are
then simply the lowest ones: give `act_sensitivities` for a meaningful choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from qonnx_ir.errors import QonnxError

from .bitconfig import MAX_BITS, MIN_BITS, BitConfig, plain
from .cost import COST_MODELS, CostModel
from .layers import LayerShape

DEFAULT_CANDIDATES = (2, 3, 4, 5, 6, 7, 8)
FIXED_ACT_BITS = 8  # act_rule=None without act_candidates
SOLVER = "HiGHS (scipy.optimize.milp)"
MAX_TIGHTENINGS = 5
MAX_OBJECTIVE_RANGE = 1e9  # largest / smallest objective coefficient handed to HiGHS

Choice = tuple[int, int]  # (weight bits, input activation bits)


@dataclass
class Problem:
    """The ILP's data, one list entry per layer (in `layers` order), one inner entry per choice."""

    names: list[str]
    layers: list[LayerShape]
    choices: list[list[Choice]]
    sensitivity: list[list[float]]  # Omega_l(w) + Omega^act_l(a)
    costs: dict[str, list[list[float]]]  # cost model name -> layer -> choice
    ties: list[list[int]]  # groups of layer indices with equal bits

    @property
    def offsets(self) -> list[int]:
        return list(np.cumsum([0] + [len(c) for c in self.choices]))

    def total(self, table: list[list[float]], picks: Sequence[int]):
        return sum(table[l][c] for l, c in enumerate(picks))


def allocate_bits(
    sensitivities: Mapping[str, Mapping[int, float]],
    layers: Sequence[LayerShape],
    *,
    budget: float | None = None,
    budget_kind: str = "bops",
    alpha: float | None = None,
    budgets: Mapping[str, float] | None = None,
    candidates: Iterable[int] = DEFAULT_CANDIDATES,
    act_rule: str | int | None = 0,
    act_candidates: Iterable[int] | None = None,
    act_sensitivities: Mapping[str, Mapping[int, float]] | None = None,
    pin: Mapping[str, int | tuple[int, int]] | None = None,
    tie: Iterable[Iterable[str]] | None = None,
    time_limit: float = 10.0,
    cost_models: Mapping[str, CostModel] | None = None,
) -> BitConfig:
    """Bits per layer that minimise the total sensitivity within the budget(s).

    sensitivities: layer -> weight bits -> Omega (every candidate width of every layer).
    layers: the quantizable layers (hawq.layers.layer_shapes), in forward order.
    budget / alpha: an absolute budget, or a fraction in [0, 1], of the `budget_kind` cost model.
    budgets: further absolute budgets, cost model name -> budget (e.g. {"weight_bits": 20_000}).
    pin: layer -> w or (w, a), fixed whatever the candidates (e.g. first and last layer at 8).
    tie: groups of layers that must get the same weight and activation bits.
    cost_models: name -> CostModel (default hawq.cost.COST_MODELS).
    Bad input, an infeasible budget or no solution within `time_limit` seconds: QonnxError.
    """
    models = dict(COST_MODELS if cost_models is None else cost_models)
    candidates = tuple(candidates)
    act_candidates = None if act_candidates is None else tuple(act_candidates)
    problem = build_problem(sensitivities, layers, candidates=candidates, act_rule=act_rule,
                            act_candidates=act_candidates, act_sensitivities=act_sensitivities,
                            pin=pin, tie=tie, cost_models=models)
    limits, budget_meta = resolve_budgets(problem, budget=budget, budget_kind=budget_kind, alpha=alpha,
                                          budgets=budgets)
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise QonnxError(f"time_limit must be a positive number of seconds, not {time_limit!r}")

    start = time.perf_counter()
    picks, status = solve(problem, limits, time_limit)
    seconds = time.perf_counter() - start

    weights = {name: problem.choices[l][c][0] for l, (name, c) in enumerate(zip(problem.names, picks))}
    activations = {name: problem.choices[l][c][1] for l, (name, c) in enumerate(zip(problem.names, picks))}
    meta = {
        "objective": float(problem.total(problem.sensitivity, picks)),
        "costs": {kind: problem.total(table, picks) for kind, table in problem.costs.items()},
        **budget_meta,
        "layer_sensitivity": {name: float(problem.sensitivity[l][c])
                              for l, (name, c) in enumerate(zip(problem.names, picks))},
        "candidates": sorted(set(candidates)),
        "act_rule": _parse_act_rule(act_rule),
        "act_candidates": None if act_candidates is None else sorted(set(act_candidates)),
        "pins": {name: list(value) if isinstance(value, (tuple, list)) else value
                 for name, value in (pin or {}).items()},
        "ties": [[problem.names[l] for l in group] for group in problem.ties],
        "solver": SOLVER,
        "status": status,
        "solve_seconds": round(seconds, 6),
    }
    return BitConfig(weights, activations, plain(meta))


# -- the problem ----------------------------------------------------------------------------


def build_problem(sensitivities, layers, *, candidates=DEFAULT_CANDIDATES, act_rule=0, act_candidates=None,
                  act_sensitivities=None, pin=None, tie=None, cost_models=None) -> Problem:
    models = dict(COST_MODELS if cost_models is None else cost_models)
    layers = list(layers)
    names = [layer.name for layer in layers]
    if not layers:
        raise QonnxError("no layers to allocate bits to")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise QonnxError(f"duplicate layer name(s) {', '.join(duplicates)}")
    _check_names(sensitivities, names, "sensitivities", every=True)
    _check_names(act_sensitivities or {}, names, "act_sensitivities")
    _check_names(pin or {}, names, "pin")

    weight_bits = _bit_list(candidates, "candidates")
    rule = _parse_act_rule(act_rule)
    act_bits = None if act_candidates is None else _bit_list(act_candidates, "act_candidates")
    if rule is None:
        act_bits = act_bits or (FIXED_ACT_BITS,)
        if len(act_bits) != 1:
            raise QonnxError(f"act_rule=None fixes activations: give one width in act_candidates, not {act_bits}")
    elif rule == "free":
        act_bits = act_bits or weight_bits
    elif act_bits is not None:
        raise QonnxError(f"act_candidates is for act_rule 'free' or None; act_rule {rule} sets a = w + {rule}")

    choices, sensitivity = [], []
    for name in names:
        pinned = (pin or {}).get(name)
        layer_choices = _choices(name, weight_bits, rule, act_bits, pinned)
        w_table = _bits_table(sensitivities[name], f"sensitivities[{name}]")
        a_table = _bits_table((act_sensitivities or {}).get(name, {}), f"act_sensitivities[{name}]")
        values = []
        for w, a in layer_choices:
            if w not in w_table and pinned is None:
                raise QonnxError(f"no sensitivity for layer {name} at {w} weight bits "
                                 f"(it has {sorted(w_table)}); drop {w} from the candidates")
            if a_table and a not in a_table and pinned is None:
                raise QonnxError(f"no activation sensitivity for layer {name} at {a} bits (it has {sorted(a_table)})")
            # a pinned layer has a single choice: a missing value there is a constant, taken as 0
            values.append(w_table.get(w, 0.0) + a_table.get(a, 0.0))
        choices.append(layer_choices)
        sensitivity.append(values)

    costs = {kind: [[model.cost(layer, w, a) for w, a in layer_choices]
                    for layer, layer_choices in zip(layers, choices)]
             for kind, model in models.items()}
    for kind, table in costs.items():
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for row in table for v in row):
            raise QonnxError(f"cost model {kind} returned a non-finite or non-numeric cost")

    groups = []
    for group in tie or []:
        group = [group] if isinstance(group, str) else list(group)
        unknown = [n for n in group if n not in names]
        if unknown:
            raise QonnxError(f"tie names unknown layer(s) {', '.join(map(str, unknown))} (layers: {', '.join(names)})")
        indices = sorted({names.index(n) for n in group})
        if len(indices) < 2:
            raise QonnxError(f"a tie needs at least two different layers, got {group}")
        groups.append(indices)
    return Problem(names, layers, choices, sensitivity, costs, groups)


def _choices(name: str, weight_bits, rule, act_bits, pinned) -> list[Choice]:
    if pinned is not None:
        if isinstance(pinned, (tuple, list)):
            if len(pinned) != 2:
                raise QonnxError(f"pin[{name}] = {pinned!r}: give w or (w, a)")
            w, a = (_one_bits(v, f"pin[{name}]") for v in pinned)
            return [(w, a)]
        weight_bits = (_one_bits(pinned, f"pin[{name}]"),)
    if rule == "free" or rule is None:
        return [(w, a) for w in weight_bits for a in act_bits]
    out = []
    for w in weight_bits:
        if not MIN_BITS <= w + rule <= MAX_BITS:
            raise QonnxError(f"act_rule {rule} gives {w + rule} activation bits for {w} weight bits "
                             f"(layer {name}); widths must be in {MIN_BITS}..{MAX_BITS}")
        out.append((w, w + rule))
    return out


def _parse_act_rule(act_rule):
    if act_rule is None or act_rule == "free":
        return act_rule
    if isinstance(act_rule, str):
        try:
            return int(act_rule)
        except ValueError:
            raise QonnxError(f"act_rule must be an integer offset k (a = w + k), 'free' or None, "
                             f"not {act_rule!r}") from None
    if isinstance(act_rule, bool) or not isinstance(act_rule, (int, np.integer)):
        raise QonnxError(f"act_rule must be an integer offset k (a = w + k), 'free' or None, not {act_rule!r}")
    return int(act_rule)


def _one_bits(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise QonnxError(f"{what}: bits must be integers, not {value!r}")
    if not MIN_BITS <= value <= MAX_BITS:
        raise QonnxError(f"{what}: {value} bits is outside {MIN_BITS}..{MAX_BITS}")
    return int(value)


def _bit_list(values, what: str) -> tuple[int, ...]:
    values = tuple(sorted({_one_bits(v, what) for v in values}))
    if not values:
        raise QonnxError(f"{what}: give at least one bit width")
    return values


def _bits_table(table, what: str) -> dict[int, float]:
    """bits -> float, bits given as ints or as strings of ints (JSON keys), values finite."""
    if not isinstance(table, Mapping):
        raise QonnxError(f"{what} must be a mapping bits -> value")
    out = {}
    for key, value in table.items():
        try:
            bits = int(key) if isinstance(key, str) else key
        except ValueError:
            raise QonnxError(f"{what}: key {key!r} is not a bit width") from None
        bits = _one_bits(bits, what)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise QonnxError(f"{what}[{key}] = {value!r} is not a finite number")
        out[bits] = float(value)
    return out


def _check_names(table, names: list[str], what: str, every: bool = False) -> None:
    if not isinstance(table, Mapping):
        raise QonnxError(f"{what} must be a mapping layer name -> ...")
    unknown = [str(n) for n in table if n not in names]
    if unknown:
        raise QonnxError(f"{what} names unknown layer(s) {', '.join(unknown)} (layers: {', '.join(names)})")
    missing = [n for n in names if n not in table] if every else []
    if missing:
        raise QonnxError(f"{what} has no entry for layer(s) {', '.join(missing)}")


# -- budgets ----------------------------------------------------------------------------------


def cost_range(problem: Problem, kind: str) -> tuple[float, float]:
    """(all-lowest, all-highest) cost: per-layer min and max over the allowed choices, summed."""
    table = problem.costs[kind]
    return sum(min(row) for row in table), sum(max(row) for row in table)


def resolve_budgets(problem: Problem, *, budget=None, budget_kind="bops", alpha=None, budgets=None):
    """Absolute budget per cost model name, and what to record of it in the meta data."""
    limits, alphas = {}, {}
    if budget is not None and alpha is not None:
        raise QonnxError("give an absolute budget or alpha, not both")
    if budget is not None or alpha is not None:
        if budget_kind not in problem.costs:
            raise QonnxError(f"unknown cost model {budget_kind!r} (known: {', '.join(problem.costs)})")
        if alpha is not None:
            if (isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number))
                    or not 0.0 <= alpha <= 1.0):
                raise QonnxError(f"alpha must be a number in [0, 1], not {alpha!r}")
            low, high = cost_range(problem, budget_kind)
            alphas[budget_kind] = float(alpha)
            limits[budget_kind] = low + float(alpha) * (high - low)
        else:
            limits[budget_kind] = _number(budget, f"budget ({budget_kind})")
    for kind, value in (budgets or {}).items():
        if kind not in problem.costs:
            raise QonnxError(f"unknown cost model {kind!r} in budgets (known: {', '.join(problem.costs)})")
        if kind in limits:
            raise QonnxError(f"two budgets for {kind}: give it once")
        limits[kind] = _number(value, f"budget ({kind})")
    meta = {"budget": dict(limits),
            "cost_range": {kind: list(cost_range(problem, kind)) for kind in limits}}
    if alphas:
        meta["alpha"] = alphas
    return limits, meta


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise QonnxError(f"{what} must be a finite number, not {value!r}")
    return value


# -- the ILP --------------------------------------------------------------------------------


def solve(problem: Problem, limits: Mapping[str, float], time_limit: float) -> tuple[list[int], str]:
    """Index of the chosen choice per layer, and the solver status as words."""
    objective = _normalised_objective(problem)
    upper = {kind: _row_upper(problem.costs[kind], value) for kind, value in limits.items()}
    picks, result = _solve_within(problem, objective, limits, upper, [], time_limit)
    if result is None or result.x is None:
        if result is not None and result.status == 2:  # infeasible
            raise QonnxError(_infeasible_message(problem, limits, time_limit))
        raise QonnxError(f"no bit configuration found within the time limit of {time_limit:g} s"
                         f"{f' ({result.message})' if result is not None else ''}; raise the time limit")
    if result.status != 0:
        return picks, f"not proven optimal: {result.message}"
    if any(len(set(row)) < len(row) for row in problem.sensitivity):
        picks = _cheapest_of_equals(problem, objective, limits, upper, picks, time_limit)
    return picks, "optimal"


def _solve_within(problem, objective, limits, upper, extra_rows, time_limit):
    """(picks, result) of the ILP; (None, result) when it has no solution.

    HiGHS meets constraints to a tolerance, but a budget must hold exactly: the chosen
    configuration is checked in exact arithmetic and, if the solver overshot, the row is
    tightened by twice the excess and the ILP solved again.
    """
    upper = dict(upper)
    fixed = _structure(problem) + list(extra_rows)
    for _ in range(MAX_TIGHTENINGS):
        rows = [_budget_row(problem.costs[kind], upper[kind]) for kind in limits]
        result = _milp(objective, fixed + rows, time_limit)
        if result.x is None:
            return None, result
        picks = _picks(problem, result.x)
        over = {kind: problem.total(problem.costs[kind], picks) - value for kind, value in limits.items()}
        over = {kind: excess for kind, excess in over.items() if excess > 0}
        if not over:
            return picks, result
        for kind, excess in over.items():
            upper[kind] -= 2 * excess / _row_scale(problem.costs[kind])
    raise RuntimeError("the solver kept overshooting the budget; this is a bug")


def _cheapest_of_equals(problem, objective, limits, upper, picks, time_limit) -> list[int]:
    """Among the configurations as good as `picks`, the cheapest (summed over the budgeted costs).

    Choices with equal sensitivity (free activation bits without activation sensitivities)
    leave the ILP indifferent; without this second pass it would return any of them, e.g.
    8-bit activations wherever the budget allows them.
    """
    kinds = list(limits) or list(problem.costs)
    cheap = sum(np.concatenate([np.asarray(r, dtype=float) for r in problem.costs[kind]])
                / max(cost_range(problem, kind)[1], 1e-300) for kind in kinds)
    x = _one_hot(problem, picks)
    best = float(objective @ x)
    as_good = LinearConstraint(objective[np.newaxis, :], -np.inf, best + 1e-6 * max(1.0, best))
    other, result = _solve_within(problem, cheap, limits, upper, [as_good], time_limit)
    if other is None:
        return picks
    # accept it only if it is exactly as good in the caller's units and really cheaper
    first, second = problem.total(problem.sensitivity, picks), problem.total(problem.sensitivity, other)
    if second <= first + 1e-12 * abs(first) and float(cheap @ _one_hot(problem, other)) < float(cheap @ x):
        return other
    return picks


def _one_hot(problem: Problem, picks: Sequence[int]) -> np.ndarray:
    x = np.zeros(problem.offsets[-1])
    x[[offset + c for offset, c in zip(problem.offsets, picks)]] = 1
    return x


def _milp(objective: np.ndarray, constraints: list[LinearConstraint], time_limit: float):
    return milp(objective, constraints=constraints, integrality=np.ones_like(objective),
                bounds=Bounds(0, 1),
                options={"time_limit": float(time_limit), "mip_rel_gap": 0.0, "disp": False})


def _normalised_objective(problem: Problem) -> np.ndarray:
    """Sensitivities shifted per layer to start at 0, in units of the smallest difference.

    Each layer takes exactly one choice, so the shift adds a constant and the scale multiplies
    by one: same argmin. The units matter to HiGHS: its gap and dual tolerances are absolute
    (about 1e-6), and HAWQ sensitivities span many decades (Omega(8) ~ 4**-6 Omega(2), traces
    differ by 1e3 between layers), so scaling to a maximum of 1 would hide the differences
    between high widths. Measured in the smallest per-layer difference they are all >= 1;
    the range is capped at MAX_OBJECTIVE_RANGE so the largest stays a sane double for the LP.
    """
    rows = [np.asarray(row, dtype=float) - min(row) for row in problem.sensitivity]
    largest = max(float(row.max()) for row in rows)
    if largest == 0.0:
        return np.concatenate(rows)
    gaps = [np.diff(np.unique(row)) for row in rows]
    smallest = min((float(g.min()) for g in gaps if g.size), default=largest)
    unit = max(smallest, largest / MAX_OBJECTIVE_RANGE)
    return np.concatenate(rows) / unit


def _structure(problem: Problem) -> list[LinearConstraint]:
    """One choice per layer, and equal bit values within every tie group."""
    offsets = problem.offsets
    n = offsets[-1]
    one_hot = sparse.lil_array((len(problem.choices), n))
    for l, layer_choices in enumerate(problem.choices):
        one_hot[l, offsets[l]:offsets[l] + len(layer_choices)] = 1
    constraints = [LinearConstraint(one_hot.tocsr(), 1, 1)]
    tie_rows = []
    for group in problem.ties:
        first = group[0]
        for other in group[1:]:
            for position in (0, 1):  # weight bits, activation bits
                values = {c[position] for c in problem.choices[first] + problem.choices[other]}
                for value in sorted(values):
                    row = np.zeros(n)
                    for l, sign in ((first, 1.0), (other, -1.0)):
                        for c, choice in enumerate(problem.choices[l]):
                            if choice[position] == value:
                                row[offsets[l] + c] = sign
                    tie_rows.append(row)
    if tie_rows:
        constraints.append(LinearConstraint(sparse.csr_array(np.array(tie_rows)), 0, 0))
    return constraints


def _row_scale(table: list[list[float]]) -> float:
    return max((abs(v) for row in table for v in row), default=1.0) or 1.0


def _row_upper(table: list[list[float]], limit: float) -> float:
    """Right-hand side of a budget row in scaled units.

    Integer costs sum to integers: sum <= limit  <=>  sum <= floor(limit) + 0.5, which leaves
    half a unit of slack either side for the solver's tolerance.
    """
    if all(float(v).is_integer() for row in table for v in row):
        limit = math.floor(limit) + 0.5
    return limit / _row_scale(table)


def _budget_row(table: list[list[float]], upper: float) -> LinearConstraint:
    coefficients = np.concatenate([np.asarray(row, dtype=float) for row in table]) / _row_scale(table)
    return LinearConstraint(coefficients[np.newaxis, :], -np.inf, upper)


def _picks(problem: Problem, x: np.ndarray) -> list[int]:
    offsets = problem.offsets
    return [int(np.argmax(x[offsets[l]:offsets[l + 1]])) for l in range(len(problem.choices))]


def minimum_cost(problem: Problem, kind: str, time_limit: float = 10.0) -> float | None:
    """The smallest total `kind` cost any configuration allowed by pins and ties reaches (None: none)."""
    table = problem.costs[kind]
    result = _milp(np.concatenate([np.asarray(r, dtype=float) for r in table]) / _row_scale(table),
                   _structure(problem), time_limit)
    if result.x is None:
        return None
    return problem.total(table, _picks(problem, result.x))


def _infeasible_message(problem: Problem, limits: Mapping[str, float], time_limit: float) -> str:
    minima = {kind: minimum_cost(problem, kind, time_limit) for kind in limits}
    if any(m is None for m in minima.values()) or not limits:
        return "the pins and ties cannot all hold at once: no bit configuration satisfies them"
    short = [f"{kind} budget {_fmt(limits[kind])} is below the minimum achievable {_fmt(minima[kind])}"
             for kind in limits if minima[kind] > limits[kind]]
    if short:
        return "infeasible budget: " + "; ".join(short) + " (with these candidates, pins and ties)"
    each = ", ".join(f"{kind} >= {_fmt(minima[kind])}" for kind in limits)
    return (f"infeasible budgets: each is reachable alone (minimum achievable {each}) "
            f"but not all at once: " + ", ".join(f"{kind} <= {_fmt(v)}" for kind, v in limits.items()))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.6g}"
