"""Softmax -> qnn::softmax_table (qnn/softmax.h): table geometry, widths and the exp table."""

from __future__ import annotations

from .base import ConstantArray, KernelSpec, code_fields, storage_type


class SoftmaxKernel(KernelSpec):
    op_type = "Softmax"
    header = "softmax.h"
    template = "softmax_table"

    def config(self, op, backend):
        x, out = op.input_edge("x"), op.output_edge()
        return [
            f"static const unsigned n = {x.shape[0]}, table_size = {op.table.size};",
            f"static const int table_shift = {op.table_shift}, exp_bits = {op.exp_bits}, "
            f"guard_bits = {op.guard_bits}, out_frac = {out.type.frac_bits};",
            f"static const long long out_max = {out.type.max_code};",
            *code_fields("input", x.type), f"static const int output_bits = {out.type.width};",
            f"typedef {storage_type(op.table)} exp_store_t;",
        ]

    def arrays(self, op, ident):
        return [ConstantArray(f"{ident}_exp_table", f"{ident}_config::exp_store_t", op.table)]
