"""Which layers of a PyTorch model HAWQ treats, and their shapes (shared by every hawq module).

A quantizable layer is a `torch.nn.Linear` (Brevitas' QuantLinear is one too), named by its
qualified module name (`model.named_modules()`), in forward order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerShape:
    name: str
    in_features: int
    out_features: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (one per weight)."""
        return self.in_features * self.out_features

    @property
    def n_weights(self) -> int:
        return self.in_features * self.out_features


def quantizable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """name -> module for every Linear layer, in registration order (= forward order for MLPs)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def layer_shapes(model: torch.nn.Module) -> list[LayerShape]:
    return [LayerShape(name, m.in_features, m.out_features) for name, m in quantizable_layers(model).items()]
