"""The bit-allocation ILP (hawq.allocate), its cost models, bit configurations and `qonnx hawq allocate`.

The ILP is checked against an exhaustive search written here from the problem statement
(not from hawq.allocate's code): every combination of per-layer choices, filtered by pins,
ties and budgets, the lowest total sensitivity wins.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from hawq.allocate import allocate_bits
from hawq.bitconfig import BitConfig
from hawq.cost import COST_MODELS, Bops, CostModel, WeightMemory
from hawq.layers import LayerShape
from qonnx_ir.cli import main
from qonnx_ir.errors import QonnxError


# -- an independent reference -------------------------------------------------------------------


def bops(layer, w, a):
    return layer.in_features * layer.out_features * w * a


def weight_bits(layer, w, a):
    return layer.in_features * layer.out_features * w


COST = {"bops": bops, "weight_bits": weight_bits}


def layer_options(layer, candidates, act_rule, act_candidates, pins):
    """Every (w, a) the layer may take."""
    pinned = pins.get(layer.name)
    if isinstance(pinned, tuple):
        return [pinned]
    weights = [pinned] if pinned is not None else list(candidates)
    if act_rule == "free":
        return [(w, a) for w in weights for a in act_candidates]
    return [(w, w + act_rule) for w in weights]


def objective(config_pairs, layers, sens, act_sens):
    return sum(sens[l.name].get(w, 0.0) + act_sens.get(l.name, {}).get(a, 0.0)
               for l, (w, a) in zip(layers, config_pairs))


def exhaustive(layers, sens, act_sens, options, ties, limits):
    """(best objective, best pairs), or None when nothing is feasible."""
    position = {l.name: i for i, l in enumerate(layers)}
    best = None
    for pairs in itertools.product(*options):
        if any(len({pairs[position[n]] for n in group}) > 1 for group in ties):
            continue
        if any(sum(COST[kind](l, w, a) for l, (w, a) in zip(layers, pairs)) > limit
               for kind, limit in limits.items()):
            continue
        value = objective(pairs, layers, sens, act_sens)
        if best is None or value < best[0]:
            best = (value, pairs)
    return best


def hawq_like_sensitivities(rng, layers, bits):
    """Tr(H)/n * ||Q_b(W) - W||^2 ~ trace * 4**-b, with traces over six decades and some noise."""
    out = {}
    for layer in layers:
        trace = 10.0 ** rng.uniform(-3, 3)
        out[layer.name] = {b: float(trace * 4.0 ** -b * rng.uniform(0.5, 1.5)) for b in bits}
    return out


# -- (a) the ILP equals exhaustive search ---------------------------------------------------------


def random_instance(rng):
    n_layers = int(rng.integers(2, 5))
    layers = [LayerShape(f"fc{i}", int(rng.integers(1, 65)), int(rng.integers(1, 65))) for i in range(n_layers)]
    candidates = sorted(rng.choice(np.arange(2, 9), size=int(rng.integers(2, 5)), replace=False).tolist())
    act_rule = "free" if rng.random() < 0.5 else int(rng.integers(0, 3))
    act_candidates = (sorted(rng.choice(np.arange(2, 9), size=int(rng.integers(2, 4)), replace=False).tolist())
                      if act_rule == "free" else None)
    all_bits = range(1, 11)
    if rng.random() < 0.5:
        sens = hawq_like_sensitivities(rng, layers, all_bits)
    else:
        sens = {l.name: {b: float(rng.uniform(0, 1)) for b in all_bits} for l in layers}
    act_sens = {}
    if act_rule == "free" and rng.random() < 0.5:
        act_sens = {l.name: {b: float(rng.uniform(0, 0.1)) for b in all_bits} for l in layers}
    pins, ties = {}, []
    if rng.random() < 0.3:
        name = layers[int(rng.integers(n_layers))].name
        w = int(rng.choice(candidates + [8]))
        if act_rule == "free" and rng.random() < 0.5:
            pins[name] = (w, int(rng.choice(act_candidates)))
        else:
            pins[name] = w
    if rng.random() < 0.3:
        ties.append([str(n) for n in rng.choice([l.name for l in layers], size=2, replace=False)])
    return layers, candidates, act_rule, act_candidates, sens, act_sens, pins, ties


@pytest.mark.parametrize("seed", range(200))
def test_ilp_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    layers, candidates, act_rule, act_candidates, sens, act_sens, pins, ties = random_instance(rng)
    options = [layer_options(l, candidates, act_rule, act_candidates, pins) for l in layers]

    kinds = [["bops"], ["weight_bits"], ["bops", "weight_bits"]][seed % 3]
    use_alpha = seed % 2 == 0 and len(kinds) == 1
    limits, kwargs = {}, {}
    for kind in kinds:
        low = sum(min(COST[kind](l, w, a) for w, a in opts) for l, opts in zip(layers, options))
        high = sum(max(COST[kind](l, w, a) for w, a in opts) for l, opts in zip(layers, options))
        if use_alpha:
            alpha = float(rng.uniform(0, 1))
            limits[kind] = low + alpha * (high - low)
            kwargs = {"alpha": alpha, "budget_kind": kind}
        else:
            limits[kind] = float(rng.uniform(low, high))
    if not use_alpha:
        kwargs = {"budgets": dict(limits)}

    best = exhaustive(layers, sens, act_sens, options, ties, limits)
    call = dict(candidates=candidates, act_rule=act_rule, act_candidates=act_candidates,
                act_sensitivities=act_sens or None, pin=pins, tie=ties, **kwargs)
    if best is None:
        with pytest.raises(QonnxError, match="infeasible|cannot all hold"):
            allocate_bits(sens, layers, **call)
        return
    config = allocate_bits(sens, layers, **call)

    pairs = [(config.weights[l.name], config.activations[l.name]) for l in layers]
    assert all(pair in opts for pair, opts in zip(pairs, options))
    for group in ties:
        assert len({pairs[[l.name for l in layers].index(n)] for n in group}) == 1
    for kind, limit in limits.items():
        assert sum(COST[kind](l, w, a) for l, (w, a) in zip(layers, pairs)) <= limit
    value = objective(pairs, layers, sens, act_sens)
    assert math.isclose(value, best[0], rel_tol=1e-9, abs_tol=1e-300), (pairs, best)
    assert math.isclose(config.meta["objective"], value, rel_tol=1e-12)
    assert config.meta["status"] == "optimal"


def test_infeasible_budget_names_the_minimum():
    layers = [LayerShape("fc1", 4, 8), LayerShape("fc2", 8, 2)]
    sens = {l.name: {b: 1.0 / b for b in range(2, 9)} for l in layers}
    minimum = 4 * 8 * 2 * 2 + 8 * 2 * 2 * 2
    with pytest.raises(QonnxError, match=f"below the minimum achievable {minimum:,}"):
        allocate_bits(sens, layers, budget=minimum - 1)
    assert allocate_bits(sens, layers, budget=minimum).weights == {"fc1": 2, "fc2": 2}
    # a pin raises the minimum
    pinned_minimum = 4 * 8 * 8 * 8 + 8 * 2 * 2 * 2
    with pytest.raises(QonnxError, match=f"minimum achievable {pinned_minimum:,}"):
        allocate_bits(sens, layers, budget=minimum, pin={"fc1": 8})
    with pytest.raises(QonnxError, match="cannot all hold"):
        allocate_bits(sens, layers, budget=10**9, pin={"fc1": 8, "fc2": 4}, tie=[["fc1", "fc2"]])


class Headroom:
    """A cost that falls as bits rise (so it pulls against BOPs)."""

    name = "headroom"

    def cost(self, layer, weight_bits, act_bits):
        return layer.macs * (10 - weight_bits)


def test_budgets_feasible_alone_but_not_together():
    layers = [LayerShape("fc1", 4, 8), LayerShape("fc2", 8, 2)]
    sens = {l.name: {b: 1.0 / b for b in range(2, 9)} for l in layers}
    models = {**COST_MODELS, "headroom": Headroom()}
    bops_minimum = 4 * 8 * 2 * 2 + 8 * 2 * 2 * 2
    headroom_minimum = (4 * 8 + 8 * 2) * 2
    for budgets in ({"bops": bops_minimum}, {"headroom": headroom_minimum}):
        allocate_bits(sens, layers, budgets=budgets, cost_models=models)
    with pytest.raises(QonnxError, match="not all at once") as error:
        allocate_bits(sens, layers, budgets={"bops": bops_minimum, "headroom": headroom_minimum}, cost_models=models)
    assert f"bops >= {bops_minimum:,}, headroom >= {headroom_minimum:,}" in str(error.value)


def test_pins_outside_candidates_and_fixed_activations():
    layers = [LayerShape("fc1", 16, 32), LayerShape("fc2", 32, 32), LayerShape("fc3", 32, 5)]
    sens = {l.name: {b: 4.0 ** -b for b in range(2, 5)} for l in layers}  # no value at 8 bits
    config = allocate_bits(sens, layers, alpha=0.0, candidates=(2, 3, 4), pin={"fc1": 8, "fc3": (8, 6)})
    assert config.weights == {"fc1": 8, "fc2": 2, "fc3": 8}
    assert config.activations == {"fc1": 8, "fc2": 2, "fc3": 6}
    fixed = allocate_bits(sens, layers, alpha=0.0, candidates=(2, 3, 4), act_rule=None, act_candidates=(6,))
    assert set(fixed.activations.values()) == {6} and set(fixed.weights.values()) == {2}
    offset = allocate_bits(sens, layers, alpha=1.0, candidates=(2, 3, 4), act_rule=2)
    assert all(offset.activations[n] == offset.weights[n] + 2 for n in offset.weights)


def test_free_activations_without_sensitivity_take_the_cheapest_width():
    """Equal sensitivities leave the ILP indifferent; the tie-break picks the cheapest."""
    layers = [LayerShape("fc1", 16, 32), LayerShape("fc2", 32, 32), LayerShape("fc3", 32, 5)]
    sens = {l.name: {b: 4.0 ** -b for b in range(2, 9)} for l in layers}
    config = allocate_bits(sens, layers, alpha=0.7, act_rule="free", act_candidates=(3, 4, 8))
    assert set(config.activations.values()) == {3}
    # with activation sensitivities the activation bits follow them
    act_sens = {l.name: {3: 1.0, 4: 0.5, 8: 0.0} for l in layers}
    config = allocate_bits(sens, layers, alpha=1.0, act_rule="free", act_candidates=(3, 4, 8),
                           act_sensitivities=act_sens)
    assert set(config.activations.values()) == {8}


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 10, "alpha": 0.5}, "not both"),
    ({"alpha": 1.5}, r"\[0, 1\]"),
    ({"alpha": -0.1}, r"\[0, 1\]"),
    ({"budgets": {"luts": 10}}, "unknown cost model"),
    ({"budget": 10, "budgets": {"bops": 10}}, "two budgets"),
    ({"alpha": 0.5, "candidates": (2, 9)}, "no sensitivity for layer fc1 at 9"),
    ({"alpha": 0.5, "candidates": (0, 2)}, "outside 1..32"),
    ({"alpha": 0.5, "pin": {"fc9": 8}}, "pin names unknown layer"),
    ({"alpha": 0.5, "tie": [["fc1", "fc9"]]}, "tie names unknown layer"),
    ({"alpha": 0.5, "tie": [["fc1"]]}, "at least two"),
    ({"alpha": 0.5, "act_rule": "tied"}, "act_rule"),
    ({"alpha": 0.5, "act_rule": 30}, "activation bits"),
    ({"alpha": 0.5, "act_rule": 0, "act_candidates": (4, 8)}, "act_candidates"),
    ({"alpha": 0.5, "time_limit": 0}, "time_limit"),
])
def test_bad_arguments_are_qonnx_errors(kwargs, message):
    layers = [LayerShape("fc1", 4, 8), LayerShape("fc2", 8, 2)]
    sens = {l.name: {b: 1.0 / b for b in range(2, 9)} for l in layers}
    with pytest.raises(QonnxError, match=message) as error:
        allocate_bits(sens, layers, **kwargs)
    assert "\n" not in str(error.value)


def test_sensitivity_tables_must_match_the_layers():
    layers = [LayerShape("fc1", 4, 8), LayerShape("fc2", 8, 2)]
    with pytest.raises(QonnxError, match="no entry for layer"):
        allocate_bits({"fc1": {2: 1.0}}, layers, alpha=0.5, candidates=(2,))
    with pytest.raises(QonnxError, match="unknown layer"):
        allocate_bits({"fc1": {2: 1.0}, "fc2": {2: 1.0}, "fc3": {2: 1.0}}, layers, alpha=0.5, candidates=(2,))
    with pytest.raises(QonnxError, match="finite"):
        allocate_bits({"fc1": {2: float("nan")}, "fc2": {2: 1.0}}, layers, alpha=0.5, candidates=(2,))


# -- (b) speed ----------------------------------------------------------------------------------


def test_fifty_layers_seven_candidates_solves_in_under_a_second():
    rng = np.random.default_rng(0)
    layers = [LayerShape(f"block{i}.fc", int(rng.integers(16, 513)), int(rng.integers(16, 513))) for i in range(50)]
    sens = hawq_like_sensitivities(rng, layers, range(2, 9))
    best, config = math.inf, None
    for _ in range(3):
        start = time.perf_counter()
        config = allocate_bits(sens, layers, alpha=0.5, candidates=range(2, 9),
                               budgets={"weight_bits": 0.6 * sum(l.n_weights for l in layers) * 8})
        best = min(best, time.perf_counter() - start)
    print(f"50 layers x 7 candidates: best of 3 = {best * 1e3:.1f} ms ({config.meta['status']})")
    assert config.meta["status"] == "optimal"
    assert best < 1.0


# -- (c) the ends of the alpha range ------------------------------------------------------------


@pytest.mark.parametrize("act_rule", [0, 2, "free"])
def test_alpha_zero_is_all_lowest_and_alpha_one_is_least_sensitive(act_rule):
    rng = np.random.default_rng(7)
    layers = [LayerShape(f"fc{i}", int(rng.integers(4, 64)), int(rng.integers(4, 64))) for i in range(6)]
    candidates = (2, 3, 4, 6, 8)
    sens = {l.name: {b: float(rng.uniform(0, 1)) for b in candidates} for l in layers}  # not monotone
    act_candidates = (3, 5, 8) if act_rule == "free" else None
    lowest = allocate_bits(sens, layers, alpha=0.0, candidates=candidates, act_rule=act_rule,
                           act_candidates=act_candidates)
    assert set(lowest.weights.values()) == {2}
    assert set(lowest.activations.values()) == {3 if act_rule == "free" else 2 + act_rule}
    for kind in ("bops", "weight_bits"):
        least = allocate_bits(sens, layers, alpha=1.0, budget_kind=kind, candidates=candidates,
                              act_rule=act_rule, act_candidates=act_candidates)
        assert least.weights == {l.name: min(candidates, key=sens[l.name].get) for l in layers}
        assert math.isclose(least.meta["objective"], sum(min(s.values()) for s in sens.values()), rel_tol=1e-12)


# -- cost models --------------------------------------------------------------------------------


def test_cost_models():
    layer = LayerShape("fc", 16, 64)
    assert Bops().cost(layer, 6, 8) == 16 * 64 * 6 * 8
    assert WeightMemory().cost(layer, 6, 8) == 16 * 64 * 6
    assert set(COST_MODELS) == {"bops", "weight_bits"}
    assert all(isinstance(m, CostModel) and m.name == k for k, m in COST_MODELS.items())

    class Luts:  # a model added later only has to follow the protocol
        name = "luts"

        def cost(self, layer, weight_bits, act_bits):
            return layer.macs * max(weight_bits, act_bits)

    layers = [LayerShape("fc1", 4, 8), LayerShape("fc2", 8, 2)]
    sens = {l.name: {b: 1.0 / b for b in range(2, 9)} for l in layers}
    config = allocate_bits(sens, layers, budgets={"luts": 4 * 8 * 4 + 8 * 2 * 4},
                           cost_models={**COST_MODELS, "luts": Luts()})
    assert config.weights == {"fc1": 4, "fc2": 4}
    assert config.costs(layers, {"luts": Luts()}) == {"luts": 4 * 8 * 4 + 8 * 2 * 4}


# -- (d) BitConfig files ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_bitconfig_round_trip(tmp_path, suffix):
    config = BitConfig({"fc1": 8, "fc2": 3}, {"fc1": 8, "fc2": 4}, {"objective": 0.25, "costs": {"bops": 12}})
    path = config.save(tmp_path / f"bits{suffix}")
    assert BitConfig.load(path) == config
    assert config.costs([LayerShape("fc1", 2, 3), LayerShape("fc2", 3, 1)]) == {
        "bops": 2 * 3 * 8 * 8 + 3 * 1 * 3 * 4, "weight_bits": 2 * 3 * 8 + 3 * 1 * 3}


@pytest.mark.parametrize("name, text, message", [
    ("bits.yaml", "weights: {fc1: 8\n", "not valid YAML"),
    ("bits.json", "{weights: 1}", "not valid JSON"),
    ("bits.yaml", "- 1\n- 2\n", "expected a mapping"),
    ("bits.yaml", "weights: {fc1: 8}\n", "'activations' must be a mapping"),
    ("bits.yaml", "weights: {fc1: 8}\nactivations: {fc1: 8}\nweigths: {}\n", "unknown key"),
    ("bits.yaml", "weights: {fc1: 0}\nactivations: {fc1: 8}\n", r"1\.\.32"),
    ("bits.yaml", "weights: {fc1: 33}\nactivations: {fc1: 8}\n", r"1\.\.32"),
    ("bits.yaml", "weights: {fc1: 4.5}\nactivations: {fc1: 8}\n", "must be an integer"),
    ("bits.yaml", "weights: {fc1: true}\nactivations: {fc1: 8}\n", "must be an integer"),
    ("bits.json", '{"weights": {"fc1": "8"}, "activations": {"fc1": 8}}', "must be an integer"),
    ("bits.yaml", "weights: {fc1: 8, fc2: 4}\nactivations: {fc1: 8}\n", "only in weights: fc2"),
    ("bits.yaml", "weights: {fc1: 8}\nactivations: {fc1: 8}\nmeta: [1]\n", "'meta' must be a mapping"),
    ("bits.txt", "weights: {}\n", "unknown bit-configuration format"),
])
def test_bad_bitconfig_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(QonnxError, match=message) as error:
        BitConfig.load(path)
    assert "\n" not in str(error.value)


def test_missing_bitconfig_file_and_bad_save(tmp_path):
    with pytest.raises(QonnxError, match="no such file"):
        BitConfig.load(tmp_path / "none.yaml")
    with pytest.raises(QonnxError, match="unknown bit-configuration format"):
        BitConfig({"fc1": 8}, {"fc1": 8}).save(tmp_path / "bits.txt")
    assert list(tmp_path.iterdir()) == []


# -- (e) the command ----------------------------------------------------------------------------


LAYERS = [LayerShape("fc1", 16, 64), LayerShape("fc2", 64, 32), LayerShape("fc3", 32, 32), LayerShape("fc4", 32, 5)]


def write_traces(path, layers=LAYERS, bits=range(2, 9)):
    rng = np.random.default_rng(1)
    entries = []
    for layer in layers:
        trace = float(10.0 ** rng.uniform(-1, 2))
        entries.append({"name": layer.name, "in_features": layer.in_features, "out_features": layer.out_features,
                        "trace": trace, "std_error": 0.05 * trace,
                        "sensitivity": {str(b): trace * 4.0 ** -b for b in bits}})
    path.write_text(json.dumps({"layers": entries, "meta": {"model": "test", "samples": 128}}))
    return path


def run_cli(argv, capsys):
    code = main(["hawq", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_allocate_command(tmp_path, capsys):
    traces = write_traces(tmp_path / "traces.json")
    high = sum(l.macs * 8 * 8 for l in LAYERS)
    budget = high // 3
    code, out, err = run_cli(["allocate", traces, "--budget-bops", f"{budget}", "--pin", "fc1=8",
                              "--tie", "fc2,fc3", "-o", tmp_path / "bits.yaml"], capsys)
    assert code == 0, err
    config = BitConfig.load(tmp_path / "bits.yaml")
    assert config.costs(LAYERS)["bops"] <= budget
    assert config.weights["fc1"] == 8 and config.weights["fc2"] == config.weights["fc3"]
    assert config.activations == config.weights  # default act rule 0
    assert config.meta["budget"] == {"bops": budget}
    for name in ("fc1", "fc4", "total", "budget bops", "optimal", "wrote"):
        assert name in out

    code, out, err = run_cli(["allocate", traces, "--alpha", "0.4", "--budget-weight-bits", "20000",
                              "--candidates", "2,4,8", "--act-rule", "free", "--act-candidates", "4,8",
                              "-o", tmp_path / "bits.json"], capsys)
    assert code == 0, err
    config = BitConfig.load(tmp_path / "bits.json")
    assert set(config.weights.values()) <= {2, 4, 8} and set(config.activations.values()) <= {4, 8}
    assert config.costs(LAYERS)["weight_bits"] <= 20000
    assert config.meta["alpha"] == {"bops": 0.4}


def test_command_is_registered():
    """The `qonnx` entry point finds the verb through pyproject's qonnx.commands group."""
    result = subprocess.run([sys.executable, "-m", "qonnx_ir.cli", "hawq", "allocate", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--budget-bops" in result.stdout


@pytest.mark.parametrize("make_args", [
    lambda t, o: ["allocate", t.parent / "missing.json", "--alpha", "0.5", "-o", o],
    lambda t, o: ["allocate", t.with_name("bad.json"), "--alpha", "0.5", "-o", o],
    lambda t, o: ["allocate", t.with_name("no_layers.json"), "--alpha", "0.5", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "--pin", "fc9=8", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "--pin", "fc1", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "--tie", "fc1,fc9", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "1.5", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "half", "-o", o],
    lambda t, o: ["allocate", t, "--budget-bops", "1", "-o", o],
    lambda t, o: ["allocate", t, "--budget-bops", "1e9", "--budget-weight-bits", "10", "-o", o],
    lambda t, o: ["allocate", t, "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "--candidates", "2,9", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "--act-rule", "sometimes", "-o", o],
    lambda t, o: ["allocate", t, "--alpha", "0.5", "-o", o.with_suffix(".txt")],
], ids=["missing file", "bad json", "no layers", "unknown pinned layer", "bad pin", "unknown tied layer",
        "alpha > 1", "alpha not a number", "infeasible bops", "infeasible weight bits", "no budget",
        "candidate without sensitivity", "bad act rule", "bad output suffix"])
def test_allocate_command_bad_input(tmp_path, capsys, make_args):
    traces = write_traces(tmp_path / "traces.json")
    (tmp_path / "bad.json").write_text('{"layers": [')
    (tmp_path / "no_layers.json").write_text('{"layers": [], "meta": {}}')
    output = tmp_path / "out" / "bits.yaml"
    code, out, err = run_cli(make_args(traces, output), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("qonnx hawq: error: "), err
    assert out == ""
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_infeasible_command_reports_the_minimum(tmp_path, capsys):
    traces = write_traces(tmp_path / "traces.json")
    minimum = sum(l.macs * 2 * 2 for l in LAYERS)
    code, _, err = run_cli(["allocate", traces, "--budget-bops", minimum - 1, "-o", tmp_path / "b.yaml"], capsys)
    assert code == 2 and f"minimum achievable {minimum:,}" in err


def test_sensitivity_then_allocate_end_to_end(tmp_path, capsys):
    """qonnx hawq sensitivity writes a traces file that qonnx hawq allocate turns into bits."""
    factory = tmp_path / "mlp.py"
    factory.write_text("import torch\n\ndef make():\n    torch.manual_seed(0)\n"
                       "    return torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(256, 8)).astype(np.float32), y=rng.integers(0, 3, 256))
    code, out, err = run_cli(["sensitivity", f"{factory}:make", "--data", tmp_path / "data.npz", "-o",
                              tmp_path / "traces.json", "--max-probes", 64, "--plot", tmp_path / "traces.png"], capsys)
    assert code == 0, err
    layers = json.loads((tmp_path / "traces.json").read_text())["layers"]
    assert [layer["name"] for layer in layers] == ["0", "2"] and all(layer["trace"] > 0 for layer in layers)
    assert (tmp_path / "traces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run_cli(["allocate", tmp_path / "traces.json", "--alpha", 0.5, "-o", tmp_path / "bits.yaml"], capsys)
    assert code == 0, err
    assert set(BitConfig.load(tmp_path / "bits.yaml").weights) == {"0", "2"}


def test_sensitivity_help_and_bad_data(tmp_path, capsys):
    code, out, err = run_cli(["sensitivity", "--help"], capsys)
    assert code == 0 and "qonnx hawq sensitivity" in out and "example" in out
    code, out, err = run_cli(["sensitivity", "x.py:f", "--data", tmp_path / "missing.npz", "-o",
                              tmp_path / "t.json"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such file" in err and not (tmp_path / "t.json").exists()
