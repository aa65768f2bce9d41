"""What a pass is, what it is told (options) and what it tells (the lowering report)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir.errors import CheckFailed, QonnxError
from qonnx_ir.limits import (
    MAX_ACTIVATION_TABLE_BITS,
    MAX_FRAC_BITS,
    MAX_MULTIPLIER_BITS,
    MAX_QUANT_BITS,
    MAX_SOFTMAX_EXP_BITS,
    MAX_TABLE_ENTRIES,
    MAX_THRESHOLD_BITS,
)
from qonnx_ir.types import FixedType

from .graph import typed

# option -> (lowest, highest) allowed: beyond these a result would not stay exact or sane
OPTION_RANGES = {
    "multiplier_bits": (2, MAX_MULTIPLIER_BITS),
    "threshold_max_bits": (0, MAX_THRESHOLD_BITS),
    "activation_table_bits": (1, MAX_ACTIVATION_TABLE_BITS),
    "output_frac_bits": (0, MAX_FRAC_BITS),
    "softmax_table_size": (4, MAX_TABLE_ENTRIES),
    "softmax_exp_bits": (1, MAX_SOFTMAX_EXP_BITS),
}
OPTIONAL = ("multiplier_bits",)  # None: no limit (exact)
SOFTMAX_CHOICES = ("table", "drop")


@dataclass(frozen=True)
class LoweringOptions:
    """Every choice the lowering makes that the model itself does not dictate (checked on creation)."""

    # The type of a graph input that has no quantizer (hls4ml's default is <16,6> too).
    input_type: FixedType = FixedType(16, 6, True)
    # Precision of requantization multipliers (bits of the largest |multiplier|). None: whatever
    # the exact multiplier needs (it is proven exact); a number caps it, approximating (a WARNING)
    # where the exact one needs more.
    multiplier_bits: int | None = None
    # Non power-of-two requantizations to at most this many output bits use thresholds,
    # which reproduce the float graph exactly; wider outputs use multiplier and shift.
    threshold_max_bits: int = 4
    # An activation function (Sigmoid, Tanh, LeakyRelu, ...) on an input of at most 2**this codes
    # becomes a table with one entry per input code (exact); wider inputs a segmented table (a WARNING).
    activation_table_bits: int = 12
    # Fraction bits of an output that has no quantizer after a float rescale.
    output_frac_bits: int = 16
    # Softmax at the output: "table" implements it, "drop" removes it (argmax unchanged).
    softmax: str = "table"
    softmax_table_size: int = 1024
    softmax_exp_bits: int = 16
    softmax_out_type: FixedType = FixedType(18, 2, False)

    def __post_init__(self):
        for name, (low, high) in OPTION_RANGES.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise QonnxError(f"--{option_flag(name)} must be a whole number in {low}..{high} (got {value!r})")
        if self.softmax not in SOFTMAX_CHOICES:
            raise QonnxError(f"--softmax must be one of {', '.join(SOFTMAX_CHOICES)} (got {self.softmax!r})")
        check_port_type(self.input_type, "input-type")
        check_port_type(self.softmax_out_type, "softmax-out-type")
        if self.softmax_out_type.signed or self.softmax_out_type.bipolar or self.softmax_out_type.frac_bits < 0:
            raise QonnxError(f"--softmax-out-type must be an unsigned type with fraction bits, not {self.softmax_out_type}")
        if self.softmax_out_type.frac_bits > MAX_FRAC_BITS:
            raise QonnxError(f"--softmax-out-type may have at most {MAX_FRAC_BITS} fraction bits")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def option_flag(name: str) -> str:
    return name.replace("_", "-")


def check_port_type(fixed: FixedType, option: str) -> None:
    if fixed.width > MAX_QUANT_BITS:
        raise QonnxError(f"--{option} {fixed}: at most {MAX_QUANT_BITS} bits")
    if abs(fixed.int_bits) > 2 * MAX_QUANT_BITS:
        raise QonnxError(f"--{option} {fixed}: integer bits must be within +-{2 * MAX_QUANT_BITS}")


@dataclass
class Report:
    """Decisions and deviations from the float graph, node by node, for the user to read.

    A deviation (anything not exact) is a warning: `warnings` lists them, and they are shown
    first, marked WARNING.
    """

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, node: str, message: str) -> None:
        self.lines.append(f"{node}: {message}")

    def warn(self, node: str, message: str) -> None:
        self.warnings.append(f"{node}: {message}")
        self.lines.append(f"WARNING {node}: {message}")

    @property
    def exact(self) -> bool:
        return not self.warnings

    def __str__(self) -> str:
        return "\n".join(self.lines)


WARNINGS_KEY = "hw_warnings"  # metadata of a lowered model: its lowering's warnings (JSON list), if any


def record_warnings(model, report: Report) -> None:
    """Keep the deviations with the lowered model, so `qonnx hls --strict` on the file still knows them."""
    props = model.model.metadata_props
    for entry in [p for p in props if p.key == WARNINGS_KEY]:
        props.remove(entry)
    if report.warnings:
        entry = props.add()
        entry.key, entry.value = WARNINGS_KEY, json.dumps(report.warnings)


def recorded_warnings(model) -> list[str]:
    proto = getattr(model, "model", model)
    for entry in proto.metadata_props:
        if entry.key == WARNINGS_KEY:
            try:
                value = json.loads(entry.value)
            except ValueError:
                raise QonnxError(f"metadata {WARNINGS_KEY} is not a JSON list of strings") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise QonnxError(f"metadata {WARNINGS_KEY} is not a JSON list of strings")
            return value
    return []


def warning_line(warnings: list[str]) -> str:
    return f"WARNING: the lowering is not exact in {len(warnings)} place(s): {warnings[0]}" + (
        f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else "")


def check_strict(warnings: list[str], strict: bool) -> None:
    """--strict: a lowering that is not exact fails the command (exit 1), before anything is written."""
    if strict and warnings:
        raise CheckFailed(f"--strict: {warning_line(warnings)[len('WARNING: '):]}")


@dataclass
class Context:
    options: LoweringOptions = field(default_factory=LoweringOptions)
    report: Report = field(default_factory=Report)
    skipped: list[str] = field(default_factory=list)
    # the user's name of every node a pass renamed or created (errors name what the file names)
    origins: dict[str, str] = field(default_factory=dict)

    def skip(self, node: str, reason: str) -> None:
        """Record why a pass did not apply to a node (shown by --verbose)."""
        self.skipped.append(f"{node}: {reason}")


class Pass:
    """A named graph rewrite. `apply` edits the model in place and returns whether it changed.

    Running to a fixed point is the pipeline's job, not the pass's.
    """

    name: str = ""
    description: str = ""
    consumes: tuple[str, ...] = ()  # QONNX op types this pass folds or lowers (check-supported accepts them)
    produces: tuple[str, ...] = ()  # hardware-dialect op types a lowering pass creates

    def apply(self, model: ModelWrapper, context: Context) -> bool:
        raise NotImplementedError


NOT_TYPED_YET = "its input has no fixed-point type yet"
LOWER_PRODUCER_FIRST = f"{NOT_TYPED_YET} (lower its producer first)"


def lower_each(model: ModelWrapper, nodes, context: Context, lower, skip_reason: str = NOT_TYPED_YET) -> bool:
    """lower(model, node, x, context) for each node, in order, whose first input has an edge type x
    (the others are skipped with `skip_reason`); whether any was lowered."""
    changed = False
    for node in nodes:
        x = typed(model, node.input[0])
        if x is None:
            context.skip(node.name, skip_reason)
            continue
        lower(model, node, x, context)
        changed = True
    return changed
