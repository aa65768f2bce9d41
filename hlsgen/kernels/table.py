"""Table -> qnn::table_lookup (qnn/table.h): the table and how the codes index it."""

from __future__ import annotations

import numpy as np

from .base import ConstantArray, KernelSpec, code_fields, storage_type, tokens_of


class TableKernel(KernelSpec):
    op_type = "Table"
    header = "table.h"
    template = "table_lookup"

    def config(self, op, backend):
        x, y, table = op.input_edge("x"), op.output_edge(), op.constant("table")
        tokens, n = tokens_of(x)
        return [f"static const unsigned n = {n}, tokens = {tokens}, size = {table.shape[1]}, rows = {table.shape[0]};",
                f"static const long long offset = {op.offset};", f"static const int shift = {op.shift};",
                *code_fields("input", x.type), *code_fields("output", y.type),
                f"typedef {storage_type(table)} table_store_t;"]

    def arrays(self, op, ident):
        return [ConstantArray(f"{ident}_table", f"{ident}_config::table_store_t", np.ravel(op.constant("table")))]
