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
from qonnx.custom_op.base import CustomOp
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


class _Float64Window(CustomOp):
    """Conv and pooling in float64 with numpy (onnxruntime runs these in float32 only), as ONNX
    defines them: NCHW, explicit pads, strides, dilations, groups; average pools count the padding
    (count_include_pad) as the lowering requires."""

    def get_nodeattr_types(self):
        return {"kernel_shape": ("ints", False, []), "strides": ("ints", False, []), "pads": ("ints", False, []),
                "dilations": ("ints", False, []), "group": ("i", False, 1), "auto_pad": ("s", False, "NOTSET"),
                "ceil_mode": ("i", False, 0), "count_include_pad": ("i", False, 0), "storage_order": ("i", False, 0)}

    def make_shape_compatible_op(self, model):
        raise NotImplementedError("only executed")

    def infer_node_datatype(self, model):
        pass

    def verify_node(self):
        pass

    def _windows(self, x, kernel, pad_value):
        rank = len(kernel)
        strides = self.get_nodeattr("strides") or [1] * rank
        dilations = self.get_nodeattr("dilations") or [1] * rank
        pads = self.get_nodeattr("pads") or [0] * (2 * rank)
        auto_pad = self.get_nodeattr("auto_pad")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            from .ops.window import same_pads

            pads = same_pads(x.shape[2:], kernel, strides, dilations, upper=auto_pad == "SAME_UPPER")
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[rank + i]) for i in range(rank)]
        x = np.pad(x, widths, constant_values=pad_value)
        channels_last = np.moveaxis(x, 1, -1)
        from .ops.window import patches

        return patches(channels_last, kernel, strides, dilations)  # (N, *out, *kernel, C)

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        kind = node.op_type
        if kind == "Conv":
            weight = np.asarray(context[node.input[1]], dtype=np.float64)
            kernel = weight.shape[2:]
            windows = self._windows(x, kernel, 0.0)
            groups = self.get_nodeattr("group")
            out_channels, c_group = weight.shape[0], weight.shape[1]
            o_group = out_channels // groups
            out = []
            for g in range(groups):
                part = windows[..., g * c_group:(g + 1) * c_group]  # (N, *out, *kernel, c_group)
                w = np.moveaxis(weight[g * o_group:(g + 1) * o_group], 1, -1)  # (o, *kernel, c_group)
                out.append(np.tensordot(part, w, axes=(list(range(-len(kernel) - 1, 0)),
                                                       list(range(1, len(kernel) + 2)))))
            y = np.concatenate(out, axis=-1)
            if len(node.input) > 2 and node.input[2]:
                y = y + np.asarray(context[node.input[2]], dtype=np.float64)
        else:
            kernel = tuple(self.get_nodeattr("kernel_shape")) if not kind.startswith("Global") else x.shape[2:]
            maximum = kind in ("MaxPool", "GlobalMaxPool")
            windows = self._windows(x, kernel, -np.inf if maximum else 0.0)
            axes = tuple(range(-len(kernel) - 1, -1))
            y = windows.max(axis=axes) if maximum else windows.sum(axis=axes) / float(np.prod(kernel))
        context[node.output[0]] = np.moveaxis(y, -1, 1)


for _name in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
    add_op_to_domain(FLOAT64_QUANT_DOMAIN, type(_name, (_Float64Window,), {}))


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
        if node.op_type in ("Quant", "IntQuant") and node.domain == "qonnx.custom_op.general":
            node.op_type, node.domain = "Quant", FLOAT64_QUANT_DOMAIN  # IntQuant is Quant's newer name
        elif node.op_type in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool") and \
                node.domain in ("", "ai.onnx"):
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
