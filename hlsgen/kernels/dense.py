"""Dense -> qnn::dense (qnn/dense.h): shape, reuse factor, code widths, the weights and bias."""

from __future__ import annotations

import numpy as np

from .base import ConstantArray, KernelSpec, code_fields, storage_type


class DenseKernel(KernelSpec):
    op_type = "Dense"
    header = "dense.h"

    def kernel(self, op, ident):
        return f"qnn::dense<{ident}_config>"

    def config(self, op, backend):
        weight = op.weight
        n_in, n_out = weight.shape
        return [
            f"static const unsigned n_in = {n_in}, n_out = {n_out}, reuse_factor = {op.reuse_factor};",
            f"static const unsigned nonzero_weights = {int(np.count_nonzero(weight))};",
            *code_fields("input", op.input_edge("x").type, bipolar_flag=True),
            *code_fields("weight", op.input_edge("weight").type, bipolar_flag=True),
            *code_fields("accum", op.output_edge().type),
            f"typedef {storage_type(weight)} weight_store_t;",
            f"typedef {storage_type(op.bias)} bias_store_t;",
        ]

    def arrays(self, op, ident):
        return [ConstantArray(f"{ident}_weights", f"{ident}_config::weight_store_t", np.ravel(op.weight)),
                ConstantArray(f"{ident}_bias", f"{ident}_config::bias_store_t", op.bias)]

    def storage(self, op, ident):
        if op.strategy == "resource":
            per_round = -(-op.weight.size // op.reuse_factor)  # weights one ROM word holds
            return [f"QNN_WEIGHTS_IN_ROM({ident}_weights, {per_round})"]
        return [f"QNN_WEIGHTS_IN_REGISTERS({ident}_weights)"]
