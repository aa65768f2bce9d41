"""examples/digits_cnn.py end to end with a short run: a residual CNN on digits images through HAWQ,
QAT, export, lowering and both backends' io_stream C simulation.

Checks what the script writes, not only what it prints: the lowered model it saved, run again on
the test images it saved, gives the logits it saved; both written projects, compiled and run
again here, give the same logits; the bits respect the budget and cost what qonnx counts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from paths import REPO
from script_import import import_script

EXAMPLE = REPO / "examples" / "digits_cnn.py"
OUTPUTS = ("bits.yaml", "traces.json", "traces.png", "accuracy_vs_bops.png", "model.onnx", "model.hw.onnx",
           "lowering_report.md", "test_x.npy", "test_y_hw.npy", "summary.json")
PROJECTS = ("hls_vitis", "hls_catapult")
LAYERS = ("conv1", "conv2", "fc")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_cnn")
    summary = import_script(EXAMPLE).main(["--out", str(out), "--epochs", "3", "--max-probes", "32",
                                           "--baselines", "4"])
    return out, summary


def test_writes_every_output_under_the_output_folder(run):
    out, summary = run
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(OUTPUTS + PROJECTS)
    for project in PROJECTS:
        assert (out / project / "project.json").is_file() and (out / project / "build_prj.tcl").is_file()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for plot in ("traces.png", "accuracy_vs_bops.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_lowered_model_reproduces_the_saved_logits_and_equals_brevitas(run):
    import qonnx_ir

    out, summary = run
    x, logits = np.load(out / "test_x.npy"), np.load(out / "test_y_hw.npy")
    assert x.shape == (summary["data"]["test_samples"], 1, 8, 8)  # NCHW images, as PyTorch takes them
    assert logits.shape == (len(x), 10)
    assert np.array_equal(np.asarray(qonnx_ir.execute(qonnx_ir.load(out / "model.hw.onnx"), x.astype(np.float64))),
                          logits)
    assert summary["bit_exact"] is True and summary["mismatching_elements"] == 0
    assert summary["compared_elements"] == logits.size
    accuracy = summary["accuracy"]
    assert accuracy["lowered_interpreter"] == accuracy["brevitas_torch"] == accuracy["qonnx_float64"]
    assert accuracy["float_torch"] > 0.5 and accuracy["brevitas_torch"] > 0.5  # chance is 0.1


def test_both_stream_projects_compute_what_the_interpreter_computes(run):
    from hlsgen.project import Project

    out, summary = run
    x, logits = np.load(out / "test_x.npy"), np.load(out / "test_y_hw.npy")
    assert set(summary["hls"]) == {"vitis", "catapult"}
    for backend, result in summary["hls"].items():
        assert result["bit_exact"] is True and result["mismatching_elements"] == 0, backend
        assert result["io"] == "stream" and result["compared_elements"] == logits.size
        project = Project(out / f"hls_{backend}")  # the written project, compiled (cached) and run again
        assert project.metadata["backend"] == backend
        project.compile()
        assert np.array_equal(project.predict(x.astype(np.float64)), logits), backend


def test_hawq_bits_traces_and_costs(run):
    from hawq import BitConfig
    from hawq.cli import read_traces

    out, summary = run
    bits = BitConfig.load(out / "bits.yaml")
    assert set(bits.weights) == set(LAYERS) and bits.weights == summary["hawq"]["weights"]
    assert bits.meta["costs"]["bops"] == summary["hawq"]["bops"] <= summary["hawq"]["budget_bops"]
    assert summary["hawq"]["qonnx_bops"] == summary["hawq"]["bops"]  # qonnx counts what the ILP bounded
    layers, sensitivities, _, _ = read_traces(out / "traces.json")
    assert [(l.name, l.kind, l.kernel, l.out_positions) for l in layers] == [
        ("conv1", "conv2d", (3, 3), 64), ("conv2", "conv2d", (3, 3), 16), ("fc", "linear", (), 1)]
    assert [l.macs for l in layers] == [8 * 8 * 9 * 1 * 8, 4 * 4 * 9 * 8 * 8, 32 * 10]
    assert [entry["macs"] for entry in summary["layers"]] == [l.macs for l in layers]
    for name in LAYERS:
        trace = summary["hawq"]["traces"][name]
        assert trace["trace"] > 0 and trace["probes"] == 32
        omega = sensitivities[name]
        assert all(omega[b] >= omega[b + 1] for b in range(2, 8))  # more bits never cost accuracy
    assert [b["label"] for b in summary["hawq"]["baselines"]] == ["uniform 4-bit"]


def test_report_names_the_cnn_layers(run):
    out, _ = run
    report = (out / "lowering_report.md").read_text()
    assert "## Decisions and deviations" in report
    for op in ("Conv", "Pool", "Add", "Flatten", "Dense", "total"):
        assert op in report, op
