"""Passes that check and tidy a QONNX graph before lowering (mostly qonnx's own), and the final check."""

from __future__ import annotations

import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.general import (
    GiveUniqueParameterTensors,
    RemoveStaticGraphInputs,
    RemoveUnusedTensors,
    SortGraph,
)
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

from qonnx_ir.dialect import DOMAIN, OPSET, HwGraph, is_hw, read_edge_type
from qonnx_ir.dialect.graph import LAYOUT_KEY
from qonnx_ir.errors import QonnxError
from qonnx_ir.quant import check_quantizer

from .base import Pass
from .float_chain import ELEMENTWISE
from .graph import QUANT_OPS, attribute, constant, fresh_name, quantized_constant, replace_node

# Ops the preparation folds away (shape plumbing, constants) or that only move data; the
# lowering passes add what they lower (their `consumes`). Anything else is refused up front.
PLUMBING_OPS = ("Reshape", "Transpose", "Identity", "Shape", "Gather", "Unsqueeze", "Pow", "Sqrt", "Constant")


def supported_ops() -> list[str]:
    from .pipelines import all_passes  # the pass lists import this module

    ops = [op for step in all_passes() for op in step.consumes]
    return list(dict.fromkeys([*ops, *PLUMBING_OPS]))


def _replace_proto(model: ModelWrapper, new: ModelWrapper) -> bool:
    changed = new.model.SerializeToString() != model.model.SerializeToString()
    if changed:
        model.model.CopyFrom(new.model)
    return changed


class CheckSupported(Pass):
    """Refuses, with a one-line error, what the lowering cannot handle (changes nothing).

    Unsupported ops (all of them named at once), non-constant quantizer parameters, bit widths
    outside 1..32, a float graph with no quantizer at all, dynamic non-batch dimensions.
    """

    name = "check-supported"
    description = "refuse unsupported ops, dynamic shapes, float-only graphs and bad quantizers"

    def apply(self, model, context):
        graph = model.graph
        supported_list = supported_ops()
        foldable = _foldable(model)
        unsupported: dict[str, list[str]] = {}
        for node in graph.node:
            if not is_hw(node) and node.op_type not in supported_list and node.name not in foldable:
                unsupported.setdefault(node.op_type, []).append(node.name)
        if unsupported:
            supported = f"supported: {', '.join(supported_list)}"
            names = [name for nodes in unsupported.values() for name in nodes]
            if len(names) == 1:
                raise QonnxError(f"op {next(iter(unsupported))} is not supported ({supported})", node=names[0])
            listing = ", ".join(f"{op} ({', '.join(repr(n) for n in nodes)})" for op, nodes in unsupported.items())
            raise QonnxError(f"{len(names)} nodes of unsupported ops: {listing}; {supported}")
        for node in graph.node:
            if node.op_type in QUANT_OPS:
                check_quantizer(model, node)
        if not any(n.op_type in QUANT_OPS or is_hw(n) for n in graph.node):
            raise QonnxError("the graph has no quantizer (Quant/BipolarQuant): it is a float model; quantize it with "
                             "Brevitas (or QKeras) first")
        inputs = [i for i in graph.input if model.get_initializer(i.name) is None]
        for value in inputs:  # outputs may be symbolic: the lowering knows every edge's static shape
            dims = value.type.tensor_type.shape.dim
            for position, dim in enumerate(dims[1:], start=1):
                if not dim.HasField("dim_value") or dim.dim_value <= 0:
                    raise QonnxError(
                        f"tensor '{value.name}' has a dynamic dimension {position} ('{dim.dim_param}'): only the "
                        "batch dimension may be dynamic; export with a fixed input shape"
                    )
        return False


def _foldable(model: ModelWrapper) -> set[str]:
    """Names of the standard nodes cleanup folds into constants: shape arithmetic of any op, on
    constants or on Shape (every non-batch dimension is static)."""
    constants = {init.name for init in model.graph.initializer}
    folded: set[str] = set()
    for node in model.graph.node:  # exports list nodes in topological order
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Shape" or all(not name or name in constants for name in node.input):
            folded.add(node.name)
            constants.update(node.output)
    return folded


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
        if any(is_hw(node) for node in model.graph.node):
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
        if any(is_hw(node) for node in model.graph.node):
            return False  # the input is already lowered
        folded = model.transform(InferShapes(), make_deepcopy=True, cleanup=False)  # FoldConstants needs shapes
        folded = folded.transform(FoldConstants(exclude_op_types=list(QUANT_OPS)), make_deepcopy=False, cleanup=False)
        changed = _replace_proto(model, folded)
        for node in list(model.graph.node):
            if node.op_type != "Reshape" or quantized_constant(model, node.output[0]) is not None:
                continue  # a quantized weight's Reshape is read by the layer's lowering
            target = constant(model, node.input[1])
            if target is None:
                raise QonnxError("Reshape with a shape computed at run time: export with a fixed input shape", node=node.name)
            if len(target) == 2 and target[0] in (1, -1) and target[1] in (-1, _feature_count(model, node.input[0])):
                flatten = helper.make_node("Flatten", [node.input[0]], list(node.output), name=node.name, axis=1)
                replace_node(model, node, flatten)
                changed = True
        return changed


def _feature_count(model: ModelWrapper, tensor: str) -> int:
    shape = model.get_tensor_shape(tensor) or []
    count = 1
    for dim in shape[1:]:
        count *= int(dim)
    return count


class GemmToMatMulPass(Pass):
    """Gemm(A, B, C) -> MatMul(A, B) + Add(C); transB=1 puts a Transpose on B.

        have: Gemm(a, b, c; transB)                 named g
        want: MatMul(a, [Transpose] b) -> Add(c)    named g and g/bias

    Written here rather than with qonnx's GemmToMatMul, which leaves the new nodes unnamed
    (later errors would name a `MatMul_13` the user's file does not have) and inserts a Mul
    by alpha and beta even when they are 1.
    """

    name = "gemm-to-matmul"
    description = "Gemm -> [Transpose] MatMul + Add, keeping the Gemm's name"
    consumes = ("Gemm",)

    def apply(self, model, context):
        gemms = model.get_nodes_by_op_type("Gemm")
        for node in gemms:
            if attribute(node, "transA", 0):
                raise QonnxError("Gemm with transA=1 is not supported", node=node.name)
            if attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
                raise QonnxError("Gemm with alpha or beta other than 1 is not supported: fold them into the weights",
                                 node=node.name)
        for node in gemms:
            weight, output = node.input[1], node.output[0]
            new_nodes = []
            if attribute(node, "transB", 0):
                transposed = fresh_name(model, f"{weight}_transposed")
                new_nodes.append(helper.make_node("Transpose", [weight], [transposed], name=f"{node.name}/transpose",
                                                  perm=[1, 0]))
                weight = transposed
            has_bias = len(node.input) > 2 and bool(node.input[2])
            product = fresh_name(model, f"{output}_product") if has_bias else output
            new_nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name))
            if has_bias:
                new_nodes.append(helper.make_node("Add", [product, node.input[2]], [output], name=f"{node.name}/bias"))
            position = list(model.graph.node).index(node)
            model.graph.node.remove(node)
            for offset, new in enumerate(new_nodes):
                model.graph.node.insert(position + offset, new)
        if gemms:
            model.model.CopyFrom(model.transform(InferShapes(), make_deepcopy=True, cleanup=False).model)
        return bool(gemms)


class CheckLowered(Pass):
    """Fails, naming every node left over, unless every node is in the hardware dialect; then
    validates the result as a whole with the op specs (`HwGraph`), so nothing inconsistent is
    ever written. The input's batch dimension becomes the symbol N (any batch runs)."""

    name = "check-lowered"
    description = "every node must now be a hardware-dialect op, and the graph must validate"

    def apply(self, model, context):
        left = [node for node in model.graph.node if not is_hw(node)]
        if left:
            first, why = _blocker(model, left, context)
            rest = [n for n in left if n is not first]
            others = f" (also left: {', '.join(repr(n.name) for n in rest[:5])}{', ...' if len(rest) > 5 else ''})" \
                if rest else ""
            raise QonnxError(f"{first.op_type} could not be lowered: {why}{others}", node=first.name)
        changed = _finish(model)
        HwGraph(model)
        return changed


def _blocker(model: ModelWrapper, left: list, context) -> tuple:
    """(the node where lowering stopped, why): the first node left over that reads a lowered
    tensor, past any float ops that were waiting for a quantizer after it."""
    def reason(node, default="no lowering rule matched it"):
        reasons = [line for line in context.skipped if line.startswith(node.name + ":")]
        return reasons[-1].split(": ", 1)[1] if reasons else default

    for node in left:
        if not any(read_edge_type(model, name) is not None for name in node.input):
            continue
        floats = []
        while node.op_type in ELEMENTWISE:
            floats.append(node)
            consumers = model.find_consumers(node.output[0])
            if len(consumers) != 1 or is_hw(consumers[0]):
                names = ", ".join(repr(n.name) for n in floats)
                return floats[0], (f"the float ops {names} after a lowered tensor reach no quantizer: end them with "
                                   "an activation quantizer (Quant) or the graph output")
            node = consumers[0]
        if floats:
            if node.op_type in _read_by_ingest() and reason(node, None):  # e.g. a Round that is no quantizer
                return node, reason(node, None)
            names = ", ".join(repr(n.name) for n in floats)
            return node, (f"its input comes from float ops ({names}) with no quantizer in between: quantize that "
                          f"tensor before {node.op_type}")
        return node, reason(node)
    return left[0], reason(left[0])


def _read_by_ingest() -> set[str]:
    """Op types that only the ingest passes read: their recorded reason is why such a node stayed."""
    from .pipelines import INGEST, LOWERINGS  # the pass lists import this module

    lowered = {op for step in LOWERINGS for op in step.consumes}
    return {op for step in INGEST for op in step.consumes} - lowered


def _finish(model: ModelWrapper) -> bool:
    """Import the dialect's domain (and only the domains still used); batch dimension N."""
    changed = False
    used = {node.domain for node in model.graph.node}
    for entry in list(model.model.opset_import):
        if entry.domain not in ("", "ai.onnx") and entry.domain not in used:
            model.model.opset_import.remove(entry)
            changed = True
    if not any(entry.domain == DOMAIN for entry in model.model.opset_import):
        model.model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET))
        changed = True
    for output in model.graph.output:  # an image output: the user's graph gives it channels first
        edge = read_edge_type(model, output.name)
        key = f"{LAYOUT_KEY}:{output.name}"
        if edge is not None and len(edge.shape) > 1 and not any(p.key == key for p in model.model.metadata_props):
            entry = model.model.metadata_props.add()
            entry.key, entry.value = key, "channels_first"
            changed = True
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_param:
            dims[0].Clear()
            dims[0].dim_param = "N"
            changed = True
    return changed

