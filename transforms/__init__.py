"""Graph passes: QONNX cleanup and lowering to the exact fixed-point hardware dialect."""

from .base import Context, LoweringOptions, Pass, Report
from .pipelines import PASSES, PIPELINES, lower, run_passes

__all__ = ["PASSES", "PIPELINES", "Context", "LoweringOptions", "Pass", "Report", "lower", "run_passes"]
