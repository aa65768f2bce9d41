"""Files we write get the usual permissions (umask), not mkstemp's private 0600."""

import os
import stat

from qonnx_ir.files import usual_mode, write_text_atomically


def test_atomic_writes_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "a" / "bits.yaml", "x: 1\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 == usual_mode()
        assert path.read_text() == "x: 1\n" and [p.name for p in path.parent.iterdir()] == ["bits.yaml"]
    finally:
        os.umask(previous)
