"""Every pass by name, and the named pipelines: plain lists, in the order they run."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from .base import Context, LoweringOptions, Pass
from .cleanup import CheckLowered, CheckSupported, Cleanup, FoldInputPlumbing, GemmToMatMulPass
from .intervals import SizeAccumulators
from .lower_dense import LowerDense
from .lower_input import LowerInput
from .lower_requant import LowerRequant
from .lower_softmax import LowerSoftmax

PASSES: dict[str, Pass] = {
    p.name: p
    for p in (
        CheckSupported(), Cleanup(), FoldInputPlumbing(), GemmToMatMulPass(), LowerInput(),
        LowerDense(), LowerRequant(), LowerSoftmax(), SizeAccumulators(), CheckLowered(),
    )
}

# Layer lowering alternates dense and requant passes, so the pipeline repeats its
# "fixed point" group until nothing changes.
PIPELINES: dict[str, list[list[str]]] = {
    "cleanup": [["check-supported", "gemm-to-matmul", "cleanup", "fold-input-plumbing"]],
    "lower": [
        ["check-supported", "gemm-to-matmul", "cleanup", "fold-input-plumbing", "lower-input"],
        ["lower-dense", "lower-requant", "lower-softmax"],
        ["size-accumulators", "check-lowered"],
    ],
}

MAX_ROUNDS = 100


def run_passes(model: ModelWrapper, groups: list[list[str]], context: Context, progress=None) -> bool:
    """Run each group of passes until none of them changes the graph; return whether anything changed."""
    changed_any = False
    for group in groups:
        for _ in range(MAX_ROUNDS):
            changed = False
            for name in group:
                step = PASSES[name].apply(model, context)
                if progress and step:
                    progress(f"  {name}: changed")
                changed |= step
            changed_any |= changed
            if not changed:
                break
    return changed_any


def lower(model, options: LoweringOptions | None = None, progress=None) -> tuple[ModelWrapper, Context]:
    """QONNX -> hardware dialect. Returns (new model, context with the report); the input is not modified."""
    from qonnx_ir.model import load

    lowered = load(model)
    context = Context(options or LoweringOptions())
    run_passes(lowered, PIPELINES["lower"], context, progress)
    return lowered, context
