"""Scripts (examples, benchmarks) imported from their files, so that a test can call their main()."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def import_script(path: Path):
    """The module of the script at `path`, named after its file (digits_demo.py -> digits_demo)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
