"""What one layer costs at a given pair of bit widths: the cost models of the bit allocation.

A cost model is any object with a `name` and `cost(layer, weight_bits, act_bits)`; the ILP
(`hawq.allocate`) sums it over layers and bounds the sum by a budget. `act_bits` is always
the width of the layer's INPUT activation. New models (FPGA resources, latency) only have
to follow the `CostModel` protocol and be added to a registry passed to `allocate_bits`.

The two built-in models count exactly what `qonnx info` (qonnx_ir.cost, after qonnx's
`qonnx-inference-cost`) counts for the same layer, so a budget here is a number there:

    bops         MACs x weight bits x input activation bits
    weight_bits  weights x weight bits  (biases are not counted, as qonnx does not count them)

MACs and weights are `hawq.layers.LayerShape`'s: a convolution does H_out * W_out * K_h * K_w *
C_in * C_out / groups MACs per sample (every weight once per output position), a Linear in * out.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .layers import LayerShape


@runtime_checkable
class CostModel(Protocol):
    name: str

    def cost(self, layer: LayerShape, weight_bits: int, act_bits: int) -> float:
        """Cost of `layer` with `weight_bits` weights and `act_bits` input activations."""
        ...


class Bops:
    """Bit operations: MACs x b_w x b_a (qonnx-inference-cost's definition)."""

    name = "bops"

    def cost(self, layer: LayerShape, weight_bits: int, act_bits: int) -> int:
        return layer.macs * weight_bits * act_bits

    def __repr__(self) -> str:
        return "Bops()"


class WeightMemory:
    """Weight memory in bits: n_weights x b_w (activations and biases do not count)."""

    name = "weight_bits"

    def cost(self, layer: LayerShape, weight_bits: int, act_bits: int) -> int:
        return layer.n_weights * weight_bits

    def __repr__(self) -> str:
        return "WeightMemory()"


COST_MODELS: dict[str, CostModel] = {"bops": Bops(), "weight_bits": WeightMemory()}
