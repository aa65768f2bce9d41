"""The hardware dialect: one ONNX node per hardware layer, every tensor an exact integer.

Domain `qonnx_ir.hw`. Tensors between these nodes hold integer *codes*; the real value
of a code is `code * type.lsb * gain`, where `type` is the producing node's `out_type`
(a FixedType string) and `gain` its `out_gain` (1 for power-of-two scales, else the
leftover float factor, one per tensor or one per channel). Only the graph's edges
(input conversion, final output) ever look at gains: inside, everything is integers.

Ops and their exact semantics (the interpreter and the HLS kernels implement these):

InputQuant(x) -> q                      x: float, any shape (N, *in_shape)
    v = pre_ops applied to x            float64, one by one in the order of the QONNX graph
                                        (pre_ops: mul|div|add|sub|rsub with a constant,
                                        per tensor or per feature; rsub is c - v)
    q = saturate(round(v / (lsb*gain)))  rounding/saturation of out_type; flattened to (N, F)
    bipolar out_type: q = +1 if v >= 0 else -1.

Dense(x, weight, bias?) -> acc          weight: integer codes (in, out); bias: integer codes
    acc = x @ weight + bias             exact; bias is already on the accumulator grid;
                                        accum_type is sized by interval analysis (never wraps)

Requant(x, thresholds?) -> q            per channel j; `relu` applies max(q, 0) at the end
    mode "shift":          q = sat(round(x / 2**shift_j))                 (power of two: a cast)
    mode "multiply_shift": q = sat(round((x * multiplier_j + offset_j) / 2**shift_j))
    mode "thresholds":     q = out_min + #{k : x >= T[j, k]}  (bipolar: -1 + 2 * #{...})
    round/sat come from out_type; a negative shift multiplies by 2**-shift.

Softmax(x) -> y                          exp by table, one exact integer division per output
    d = max_j x_j - x_j ;  i = 0 if d == 0 else min(((d - 1) >> table_shift) + 1, table_size - 1)
    e = exp_table[i] ;     y = round_half_even(e * 2**out_frac / sum(e))
    exp_table[0] = 2**exp_bits; entry i >= 1 holds exp(-midpoint of the codes it covers)

Hardware knobs (`reuse_factor`, `strategy`) are attributes; code generation reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, helper

from .types import FixedType

DOMAIN = "qonnx_ir.hw"
OPSET = 1
OPS = ("InputQuant", "Dense", "Requant", "Softmax")
REQUANT_MODES = ("shift", "multiply_shift", "thresholds")


def is_hw(node: NodeProto) -> bool:
    return node.domain == DOMAIN


def _attr(node: NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _gain(node: NodeProto, name: str = "out_gain") -> np.ndarray:
    return np.asarray(_attr(node, name, [1.0]), dtype=np.float64)


@dataclass(frozen=True)
class HwTensor:
    """What a hardware-dialect tensor means: its type and its gain."""

    type: FixedType
    gain: np.ndarray  # shape (1,) or (channels,)

    @property
    def real_scale(self) -> np.ndarray:
        return self.type.lsb * self.gain

    @property
    def is_fixed_point(self) -> bool:
        """True when codes * lsb is already the real value (power-of-two scales)."""
        return bool(np.all(self.gain == 1.0))


def out_tensor(node: NodeProto) -> HwTensor:
    return HwTensor(FixedType.parse(_attr(node, "out_type")), _gain(node))


def type_attr(node: NodeProto, name: str) -> FixedType:
    return FixedType.parse(_attr(node, name))


def int_list(node: NodeProto, name: str) -> np.ndarray:
    return np.asarray(_attr(node, name, []), dtype=np.int64)


def float_list(node: NodeProto, name: str, default=(0.0,)) -> np.ndarray:
    return np.asarray(_attr(node, name, list(default)), dtype=np.float64)


def attribute(node: NodeProto, name: str, default=None):
    return _attr(node, name, default)


def _gain_attrs(gain) -> dict:
    gain = np.atleast_1d(np.asarray(gain, dtype=np.float64))
    return {} if np.all(gain == 1.0) else {"out_gain": [float(g) for g in gain]}


PRE_OPS = ("mul", "div", "add", "sub", "rsub")


def make_input_quant(name, x, q, *, in_shape, out_type, gain=1.0, pre_ops=()):
    """pre_ops: [(kind, values)] applied in order before quantizing (kind in PRE_OPS)."""
    extra = {}
    if pre_ops:
        extra = {"pre_ops": [kind for kind, _ in pre_ops], "pre_sizes": [int(np.size(v)) for _, v in pre_ops],
                 "pre_values": [float(v) for _, values in pre_ops for v in np.ravel(values)]}
    return helper.make_node(
        "InputQuant", [x], [q], name=name, domain=DOMAIN,
        in_shape=[int(d) for d in in_shape], out_type=str(out_type), **extra, **_gain_attrs(gain),
    )


def pre_ops(node: NodeProto) -> list[tuple[str, np.ndarray]]:
    kinds = [k.decode() if isinstance(k, bytes) else k for k in _attr(node, "pre_ops", [])]
    sizes, values = _attr(node, "pre_sizes", []), np.asarray(_attr(node, "pre_values", []), dtype=np.float64)
    offsets = np.cumsum([0] + list(sizes))
    return [(kind, values[offsets[i]:offsets[i + 1]]) for i, kind in enumerate(kinds)]


def make_dense(name, x, weight, bias, acc, *, in_type, weight_type, bias_type, accum_type, gain, reuse_factor=1, strategy="latency"):
    inputs = [x, weight] + ([bias] if bias else [])
    return helper.make_node(
        "Dense", inputs, [acc], name=name, domain=DOMAIN,
        in_type=str(in_type), weight_type=str(weight_type), bias_type=str(bias_type),
        accum_type=str(accum_type), out_type=str(accum_type),
        reuse_factor=int(reuse_factor), strategy=strategy, **_gain_attrs(gain),
    )


def make_requant(name, x, q, *, mode, in_type, out_type, gain=1.0, relu=False, shift=(0,), multiplier=(1,), offset=(0,), thresholds=None):
    assert mode in REQUANT_MODES
    inputs = [x] + ([thresholds] if thresholds else [])
    return helper.make_node(
        "Requant", inputs, [q], name=name, domain=DOMAIN, mode=mode,
        in_type=str(in_type), out_type=str(out_type), relu=int(bool(relu)),
        shift=[int(v) for v in np.ravel(shift)], multiplier=[int(v) for v in np.ravel(multiplier)],
        offset=[int(v) for v in np.ravel(offset)], **_gain_attrs(gain),
    )


def make_softmax(name, x, y, *, in_type, out_type, table_size, table_shift, exp_bits, exp_table):
    return helper.make_node(
        "Softmax", [x, exp_table], [y], name=name, domain=DOMAIN,
        in_type=str(in_type), out_type=str(out_type), table_size=int(table_size),
        table_shift=int(table_shift), exp_bits=int(exp_bits),
    )
