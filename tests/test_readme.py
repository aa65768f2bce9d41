"""The README's training-script snippet runs exactly as printed."""

from __future__ import annotations

import re
import subprocess
import sys

from paths import REPO

MARKER = "<!-- training-script snippet: tests/test_readme.py runs it -->"


def _snippet() -> str:
    text = (REPO / "README.md").read_text()
    after = text[text.index(MARKER) + len(MARKER):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_training_script_snippet_runs_and_produces_an_exact_model(tmp_path):
    result = subprocess.run([sys.executable, "-c", _snippet()], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "bits.yaml").is_file() and (tmp_path / "model.onnx").is_file()
    assert "max |onnx - torch| = 0" in result.stdout
