"""Every pass by name, and the named pipelines: plain lists, in the order they run."""

from __future__ import annotations

from collections.abc import Mapping

from qonnx.core.modelwrapper import ModelWrapper

from .base import Context, LoweringOptions, Pass, record_warnings
from .cleanup import (
    CheckLowered,
    CheckSupported,
    Cleanup,
    FoldInputPlumbing,
    GemmToMatMulPass,
)
from .float_bias import FloatBias
from .ingest import (
    CodesToQuant,
    DropIntegerRound,
    HawqDomain,
    IntQuantToQuant,
    RescaleIntoWeights,
    RoundClipToQuant,
)
from .intervals import SizeAccumulators
from .lower_conv import LowerConv
from .lower_dense import LowerDense
from .lower_input import LowerInput
from .lower_join import LowerAdd, LowerConcat
from .lower_pool import LowerPool
from .lower_requant import LowerRequant
from .lower_reshape import LowerFlatten, LowerPad, LowerUpsample
from .lower_softmax import LowerSoftmax
from .qcdq import QcdqToQuant

# Plain lists, in the order the passes run. A new hardware op needs one entry in LOWERINGS.
# Reading other exporters' spellings (ingest, qcdq) comes first: check-supported then sees standard QONNX.
INGEST: list[Pass] = [IntQuantToQuant(), HawqDomain(), QcdqToQuant(), CodesToQuant(), DropIntegerRound(),
                      RoundClipToQuant(), RescaleIntoWeights()]
PREPARATION: list[Pass] = [*INGEST, CheckSupported(), GemmToMatMulPass(), Cleanup(), FoldInputPlumbing()]
LOWERINGS: list[Pass] = [  # one per hardware op
    LowerInput(), LowerDense(), LowerRequant(), LowerSoftmax(), LowerConv(), LowerPool(), LowerPad(), LowerAdd(),
    LowerConcat(), LowerFlatten(), LowerUpsample(), FloatBias(),
]
FINISHING: list[Pass] = [SizeAccumulators(), CheckLowered()]


def all_passes() -> list[Pass]:
    return [*PREPARATION, *LOWERINGS, *FINISHING]


class _Live(Mapping):
    """A read-only mapping computed from the lists above when it is read (a test may extend them)."""

    def __init__(self, build):
        self._build = build

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self):
        return iter(self._build())

    def __len__(self):
        return len(self._build())


PASSES: Mapping[str, Pass] = _Live(lambda: {p.name: p for p in all_passes()})
# Layer lowering alternates dense and requant passes, so the pipeline repeats its
# "fixed point" group until nothing changes.
PIPELINES: Mapping[str, list[list[str]]] = _Live(lambda: {
    "cleanup": [[p.name for p in PREPARATION]],
    "lower": [[p.name for p in PREPARATION], [p.name for p in LOWERINGS], [p.name for p in FINISHING]],
})


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
    record_warnings(lowered, context.report)
    return lowered, context
