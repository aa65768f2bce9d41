"""Kernel specs of the ops on channels-last images: Conv, Pool, Pad, Upsample, Flatten (qnn/conv.h,
pool.h, pad.h, upsample.h, flatten.h). A 1-D tensor (L, C) is an image of one row."""

from __future__ import annotations

import numpy as np

from qonnx_ir.errors import QonnxError

from .base import ConstantArray, KernelSpec, code_fields, flag, storage_type

# io parallel unrolls every product of a layer; past this the HLS tools would not cope
MAX_PARALLEL_PRODUCTS = 1 << 17


def image(shape) -> tuple[int, int, int]:
    """(height, width, channels) of an (L, C) or (H, W, C) edge."""
    return (1, shape[0], shape[1]) if len(shape) == 2 else tuple(shape)


def pair(values, rank: int, default: int = 1) -> tuple[int, int]:
    values = tuple(values) or (default,) * rank
    return (1, values[0]) if rank == 1 else (values[0], values[1])


def window_fill(op) -> int:
    """Pixels a window stage reads before its first output: ReachH - 1 rows and ReachW pixels, less one."""
    kernel, _, dilations = op.geometry()
    reach_h, reach_w = (pair([(k - 1) * d + 1 for k, d in zip(kernel, dilations)], len(kernel)))
    _, in_w, _ = image(op.input_edge("x").shape)
    return (reach_h - 1) * in_w + reach_w - 1


class ConvKernel(KernelSpec):
    op_type = "Conv"
    header = "conv.h"

    def kernel(self, op, ident):
        return f"qnn::conv<{ident}_config>"

    def config(self, op, backend):
        x, acc = op.input_edge("x"), op.output_edge()
        in_h, in_w, channels = image(x.shape)
        out_h, out_w, out_channels = image(acc.shape)
        kernel, strides, dilations = op.geometry()
        rank = len(kernel)
        kh, kw = pair(kernel, rank)
        sh, sw = pair(strides, rank)
        dh, dw = pair(dilations, rank)
        weight = op.weight
        return [
            f"static const unsigned in_h = {in_h}, in_w = {in_w}, channels = {channels};",
            f"static const unsigned out_h = {out_h}, out_w = {out_w}, out_channels = {out_channels};",
            f"static const unsigned kernel_h = {kh}, kernel_w = {kw}, stride_h = {sh}, stride_w = {sw}, "
            f"dilation_h = {dh}, dilation_w = {dw}, groups = {op.groups};",
            f"static const unsigned reuse_factor = {op.reuse_factor}, parallelization = {op.parallelization}, "
            f"nonzero_weights = {int(np.count_nonzero(weight))};",
            *code_fields("input", x.type, bipolar_flag=True), *code_fields("weight", op.input_edge("weight").type,
                                                                           bipolar_flag=True),
            *code_fields("accum", acc.type),
            f"typedef {storage_type(weight)} weight_store_t;",
            f"typedef {storage_type(op.bias)} bias_store_t;",
        ]

    def arrays(self, op, ident):
        return [ConstantArray(f"{ident}_weights", f"{ident}_config::weight_store_t", np.ravel(op.weight)),
                ConstantArray(f"{ident}_bias", f"{ident}_config::bias_store_t", op.bias)]

    def storage(self, op, ident):
        if op.strategy == "resource":
            per_word = -(-op.weight.size // op.reuse_factor)
            return [f"QNN_WEIGHTS_IN_ROM({ident}_weights, {per_word})"]
        return [f"QNN_WEIGHTS_IN_REGISTERS({ident}_weights)"]

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

    def stream_delay(self, op):
        return window_fill(op)

    def kernel(self, op, ident):
        return f"qnn::pool<{ident}_config>"

    def config(self, op, backend):
        x, y = op.input_edge("x"), op.output_edge()
        in_h, in_w, channels = image(x.shape)
        out_h, out_w, _ = image(y.shape)
        kernel, strides, _ = op.geometry()
        kh, kw = pair(kernel, len(kernel))
        sh, sw = pair(strides, len(kernel))
        return [
            f"static const unsigned in_h = {in_h}, in_w = {in_w}, channels = {channels}, out_h = {out_h}, "
            f"out_w = {out_w};",
            f"static const unsigned kernel_h = {kh}, kernel_w = {kw}, stride_h = {sh}, stride_w = {sw};",
            f"static const bool maximum = {flag(op.mode == 'max')};",
            *code_fields("input", x.type), *code_fields("output", y.type),
        ]


class PadKernel(KernelSpec):
    op_type = "Pad"
    header = "pad.h"

    def kernel(self, op, ident):
        return f"qnn::pad<{ident}_config>"

    def config(self, op, backend):
        x = op.input_edge("x")
        in_h, in_w, channels = image(x.shape)
        pads = op.pads
        top, left, bottom, right = (0, pads[0], 0, pads[1]) if len(pads) == 2 else (pads[0], pads[1], pads[2], pads[3])
        return [
            f"static const unsigned in_h = {in_h}, in_w = {in_w}, channels = {channels};",
            f"static const unsigned top = {top}, left = {left}, bottom = {bottom}, right = {right};",
            f"static const long long value = {op.value};",
            *code_fields("input", x.type),
        ]


class UpsampleKernel(KernelSpec):
    op_type = "Upsample"
    header = "upsample.h"

    def kernel(self, op, ident):
        return f"qnn::upsample<{ident}_config>"

    def config(self, op, backend):
        x = op.input_edge("x")
        in_h, in_w, channels = image(x.shape)
        scale_h, scale_w = pair(op.scales, len(op.scales))
        return [f"static const unsigned in_h = {in_h}, in_w = {in_w}, channels = {channels}, scale_h = {scale_h}, "
                f"scale_w = {scale_w};", *code_fields("input", x.type)]


class FlattenKernel(KernelSpec):
    op_type = "Flatten"
    header = "flatten.h"

    def stream_delay(self, op):
        x = op.input_edge("x")
        return x.size // x.channels - 1  # the vector leaves after the last pixel

    def kernel(self, op, ident):
        return f"qnn::flatten<{ident}_config>"

    def config(self, op, backend):
        x = op.input_edge("x")
        return [f"static const unsigned positions = {x.size // x.channels}, channels = {x.channels};",
                *code_fields("input", x.type)]
