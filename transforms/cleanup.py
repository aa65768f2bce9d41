"""Passes that check and tidy a QONNX graph before lowering (mostly qonnx's own)."""

from __future__ import annotations

import warnings

import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.gemm_to_matmul import GemmToMatMul
from qonnx.transformation.general import (
    GiveUniqueParameterTensors,
    RemoveStaticGraphInputs,
    RemoveUnusedTensors,
    SortGraph,
)
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.quant import check_quantizer

from .base import Pass
from .graph import QUANT_OPS, attribute, constant

# Ops the lowering understands, beyond its own dialect. Anything else is refused up front.
SUPPORTED_OPS = (
    "Quant", "BipolarQuant", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "BatchNormalization",
    "Relu", "Softmax", "Reshape", "Flatten", "Transpose", "Identity",
    "Shape", "Gather", "Unsqueeze", "Concat", "Pow", "Sqrt", "Constant",
)


def _replace_proto(model: ModelWrapper, new: ModelWrapper) -> bool:
    changed = new.model.SerializeToString() != model.model.SerializeToString()
    if changed:
        model.model.CopyFrom(new.model)
    return changed


class CheckSupported(Pass):
    """Refuses, with a one-line error, what the lowering cannot handle (changes nothing).

    Unsupported ops, non-constant quantizer parameters, bit widths outside 1..32, a float
    graph with no quantizer at all, dynamic non-batch dimensions, several graph inputs.
    """

    name = "check-supported"
    description = "refuse unsupported ops, dynamic shapes, float-only graphs and bad quantizers"

    def apply(self, model, context):
        graph = model.graph
        for node in graph.node:
            if not hw.is_hw(node) and node.op_type not in SUPPORTED_OPS:
                raise QonnxError(
                    f"op {node.op_type} is not supported (supported: {', '.join(SUPPORTED_OPS)})", node=node.name
                )
            if node.op_type in QUANT_OPS:
                check_quantizer(model, node)
        if not any(n.op_type in QUANT_OPS or hw.is_hw(n) for n in graph.node):
            raise QonnxError("the graph has no quantizer (Quant/BipolarQuant): it is a float model; quantize it with Brevitas (or QKeras) first")
        inputs = [i for i in graph.input if model.get_initializer(i.name) is None]
        if len(inputs) != 1:
            raise QonnxError(f"the graph must have exactly one data input, it has {len(inputs)}")
        for value in inputs + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            for position, dim in enumerate(dims[1:], start=1):
                if not dim.HasField("dim_value") or dim.dim_value <= 0:
                    raise QonnxError(
                        f"tensor '{value.name}' has a dynamic dimension {position} ('{dim.dim_param}'): only the batch dimension may be dynamic; export with a fixed input shape"
                    )
        return False


class Cleanup(Pass):
    """qonnx's cleanup steps, minus renaming: shapes inferred, constants folded (quantizers kept),
    Transpose folded into quantized initializers, unused tensors dropped, nodes sorted.

    Names stay the user's, so every later error names a node they can find in their file;
    only missing or duplicate node names are filled in.
    """

    name = "cleanup"
    description = "qonnx cleanup (infer shapes, fold constants, drop unused), keeping the file's names"

    STEPS = (InferShapes, GiveUniqueParameterTensors, lambda: FoldConstants(exclude_op_types=list(QUANT_OPS)),
             FoldTransposeIntoQuantInit, RemoveUnusedTensors, RemoveStaticGraphInputs, SortGraph, InferShapes)

    def apply(self, model, context):
        if any(hw.is_hw(node) for node in model.graph.node):
            return False  # a (partly) lowered graph is already clean
        proto = onnx.ModelProto()
        proto.CopyFrom(model.model)
        cleaned = ModelWrapper(proto)
        for step in self.STEPS:
            cleaned = cleaned.transform(step(), make_deepcopy=False, cleanup=False)
        _name_unnamed_nodes(cleaned)
        return _replace_proto(model, cleaned)


def _name_unnamed_nodes(model: ModelWrapper) -> None:
    seen = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


class FoldInputPlumbing(Pass):
    """Shape/Gather/Unsqueeze/Concat -> constants; Reshape(x, [1 or -1, -1]) -> Flatten(x, axis=1).

    The exported batch dimension is frozen at 1; a Flatten keeps any batch.
    """

    name = "fold-input-plumbing"
    description = "fold shape arithmetic to constants; batch-keeping Reshape -> Flatten"

    def apply(self, model, context):
        if any(hw.is_hw(node) for node in model.graph.node):
            return False  # the input is already lowered
        folded = model.transform(InferShapes(), make_deepcopy=True, cleanup=False)  # FoldConstants needs shapes
        folded = folded.transform(FoldConstants(exclude_op_types=list(QUANT_OPS)), make_deepcopy=False, cleanup=False)
        changed = _replace_proto(model, folded)
        for node in list(model.graph.node):
            if node.op_type != "Reshape":
                continue
            target = constant(model, node.input[1])
            if target is None:
                raise QonnxError("Reshape with a shape computed at run time: export with a fixed input shape", node=node.name)
            if len(target) == 2 and target[0] in (1, -1) and target[1] in (-1, _feature_count(model, node.input[0])):
                flatten = onnx.helper.make_node("Flatten", [node.input[0]], list(node.output), name=node.name, axis=1)
                position = list(model.graph.node).index(node)
                model.graph.node.remove(node)
                model.graph.node.insert(position, flatten)
                changed = True
        return changed


def _feature_count(model: ModelWrapper, tensor: str) -> int:
    shape = model.get_tensor_shape(tensor) or []
    count = 1
    for dim in shape[1:]:
        count *= int(dim)
    return count


class GemmToMatMulPass(Pass):
    """Gemm(A, B, C) -> MatMul(A, B') + Add(C) (qonnx's GemmToMatMul: transA/transB/alpha/beta)."""

    name = "gemm-to-matmul"
    description = "Gemm -> MatMul + Add (qonnx)"

    def apply(self, model, context):
        if not model.get_nodes_by_op_type("Gemm"):
            return False
        for node in model.get_nodes_by_op_type("Gemm"):
            if attribute(node, "transA", 0):
                raise QonnxError("Gemm with transA=1 is not supported", node=node.name)
            if attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
                raise QonnxError("Gemm with alpha or beta other than 1 is not supported: fold them into the weights", node=node.name)
        with warnings.catch_warnings():  # qonnx warns on any Gemm newer than opset 9; the rewrite is the same
            warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
            return _replace_proto(model, model.transform(GemmToMatMul(), make_deepcopy=True, cleanup=False))


class CheckLowered(Pass):
    """Fails, naming the first node left over, unless every node is in the hardware dialect."""

    name = "check-lowered"
    description = "every node must now be a hardware-dialect op"

    def apply(self, model, context):
        for node in model.graph.node:
            if not hw.is_hw(node):
                reasons = [line for line in context.skipped if line.startswith(node.name + ":")]
                why = reasons[-1].split(": ", 1)[1] if reasons else "no lowering rule matched it"
                raise QonnxError(f"{node.op_type} could not be lowered: {why}", node=node.name)
        return False
