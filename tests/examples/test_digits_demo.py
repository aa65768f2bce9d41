"""The README demo (examples/digits_demo.py) end to end, with a short training run.

Trains 3 epochs on scikit-learn's digits, exports, lowers, and checks that the lowered graph
run by the integer interpreter equals the Brevitas model evaluated in float64 bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from paths import REPO
from script_import import import_script

DEMO = REPO / "examples" / "digits_demo.py"
OUTPUTS = ("model.onnx", "model.hw.onnx", "lowering_report.md", "test_x.npy", "test_y_hw.npy", "summary.json",
           "bits.yaml", "traces.png", "accuracy_vs_bops.png")
PROJECTS = ("hls_vitis", "hls_catapult")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = import_script(DEMO).main(["--out", str(out), "--epochs", "3", "--seed", "0"])
    return out, summary


def test_writes_every_output_under_the_output_folder(demo_run):
    out, summary = demo_run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == sorted(OUTPUTS + PROJECTS)
    for project in PROJECTS:
        assert (out / project / "project.json").is_file() and (out / project / "build_prj.tcl").is_file()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_lowered_graph_is_bit_exact_with_brevitas(demo_run):
    out, summary = demo_run
    assert summary["bit_exact"] is True
    assert summary["mismatching_elements"] == 0
    test_x, test_y = np.load(out / "test_x.npy"), np.load(out / "test_y_hw.npy")
    assert test_x.shape == (summary["data"]["test_samples"], 64)
    assert test_y.shape == (summary["data"]["test_samples"], 10)
    assert summary["compared_elements"] == test_y.size


def test_both_hls_projects_compute_exactly_what_the_interpreter_computes(demo_run):
    out, summary = demo_run
    assert set(summary["hls"]) == {"vitis", "catapult"}
    for backend, result in summary["hls"].items():
        assert result["bit_exact"] is True and result["mismatching_elements"] == 0, backend
        assert result["path"] == str(out / f"hls_{backend}")


def test_hawq_chose_bits_within_its_budget_and_wrote_its_plots(demo_run):
    out, summary = demo_run
    from hawq import BitConfig

    bits = BitConfig.load(out / "bits.yaml")
    assert bits.weights == summary["hawq"]["weights"] and set(bits.weights) == {"0", "2", "4"}
    assert bits.meta["costs"]["bops"] <= bits.meta["budget"]["bops"]
    for plot in ("traces.png", "accuracy_vs_bops.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [b["label"] for b in summary["hawq"]["baselines"]] == ["uniform 4-bit", "uniform 8-bit"]


def test_accuracies(demo_run):
    _, summary = demo_run
    accuracy = summary["accuracy"]
    assert set(accuracy) == {"float_torch", "brevitas_torch", "qonnx_float64", "lowered_interpreter"}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    assert accuracy["lowered_interpreter"] == accuracy["brevitas_torch"]
    assert accuracy["qonnx_float64"] == accuracy["brevitas_torch"]


def test_report_has_decisions_and_layer_table(demo_run):
    out, _ = demo_run
    report = (out / "lowering_report.md").read_text()
    assert "## Decisions and deviations" in report
    assert "```" in report and "Dense" in report and "total" in report
