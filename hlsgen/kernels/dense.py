"""Dense -> qnn::dense (qnn/dense.h): shape, reuse factor, code widths, the weights and bias."""

from __future__ import annotations

import numpy as np

from .base import WeightedKernelSpec


class DenseKernel(WeightedKernelSpec):
    op_type = "Dense"
    header = "dense.h"
    template = "dense"

    def config(self, op, backend):
        weight = op.weight
        n_in, n_out = weight.shape
        return [
            f"static const unsigned n_in = {n_in}, n_out = {n_out}, reuse_factor = {op.reuse_factor};",
            f"static const unsigned nonzero_weights = {int(np.count_nonzero(weight))};",
            *self.weight_fields(op),
        ]
