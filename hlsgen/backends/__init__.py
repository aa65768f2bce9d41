"""The two backends: thin layers over one kernel library."""

from qonnx_ir.errors import QonnxError

from .base import Backend, ProjectSpec
from .catapult import Catapult
from .vitis import Vitis

BACKENDS = {"vitis": Vitis(), "catapult": Catapult()}


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise QonnxError(f"unknown backend {name!r} (choose {' or '.join(BACKENDS)})")
    return BACKENDS[name]


__all__ = ["BACKENDS", "Backend", "ProjectSpec", "backend"]
