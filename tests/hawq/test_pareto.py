"""hawq.pareto and hawq.plots: a tiny sweep writes its table, CSV and valid PNGs; and the jet
tagger example (examples/jet_tagger/run.py): its data loader and its --quick synthetic run."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from hawq.bitconfig import BitConfig
from hawq.hessian import hessian_traces
from hawq.pareto import comparisons, parse_budget, pareto_sweep, summarize
from hawq.plots import plot_pareto, plot_traces
from paths import REPO
from qonnx_ir.errors import QonnxError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JET_RUN = REPO / "examples" / "jet_tagger" / "run.py"
SYNTHETIC = "SYNTHETIC STAND-IN DATA: results say nothing about jet tagging"




def blobs(n: int, seed: int = 0):
    """4 separable-ish classes in 8-D."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 2.0, (4, 8))
    y = rng.integers(0, 4, n)
    return (centres[y] + rng.standard_normal((n, 8))).astype(np.float32), y.astype(np.int64)


def assert_png(path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.shape[2] in (3, 4)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("pareto")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    train, val, test = blobs(300, 1), blobs(100, 2), blobs(100, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(train[0])), torch.from_numpy(train[1])).backward()
        optimizer.step()
    traces = hessian_traces(model, nn.CrossEntropyLoss(), tuple(map(torch.from_numpy, train)),
                            max_probes=16, min_probes=16, progress=False)
    rows = pareto_sweep(model, train, val, test, traces=traces, budgets=[0.2, 1.0], candidates=(2, 4, 8),
                        uniform_bits=(2, 8), seeds=(0,), epochs=2, lr=1e-3, out_dir=out, progress=False,
                        note="TEST NOTE")
    return out, rows


def test_rows_have_bops_increasing_with_the_budget(sweep):
    _, rows = sweep
    hawq = [r for r in rows if r["kind"] == "hawq"]
    assert [r["name"] for r in hawq] == ["hawq_a0.2", "hawq_a1"]
    assert hawq[0]["bops"] < hawq[1]["bops"]
    assert [r["name"] for r in rows if r["kind"] == "uniform"] == ["uniform_2", "uniform_8"]
    for r in rows:
        assert len(r["accuracies"]) == r["n_seeds"] == 1
        assert 0.0 <= r["min"] <= r["mean"] <= r["max"] <= 1.0 and r["std"] == 0.0
        assert r["bops"] > 0 and r["weight_bits"] > 0
    uniform_8 = next(r for r in rows if r["name"] == "uniform_8")
    assert uniform_8["bops"] == (8 * 16 + 16 * 8 + 8 * 4) * 64 and uniform_8["weight_bits"] == (128 + 128 + 32) * 8


def test_identical_configurations_are_trained_once(sweep):
    """alpha = 1 gives all layers 8 bits: the same configuration as uniform 8-bit."""
    _, rows = sweep
    by_name = {r["name"]: r for r in rows}
    assert set(by_name["hawq_a1"]["weights"].values()) == {8}
    assert by_name["uniform_8"]["same_as"] == "hawq_a1"
    assert by_name["uniform_8"]["accuracies"] == by_name["hawq_a1"]["accuracies"]
    assert [c["verdict"] for c in comparisons(rows) if c["hawq"]["name"] == "hawq_a1"] == ["identical bits"]


def test_markdown_csv_and_bit_configurations_are_written(sweep):
    out, rows = sweep
    text = (out / "pareto.md").read_text()
    assert "**TEST NOTE**" in text and "| config | budget | bits per layer" in text
    for r in rows:
        assert f"| {r['name']}" in text and f"{r['bops']:,}" in text
    with (out / "pareto.csv").open() as stream:
        table = list(csv.DictReader(stream))
    assert [t["name"] for t in table] == [r["name"] for r in rows]
    assert [int(t["bops"]) for t in table] == [r["bops"] for r in rows]
    assert all(t["note"] == "TEST NOTE" for t in table)
    for r in rows:
        config = BitConfig.load(out / f"bits_{r['name']}.yaml")
        assert config.weights == r["weights"] and config.activations == r["activations"]
    meta = json.loads((out / "traces.json").read_text())["meta"]
    assert meta["note"] == "TEST NOTE"


def test_plots_are_valid_png_files(sweep, tmp_path):
    out, rows = sweep
    assert_png(out / "pareto.png")
    assert_png(out / "traces.png")
    # negative traces (possible away from a minimum) and plain floats still plot
    assert_png(plot_traces({"a": 3.0, "b": -0.5}, tmp_path / "t.png"))
    assert_png(plot_pareto([r for r in rows if r["kind"] == "uniform"], tmp_path / "p.png", reference=0.9))


def test_budget_parsing_and_summaries():
    assert parse_budget(0.5) == ("alpha", 0.5) and parse_budget(1) == ("alpha", 1.0)
    assert parse_budget(12000) == ("bops", 12000.0)
    with pytest.raises(QonnxError):
        parse_budget(-1)
    stats = summarize([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7) and stats["std"] == pytest.approx(0.2)
    assert (stats["min"], stats["max"], stats["n_seeds"]) == (0.5, 0.9, 3)


# -- the jet tagger example ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def jet():
    spec = importlib.util.spec_from_file_location("jet_tagger_run", JET_RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_loader_falls_back_to_synthetic_when_openml_fails(jet, monkeypatch):
    import sklearn.datasets

    def unreachable(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(jet, "openml_reachable", lambda timeout: True)  # so fetch_openml is called
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", unreachable)
    data = jet.load_jet_data(synthetic_samples=500)
    assert data.synthetic and data.note == SYNTHETIC
    assert data.x.shape == (500, 16) and data.x.dtype == np.float32
    assert set(np.unique(data.y)) <= set(range(5))


def test_loader_reads_openml_names_as_class_codes(jet, monkeypatch):
    import sklearn.datasets
    from sklearn.utils import Bunch

    names = np.array(list("gqtwz") * 4)
    fake = Bunch(data=np.arange(20 * 16, dtype=np.float64).reshape(20, 16), target=names)
    monkeypatch.setattr(jet, "openml_reachable", lambda timeout: True)
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", lambda *a, **k: fake)
    data = jet.load_jet_data()
    assert not data.synthetic and data.classes == tuple("gqtwz")
    assert data.y.tolist() == [0, 1, 2, 3, 4] * 4


def test_loader_reads_local_npz_and_csv(jet, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 16)).astype(np.float32), rng.integers(0, 5, 40)
    np.savez(tmp_path / "jets.npz", x=x, y=y)
    data = jet.load_jet_data(tmp_path / "jets.npz")
    assert not data.synthetic and np.array_equal(data.x, x) and np.array_equal(data.y, y)

    lines = [",".join([f"f{i}" for i in range(16)] + ["label"])]
    lines += [",".join([f"{v:.9g}" for v in row] + ["gqtwz"[label]]) for row, label in zip(x, y)]
    (tmp_path / "jets.csv").write_text("\n".join(lines) + "\n")
    data = jet.load_jet_data(tmp_path / "jets.csv")
    assert np.allclose(data.x, x) and data.classes == tuple(sorted(set("gqtwz"[v] for v in y)))

    np.savez(tmp_path / "bad.npz", x=x[:, :15], y=y)
    with pytest.raises(ValueError, match="16 features"):
        jet.load_jet_data(tmp_path / "bad.npz")


def test_quick_synthetic_run_writes_every_output_with_the_label(jet, tmp_path, capsys):
    out = tmp_path / "jet"
    start = time.perf_counter()
    summary = jet.main(["--quick", "--no-download", "--no-progress", "--out", str(out)])
    seconds = time.perf_counter() - start
    assert seconds < 60, f"--quick took {seconds:.0f} s"
    assert SYNTHETIC in capsys.readouterr().out
    assert summary["note"] == SYNTHETIC
    for name in ("traces.json", "traces.png", "pareto.md", "pareto.csv", "pareto.png", "summary.json",
                 "DATA_SOURCE.txt"):
        assert (out / name).is_file(), name
    for name in ("pareto.md", "pareto.csv", "traces.json", "summary.json", "DATA_SOURCE.txt"):
        assert SYNTHETIC in (out / name).read_text(), name
    bits = sorted(out.glob("bits_*.yaml"))
    assert bits and all(BitConfig.load(path).meta["note"] == SYNTHETIC for path in bits)
    assert_png(out / "pareto.png")
    assert_png(out / "traces.png")
    (name, result), = summary["hls"].items()
    assert (out / f"model_{name}.onnx").is_file() and (out / f"model_{name}.hw.onnx").is_file()
    assert result["lowered_equals_brevitas_float64"] is True
    for backend in ("vitis", "catapult"):
        project = out / f"hls_{name}_{backend}"
        assert (project / "project.json").is_file() and (project / "DATA_NOTE.txt").read_text().strip() == SYNTHETIC
        assert result["hls"][backend].get("csim_equals_interpreter") is True, result["hls"][backend]
    import onnx

    props = {p.key: p.value for p in onnx.load(out / f"model_{name}.onnx").metadata_props}
    assert props["data_note"] == SYNTHETIC
