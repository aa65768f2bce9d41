"""The hardware dialect: a typed dataflow graph of hardware layers (DESIGN.md, "The hardware dialect").

- `edges`: EdgeType (shape, fixed-point type, gain) stored once per tensor
- `op`: what an op is (typed attributes, ports, type rules, semantics, cost)
- `registry`: the list of ops (`qonnx_ir/ops/` holds one file per op)
- `graph`: GraphView (queries) and HwGraph (a validated hardware-dialect graph)
- `knobs`: hardware knobs resolved once into node attributes
"""

from .edges import EdgeType, constant_edge, has_edge_type, read_edge_type, remove_edge_type, write_edge_type
from .graph import GraphView, HwGraph, is_hw
from .op import DOMAIN, OPSET, Attr, Cost, HwOp, Port
from .registry import op_class, op_types

__all__ = [
    "DOMAIN", "OPSET", "Attr", "Cost", "EdgeType", "GraphView", "HwGraph", "HwOp", "Port", "constant_edge",
    "has_edge_type", "is_hw", "op_class", "op_types", "read_edge_type", "remove_edge_type", "write_edge_type",
]
