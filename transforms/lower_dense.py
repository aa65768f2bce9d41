"""lower-dense: MatMul with quantized weights (+ bias) on a typed input -> one Dense node.

    have: x:<type, gain g> -> MatMul(x, [Transpose] Quant(W, s_w)) -> [Add(b or Quant(b))]
    want: x -> Dense(x, W_codes, b_codes) -> acc

acc_j is real value acc_code * lsb * gain_j with lsb * gain_j = lsb_x * g * s_w,j. When
every such product is a power of two the accumulator is a plain fixed-point type (gain
a power of two >= 1 per channel if the weight scales differ); otherwise lsb is 1 and the
gain carries the float factor, which a later Requant folds away.
The bias is put on the accumulator grid: b_code = round_half_even(b / (lsb * gain)).
That is exact for a bias quantized with scale s_x * s_w (Brevitas' bias quantizers);
a float bias is rounded and the largest deviation is reported.
"""

from __future__ import annotations

import numpy as np

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import FixedType, power_of_two_exponent

from .base import Context, Pass
from .graph import constant, fresh_name, hw_producer, quantized_constant, remove_dead_nodes, remove_nodes, single_consumer
from .intervals import dense_types


class LowerDense(Pass):
    name = "lower-dense"
    description = "MatMul(typed x, quantized W) [+ bias] => Dense with integer weights and sized accumulator"

    def apply(self, model, context: Context) -> bool:
        changed = False
        for node in list(model.get_nodes_by_op_type("MatMul")):
            producer = hw_producer(model, node.input[0])
            if producer is None:
                context.skip(node.name, "its input has no fixed-point type yet (lower its producer first)")
                continue
            self._lower(model, node, producer, context)
            changed = True
        if changed:
            remove_dead_nodes(model)
        return changed

    def _lower(self, model, node, producer, context):
        x = hw.out_tensor(producer)
        if x.gain.size != 1:
            raise QonnxError("the input of this layer has a per-channel scale: quantize it per tensor", node=node.name)
        weights = quantized_constant(model, node.input[1])
        if weights is None:
            raise QonnxError("MatMul weights are not quantized constants (Quant(initializer)): quantize the layer", node=node.name)
        codes, scale, params = weights
        if codes.ndim != 2 or np.any(scale != scale[:1, :]):
            raise QonnxError("weight scale must be per tensor or per output channel", node=node.name)
        step = x.type.lsb * float(x.gain[0]) * scale[0]  # real value of one accumulator code, per channel
        frac_bits, gain = _split_power_of_two(step)
        removed = [node]
        bias_real, bias_is_float, bias_node = None, False, single_consumer(model, node.output[0])
        output = node.output[0]
        if bias_node is not None and bias_node.op_type == "Add":
            other = bias_node.input[1] if bias_node.input[0] == output else bias_node.input[0]
            bias_is_float = constant(model, other) is not None
            bias_real = _constant_or_quantized(model, other)
            if bias_real is not None:
                bias_real = np.broadcast_to(bias_real.reshape(-1), (codes.shape[1],))
                removed.append(bias_node)
                output = bias_node.output[0]
        bias_codes = np.zeros(codes.shape[1], dtype=np.int64)
        if bias_real is not None:
            grid = np.ldexp(gain, -frac_bits)
            bias_codes = np.round(bias_real / grid).astype(np.int64)
            deviation = float(np.max(np.abs(bias_codes * grid - bias_real)))
            if bias_is_float or deviation:
                context.report.add(node.name, f"float bias rounded onto the accumulator grid (lsb {np.min(grid):.3g}): max deviation {deviation:.3g}")
        weight_type = FixedType(1, 1, True, bipolar=True) if params["bipolar"] else FixedType.integer(params["bits"], params["signed"])
        accum_type, bias_type = dense_types(codes, bias_codes, x.type, frac_bits)
        name = fresh_name(model, f"dense_{node.name}")
        weight_name = fresh_name(model, f"{name}_weight")
        model.set_initializer(weight_name, codes.astype(np.float32) if params["bits"] <= 24 else codes.astype(np.float64))
        inputs_bias = None
        if bias_real is not None:
            inputs_bias = fresh_name(model, f"{name}_bias")
            model.set_initializer(inputs_bias, bias_codes.astype(np.float64))
        dense = hw.make_dense(
            name, node.input[0], weight_name, inputs_bias, output, in_type=x.type, weight_type=weight_type,
            bias_type=bias_type, accum_type=accum_type, gain=gain, reuse_factor=context.options.reuse_factor,
        )
        position = list(model.graph.node).index(node)
        remove_nodes(model, removed)
        model.graph.node.insert(position, dense)
        context.report.add(name, f"{codes.shape[0]}x{codes.shape[1]} weights {weight_type}, accumulator {accum_type}")


def _split_power_of_two(step: np.ndarray) -> tuple[int, np.ndarray]:
    """(frac_bits, gain) with step = 2**-frac_bits * gain; gain is 1 (or a power of two
    per channel) when every step is a power of two, else frac_bits = 0 and gain = step."""
    exponents = [power_of_two_exponent(float(s)) for s in step]
    if all(e is not None for e in exponents):
        smallest = min(exponents)
        return -smallest, np.ldexp(1.0, np.asarray(exponents) - smallest)
    return 0, np.asarray(step, dtype=np.float64)


def _constant_or_quantized(model, tensor):
    value = constant(model, tensor)
    if value is not None:
        return value
    quantized = quantized_constant(model, tensor)
    if quantized is None:
        return None
    codes, scale, _ = quantized
    return codes * scale
