"""Where the ap_types / ac_types headers come from (DESIGN.md: environment, vendor, hls4ml wheel)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from qonnx_ir.errors import QonnxError

# (environment variable, vendor install variable, vendor subfolder, folders inside the hls4ml wheel)
_SOURCES = {
    "vitis": ("AP_TYPES_INCLUDE", "XILINX_HLS", "include", ["templates/vivado/ap_types"]),
    "catapult": ("AC_TYPES_INCLUDE", "MGC_HOME", "shared/include",
                 ["templates/catapult/ac_types/include", "templates/catapult/ac_simutils/include"]),
}
_MARKER = {"vitis": "ap_int.h", "catapult": "ac_int.h"}


@dataclass(frozen=True)
class Headers:
    directories: tuple[Path, ...]
    origin: str  # said to the user: which of the three sources was used


def find_headers(backend: str) -> Headers:
    variable, vendor, subfolder, wheel_folders = _SOURCES[backend]
    if os.environ.get(variable):
        directories = [Path(os.environ[variable])]
        if backend == "catapult" and os.environ.get("AC_SIMUTILS_INCLUDE"):  # mc_scverify.h for the testbench
            directories.append(Path(os.environ["AC_SIMUTILS_INCLUDE"]))
        return Headers(tuple(directories), f"${variable}")
    if os.environ.get(vendor) and (Path(os.environ[vendor]) / subfolder / _MARKER[backend]).is_file():
        return Headers((Path(os.environ[vendor]) / subfolder,), f"${vendor}/{subfolder}")
    try:
        root = Path(str(resources.files("hls4ml")))
    except ModuleNotFoundError:
        root = None
    if root is not None:
        folders = tuple(root / folder for folder in wheel_folders)
        if all(folder.is_dir() for folder in folders):
            return Headers(folders, f"the hls4ml wheel ({root})")
    raise QonnxError(
        f"no {_MARKER[backend]} found: set {variable}, or ${vendor}, or pip install hls4ml (it ships the open-source headers)"
    )
