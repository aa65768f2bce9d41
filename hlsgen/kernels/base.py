"""What a kernel spec is: how one hardware-dialect op becomes C++ (config, constants, the call).

A spec emits configuration only: the static members of the op's config struct, its constant
arrays, and which kernel template of the library (`hlsgen/include/qnn/`) computes it. The
algorithm, every intermediate width and the pragmas are in the header. How a layer is wired
into the design (arrays for io parallel, a pipelined stage per layer for io stream) is the
same for every kernel and lives in `hlsgen/top.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from qonnx_ir.dialect import Cost, EdgeType, HwOp
from qonnx_ir.errors import QonnxError
from qonnx_ir.limits import MAX_CONSTANT_BITS
from qonnx_ir.types import FixedType


def library_directory() -> Path:
    return Path(str(resources.files("hlsgen"))) / "include" / "qnn"


@dataclass
class ConstantArray:
    """A constant array of a layer: `static const <ctype> <name>[] = {...}` in weights/<ident>.h."""

    name: str
    ctype: str
    values: np.ndarray


@dataclass
class Layer:
    """One node of the design as C++."""

    ident: str  # C++ identifier of the layer (its kernel type is `<ident>`, its config `<ident>_config`)
    node: str  # the node's name in the model
    op: str
    kernel: str  # e.g. "qnn::dense<l1_MatMul_0_config>"
    header: Path  # the kernel's header, copied into firmware/qnn/
    config: list[str]
    arrays: list[ConstantArray] = field(default_factory=list)
    storage: list[str] = field(default_factory=list)  # pragmas in the top function about its arrays
    inputs: list[str] = field(default_factory=list)  # edge names
    outputs: list[str] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    tokens: int = 1  # stream tokens per sample of its output
    knobs: dict = field(default_factory=dict)
    delay: int = 0  # io stream: input tokens it reads before it writes its first output token


class KernelSpec:
    """Base class: one subclass per op, registered in hlsgen/kernels/__init__.py."""

    op_type: str = ""
    header: str = ""  # file name in the kernel library
    template: str = ""  # the kernel template in namespace qnn, e.g. "dense"

    def header_path(self) -> Path:
        return library_directory() / self.header

    def kernel(self, op: HwOp, ident: str) -> str:
        """The kernel template instantiated for this layer: qnn::<template> on the layer's config."""
        if not self.template:
            raise NotImplementedError
        return f"qnn::{self.template}<{ident}_config>"

    def config(self, op: HwOp) -> list[str]:
        """Static members of the config struct (kernel-specific; tokens etc. come from `common_config`)."""
        raise NotImplementedError

    def arrays(self, op: HwOp, ident: str) -> list[ConstantArray]:
        return []

    def storage(self, op: HwOp, ident: str) -> list[str]:
        return []

    def stream_delay(self, op: HwOp) -> int:
        """Input tokens the stage reads before its first output (a window's fill); 0 for a map."""
        return 0

    def check_io(self, op: HwOp, io: str) -> None:
        """Refuse (QonnxError) an io style this layer cannot be built in."""


class WeightedKernelSpec(KernelSpec):
    """A layer with a weight tensor and a bias (op.weight, op.bias; Dense, Conv): the config fields
    of their codes and store types, the two constant arrays, and where the weights are stored."""

    def weight_fields(self, op: HwOp) -> list[str]:
        """input/weight/accum code fields and weight_store_t, bias_store_t."""
        return [
            *code_fields("input", op.input_edge("x").type, bipolar_flag=True),
            *code_fields("weight", op.input_edge("weight").type, bipolar_flag=True),
            *code_fields("accum", op.output_edge().type),
            f"typedef {storage_type(op.weight)} weight_store_t;",
            f"typedef {storage_type(op.bias)} bias_store_t;",
        ]

    def arrays(self, op, ident):
        return [ConstantArray(f"{ident}_weights", f"{ident}_config::weight_store_t", np.ravel(op.weight)),
                ConstantArray(f"{ident}_bias", f"{ident}_config::bias_store_t", op.bias)]

    def storage(self, op, ident):
        if op.strategy == "resource":
            per_word = -(-op.weight.size // op.reuse_factor)  # weights one ROM word holds
            return [f"QNN_WEIGHTS_IN_ROM({ident}_weights, {per_word})"]
        return [f"QNN_WEIGHTS_IN_REGISTERS({ident}_weights)"]


# -- helpers for specs -------------------------------------------------------------------


def code_fields(prefix: str, fixed: FixedType, bipolar_flag: bool = False) -> list[str]:
    """`<prefix>_bits` and `<prefix>_signed` of a tensor's integer codes (a bipolar code, -1 or
    +1, takes 2 signed bits), and `<prefix>_bipolar` if asked for."""
    bits, signed = (2, True) if fixed.bipolar else (fixed.width, fixed.signed)
    bipolar = f", {prefix}_bipolar = {_bool(fixed.bipolar)}" if bipolar_flag else ""
    return [f"static const int {prefix}_bits = {bits};", f"static const bool {prefix}_signed = {_bool(signed)}{bipolar};"]


def _bool(value) -> str:
    return "true" if value else "false"


def flag(value) -> str:
    return _bool(value)


def tokens_of(edge: EdgeType) -> tuple[int, int]:
    """(tokens per sample, values per token) of an edge in io stream: a vector is one token;
    an (L, C) or (H, W, C) tensor is one token per position, of C values."""
    if len(edge.shape) == 1:
        return 1, edge.shape[0]
    return edge.size // edge.channels, edge.channels


def storage_type(values) -> str:
    """The smallest plain C integer type holding every value (constant arrays compile instantly)."""
    values = np.asarray(values, dtype=np.int64)
    largest = int(np.abs(values).max()) if values.size else 0
    for ctype, bits in (("signed char", 8), ("short", 16), ("int", 32)):
        if largest < 2 ** (bits - 1):
            return ctype
    return "long long"


def bits_of(values) -> int:
    """Signed bits holding every value."""
    values = np.asarray(values, dtype=np.int64)
    largest = max(int(np.abs(values).max()) if values.size else 0, 1)
    return largest.bit_length() + 1


def literal(value) -> str:
    value = int(value)
    if abs(value) >= 2**MAX_CONSTANT_BITS:
        raise QonnxError(f"constant {value} is too wide for the generated C++ (more than {MAX_CONSTANT_BITS} bits)")
    return f"{value}LL" if abs(value) >= 2**31 else str(value)
