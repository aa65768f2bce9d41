"""The toy op's kernel floor (what would be hlsgen/kernels/negate.py)."""

from __future__ import annotations

from pathlib import Path

from hlsgen.kernels.base import KernelSpec, code_fields, tokens_of


class NegateKernel(KernelSpec):
    op_type = "Negate"
    header = "negate.h"

    def header_path(self) -> Path:
        return Path(__file__).parent / self.header  # a real op's header sits in hlsgen/include/qnn/

    def kernel(self, op, ident):
        return f"qnn::negate<{ident}_config>"

    def config(self, op, backend):
        tokens, n = tokens_of(op.input_edge("x"))
        return [f"static const unsigned n = {n}, tokens = {tokens};",
                *code_fields("input", op.input_edge("x").type), *code_fields("output", op.output_edge().type)]
