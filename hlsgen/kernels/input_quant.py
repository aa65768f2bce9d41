"""InputQuant -> qnn::input_codes: the port's fixed-point values become codes (qnn/input.h)."""

from __future__ import annotations

from .base import KernelSpec, code_fields, tokens_of


class InputQuantKernel(KernelSpec):
    op_type = "InputQuant"
    header = "input.h"
    template = "input_codes"

    def config(self, op, backend):
        edge = op.output_edge()
        tokens, size = tokens_of(edge)
        return [f"static const unsigned n = {size}, tokens = {tokens};", *code_fields("output", edge.type),
                f"typedef {backend.fixed_type(edge.type)} port_t;"]
