"""Kernel specs of the joins: Add and Concat (qnn/join.h)."""

from __future__ import annotations

from .base import KernelSpec, code_fields, tokens_of


class AddKernel(KernelSpec):
    op_type = "Add"
    header = "join.h"
    template = "add"

    def config(self, op, backend):
        a, b, y = op.input_edge("a"), op.input_edge("b"), op.output_edge()
        tokens, n = tokens_of(y)
        shift_a, shift_b, _ = op.alignment()
        return [f"static const unsigned n = {n}, tokens = {tokens};", *code_fields("a", a.type), *code_fields("b", b.type),
                *code_fields("output", y.type), f"static const int shift_a = {shift_a}, shift_b = {shift_b};"]


class ConcatKernel(KernelSpec):
    op_type = "Concat"
    header = "join.h"
    template = "concat"

    def config(self, op, backend):
        edges, y = op.edges(), op.output_edge()
        tokens, _ = tokens_of(y)
        channels = [e.channels for e in edges] + [0] * (4 - len(edges))
        shifts = op.shifts() + [0] * (4 - len(edges))
        return [f"static const unsigned tokens = {tokens};",
                "static const unsigned " + ", ".join(f"c{i} = {c}" for i, c in enumerate(channels)) + ";",
                "static const int " + ", ".join(f"shift{i} = {s}" for i, s in enumerate(shifts)) + ";",
                *code_fields("output", y.type)]
