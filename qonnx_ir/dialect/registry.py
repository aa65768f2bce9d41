"""The hardware-dialect ops, one list entry each. Adding an op: a file in qonnx_ir/ops/ and a line here."""

from __future__ import annotations

from ..ops.add import Add
from ..ops.concat import Concat
from ..ops.conv import Conv
from ..ops.dense import Dense
from ..ops.flatten import Flatten
from ..ops.input_quant import InputQuant
from ..ops.pad import Pad
from ..ops.pool import Pool
from ..ops.requant import Requant
from ..ops.softmax import Softmax
from ..ops.table import Table
from ..ops.upsample import Upsample

OPS: list = [InputQuant, Dense, Requant, Softmax, Conv, Pool, Pad, Add, Concat, Flatten, Upsample, Table]


def op_class(op_type: str):
    """The op class for an op type, or None. Reads OPS at call time, so a test may extend it."""
    return next((op for op in OPS if op.op_type == op_type), None)


def op_types() -> list[str]:
    return [op.op_type for op in OPS]
