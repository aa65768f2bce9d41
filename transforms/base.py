"""What a pass is, what it is told (options) and what it tells (the lowering report)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir.types import FixedType


@dataclass
class LoweringOptions:
    """Every choice the lowering makes that the model itself does not dictate."""

    # The type of a graph input that has no quantizer (hls4ml's default is <16,6> too).
    input_type: FixedType = FixedType(16, 6, True)
    # Precision of requantization multipliers (bits of the largest |multiplier|).
    multiplier_bits: int = 32
    # Non power-of-two requantizations to at most this many output bits use thresholds,
    # which reproduce the float graph exactly; wider outputs use multiplier and shift.
    threshold_max_bits: int = 4
    # Fraction bits of an output that has no quantizer after a float rescale.
    output_frac_bits: int = 16
    # Softmax at the output: "table" implements it, "drop" removes it (argmax unchanged).
    softmax: str = "table"
    softmax_table_size: int = 1024
    softmax_exp_bits: int = 16
    softmax_out_type: FixedType = FixedType(18, 2, False)
    reuse_factor: int = 1


@dataclass
class Report:
    """Decisions and deviations from the float graph, node by node, for the user to read."""

    lines: list[str] = field(default_factory=list)

    def add(self, node: str, message: str) -> None:
        self.lines.append(f"{node}: {message}")

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Context:
    options: LoweringOptions = field(default_factory=LoweringOptions)
    report: Report = field(default_factory=Report)
    skipped: list[str] = field(default_factory=list)

    def skip(self, node: str, reason: str) -> None:
        """Record why a pass did not apply to a node (shown by --verbose)."""
        self.skipped.append(f"{node}: {reason}")


class Pass:
    """A named graph rewrite. `apply` edits the model in place and returns whether it changed.

    Running to a fixed point is the pipeline's job, not the pass's.
    """

    name: str = ""
    description: str = ""

    def apply(self, model: ModelWrapper, context: Context) -> bool:
        raise NotImplementedError
