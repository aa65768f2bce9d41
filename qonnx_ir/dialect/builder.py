"""Build a hardware-dialect graph by hand: for tests, examples and trying out a new op.

    b = GraphBuilder(input_shape=(4,))
    q = b.input_quant(FixedType(6, 2, True))
    w = b.constant("fc1/weight", codes, FixedType(4, 1, True))
    acc = b.node(Dense, "fc1", [q, w])                      # output type from Dense.infer
    y = b.node(Requant, "rq1", [acc], out=EdgeType(FixedType(5, 3, False), (3,)), mode="shift", shift=[3])
    model = b.build(y)                                       # validated (HwGraph)

The lowering passes do the same edits on a partly lowered QONNX graph.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from ..types import FixedType
from .edges import EdgeType, constant_edge, write_edge_type
from .graph import GraphView, HwGraph
from .op import DOMAIN, OPSET, HwOp


def storage_dtype(fixed: FixedType) -> type:
    """The smallest numpy integer type that holds every code of the type (what the file stores)."""
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= fixed.min_code and fixed.max_code <= info.max:
            return dtype
    return np.int64


def add_constant(model: ModelWrapper, name: str, codes: np.ndarray, fixed: FixedType, gain=1.0) -> str:
    """An integer initializer with its type annotation."""
    model.set_initializer(name, np.asarray(codes).astype(storage_dtype(fixed)))
    write_edge_type(model, name, constant_edge(codes, fixed, gain))
    return name


class GraphBuilder:
    def __init__(self, input_shape: tuple[int, ...], input_name: str = "x", layout: str = "channels_last"):
        self.input_name, self.input_shape, self.layout = input_name, tuple(input_shape), layout
        graph = helper.make_graph([], "hw", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                          ["N", *self.input_shape])], [])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, OPSET)])
        self.model = ModelWrapper(proto)

    def input_quant(self, fixed: FixedType, gain=1.0, name: str = "input_quant", pre_ops=()) -> str:
        from ..ops.input_quant import InputQuant, to_channels_last

        shape = to_channels_last(self.input_shape) if self.layout == "channels_first" else (int(np.prod(self.input_shape)),)
        return self.node(InputQuant, name, [self.input_name], out=EdgeType(fixed, shape, gain), layout=self.layout,
                         pre_ops=[k for k, _ in pre_ops], pre_sizes=[int(np.size(v)) for _, v in pre_ops],
                         pre_values=[float(v) for _, values in pre_ops for v in np.ravel(values)])

    def constant(self, name: str, codes, fixed: FixedType, gain=1.0) -> str:
        return add_constant(self.model, name, np.asarray(codes), fixed, gain)

    def node(self, op_class: type[HwOp], name: str, inputs: list[str], *, out: EdgeType | None = None,
             output: str | None = None, **attrs) -> str:
        """Append a node; its output's type is `out`, else what the op's type rule gives."""
        output = output or f"{name}_out"
        node = op_class.make(name, inputs, [output], **attrs)
        self.model.graph.node.append(node)
        edge = out if out is not None else op_class(node, GraphView(self.model)).infer()[0]
        write_edge_type(self.model, output, edge)
        return output

    def build(self, *outputs: str, validate: bool = True) -> ModelWrapper:
        for name in outputs:
            self.model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
            for info in list(self.model.graph.value_info):
                if info.name == name:
                    self.model.graph.output[-1].CopyFrom(info)
                    self.model.graph.value_info.remove(info)
        if validate:
            HwGraph(self.model)
        return self.model
