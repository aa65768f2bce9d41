"""The shared IR: loading, fixed-point types, the hardware dialect, the bit-exact interpreter, export.

It imports none of the other packages of this project (it is the ground floor).
"""

from .dialect import EdgeType, HwGraph
from .errors import CheckFailed, QonnxError
from .interpreter import execute
from .model import load, save
from .types import FixedType

__all__ = ["CheckFailed", "EdgeType", "FixedType", "HwGraph", "QonnxError", "execute", "export", "load", "save"]


def __getattr__(name):
    # Brevitas and torch take seconds to import: only pay for them when exporting.
    if name == "export":
        from .brevitas_export import export

        return export
    raise AttributeError(name)
