"""One kernel spec per hardware-dialect op. Adding an op: a file here, its header in
hlsgen/include/qnn/, and a line in KERNELS."""

from __future__ import annotations

from qonnx_ir.errors import QonnxError

from .base import ConstantArray, KernelSpec, Layer
from .dense import DenseKernel
from .input_quant import InputQuantKernel
from .join import AddKernel, ConcatKernel
from .requant import RequantKernel
from .softmax import SoftmaxKernel
from .spatial import ConvKernel, FlattenKernel, PadKernel, PoolKernel, UpsampleKernel
from .table import TableKernel

KERNELS: list[KernelSpec] = [
    InputQuantKernel(), DenseKernel(), RequantKernel(), SoftmaxKernel(), ConvKernel(), PoolKernel(), PadKernel(),
    AddKernel(), ConcatKernel(), FlattenKernel(), UpsampleKernel(), TableKernel(),
]


def kernel_for(op) -> KernelSpec:
    """The spec of an op (read at call time, so a test may extend KERNELS)."""
    spec = next((k for k in KERNELS if k.op_type == op.op_type), None)
    if spec is None:
        raise QonnxError(f"{op.op_type} has no HLS kernel yet", node=op.name)
    return spec


__all__ = ["ConstantArray", "KERNELS", "KernelSpec", "Layer", "kernel_for"]
