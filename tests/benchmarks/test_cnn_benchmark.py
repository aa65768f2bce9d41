"""benchmarks/cnn.py run as a person runs it, on a reduced setting (few samples, one repeat, no
hls4ml): every exactness check it prints holds, its tables are there, and it leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from paths import REPO

SCRIPT = REPO / "benchmarks" / "cnn.py"


def _rows(output: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first_header`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header + " "))
    rows = []
    for line in lines[start + 2:]:
        if " | " not in line:
            break
        rows.append([cell.strip() for cell in line.split(" | ")])
    return rows


def test_cnn_benchmark_reduced_run_prints_exact_results(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), "--samples", "64", "--repeats", "1", "--no-hls4ml"],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "TMPDIR": str(scratch)})
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "checks: all hold" in output

    interp = _rows(output, "model")
    assert [row[0] for row in interp] == ["zoo-8x8", "cnn-16x16"]
    assert all(row[5] == "yes" for row in interp), output  # ours == float64 QONNX, every element

    csim = _rows(output, "backend")
    assert [(row[0], row[1]) for row in csim] == [("vitis", "ours"), ("catapult", "ours")]
    assert all(row[5] == "yes" and row[6] == "100.00%" and row[8] == "0" for row in csim), output

    designs = {row[0]: row for row in _rows(output, "design")}
    latency = int(designs["ours (hlsgen)"][2].replace(",", ""))
    interval = int(designs["ours (hlsgen)"][1].replace(",", ""))
    assert interval >= 32 * 32 and latency > interval  # a pixel per cycle at best, plus the pipeline depth
    assert designs["hls4ml paper"][2] == "1,035"
    assert re.search(r"C\+\+ \(g\+\+ [\d.]+ s\) == interpreter on \d+ samples: yes", output), output

    assert "load average at end:" in output and "wall time:" in output
    # its one temporary directory is gone (libraries keep their own caches there: torch, ...)
    assert not list(scratch.glob("cnn-bench-*"))
