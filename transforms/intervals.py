"""Interval analysis: accumulator and bias types from the actual integer weights.

For a dense layer acc_j = sum_i x_i w_ij + b_j with x_i in [lo, hi] (the input type's
code range), the extremes are reached term by term: w_ij * lo or w_ij * hi, whichever
is smaller (larger). Summing them gives bounds that are exact for the worst input,
so the type they give is minimal and can never overflow.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qonnx_ir import hw
from qonnx_ir.types import FixedType

from .base import Context, Pass


def accumulator_bounds(weight: np.ndarray, bias: np.ndarray, in_type: FixedType) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (min, max) of x @ weight + bias over all inputs of in_type, as Python ints."""
    weight = weight.astype(object)
    low_products = np.minimum(weight * in_type.min_code, weight * in_type.max_code)
    high_products = np.maximum(weight * in_type.min_code, weight * in_type.max_code)
    bias = np.asarray(bias).astype(object)
    return low_products.sum(axis=0) + bias, high_products.sum(axis=0) + bias


def dense_types(weight, bias, in_type: FixedType, frac_bits: int) -> tuple[FixedType, FixedType]:
    """(accumulator type, bias type) for a dense layer whose accumulator lsb is 2**-frac_bits."""
    low, high = accumulator_bounds(weight, bias, in_type)
    accum_type = FixedType.for_range(int(min(low)), int(max(high)), frac_bits)
    bias_type = FixedType.for_range(int(np.min(bias)) if len(bias) else 0, int(np.max(bias)) if len(bias) else 0, frac_bits)
    return accum_type, bias_type


class SizeAccumulators(Pass):
    """Re-derives every Dense's in/accumulator/bias types (and the Requant that reads it).

    Idempotent; the lowering already sizes new layers this way, so this pass only
    changes a graph whose weights or input types were edited afterwards.
    """

    name = "size-accumulators"
    description = "accumulator and bias types by interval analysis of the integer weights"

    def apply(self, model: ModelWrapper, context: Context) -> bool:
        changed = False
        for node in model.graph.node:
            if not hw.is_hw(node) or node.op_type != "Dense":
                continue
            producer = model.find_producer(node.input[0])
            in_type = hw.out_tensor(producer).type
            weight = model.get_initializer(node.input[1]).astype(np.int64)
            bias = model.get_initializer(node.input[2]).astype(np.int64) if len(node.input) > 2 else np.zeros(weight.shape[1], np.int64)
            accum, bias_type = dense_types(weight, bias, in_type, hw.type_attr(node, "accum_type").frac_bits)
            wanted = {"in_type": str(in_type), "accum_type": str(accum), "out_type": str(accum), "bias_type": str(bias_type)}
            changed |= _set_string_attrs(node, wanted)
            for consumer in model.find_consumers(node.output[0]):
                if hw.is_hw(consumer):
                    changed |= _set_string_attrs(consumer, {"in_type": str(accum)})
        return changed


def _set_string_attrs(node, values: dict[str, str]) -> bool:
    changed = False
    for attribute in node.attribute:
        if attribute.name in values and attribute.s.decode() != values[attribute.name]:
            attribute.s = values[attribute.name].encode()
            changed = True
    return changed
