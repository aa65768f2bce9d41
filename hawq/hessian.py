"""Hessian traces and top eigenvalues of each quantizable layer's weight block.

What is estimated
-----------------
`data` is one batch `(x, y)` or an iterable of batches (a DataLoader). With N = sum of the
batch sizes n_b, the loss is

    L(w) = (1/N) * sum_b n_b * loss_fn(model(x_b), y_b)

which is the mean loss over the whole data when `loss_fn` averages over its batch (PyTorch's
default reduction='mean'). For every quantizable layer l (`hawq.layers`: each nn.Linear,
nn.Conv1d and nn.Conv2d, by qualified name) with weight W_l of n_l entries, H_l = d^2 L / dW_l^2
is the n_l x n_l diagonal block of the Hessian that belongs to that weight alone: biases and all
other layers are held fixed (HAWQ's block-diagonal approximation). The model is evaluated in eval mode (dropout off,
batch norm on its running statistics, so the samples do not interact), as PyHessian does.

Hutchinson's estimator
----------------------
For v with independent Rademacher entries (+1 or -1 with probability 1/2), E[v^T H_l v] =
Tr(H_l) and Var[v^T H_l v] = 2 * sum_{i != j} (H_l)_ij^2. `hessian_traces` averages m such
samples; TraceEstimate.std_error is the sample standard deviation (ddof=1) over sqrt(m).

Each sample needs (H_l v)_l = H_l v_l with v zero outside layer l, computed exactly as
`autograd.grad(g_l, W_l, grad_outputs=v_l)` where g_l = dL/dW_l was built once with
create_graph=True. That double backward only walks the part of the graph between W_l and the
loss, so the block product of a late layer is cheap: one probe for all four layers of the
jet-tagger MLP costs about as much as one full Hessian-vector product (0.8x-1.6x, measured).

Why one probe per layer and not one joint probe for all layers: with a joint probe v over all
weights, one full HVP gives v_l^T (H v)_l = v_l^T H_l v_l + sum_{m != l} v_l^T H_lm v_m for
every layer at once. The cross terms have mean zero but add sum_{m != l} ||H_lm||_F^2 to the
variance of each sample (on top of the block's own 2 sum_{i != j} (H_l)_ij^2). On the
jet-tagger MLP 16-64-32-32-5, batch 1024, cross entropy, exact variances from the full
4256 x 4256 Hessian: at random initialization the joint variance per probe is 9x (last layer)
to 1800x (first layer) the block variance, and still 1.2x to 8x after 300 training steps;
`benchmarks/hessian.py` measures 6x-1400x from sampled probes, and to reach 1 % relative error
on every layer the block probes are 23x-43x faster in wall time than joint ones. Hence block
probes: exact block-diagonal samples, the variance HAWQ's estimate should have.

Batching
--------
Probes are drawn `batch_probes` at a time per layer, V_l of shape [k, *W_l.shape], and pushed
through one double backward with `is_grads_batched=True` (vmap over the backward graph). On
CPU this was the fastest of the options measured on the jet-tagger MLP: 1.3x-1.5x faster per
probe than a loop of single products at k = 8..32 (k = 16 best; larger k is memory-bound);
torch.func vmap(jvp(grad)) was 1.3x-2x slower, nested forward-mode jvp(jvp) for v^T H v
directly 3x-6x slower, and one block-sparse batch of k x layers rows through the whole graph
4x-6x slower (its zero rows are computed densely). A GPU gains more from batching. If an op
has no vmap batching rule the products fall back to a loop; k = 1 uses a plain double backward.

With a DataLoader the gradient graph is rebuilt batch by batch for every probe batch, and the
samples are accumulated weighted by batch size (memory stays one batch's graph), so a larger
`batch_probes` means fewer passes over the data. A single batch builds its graph once.

Probes come from a CPU generator per layer seeded from (seed, layer name): a layer's estimate
does not depend on which other layers are requested, on `batch_probes`, on the device, or on
how the data is split into batches (a loader and the concatenated batch give the same samples
up to rounding).

Stopping rule
-------------
After each probe batch, a layer stops when it has at least `min_probes` samples and
std_error / |trace| < rel_tol, or when it has `max_probes` samples. Checks happen only at batch
boundaries, so `probes` is a multiple of `batch_probes` unless capped by `max_probes`.
rel_tol=0 never stops early (exactly `max_probes` probes). (An exactly zero block has
std_error 0 and trace 0, which counts as converged.)

Fast path: piecewise-linear networks (MLPs and CNNs)
---------------------------------------------------
For an `nn.Sequential` (nested Sequentials are flattened) of Linear / Conv1d / Conv2d / ReLU /
MaxPool1d / MaxPool2d / AvgPool1d / AvgPool2d / AdaptiveAvgPool1d / AdaptiveAvgPool2d /
BatchNorm1d / BatchNorm2d (with running statistics) / Flatten / Identity / Dropout, exact types
(a subclass such as Brevitas' QuantConv2d may not be piecewise linear), under cross-entropy
(class indices or probabilities, no class weights, no label smoothing) or mean squared error,
both with reduction="mean": in eval mode every module is linear or piecewise linear (BatchNorm
on its running statistics is an affine map per channel, a max pool selects one input per
window), so the output is piecewise linear in any single layer's weight W_l, its second
derivative with respect to W_l vanishes almost everywhere, and the block is exactly
H_l = J_l^T H_out J_l. A probe then needs no double backward: u = J_l v_l is a forward-mode
product from layer l onwards (layer l's linear map with weight v_l and no bias, applied to its
input; then each later module's derivative: weights without biases, ReLU masks, the max pool's
selected positions, BatchNorm's per-channel factor, the linear pools and reshapes as they
are), and v_l^T H_l v_l = mean_m w_m [sum_c p_c u_c^2 - (sum_c p_c u_c)^2] (cross-entropy, p =
softmax over the classes at each of the M = N x positions outputs, w_m the sum of the target
probabilities, 1 for class indices) or 2/D mean_n |u_n|^2 (MSE over D outputs per sample).
Same probes, same samples as the general path up to float rounding; `method="hvp"` forces the
general path, `method="auto"` (default) picks this one whenever it applies.

Top eigenvalue
--------------
`top_eigenvalues` runs power iteration on each block: v <- H_l v / ||H_l v|| from a random
unit start, with the Rayleigh quotient v^T H_l v as the estimate, per layer until its relative
change between iterations is below `tol` or after `iters` iterations. It converges to the
eigenvalue of largest magnitude and returns it with its sign. All layers advance together, one
block HVP per layer per iteration, each through its own part of the graph as above (cheaper
than one block-sparse batch of all layers' vectors through the whole graph, see Batching).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from qonnx_ir.errors import QonnxError

from .layers import evaluating, quantizable_layers

__all__ = ["TraceEstimate", "exact_traces", "hessian_traces", "top_eigenvalues"]


@dataclass
class TraceEstimate:
    """Hutchinson estimate of Tr(H_l) for one layer's weight block."""

    trace: float
    std_error: float  # sample std of the per-probe values (ddof=1) / sqrt(probes)
    probes: int
    n_params: int  # entries of the weight (the block is n_params x n_params)

    @property
    def mean_diagonal(self) -> float:
        """Tr(H_l) / n_l: the average curvature per weight (HAWQ's sensitivity factor)."""
        return self.trace / self.n_params

    @property
    def relative_error(self) -> float:
        """std_error / |trace| (0 for an exactly zero block, inf if unknown)."""
        return _relative(self.trace, self.std_error)


def hessian_traces(model: torch.nn.Module, loss_fn, data, *, layers: Sequence[str] | None = None,
                   max_probes: int = 256, batch_probes: int = 16, rel_tol: float = 1e-2,
                   min_probes: int = 32, seed: int = 0, device=None, progress: bool = True,
                   method: str = "auto") -> dict[str, TraceEstimate]:
    """Hutchinson estimates of Tr(H_l), the Hessian block of each quantizable layer's weight.

    H_l is the Hessian of L = (1/N) sum_b n_b * loss_fn(model(x_b), y_b) over the batches of
    `data` (one `(x, y)` batch with x a tensor, or a re-iterable of `(x, y)` batches such as a
    DataLoader; N = sum of the batch sizes n_b = len(x_b); L is the mean loss over all N samples
    when `loss_fn` returns its batch mean) with respect to the weight of layer l alone (no bias,
    no other layer), the model in eval mode. See the module docstring for the estimator.

    layers: names from `hawq.layers.quantizable_layers` (default: all of them).
    max_probes / min_probes / rel_tol: per layer, stop once std_error/|trace| < rel_tol after at
    least min_probes probes (checked after each batch of probes), or at max_probes.
    batch_probes: probes per batched backward pass. seed: the probes are a function of (seed,
    layer name). device: where to compute (default: the model's; a different one works on a
    copy). progress: a tqdm bar per probe batch with the largest current relative error.
    method: "auto" (the exact Gauss-Newton fast path when the model is a piecewise-linear
    nn.Sequential MLP or CNN under cross-entropy or MSE, see the module docstring), "hvp"
    (always Hessian-vector products) or "gauss-newton" (an error if it does not apply).

    The model's weights, train/eval modes, requires_grad flags and .grad are left as they were.
    Returns layer name -> TraceEstimate, in forward order.
    """
    _check_int("max_probes", max_probes, 1)
    _check_int("batch_probes", batch_probes, 1)
    _check_int("min_probes", min_probes, 0)
    if not rel_tol >= 0:
        raise QonnxError(f"hessian_traces: rel_tol must be >= 0, got {rel_tol}")
    min_probes = min(min_probes, max_probes)
    if method not in ("auto", "hvp", "gauss-newton"):
        raise QonnxError(f"hessian_traces: method must be auto, hvp or gauss-newton, got {method!r}")

    with _session(model, layers, device, "hessian_traces") as (work, names, weights, device):
        batches = _Batches(data, device)
        chain = None if method == "hvp" else _piecewise_linear_chain(work, loss_fn)
        if method == "gauss-newton" and chain is None:
            raise QonnxError(f"hessian_traces: method='gauss-newton' needs {CHAIN_TEXT}")
        forward_cache = None
        if chain is not None:
            modules, kind = chain
            positions = _chain_positions(modules, weights)
        gens = [_generator(seed, name) for name in names]
        samples: list[list[np.ndarray]] = [[] for _ in names]
        active = list(range(len(names)))
        done = 0
        bar = tqdm(total=max_probes, desc="Hessian traces", unit="probe", disable=not progress)
        try:
            while active:
                k = min(batch_probes, max_probes - done)
                probes = {i: _rademacher(gens[i], k, weights[i], device) for i in active}
                acc = {i: torch.zeros(k, dtype=torch.float64, device=device) for i in active}
                total = 0
                if chain is not None:
                    for x, y, n in batches.raw():
                        if forward_cache is None or not batches.single:
                            forward = _chain_forward(modules, kind, loss_fn, x, y)
                            forward_cache = forward if batches.single else None  # one batch: reuse it
                        forms = _gauss_newton_forms(modules, kind, forward_cache or forward,
                                                    {positions[i]: probes[i] for i in active})
                        for i in active:
                            acc[i] += n * forms[positions[i]]
                        total += n
                for grads, n in ([] if chain is not None else batches.gradients(work, loss_fn, weights, active)):
                    for i in active:
                        hv = _block_hvp(grads[i], weights[i], probes[i])
                        acc[i] += n * (hv * probes[i]).flatten(1).sum(1, dtype=torch.float64)
                    total += n
                for i in active:
                    samples[i].append((acc[i] / total).cpu().numpy())
                done += k

                worst, still = 0.0, []
                for i in active:
                    est = _estimate(samples[i], weights[i].numel())
                    worst = max(worst, est.relative_error)
                    converged = done >= min_probes and est.relative_error < rel_tol
                    if converged or done >= max_probes:
                        batches.retire(weights[i])
                    else:
                        still.append(i)
                active = still
                bar.update(k)
                bar.set_postfix(rel_err=f"{worst:.3g}", active=f"{len(active)}/{len(names)}")
        finally:
            bar.close()
        return {name: _estimate(samples[i], weights[i].numel()) for i, name in enumerate(names)}


def exact_traces(model: torch.nn.Module, loss_fn, data, *, layers: Sequence[str] | None = None,
                 device=None, progress: bool = True) -> dict[str, TraceEstimate]:
    """Tr(H_l) exactly, no probes, for the piecewise-linear networks of the fast path (module docstring).

    There H_l = (1/M) sum_m J_m^T A_m J_m over the M loss terms (samples, times output
    positions for a cross-entropy over an image), with A_m = B_m B_m^T (cross-entropy:
    B = diag(sqrt p) - p sqrt(p)^T, scaled by sqrt of the target mass; MSE over D outputs:
    sqrt(2/D) I). So Tr(H_l) = (1/M) sum_m ||J_m^T B_m||_F^2, and each column of J_m^T B_m is
    the per-sample gradient of b^T z with respect to W_l: the directions b are back-propagated
    (in float64, batched) to every requested layer's output at once, giving its per-sample
    output gradient D; the per-sample weight gradient is then D h^T for a Linear on (N, F)
    (squared norm |D|^2 |h|^2), and sum over positions of D_p patch_p^T for a convolution
    (im2col patches of its input, per group). One backward per direction serves every layer:
    C directions for C logits (std_error 0, probes = the number of directions).
    """
    with _session(model, layers, device, "exact_traces") as (work, names, weights, device):
        chain = _piecewise_linear_chain(work, loss_fn)
        if chain is None:
            raise QonnxError(f"exact_traces needs {CHAIN_TEXT}; use hessian_traces for other models")
        modules, kind = chain
        positions = {j: i for i, j in enumerate(_chain_positions(modules, weights))}
        exact = copy.deepcopy(torch.nn.ModuleList(modules)).double()  # float64: exact up to rounding
        sums = torch.zeros(len(weights), dtype=torch.float64)
        total, directions = 0, 0
        bar = tqdm(desc="exact Hessian traces", unit="direction", disable=not progress)
        try:
            for x, y, n in _Batches(data, device).raw():
                x = x.double() if x.is_floating_point() else x
                inputs, outputs, z = [], {}, x
                for j, module in enumerate(exact):
                    inputs.append(z)
                    z = module(z)
                    if j in positions:
                        outputs[j] = z
                target = y.double() if y.is_floating_point() else y
                factor = _OutputFactor(kind, loss_fn, z.detach(), target)
                directions = factor.directions
                sizes = [z[0].numel()] + [weights[i].numel() for i in positions.values()]
                chunk = _direction_chunk(directions, n, sizes)
                for first in range(0, directions, chunk):
                    grad_outputs = factor.block(first, min(first + chunk, directions))
                    deltas = _row_grads(z, [outputs[j] for j in positions], grad_outputs)
                    for (j, i), delta in zip(positions.items(), deltas):
                        sums[i] += n / factor.count * _per_sample_squared_norms(exact[j], inputs[j].detach(),
                                                                                delta).cpu()
                    bar.update(len(grad_outputs))
                total += n
        finally:
            bar.close()
        return {name: TraceEstimate(float(sums[i] / total), 0.0, directions, weights[i].numel())
                for i, name in enumerate(names)}


def top_eigenvalues(model: torch.nn.Module, loss_fn, data, *, layers: Sequence[str] | None = None,
                    iters: int = 100, tol: float = 1e-4, seed: int = 0, device=None,
                    progress: bool = True) -> dict[str, float]:
    """Largest-magnitude eigenvalue (with its sign) of each layer's weight block H_l.

    Same loss, data, `layers`, `device` and model handling as `hessian_traces`. Power iteration
    per layer from a random unit vector (seeded by (seed, layer name)); a layer stops when the
    relative change of its Rayleigh quotient is below `tol`, or after `iters` iterations.
    """
    _check_int("iters", iters, 1)
    if not tol >= 0:
        raise QonnxError(f"top_eigenvalues: tol must be >= 0, got {tol}")

    with _session(model, layers, device, "top_eigenvalues") as (work, names, weights, device):
        batches = _Batches(data, device)
        vectors = {}
        for i, (name, w) in enumerate(zip(names, weights)):
            v = torch.randn(w.shape, generator=_generator(seed, name), dtype=torch.float64)
            vectors[i] = (v / v.norm()).to(device=device, dtype=w.dtype)
        values: dict[int, float] = {}
        active = list(range(len(names)))
        bar = tqdm(total=iters, desc="Hessian top eigenvalues", unit="iter", disable=not progress)
        try:
            for _ in range(iters):
                hvs = {i: torch.zeros_like(vectors[i]) for i in active}
                total = 0
                for grads, n in batches.gradients(work, loss_fn, weights, active):
                    for i in active:
                        hvs[i] += n * _block_hvp(grads[i], weights[i], vectors[i].unsqueeze(0))[0]
                    total += n
                worst, still = 0.0, []
                for i in active:
                    hv = hvs[i] / total
                    value = float(torch.dot(vectors[i].flatten().double(), hv.flatten().double()))
                    norm = float(hv.norm())
                    change = math.inf if i not in values else _relative(values[i], value - values[i])
                    values[i] = value
                    worst = max(worst, change)
                    if norm == 0.0 or change < tol:
                        batches.retire(weights[i])
                    else:
                        vectors[i] = hv / norm
                        still.append(i)
                active = still
                bar.update(1)
                bar.set_postfix(rel_change=f"{worst:.3g}", active=f"{len(active)}/{len(names)}")
                if not active:
                    break
        finally:
            bar.close()
        return {name: values[i] for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------
# internals


def _relative(value: float, error: float) -> float:
    if math.isnan(error):
        return math.inf
    if error == 0.0:
        return 0.0
    return abs(error) / abs(value) if value != 0.0 else math.inf


def _estimate(chunks: list[np.ndarray], n_params: int) -> TraceEstimate:
    s = np.concatenate(chunks) if chunks else np.zeros(0)
    m = len(s)
    trace = float(s.mean()) if m else math.nan
    se = float(s.std(ddof=1) / math.sqrt(m)) if m > 1 else math.nan
    return TraceEstimate(trace=trace, std_error=se, probes=m, n_params=n_params)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise QonnxError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _generator(seed: int, name: str) -> torch.Generator:
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _rademacher(gen: torch.Generator, k: int, weight: torch.Tensor, device) -> torch.Tensor:
    bits = torch.randint(0, 2, (k, *weight.shape), generator=gen, dtype=torch.int8)
    return bits.to(device=device, dtype=weight.dtype).mul_(2).sub_(1)


def _row_grads(output: torch.Tensor, inputs: list, rows: torch.Tensor, *, allow_unused: bool = False) -> list:
    """d(b . output)/d(input) for each row b of `rows` and each of `inputs`: [(r, *input.shape) or None
    where unused]. Several rows go through one batched backward (vmap); one row, or an op without a
    vmap batching rule, takes a plain backward per row (for one row vmap's set-up costs more than it saves)."""
    options = {"retain_graph": True, "allow_unused": allow_unused}
    if len(rows) > 1:
        try:
            return list(torch.autograd.grad(output, inputs, grad_outputs=rows, is_grads_batched=True, **options))
        except RuntimeError:  # no batching rule: one row at a time
            pass
    per_row = [torch.autograd.grad(output, inputs, grad_outputs=row, **options) for row in rows]
    return [None if any(g[i] is None for g in per_row) else torch.stack([g[i] for g in per_row])
            for i in range(len(inputs))]


def _block_hvp(grad, weight: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """H_l v for each row v of `vectors` ([k, *weight.shape]), H_l the block of `weight`."""
    if grad is None or not grad.requires_grad:  # the gradient does not depend on any weight
        return torch.zeros_like(vectors)
    (hv,) = _row_grads(grad, [weight], vectors, allow_unused=True)
    return torch.zeros_like(vectors) if hv is None else hv


_CHAIN_MODULES = (
    torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool1d, torch.nn.MaxPool2d,
    torch.nn.AvgPool1d, torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d,
    torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.Flatten, torch.nn.Identity, torch.nn.Dropout)
CHAIN_TEXT = ("an nn.Sequential of Linear/Conv1d/Conv2d/ReLU/MaxPool/AvgPool/AdaptiveAvgPool/BatchNorm/Flatten/"
              "Identity/Dropout under CrossEntropyLoss or MSELoss (mean)")
_MAX_POOLS = (torch.nn.MaxPool1d, torch.nn.MaxPool2d)
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d)


def _chain_modules(model) -> list | None:
    """The leaves of a (nested) nn.Sequential of chain modules, in order, else None."""
    if type(model) is not torch.nn.Sequential:
        return None
    modules = []
    for module in model:
        if type(module) is torch.nn.Sequential:
            inner = _chain_modules(module)
            if inner is None:
                return None
            modules += inner
        elif type(module) not in _CHAIN_MODULES:
            return None
        elif isinstance(module, _MAX_POOLS) and module.return_indices:
            return None  # a tuple output
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_var is None:
            return None  # batch statistics even in eval mode: the samples interact
        else:
            modules.append(module)
    return modules


def _piecewise_linear_chain(model, loss_fn):
    """(modules, "ce" | "mse") when J^T H_out J is the exact block Hessian, else None.

    Exact module types only: a subclass (e.g. Brevitas' QuantLinear) may not be piecewise linear.
    """
    modules = _chain_modules(model)
    if modules is None:
        return None
    if (type(loss_fn) is torch.nn.CrossEntropyLoss and loss_fn.reduction == "mean" and loss_fn.weight is None
            and loss_fn.label_smoothing == 0.0):
        return modules, "ce"
    if type(loss_fn) is torch.nn.MSELoss and loss_fn.reduction == "mean":
        return modules, "mse"
    return None


def _chain_positions(modules, weights) -> list[int]:
    """The index in the chain of the module owning each weight."""
    return [next(j for j, m in enumerate(modules) if getattr(m, "weight", None) is w) for w in weights]


@dataclass
class _Forward:
    inputs: list  # the input of every module
    p: torch.Tensor | None  # cross-entropy: softmax over the classes, (M, C) float64
    mass: torch.Tensor | None  # cross-entropy with probability targets: their sum per output, (M,)


def _class_probabilities(loss_fn, z: torch.Tensor, y: torch.Tensor):
    """(p, target mass or None): cross-entropy's per-output quantities, classes on dim 1 of z."""
    if z.dim() < 2:
        raise QonnxError("hessian_traces: cross-entropy needs a batch of logits (N, C, ...)")
    classes = z.shape[1]
    mass = None
    if y.shape == z.shape and y.is_floating_point():  # probabilities
        mass = y.double().movedim(1, -1).reshape(-1, classes).sum(1)
    elif bool((y == loss_fn.ignore_index).any()):
        raise QonnxError("hessian_traces: labels equal to ignore_index need method='hvp'")
    p = torch.softmax(z.double(), dim=1).movedim(1, -1).reshape(-1, classes)
    return p, mass


def _chain_forward(modules, kind, loss_fn, x, y) -> _Forward:
    """The input of every module and the output quantities the quadratic forms need."""
    with torch.no_grad():
        inputs, h = [], x
        for module in modules:
            inputs.append(h)
            h = module(h)
        if kind != "ce":
            return _Forward(inputs, None, None)
        return _Forward(inputs, *_class_probabilities(loss_fn, h, y))


def _weight_tangent(module, h: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Layer `module`'s output change for each weight direction in `vectors` ([k, *W.shape]), no bias:
    (k, N, *output shape)."""
    if isinstance(module, torch.nn.Linear):
        return torch.einsum("...f,kof->k...o", h, vectors)
    k, outs, groups = vectors.shape[0], vectors.shape[1], module.groups
    # all k directions in one convolution: k * O output channels, regrouped so that group g's
    # outputs for every direction still read group g's inputs
    stacked = vectors.reshape(k, groups, outs // groups, *vectors.shape[2:]).transpose(0, 1)
    y = module._conv_forward(h, stacked.reshape(k * outs, *vectors.shape[2:]), None)
    n, spatial = y.shape[0], y.shape[2:]
    y = y.reshape(n, groups, k, outs // groups, *spatial).transpose(0, 2).transpose(1, 2)
    return y.reshape(k, n, outs, *spatial)


def _input_tangent(module, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The derivative of `module` at its input h applied to the tangents u (k, N, *h.shape[1:])."""
    if isinstance(module, torch.nn.Linear):
        return u @ module.weight.T
    if isinstance(module, torch.nn.ReLU):
        return u * (h > 0)
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        return u * scale.reshape(-1, *([1] * (h.dim() - 2)))
    if isinstance(module, _MAX_POOLS):
        functional = torch.nn.functional
        pool = functional.max_pool1d if isinstance(module, torch.nn.MaxPool1d) else functional.max_pool2d
        _, index = pool(h, module.kernel_size, module.stride, module.padding, module.dilation,
                        ceil_mode=module.ceil_mode, return_indices=True)
        picked = u.flatten(3).gather(-1, index.flatten(2).expand(u.shape[0], *index.flatten(2).shape))
        return picked.reshape(u.shape[0], *index.shape)
    k, n = u.shape[:2]
    flat = u.flatten(0, 1)
    if isinstance(module, _CONVS):
        return module._conv_forward(flat, module.weight, None).unflatten(0, (k, n))
    return module(flat).unflatten(0, (k, n))  # pools, Flatten, Identity, Dropout (eval): linear, no offset


def _gauss_newton_forms(modules, kind, forward: _Forward, probes: dict) -> dict:
    """{module position: (k,) float64 tensor of v^T H v} for the batch-mean loss, given _chain_forward."""
    inputs = forward.inputs
    with torch.no_grad():
        forms = {}
        for position, vectors in probes.items():
            u = _weight_tangent(modules[position], inputs[position], vectors)  # J_l v_l: (k, N, *out)
            for j in range(position + 1, len(modules)):
                u = _input_tangent(modules[j], inputs[j], u)
            u = u.double()
            if kind == "ce":
                u = u.movedim(2, -1).reshape(u.shape[0], -1, u.shape[2])  # (k, M, C)
                q = (forward.p * u * u).sum(-1) - (forward.p * u).sum(-1) ** 2
                if forward.mass is not None:
                    q = q * forward.mass
                forms[position] = q.mean(-1)
            else:
                u = u.flatten(2)
                forms[position] = 2.0 * (u * u).sum(-1).mean(-1) / u.shape[-1]
        return forms


class _OutputFactor:
    """Columns of every sample's factor B_n of the output Hessian (A_n = B_n B_n^T, summed over the
    loss terms of sample n), made a block at a time: `block(first, last)` is (last - first, *z.shape)."""

    def __init__(self, kind, loss_fn, z: torch.Tensor, y: torch.Tensor):
        self.shape, self.n, self.device = tuple(z.shape), z.shape[0], z.device
        if kind == "mse":
            self.size = z[0].numel()
            self.directions, self.count = self.size, self.n  # one direction per output element
            return
        p, mass = _class_probabilities(loss_fn, z, y)  # (M, C), M = N * positions
        self.classes, self.positions = p.shape[1], p.shape[0] // self.n
        root = p.sqrt()
        # column c at one position: e_c sqrt(p_c) - p sqrt(p_c), zero at every other position
        columns = torch.diag_embed(root) - root[:, :, None] * p[:, None, :]  # (M, c, C)
        if mass is not None:
            columns = columns * mass.sqrt()[:, None, None]
        self.columns = columns.reshape(self.n, self.positions, self.classes, self.classes)
        self.directions, self.count = self.positions * self.classes, p.shape[0]
        self.size = None

    def block(self, first: int, last: int) -> torch.Tensor:
        rows = range(first, last)
        if self.size is not None:
            out = torch.zeros(len(rows), self.n, self.size, dtype=torch.float64, device=self.device)
            for i, r in enumerate(rows):
                out[i, :, r] = math.sqrt(2.0 / self.size)
            return out.reshape(len(rows), *self.shape)
        out = torch.zeros(len(rows), self.n, self.positions, self.classes, dtype=torch.float64,
                          device=self.device)
        for i, r in enumerate(rows):
            q, c = divmod(r, self.classes)
            out[i, :, q, :] = self.columns[:, q, c, :]
        spatial = self.shape[2:]
        return out.reshape(len(rows), self.n, *spatial, self.classes).movedim(-1, 2)


def _direction_chunk(directions: int, n: int, sizes) -> int:
    """Directions per batched backward: bounded so the per-sample gradients stay ~64 MB."""
    return max(1, min(directions, (1 << 23) // max(1, n * max(sizes, default=1))))


def _patches(conv, h: torch.Tensor) -> torch.Tensor:
    """im2col of a convolution's input: (N, C_in * K, positions), rows in the weight's (C_in/g, k) order."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    h = torch.nn.functional.pad(h, conv._reversed_padding_repeated_twice, mode=mode)  # numeric or 'same'
    kernel, dilation, stride = tuple(conv.kernel_size), tuple(conv.dilation), tuple(conv.stride)
    if h.dim() == 3:  # 1-D: a 2-D image of height 1
        h, kernel, dilation, stride = h.unsqueeze(2), (1, *kernel), (1, *dilation), (1, *stride)
    return torch.nn.functional.unfold(h, kernel, dilation=dilation, stride=stride)


def _per_sample_squared_norms(module, h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """sum over directions r and samples n of ||dW of (delta_rn . output_n)||^2 (float64 scalar)."""
    r, n = delta.shape[:2]
    if isinstance(module, torch.nn.Linear):
        if h.dim() == 2:  # the gradient is the outer product delta h^T
            return ((delta ** 2).sum(-1) * (h ** 2).sum(-1)).sum()
        g = torch.einsum("rnqo,nqf->rnof", delta.reshape(r, n, -1, delta.shape[-1]), h.reshape(n, -1, h.shape[-1]))
        return (g ** 2).sum()
    groups = module.groups
    patches = _patches(module, h)
    patches = patches.reshape(n, groups, patches.shape[1] // groups, patches.shape[2])
    d = delta.reshape(r, n, groups, delta.shape[2] // groups, -1)
    g = torch.einsum("rngop,ngkp->rngok", d, patches)
    return (g ** 2).sum()


def _model_device(model: torch.nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def _session(model, layers, device, what):
    """Select the layers; compute on `device` in eval mode with only their weights requiring
    grad; restore modes and requires_grad flags afterwards."""
    home = _model_device(model)
    device = home if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    work = model if device == home else copy.deepcopy(model).to(device)
    found = quantizable_layers(work)
    if not found:
        raise QonnxError(f"{what}: the model has no nn.Linear, nn.Conv1d or nn.Conv2d layer")
    if layers is None:
        names = list(found)
    else:
        if isinstance(layers, str):
            layers = [layers]
        unknown = [name for name in layers if name not in found]
        if unknown:
            raise QonnxError(f"{what}: no quantizable layer named {', '.join(map(repr, unknown))}; "
                             f"the model has {', '.join(map(repr, found))}")
        wanted = set(layers)
        names = [name for name in found if name in wanted]  # forward order, no duplicates
    weights = [found[name].weight for name in names]
    flags = [(p, p.requires_grad) for p in work.parameters()]
    try:
        with evaluating(work):
            for p in work.parameters():
                p.requires_grad_(False)
            for w in weights:
                w.requires_grad_(True)
            yield work, names, weights, device
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    return obj


def _batch_size(x) -> int:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, (tuple, list)) and x:
        return _batch_size(x[0])
    return len(x)


def _is_batch(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor)


class _Batches:
    """The data as (gradients of the active weights with graph, batch size) per batch.

    One batch: its graph is built once for all requested weights and reused. A loader: the
    graphs are rebuilt on each pass for the weights still active (`retire` drops the others)."""

    def __init__(self, data, device):
        self.device = device
        self.single = _is_batch(data)
        if self.single:
            self.data = [(_to(data[0], device), _to(data[1], device))]
        elif isinstance(data, Iterable):
            self.data = data
        else:
            raise QonnxError("data must be one (x, y) batch or an iterable of (x, y) batches")
        self.cached = None

    def retire(self, weight: torch.Tensor) -> None:
        if not self.single:
            weight.requires_grad_(False)  # smaller graphs on the next passes

    def raw(self):
        """(x, y, n) per batch, on the device."""
        if self.single:
            x, y = self.data[0]
            yield x, y, _batch_size(x)
            return
        seen = False
        for batch in self.data:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise QonnxError(f"each batch of data must be an (x, y) pair, got {type(batch).__name__}")
            x, y = _to(batch[0], self.device), _to(batch[1], self.device)
            n = _batch_size(x)
            if n:
                seen = True
                yield x, y, n
        if not seen:
            raise QonnxError("data yielded no samples (a re-iterable loader is needed: it is read once "
                             "per probe batch)")

    def gradients(self, model, loss_fn, weights, active):
        if self.single:
            if self.cached is None:
                x, y = self.data[0]
                self.cached = (_gradients(model, loss_fn, x, y, weights, range(len(weights))), _batch_size(x))
            yield self.cached
            return
        for x, y, n in self.raw():
            yield _gradients(model, loss_fn, x, y, weights, active), n


def _gradients(model, loss_fn, x, y, weights, indices) -> dict:
    """index -> dL/dW (with create_graph) for the weights at `indices` (None if unused)."""
    indices = list(indices)
    loss = loss_fn(model(x), y)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise QonnxError("loss_fn(model(x), y) must return a scalar tensor (the batch mean)")
    if not loss.requires_grad:
        return dict.fromkeys(indices)
    grads = torch.autograd.grad(loss.reshape(()), [weights[i] for i in indices], create_graph=True,
                                allow_unused=True)
    return dict(zip(indices, grads))
