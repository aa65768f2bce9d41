"""Deviation is loud: a lowering that is not exact says WARNING on the first line of the command's
summary (transform, hls, verify), also for an already lowered file, and --strict fails it with
exit code 1 before anything is written."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from activation_graphs import dense_activation_graph

from qonnx_ir.cli import main as qonnx


@pytest.fixture
def inexact(qonnx_graph, tmp_path):
    """SiLU on a 16-bit accumulator: a segmented table (12-bit by default), off by up to 1 code."""
    path = tmp_path / "silu.onnx"
    onnx.save(dense_activation_graph("silu").model, path)
    return path


@pytest.fixture
def exact(qonnx_graph, tmp_path):
    path = tmp_path / "tanh.onnx"
    onnx.save(dense_activation_graph("tanh").model, path)
    return path


def _run(args, capsys):
    code = qonnx([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_transform_says_warning_first_and_strict_fails_writing_nothing(inexact, tmp_path, capsys):
    out_path = tmp_path / "silu.hw.onnx"
    code, out, err = _run(["transform", inexact, "-o", out_path, "--check-samples", "0", "--strict"], capsys)
    assert code == 1 and not out_path.exists()
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert "--strict: the lowering is not exact in 1 place(s)" in err and "segmented table" in err
    code, out, _ = _run(["transform", inexact, "-o", out_path, "--check-samples", "0"], capsys)
    assert code == 0 and out_path.exists()
    first = out.splitlines()[0]
    assert first.startswith("WARNING: the lowering is not exact in 1 place(s): ") and "off by up to 1" in first
    # the lowered file remembers: hls --strict on it fails, and nothing is written
    project = tmp_path / "prj"
    code, out, err = _run(["hls", out_path, "-o", project, "--backend", "vitis", "--strict"], capsys)
    assert code == 1 and not project.exists() and "--strict" in err
    code, out, _ = _run(["hls", out_path, "-o", project, "--backend", "vitis"], capsys)
    assert code == 0
    summary = out[out.rindex("WARNING: "):].splitlines()
    assert summary[0].startswith("WARNING: the lowering is not exact") and summary[1].startswith(f"wrote {project}")


def test_hls_and_verify_on_raw_qonnx_say_warning_and_strict_fails(inexact, tmp_path, capsys):
    project = tmp_path / "prj"
    code, _, err = _run(["hls", inexact, "-o", project, "--backend", "catapult", "--strict"], capsys)
    assert code == 1 and not project.exists()
    code, out, _ = _run(["verify", inexact, "--samples", "20", "--backend", "catapult", "--io", "parallel"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("WARNING: the lowering is not exact") for line in lines)
    report = lines.index(next(line for line in lines if line.startswith("verify ")))
    assert lines[report - 1].startswith("WARNING: the lowering is not exact")  # the summary's first line
    code, _, err = _run(["verify", inexact, "--samples", "20", "--strict"], capsys)
    assert code == 1 and "--strict" in err


def test_an_exact_lowering_passes_strict_and_says_no_warning(exact, tmp_path, capsys):
    out_path = tmp_path / "tanh.hw.onnx"
    code, out, _ = _run(["transform", exact, "-o", out_path, "--strict"], capsys)
    assert code == 0 and out_path.exists() and "WARNING" not in out
    x = np.random.default_rng(0).uniform(-2, 2, (50, 4))
    np.save(tmp_path / "x.npy", x)
    code, out, _ = _run(["hls", out_path, "-o", tmp_path / "prj", "--backend", "vitis", "--strict"], capsys)
    assert code == 0 and "WARNING" not in out
