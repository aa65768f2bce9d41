"""The bit-exact interpreter of the hardware dialect (the oracle the C++ must match).

`execute(model, x)` runs a lowered graph on a batch: it converts the float input with
InputQuant, then computes every layer on exact integers (see `qonnx_ir.hw` for the
semantics of each op and `qonnx_ir.integers` for how exactness is kept fast), and
returns the real values `code * lsb * gain` of the outputs in float64.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from threadpoolctl import threadpool_limits

from . import hw, integers
from .errors import QonnxError
from .types import FixedType, Rounding


def _saturate(codes: np.ndarray, fixed: FixedType) -> np.ndarray:
    return np.clip(codes, fixed.min_code, fixed.max_code)


def _magnitude(fixed: FixedType) -> int:
    return max(abs(fixed.min_code), abs(fixed.max_code))


PRE_OPS = {
    "mul": np.multiply, "div": np.divide, "add": np.add, "sub": np.subtract,
    "rsub": lambda values, constant: constant - values,
}


def _input_quant(node, inputs, model):
    (x,) = inputs
    features = int(np.prod(hw.attribute(node, "in_shape", [])))
    if not np.issubdtype(np.asarray(x).dtype, np.number):
        raise QonnxError(f"inputs must be numbers, got {np.asarray(x).dtype}")
    if np.asarray(x).size != len(x) * features:
        raise QonnxError(f"inputs have {np.asarray(x).size // max(len(x), 1)} values per sample, the model expects {features} (shape {hw.attribute(node, 'in_shape')})")
    out_type = hw.type_attr(node, "out_type")
    gain = hw.float_list(node, "out_gain", (1.0,))
    values = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    for kind, constant in hw.pre_ops(node):
        values = PRE_OPS[kind](values, constant)
    if out_type.bipolar:
        return np.where(values >= 0, 1.0, -1.0)
    if np.all(gain == 1.0):
        scaled = values * np.ldexp(1.0, out_type.frac_bits)  # exact: divide by a power of two
    else:
        scaled = values / (out_type.lsb * gain)  # what qonnx's Quant computes: x / scale
    np.clip(scaled, out_type.min_code, out_type.max_code, out=scaled)  # qonnx clamps before rounding
    codes = np.round(scaled, out=scaled) if out_type.rounding is Rounding.CONV else np.floor(scaled, out=scaled)
    return codes.astype(integers.representation(_magnitude(out_type)))


def _dense(node, inputs, model):
    x, weight = inputs[0], inputs[1]
    in_type, accum_type = hw.type_attr(node, "in_type"), hw.type_attr(node, "accum_type")
    bias = inputs[2] if len(inputs) > 2 else np.zeros(weight.shape[1])
    _check_accumulator(node, weight, bias, in_type, accum_type)
    bound = int(np.max(np.abs(weight).sum(axis=0) * _magnitude(in_type) + np.abs(bias)))
    acc = integers.matmul(x, weight, bound)
    acc += integers.as_repr(np.asarray(bias), acc.dtype.type if acc.dtype != object else object)
    return acc


def _check_accumulator(node, weight, bias, in_type, accum_type) -> None:
    """The file's accumulator type must hold every reachable value (cheap: per channel, not per sample)."""
    weight = np.asarray(weight, dtype=np.float64)
    low = np.minimum(weight * in_type.min_code, weight * in_type.max_code).sum(axis=0) + bias
    high = np.maximum(weight * in_type.min_code, weight * in_type.max_code).sum(axis=0) + bias
    if low.min() < accum_type.min_code or high.max() > accum_type.max_code:
        raise QonnxError(f"accumulator type {accum_type} cannot hold [{low.min():.0f}, {high.max():.0f}]: the file is inconsistent (re-run qonnx transform)", node=node.name)


def _requant(node, inputs, model):
    x = inputs[0]
    mode = hw.attribute(node, "mode")
    in_type, out_type = hw.type_attr(node, "in_type"), hw.type_attr(node, "out_type")
    lowest = max(out_type.min_code, 0) if hw.attribute(node, "relu", 0) else out_type.min_code
    if mode == "thresholds":
        thresholds = inputs[1]
        counts = (np.asarray(x)[:, :, None] >= thresholds[None, :, :]).sum(axis=2)
        codes = 2 * counts - 1 if out_type.bipolar else out_type.min_code + counts
        return np.maximum(codes, lowest).astype(integers.representation(_magnitude(out_type)))
    shift = hw.int_list(node, "shift")
    multiply = mode == "multiply_shift"
    multiplier = hw.int_list(node, "multiplier") if multiply else np.ones(1, np.int64)
    offset = hw.int_list(node, "offset") if multiply else np.zeros(1, np.int64)
    bound = _magnitude(in_type) * int(np.max(np.abs(multiplier))) + int(np.max(np.abs(offset)))
    bound <<= max(0, -int(shift.min()))
    kind = integers.representation(bound)
    numerator = integers.as_repr(np.asarray(x), kind)
    if multiply:
        numerator = numerator * integers.as_repr(multiplier, kind) + integers.as_repr(offset, kind)
    if out_type.bipolar:
        return np.where(numerator >= 0, 1.0, -1.0).astype(np.float32)
    codes = integers.divide_rounded(numerator, shift, out_type.rounding is Rounding.CONV, bound)
    if codes.dtype.kind == "f":
        np.clip(codes, lowest, out_type.max_code, out=codes)
    else:
        codes = np.clip(codes, lowest, out_type.max_code)
    return integers.as_repr(codes, integers.representation(_magnitude(out_type)))


def _softmax(node, inputs, model):
    x, table = inputs
    out_type = hw.type_attr(node, "out_type")
    shift = hw.attribute(node, "table_shift")
    table = np.asarray(table, dtype=np.float64)
    codes_x = integers.as_repr(np.asarray(x), np.float64)
    distance = codes_x.max(axis=1, keepdims=True) - codes_x  # exact: integers below 2**53
    # i = 0 if d == 0 else ((d - 1) >> shift) + 1, which for integers d >= 0 is ceil(d / 2**shift)
    index = np.minimum(np.ceil(distance * 2.0**-shift), len(table) - 1).astype(np.intp)
    exps = table[index]
    numerator = exps * 2.0**out_type.frac_bits
    total = exps.sum(axis=1, keepdims=True)
    if len(table) and x.shape[1] * table.max() * 2.0 ** (out_type.frac_bits + 2) < 2.0**53:
        # total * 2**(frac+2) < 2**53: a quotient that is not a tie lies >= 1/(2 total) from one,
        # farther than float division's error, so rounding the float quotient is exact
        codes = np.round(numerator / total)
    else:
        codes = integers.divide_rounded_by(numerator, total)
    return np.clip(codes, out_type.min_code, out_type.max_code).astype(integers.representation(_magnitude(out_type)))


KERNELS: dict[str, Callable] = {
    "InputQuant": _input_quant,
    "Dense": _dense,
    "Requant": _requant,
    "Softmax": _softmax,
}


def real_values(node, codes: np.ndarray) -> np.ndarray:
    """code * lsb * gain of a node's output, in float64."""
    tensor = hw.out_tensor(node)
    return np.asarray(codes, dtype=np.float64) * tensor.real_scale


CHUNK = 8192  # samples per chunk: intermediates stay in cache, chunks run on all cores


def execute(model: ModelWrapper, x: np.ndarray, *, codes: bool = False, return_all: bool = False):
    """Run a hardware-dialect graph on a batch x of shape (N, ...).

    Returns the real values of the (single) graph output, or its integer codes with
    codes=True; return_all=True returns {tensor name: codes} for every tensor.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    constants = {i.name: model.get_initializer(i.name) for i in model.graph.initializer}
    if return_all or len(x) <= CHUNK:
        return _execute(model, constants, x, codes, return_all)
    chunks = [x[start:start + CHUNK] for start in range(0, len(x), CHUNK)]
    # numpy and BLAS release the GIL: one chunk per core, one BLAS thread each
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda chunk: _execute(model, constants, chunk, codes, False), chunks))
    return np.concatenate(results)


def _execute(model, constants, x, codes, return_all):
    graph = model.graph
    values: dict[str, np.ndarray] = {graph.input[0].name: x, **constants}
    producers = {}
    for node in graph.node:
        if not hw.is_hw(node) or node.op_type not in KERNELS:
            raise QonnxError(
                f"{node.op_type} is not a hardware-dialect op: lower the graph first (qonnx transform)", node=node.name
            )
        inputs = [values[name] for name in node.input if name]
        values[node.output[0]] = KERNELS[node.op_type](node, inputs, model)
        producers[node.output[0]] = node
    if return_all:
        return values
    output = graph.output[0].name
    if codes:
        return values[output]
    return real_values(producers[output], values[output])
