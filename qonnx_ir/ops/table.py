"""Table: an output code for every input code (activation functions between quantizers).

    Table(x, table) -> y      per channel c (the last axis), one row of the table per channel or one for all
    i = (min(max(x, offset), offset + (size << shift) - 1) - offset) >> shift
    y = table[row(c), i]

With shift 0 the table holds one entry per input code: y is exactly the QONNX graph's value
for that code (the lowering evaluates the float ops and the quantizer on every code). A
segmented table (shift > 0) shares one entry among 2**shift neighbouring codes; the lowering
states the largest error that costs.
"""

from __future__ import annotations

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..limits import MAX_TABLE_ENTRIES
from .. import integers


class Table(HwOp):
    op_type = "Table"
    summary = "output code = table[input code] (activation functions), per channel"
    inputs = (Port("x"), Port("table", constant=True))

    offset = Attr(int, doc="the input code of entry 0")
    shift = Attr(int, 0, minimum=0, maximum=62, doc="codes per entry: 2**shift (0: one entry per code)")

    def check_output(self, index: int, edge: EdgeType) -> None:
        x, table = self.input_edge("x"), self.constant("table")
        if edge.shape != x.shape:
            raise self.fail(f"output shape {edge.shape} differs from the input shape {x.shape}")
        if table.ndim != 2 or table.shape[0] not in (1, x.channels) or not 1 <= table.shape[1] <= MAX_TABLE_ENTRIES:
            raise self.fail(f"table of shape {table.shape}: (1 or {x.channels} rows, 1..{MAX_TABLE_ENTRIES} entries)")
        if table.size and (table.min() < edge.type.min_code or table.max() > edge.type.max_code):
            raise self.fail(f"table entries outside the output type {edge.type}")
        if self.offset > x.type.min_code or self.offset + (table.shape[1] << self.shift) - 1 < x.type.max_code:
            raise self.fail(f"the table does not cover the input codes [{x.type.min_code}, {x.type.max_code}]")

    def evaluate(self, inputs):
        x = np.asarray(inputs[0]).astype(np.int64)
        table = self.constant("table")
        size = table.shape[1]
        index = (np.clip(x, self.offset, self.offset + (size << self.shift) - 1) - self.offset) >> self.shift
        rows = np.broadcast_to(np.arange(table.shape[0]) if table.shape[0] > 1 else np.zeros(1, np.int64),
                               (x.shape[-1],))
        codes = table[rows, index] if table.shape[0] > 1 else table[0, index]
        return [codes.astype(integers.representation(self.output_edge().type.magnitude))]

    def cost(self, io="parallel"):
        x = self.input_edge("x")
        return Cost(act_bits=x.type.width, latency=1)
