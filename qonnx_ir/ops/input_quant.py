"""InputQuant: the float graph input -> integer codes (the design's interface to the world).

    InputQuant(x) -> q          x: float (N, *input shape), in the user's layout
    v = pre_ops applied to x    float64, one by one, in the order of the QONNX graph:
                                mul | div | add | sub | rsub (c - v) with a constant that is
                                per tensor or per input value (the user's layout, flattened)
    q = sat(round(v / (lsb * gain)))        rounding and saturation of q's type
        bipolar q:  q = +1 if v >= 0 else -1
    layout channels_first: x is (N, C, [H,] [W]) as PyTorch gives it; q is channels last

The float ops are not composed, so the codes equal those of the QONNX graph in float64.
In hardware the design's input port already carries q (as the fixed-point value q * lsb).
"""

from __future__ import annotations

import math

import numpy as np

from ..dialect.edges import EdgeType
from ..dialect.op import Attr, Cost, HwOp, Port
from ..errors import QonnxError
from ..types import Rounding, Saturation
from .. import integers

PRE_OPS = {
    "mul": np.multiply, "div": np.divide, "add": np.add, "sub": np.subtract,
    "rsub": lambda values, constant: constant - values,
}
LAYOUTS = ("channels_last", "channels_first")


def to_channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) -> (H, W, C); (C, L) -> (L, C); (F,) stays."""
    return tuple(shape[1:]) + (shape[0],) if len(shape) > 1 else tuple(shape)


class InputQuant(HwOp):
    op_type = "InputQuant"
    summary = "float input -> codes (float pre-ops in graph order, then the input quantizer)"
    inputs = (Port("x", typed=False),)
    outputs = ("q",)

    pre_ops = Attr("strs", (), choices=tuple(PRE_OPS), doc="float ops before quantizing, in graph order")
    pre_sizes = Attr("ints", (), minimum=1, doc="number of constants of each pre-op (1 or one per input value)")
    pre_values = Attr("floats", (), doc="the constants of all pre-ops, concatenated")
    layout = Attr(str, "channels_last", choices=LAYOUTS, doc="channels_first: the input is PyTorch's NCHW")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The user's input shape without the batch (from the graph input's declaration)."""
        shape = self.graph.model.get_tensor_shape(self.input_name(0))
        if not shape or len(shape) < 2 or any(not isinstance(d, int) or d < 1 for d in shape[1:]):
            raise self.fail(f"the graph input needs a static shape (N, ...), it is declared {shape}")
        return tuple(int(d) for d in shape[1:])

    def pre_op_list(self) -> list[tuple[str, np.ndarray]]:
        offsets = np.cumsum([0, *self.pre_sizes])
        values = np.asarray(self.pre_values, dtype=np.float64)
        return [(kind, values[offsets[i]:offsets[i + 1]]) for i, kind in enumerate(self.pre_ops)]

    def check_output(self, index: int, edge: EdgeType) -> None:
        features = math.prod(self.input_shape)
        if len(self.pre_sizes) != len(self.pre_ops) or sum(self.pre_sizes) != len(self.pre_values):
            raise self.fail("pre_ops, pre_sizes and pre_values do not match")
        if any(size not in (1, features) for size in self.pre_sizes):
            raise self.fail(f"a pre-op has {self.pre_sizes} constants: give 1 or one per input value ({features})")
        shape = to_channels_last(self.input_shape) if self.layout == "channels_first" else self.input_shape
        if len(shape) == 1 or self.layout == "channels_first":
            expected = shape
        else:  # a channels-last input of any rank is read as a flat vector
            expected = (features,)
        if edge.shape != tuple(expected):
            raise self.fail(f"output shape {edge.shape} does not follow from the input shape {self.input_shape}")
        if edge.per_tensor_gain is None:
            raise self.fail("the input quantizer has one scale for the whole tensor")
        if edge.type.saturation is Saturation.WRAP:
            raise self.fail("the input type must saturate (SAT or SAT_SYM), not wrap")

    def evaluate(self, inputs: list) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        edge = self.output_edge()
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise QonnxError(f"inputs must be real numbers, got {x.dtype}")
        features = math.prod(self.input_shape)
        if x.ndim == 0 or x.size != len(x) * features:
            raise QonnxError(f"inputs have {x.size // max(len(x), 1) if x.ndim else 1} values per sample, the model "
                             f"expects {features} (shape {self.input_shape})")
        values = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for kind, constant in self.pre_op_list():
            values = PRE_OPS[kind](values, constant)
        fixed = edge.type
        if fixed.bipolar:
            codes = np.where(values >= 0, 1.0, -1.0)
        else:
            if edge.is_fixed_point:
                scaled = values * np.ldexp(1.0, fixed.frac_bits)  # exact: a power of two
            else:
                scaled = values / (fixed.lsb * float(edge.gain[0]))  # what qonnx's Quant computes: x / scale
            np.clip(scaled, fixed.min_code, fixed.max_code, out=scaled)  # qonnx clamps before rounding
            codes = np.round(scaled, out=scaled) if fixed.rounding is Rounding.CONV else np.floor(scaled, out=scaled)
        codes = codes.astype(integers.representation(fixed.magnitude))
        if self.layout == "channels_first" and len(self.input_shape) > 1:
            codes = np.moveaxis(codes.reshape(len(x), *self.input_shape), 1, -1)
        return [codes.reshape(len(x), *edge.shape)]

    def cost(self, io: str = "parallel") -> Cost:
        return Cost(act_bits=32, latency=1)  # float input: qonnx counts 32 bits
