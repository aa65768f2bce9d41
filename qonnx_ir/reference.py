"""Reference execution of QONNX graphs with qonnx's own executor, optionally in float64.

``execute_qonnx`` is the "what does qonnx say this graph computes" oracle for tests. With
``float64=True`` the graph is rewritten to double precision before running
``qonnx.core.onnx_exec.execute_onnx``:

float64: every float initializer (weights, biases, scales, BatchNorm parameters), the graph
input, outputs and intermediate tensors, Cast/Constant nodes that produced float32, the
standard ONNX ops run by onnxruntime (MatMul, Gemm, Add, BatchNormalization, ...), and
``Quant`` (run as a copy of qonnx's Quant that skips its final cast to float32, which would
lose bits above 24 for e.g. a 32-bit bias), ``BipolarQuant`` and ``Trunc`` (qonnx computes
both in their input's dtype).

Not float64: node attributes stay as stored (e.g. BatchNormalization's ``epsilon`` is a
float32 attribute), integer tensors (shapes, indices, bit widths) stay integer, and custom ops
other than the three above keep whatever precision their qonnx implementation uses.

Quant/BipolarQuant compute ``x / scale`` and round in float64; with power-of-two scales and
integers below 2**53 every step is exact, so a MatMul of quantized tensors is exact too, in
any summation order. Non-power-of-two scales and float ops (BatchNormalization, Softmax) are
merely float64-rounded; onnxruntime's float64 Softmax may differ by 1 ulp with batch size.

Batches: exported graphs freeze the batch dimension (usually 1). The graph is re-batched to
the input's leading dimension with qonnx's ``ChangeBatchSize`` (inside ``cleanup_model``),
which also patches constant Reshape shapes, and then runs once for the whole batch. Only the
first graph input and output are re-batched. The caller's model is never modified.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.general.quant import Quant as _QonnxQuant
from qonnx.custom_op.general.quant import quant as _int_quant
from qonnx.custom_op.registry import add_op_to_domain
from qonnx.util.cleanup import cleanup_model

# Private domain holding the float64-preserving Quant; only ever set on our own graph copy.
FLOAT64_QUANT_DOMAIN = "qonnx_ir.reference.float64"


class Quant(_QonnxQuant):
    """qonnx's Quant without the cast of its output to float32."""

    def execute_node(self, context, graph):
        node = self.onnx_node
        x, scale, zero_point, bit_width = (context[name] for name in node.input[:4])
        result = _int_quant(x, scale, zero_point, bit_width, self.get_nodeattr("signed"),
                            self.get_nodeattr("narrow"), self.get_nodeattr("rounding_mode"))
        context[node.output[0]] = np.asarray(result, dtype=np.float64)


add_op_to_domain(FLOAT64_QUANT_DOMAIN, Quant)


def _to_float64(model: ModelWrapper) -> ModelWrapper:
    """Rewrite a cleaned-up graph in place so that every float32 tensor becomes float64."""
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float64)
            graph.initializer[index].CopyFrom(numpy_helper.from_array(array, init.name))
    for value_info in [*graph.input, *graph.output, *graph.value_info]:
        if value_info.type.tensor_type.elem_type == TensorProto.FLOAT:
            value_info.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        if node.op_type == "Quant" and node.domain == "qonnx.custom_op.general":
            node.domain = FLOAT64_QUANT_DOMAIN
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to":
                if attribute.i == TensorProto.FLOAT:
                    attribute.i = TensorProto.DOUBLE
            elif attribute.type == onnx.AttributeProto.TENSOR:  # Constant, ConstantOfShape
                if attribute.t.data_type == TensorProto.FLOAT:
                    array = numpy_helper.to_array(attribute.t).astype(np.float64)
                    attribute.t.CopyFrom(numpy_helper.from_array(array))
    return model


def _load(model) -> ModelWrapper:
    # Always work on a private copy: cleanup_model edits node domains in place.
    if isinstance(model, ModelWrapper):
        return ModelWrapper(copy.deepcopy(model.model))
    if isinstance(model, onnx.ModelProto):
        return ModelWrapper(copy.deepcopy(model))
    return ModelWrapper(str(model))


def execute_qonnx(model, inputs, *, float64=True, return_all=False) -> dict[str, np.ndarray]:
    """Run a QONNX graph (ModelWrapper, ModelProto or path) on a batch with qonnx's executor.

    `inputs` is a dict {graph input name: array} or one array for the first graph input;
    arrays carry the batch in their leading dimension. Returns {graph output name: array}
    under the caller's output names; with `return_all`, also every tensor of the execution
    context under its name in the cleaned-up graph. See the module docstring for exactly
    what `float64=True` computes in double precision.
    """
    wrapper = _load(model)
    input_names = [value_info.name for value_info in wrapper.graph.input]
    output_names = [value_info.name for value_info in wrapper.graph.output]
    if not isinstance(inputs, dict):
        inputs = {input_names[0]: inputs}
    unknown = set(inputs) - set(input_names)
    if unknown:  # execute_onnx would silently run on zeros instead
        raise KeyError(f"not graph inputs: {sorted(unknown)}; the graph has {input_names}")
    dtype = np.float64 if float64 else np.float32
    batch = np.shape(inputs[input_names[0]])[0]
    frozen_batch = wrapper.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    wrapper = cleanup_model(wrapper, override_inpsize=batch if batch != frozen_batch else None)
    if float64:
        wrapper = _to_float64(wrapper)
    # cleanup renames tensors (global_in, global_out, ...) but keeps the input/output order.
    cleaned_inputs = [value_info.name for value_info in wrapper.graph.input]
    input_dict = {cleaned_inputs[input_names.index(name)]: np.asarray(array, dtype=dtype)
                  for name, array in inputs.items()}
    context = execute_onnx(wrapper, input_dict, return_full_exec_context=True)
    results = dict(context) if return_all else {}
    for name, value_info in zip(output_names, wrapper.graph.output):
        results[name] = context[value_info.name]
    return results
