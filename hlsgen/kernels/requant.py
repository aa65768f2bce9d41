"""Requant -> qnn::requant_shift / requant_multiply_shift / requant_thresholds (qnn/requant.h)."""

from __future__ import annotations

import numpy as np

from .base import ConstantArray, KernelSpec, bits_of, code_fields, flag, storage_type, tokens_of

KERNELS = {"shift": "requant_shift", "multiply_shift": "requant_multiply_shift", "thresholds": "requant_thresholds"}


class RequantKernel(KernelSpec):
    op_type = "Requant"
    header = "requant.h"

    def kernel(self, op, ident):
        return f"qnn::{KERNELS[op.mode]}<{ident}_config>"

    def config(self, op, backend):
        x, out = op.input_edge("x"), op.output_edge()
        tokens, n = tokens_of(x)
        members = [
            f"static const unsigned n = {n}, tokens = {tokens};",
            *code_fields("input", x.type), *code_fields("output", out.type),
            f"static const bool half_even = {flag(op.half_even)};",
            f"static const long long out_min = {op.lowest}, out_max = {op.highest};  // saturation and clip",
        ]
        if op.mode == "thresholds":
            table = op.constant("thresholds")
            members += [f"static const unsigned levels = {table.shape[1]}, threshold_rows = {table.shape[0]};",
                        f"static const long long code_step = {out.type.code_step}, type_min = {out.type.min_code};",
                        f"typedef {storage_type(table)} threshold_store_t;"]
        else:
            shift = op.per_channel(op.shift)
            members.append(f"static const int max_left_shift = {max(0, -int(shift.min()))};")
            if op.mode == "multiply_shift":
                multiplier, offset = op.per_channel(op.multiplier), op.per_channel(op.offset)
                members += [f"static const int multiplier_bits = {bits_of(multiplier)}, offset_bits = {bits_of(offset)};",
                            f"typedef {storage_type(multiplier)} multiplier_store_t;",
                            f"typedef {storage_type(offset)} offset_store_t;"]
        return members

    def arrays(self, op, ident):
        if op.mode == "thresholds":
            return [ConstantArray(f"{ident}_thresholds", f"{ident}_config::threshold_store_t",
                                  np.ravel(op.constant("thresholds")))]
        arrays = [ConstantArray(f"{ident}_shift", "int", op.per_channel(op.shift))]
        if op.mode == "multiply_shift":
            arrays += [ConstantArray(f"{ident}_multiplier", f"{ident}_config::multiplier_store_t",
                                     op.per_channel(op.multiplier)),
                       ConstantArray(f"{ident}_offset", f"{ident}_config::offset_store_t", op.per_channel(op.offset))]
        return arrays
