"""What a backend is: the spelling of interface types and top-level pragmas, and the vendor files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qonnx_ir.types import FixedType, Saturation


@dataclass
class ProjectSpec:
    """Everything a backend needs to write its vendor files (tcl, testbench, README)."""

    top: str
    io: str  # "parallel" | "stream"
    n_in: int
    n_out: int
    input_type: FixedType
    output_type: FixedType
    clock_ns: float
    part: str | None
    tech: str | None
    firmware_files: list[str]  # relative to the project directory
    design: object = None  # hlsgen.firmware.Design: the layers, their knobs and estimates
    tb_samples: int = 0

    @property
    def layers(self) -> list:
        return self.design.layers if self.design is not None else []


class Backend:
    name = ""
    define = ""  # the macro firmware/qnn_backend.h defines

    # quantization / overflow mode names of the vendor's fixed-point type
    rounding_names: dict = {}
    saturation_names: dict = {}

    def fixed_type(self, fixed: FixedType) -> str:
        raise NotImplementedError

    def mode_names(self, fixed: FixedType) -> tuple[str, str]:
        """(rounding, saturation) spelt for the vendor. Unsigned narrow (top code dropped) has no
        vendor mode: plain saturation at the port; the integer kernels clamp exactly inside."""
        saturation = fixed.saturation
        if saturation is Saturation.SAT_SYM and not fixed.signed:
            saturation = Saturation.SAT
        return self.rounding_names[fixed.rounding], self.saturation_names[saturation]

    def write_vendor_files(self, spec: ProjectSpec, directory: Path) -> list[str]:
        """Write build_prj.tcl, the testbench and README.md; return their relative paths."""
        raise NotImplementedError
