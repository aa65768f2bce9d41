"""Which layers of a PyTorch model HAWQ treats, and their shapes (shared by every hawq module).

A quantizable layer is a `torch.nn.Linear`, `torch.nn.Conv1d` or `torch.nn.Conv2d` (Brevitas'
QuantLinear / QuantConv1d / QuantConv2d are subclasses), named by its qualified module name
(`model.named_modules()`), in registration order (the forward order of an nn.Sequential).

Costs are counted as qonnx's `qonnx-inference-cost` counts them, per sample:

    weights  n = C_out * C_in / groups * K_h * K_w       (a Linear: out * in, no kernel)
    MACs     n * output positions = H_out * W_out * K_h * K_w * C_in * C_out / groups
             (a Linear on (N, F) inputs has one output position; on (N, L, F) it has L)

Output positions depend on the input size, so `layer_shapes` needs an input shape or a sample
batch for a model with convolutions; for an MLP `layer_shapes(model)` needs neither.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from qonnx_ir.errors import QonnxError

QUANTIZABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
KINDS = {0: "linear", 1: "conv1d", 2: "conv2d"}  # by the number of kernel dimensions


@dataclass(frozen=True)
class LayerShape:
    """One quantizable layer: in/out features (channels for a convolution), kernel, groups, and
    the number of output positions per sample at which every weight is used once."""

    name: str
    in_features: int
    out_features: int
    kernel: tuple[int, ...] = ()  # () for a Linear
    groups: int = 1
    out_positions: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", tuple(self.kernel))
        values = {"in_features": self.in_features, "out_features": self.out_features, "groups": self.groups,
                  "out_positions": self.out_positions}
        values.update({f"kernel[{i}]": k for i, k in enumerate(self.kernel)})
        for what, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise QonnxError(f"layer {self.name}: {what} must be a positive integer, not {value!r}")
        if len(self.kernel) > 2:
            raise QonnxError(f"layer {self.name}: kernel {self.kernel} has more than 2 dimensions")
        if self.in_features % self.groups or self.out_features % self.groups:
            raise QonnxError(f"layer {self.name}: groups {self.groups} does not divide {self.in_features} input "
                             f"and {self.out_features} output channels")

    @property
    def kind(self) -> str:
        return KINDS[len(self.kernel)]

    @property
    def n_weights(self) -> int:
        return self.out_features * (self.in_features // self.groups) * math.prod(self.kernel)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample: every weight once per output position."""
        return self.n_weights * self.out_positions


def quantizable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """name -> module for every Linear / Conv1d / Conv2d layer, in registration order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, QUANTIZABLE)}


def _static_shape(name: str, module: torch.nn.Module, out_positions: int = 1) -> LayerShape:
    if isinstance(module, torch.nn.Linear):
        return LayerShape(name, module.in_features, module.out_features, out_positions=out_positions)
    return LayerShape(name, module.in_channels, module.out_channels, tuple(module.kernel_size), module.groups,
                      out_positions)


def layer_shapes(model: torch.nn.Module, input_shape=None, *, sample=None) -> list[LayerShape]:
    """The LayerShape of every quantizable layer, in registration order.

    input_shape: the model's input shape, batch first as for `qonnx_ir.export` (e.g. (1, 1, 8, 8));
    sample: or a batch of inputs (tensor or array). Either is needed when the model has a
    convolution; a forward pass on it (eval mode, no gradients; modes restored) counts every
    layer's output positions, summed over its calls. Without either, every layer is a Linear
    on (N, features) inputs (one output position), as for an MLP.
    """
    layers = quantizable_layers(model)
    if input_shape is not None and sample is not None:
        raise QonnxError("layer_shapes: give input_shape or sample, not both")
    if input_shape is None and sample is None:
        convolutions = [name for name, m in layers.items() if not isinstance(m, torch.nn.Linear)]
        if convolutions:
            raise QonnxError(f"layer_shapes: layer '{convolutions[0]}' is a {type(layers[convolutions[0]]).__name__}: "
                             "give input_shape (batch first, e.g. (1, 1, 8, 8)) or a sample batch, so that its "
                             "output size is known")
        return [_static_shape(name, module) for name, module in layers.items()]
    positions = _output_positions(model, layers, _example(model, input_shape, sample))
    unused = [name for name in layers if name not in positions]
    if unused:
        raise QonnxError(f"layer_shapes: layer(s) {', '.join(unused)} are not used by the model's forward pass")
    return [_static_shape(name, module, positions[name]) for name, module in layers.items()]


def _example(model: torch.nn.Module, input_shape, sample) -> torch.Tensor:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if sample is not None:
        x = sample if isinstance(sample, torch.Tensor) else torch.as_tensor(np.asarray(sample))
        if x.dim() < 2 or len(x) == 0:
            raise QonnxError(f"layer_shapes: sample must be a non-empty batch (batch first), got shape "
                             f"{tuple(x.shape)}")
        return x[:1].to(device=device, dtype=dtype)
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise QonnxError(f"layer_shapes: input_shape must be a tuple of integers, got {input_shape!r}") from None
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise QonnxError(f"layer_shapes: input_shape {shape} must be batch first with positive sizes, "
                         "e.g. (1, 1, 8, 8)")
    return torch.zeros((1, *shape[1:]), dtype=dtype, device=device)


def _output_positions(model, layers, x) -> dict[str, int]:
    positions: dict[str, int] = {}

    def record(name, module, output):
        shape = tuple(getattr(output, "value", output).shape)  # a Brevitas QuantTensor carries .value
        spatial = shape[2:] if not isinstance(module, torch.nn.Linear) else shape[1:-1]
        positions[name] = positions.get(name, 0) + math.prod(spatial)

    hooks = [module.register_forward_hook(lambda m, _i, out, name=name: record(name, m, out))
             for name, module in layers.items()]
    run_once(model, x, hooks, "layer_shapes: the model fails on an input")
    return positions


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """`model` in eval mode inside; every module's own training flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def run_once(model: torch.nn.Module, x: torch.Tensor, hooks, failure: str, mode=None) -> None:
    """model(x) once, in eval mode without gradients (and inside the torch function `mode`, if
    given), for what its `hooks` record; the hooks are removed afterwards. A QonnxError passes
    through; any other error becomes one: "<failure> of shape (...) (TypeError: ...)"."""
    try:
        with evaluating(model), torch.no_grad(), mode or contextlib.nullcontext():
            model(x)
    except QonnxError:
        raise
    except Exception as error:
        message = " ".join(str(error).split())[:200]
        raise QonnxError(f"{failure} of shape {tuple(x.shape)} ({type(error).__name__}: {message})") from error
    finally:
        for hook in hooks:
            hook.remove()
