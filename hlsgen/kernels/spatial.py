"""Kernel specs of the ops on channels-last images: Conv, Pool, Pad, Upsample, Flatten (qnn/conv.h,
pool.h, pad.h, upsample.h, flatten.h). A 1-D tensor (L, C) is an image of one row."""

from __future__ import annotations

import numpy as np

from qonnx_ir.errors import QonnxError

from .base import KernelSpec, WeightedKernelSpec, code_fields, flag

# io parallel unrolls every product of a layer; past this the HLS tools would not cope
MAX_PARALLEL_PRODUCTS = 1 << 17


def image(shape) -> tuple[int, int, int]:
    """(height, width, channels) of an (L, C) or (H, W, C) edge."""
    return (1, shape[0], shape[1]) if len(shape) == 2 else tuple(shape)


def input_image(edge) -> str:
    """The config fields of the input image: `in_h = .., in_w = .., channels = ..`."""
    in_h, in_w, channels = image(edge.shape)
    return f"in_h = {in_h}, in_w = {in_w}, channels = {channels}"


def pair(values, rank: int, default: int = 1) -> tuple[int, int]:
    values = tuple(values) or (default,) * rank
    return (1, values[0]) if rank == 1 else (values[0], values[1])


def window_fill(op) -> int:
    """Pixels a window stage reads before its first output: ReachH - 1 rows and ReachW pixels, less one."""
    kernel, _, dilations = op.geometry()
    reach_h, reach_w = (pair([(k - 1) * d + 1 for k, d in zip(kernel, dilations)], len(kernel)))
    _, in_w, _ = image(op.input_edge("x").shape)
    return (reach_h - 1) * in_w + reach_w - 1


class ConvKernel(WeightedKernelSpec):
    op_type = "Conv"
    header = "conv.h"
    template = "conv"

    def config(self, op, backend):
        out_h, out_w, out_channels = image(op.output_edge().shape)
        kernel, strides, dilations = op.geometry()
        rank = len(kernel)
        kh, kw = pair(kernel, rank)
        sh, sw = pair(strides, rank)
        dh, dw = pair(dilations, rank)
        return [
            f"static const unsigned {input_image(op.input_edge('x'))};",
            f"static const unsigned out_h = {out_h}, out_w = {out_w}, out_channels = {out_channels};",
            f"static const unsigned kernel_h = {kh}, kernel_w = {kw}, stride_h = {sh}, stride_w = {sw}, "
            f"dilation_h = {dh}, dilation_w = {dw}, groups = {op.groups};",
            f"static const unsigned reuse_factor = {op.reuse_factor}, parallelization = {op.parallelization}, "
            f"nonzero_weights = {int(np.count_nonzero(op.weight))};",
            *self.weight_fields(op),
        ]

    def stream_delay(self, op):
        return window_fill(op)

    def check_io(self, op, io: str) -> None:
        macs = op.cost("parallel").macs
        if io == "parallel" and macs > MAX_PARALLEL_PRODUCTS:
            raise QonnxError(f"{macs:,} products are too many to unroll in io parallel (at most "
                             f"{MAX_PARALLEL_PRODUCTS:,} per layer): use --io stream", node=op.name)


class PoolKernel(KernelSpec):
    op_type = "Pool"
    header = "pool.h"
    template = "pool"

    def stream_delay(self, op):
        return window_fill(op)

    def config(self, op, backend):
        x, y = op.input_edge("x"), op.output_edge()
        out_h, out_w, _ = image(y.shape)
        kernel, strides, _ = op.geometry()
        kh, kw = pair(kernel, len(kernel))
        sh, sw = pair(strides, len(kernel))
        return [
            f"static const unsigned {input_image(x)}, out_h = {out_h}, out_w = {out_w};",
            f"static const unsigned kernel_h = {kh}, kernel_w = {kw}, stride_h = {sh}, stride_w = {sw};",
            f"static const bool maximum = {flag(op.mode == 'max')};",
            *code_fields("input", x.type), *code_fields("output", y.type),
        ]


class PadKernel(KernelSpec):
    op_type = "Pad"
    header = "pad.h"
    template = "pad"

    def config(self, op, backend):
        x, pads = op.input_edge("x"), op.pads
        top, left, bottom, right = (0, pads[0], 0, pads[1]) if len(pads) == 2 else (pads[0], pads[1], pads[2], pads[3])
        return [
            f"static const unsigned {input_image(x)};",
            f"static const unsigned top = {top}, left = {left}, bottom = {bottom}, right = {right};",
            f"static const long long value = {op.value};",
            *code_fields("input", x.type),
        ]


class UpsampleKernel(KernelSpec):
    op_type = "Upsample"
    header = "upsample.h"
    template = "upsample"

    def config(self, op, backend):
        x = op.input_edge("x")
        scale_h, scale_w = pair(op.scales, len(op.scales))
        return [f"static const unsigned {input_image(x)}, scale_h = {scale_h}, scale_w = {scale_w};",
                *code_fields("input", x.type)]


class FlattenKernel(KernelSpec):
    op_type = "Flatten"
    header = "flatten.h"
    template = "flatten"

    def stream_delay(self, op):
        x = op.input_edge("x")
        return x.size // x.channels - 1  # the vector leaves after the last pixel

    def config(self, op, backend):
        x = op.input_edge("x")
        return [f"static const unsigned positions = {x.size // x.channels}, channels = {x.channels};",
                *code_fields("input", x.type)]
