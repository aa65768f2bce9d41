"""Hessian-aware mixed precision for PyTorch models (HAWQ-V3 style), ending in exact firmware.

    traces = hessian_traces(model, loss_fn, (x, y))          # per-layer Tr(H_l), with std errors
    omega = sensitivities(model, traces)                     # Tr(H_l)/n_l * ||Q_b(W_l) - W_l||^2
    bits = allocate_bits(omega, layer_shapes(model), alpha=0.5)   # ILP under a BOPs budget
    qmodel = apply_bits(model, bits, calibration=x)          # Brevitas, power-of-two scales
    train_qat(qmodel, (x, y), (x_val, y_val))

Quantizable layers are nn.Linear, nn.Conv1d and nn.Conv2d; a CNN's layer shapes need its input
size, `layer_shapes(model, (1, 1, 8, 8))` (a convolution's MACs count its output positions).

Imports are lazy: torch and brevitas load only when a function that needs them is used.
"""

from importlib import import_module

_EXPORTS = {
    "hessian_traces": "hessian", "top_eigenvalues": "hessian", "TraceEstimate": "hessian", "exact_traces": "hessian",
    "sensitivities": "sensitivity", "write_traces_json": "sensitivity", "read_traces_json": "sensitivity",
    "quantize_weight": "quantizers",
    "layer_shapes": "layers", "quantizable_layers": "layers", "LayerShape": "layers",
    "COST_MODELS": "cost", "Bops": "cost", "WeightMemory": "cost",
    "allocate_bits": "allocate", "BitConfig": "bitconfig",
    "apply_bits": "apply", "train_qat": "qat", "accuracy": "qat",
    "pareto_sweep": "pareto",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'hawq' has no attribute {name!r}")
