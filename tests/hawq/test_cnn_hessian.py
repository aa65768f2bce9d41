"""hawq.hessian on CNNs: conv weight blocks against their explicit Hessians.

Every reference here is the full Hessian block of one weight, built by
torch.autograd.functional.hessian of the loss as a function of that weight alone (the other
parameters fixed), independently of hawq: its trace is the exact Tr(H_l), and its off-diagonal
entries give the exact per-probe spread of Hutchinson's estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hawq.hessian import exact_traces, hessian_traces, top_eigenvalues
from hawq.layers import quantizable_layers
from qonnx_ir.errors import QonnxError

# torch's note that an even kernel with padding='same' pads a copy (the conv1d case does that on purpose)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


def explicit_block(model: nn.Module, loss_fn, x, y, name: str) -> np.ndarray:
    """The n_l x n_l Hessian of loss_fn(model(x), y) in the weight of layer `name` (flattened)."""
    parameters = {key: value.detach() for key, value in model.named_parameters()}
    weight = dict(model.named_modules())[name].weight

    def loss_of(w):
        return loss_fn(torch.func.functional_call(model, {**parameters, f"{name}.weight": w}, (x,)), y)

    block = torch.autograd.functional.hessian(loss_of, weight.detach().clone())
    return block.reshape(weight.numel(), weight.numel()).double().numpy()


def hutchinson_sd(h: np.ndarray) -> float:
    """Standard deviation of one Rademacher sample v^T H v: sqrt(2 * sum_{i != j} H_ij^2)."""
    return math.sqrt(2.0 * ((h ** 2).sum() - (np.diag(h) ** 2).sum()))


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Running statistics = the statistics of x (so the convolution after a BatchNorm reads centred inputs)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a cumulative average: after one batch, exactly its statistics
            module.reset_running_stats()
    with torch.no_grad():
        model(x)
    return model.eval()


def small_cnn() -> nn.Module:
    # Conv -> ReLU -> BatchNorm -> grouped Conv -> ReLU -> MaxPool -> Flatten -> Linear; centred inputs
    # to both convolutions keep Hutchinson's per-probe spread small (0.09 and 0.12 of the trace)
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),
                         nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64, 10)).double()


@pytest.fixture(scope="module")
def cnn_case():
    x = torch.randn(100, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randint(0, 10, (100,), generator=torch.Generator().manual_seed(2))
    model = calibrate_batchnorm(small_cnn(), x)
    loss_fn = nn.CrossEntropyLoss()
    blocks = {name: explicit_block(model, loss_fn, x, y, name) for name in ("0", "3")}
    return model, loss_fn, x, y, blocks


def test_exact_traces_equal_the_explicit_conv_blocks(cnn_case):
    model, loss_fn, x, y, blocks = cnn_case
    exact = exact_traces(model, loss_fn, (x, y), progress=False)
    assert list(exact) == ["0", "3", "7"]
    for name, block in blocks.items():
        expected = float(np.trace(block))
        assert abs(exact[name].trace - expected) <= 1e-9 * abs(expected), (name, exact[name].trace, expected)
        assert exact[name].std_error == 0.0 and exact[name].probes == 10  # one direction per class
        assert exact[name].n_params == block.shape[0]


@pytest.mark.parametrize("method", ["auto", "hvp"])
def test_hutchinson_conv_traces_are_within_two_percent(cnn_case, method):
    model, loss_fn, x, y, blocks = cnn_case
    estimates = hessian_traces(model, loss_fn, (x, y), layers=["0", "3"], method=method, rel_tol=0.004,
                               min_probes=256, max_probes=4096, batch_probes=64, progress=False)
    for name, block in blocks.items():
        est, exact = estimates[name], float(np.trace(block))
        assert abs(est.trace - exact) <= 0.02 * abs(exact), (name, est, exact)
        assert abs(est.trace - exact) <= 4 * est.std_error, (name, est, exact)
        assert est.relative_error < 0.004
        # the reported spread is the exact one of v^T H v (sample sd of >= 256 samples: within 25 %)
        assert est.std_error * math.sqrt(est.probes) == pytest.approx(hutchinson_sd(block), rel=0.25)


def test_hutchinson_on_a_residual_cnn_uses_the_general_path(cnn_case):
    """Not an nn.Sequential: no fast path (method='gauss-newton' is refused), the double backward
    through the convolutions still gives the block trace."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.relu, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))

        def forward(self, x):
            h = self.bn(self.relu(self.conv1(x)))
            return self.head(self.relu(self.conv2(h)) + h)

    _, loss_fn, x, y, _ = cnn_case
    torch.manual_seed(3)
    model = calibrate_batchnorm(Residual().double(), x)
    with pytest.raises(QonnxError, match="gauss-newton"):
        hessian_traces(model, loss_fn, (x, y), method="gauss-newton", progress=False)
    with pytest.raises(QonnxError, match="exact_traces needs an nn.Sequential"):
        exact_traces(model, loss_fn, (x, y), progress=False)
    estimates = hessian_traces(model, loss_fn, (x, y), layers=["conv1", "conv2"], rel_tol=0.004, min_probes=256,
                               max_probes=4096, batch_probes=64, progress=False)
    for name in ("conv1", "conv2"):
        exact = float(np.trace(explicit_block(model, loss_fn, x, y, name)))
        assert abs(estimates[name].trace - exact) <= min(0.02 * abs(exact), 4 * estimates[name].std_error), name


def chain_cases():
    """(id, model, loss, x, y): every module type of the fast path, 1-D and 2-D, image outputs."""
    gen = torch.Generator().manual_seed(4)
    cases = []
    torch.manual_seed(5)
    one_d = nn.Sequential(
        nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect"), nn.ReLU(),
        nn.MaxPool1d(3, stride=2, padding=1), nn.BatchNorm1d(4),
        nn.Sequential(nn.Conv1d(4, 4, 2, padding="same", groups=4), nn.Dropout(0.3)), nn.AdaptiveAvgPool1d(2),
        nn.Flatten(), nn.Identity(), nn.Linear(8, 5))
    x1 = torch.randn(30, 3, 16, generator=gen, dtype=torch.float64)
    cases.append(("conv1d-ce", one_d, nn.CrossEntropyLoss(), x1, torch.randint(0, 5, (30,), generator=gen)))
    cases.append(("conv1d-mse", one_d, nn.MSELoss(), x1, torch.randn(30, 5, generator=gen, dtype=torch.float64)))
    torch.manual_seed(6)
    two_d = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=(1, 2), padding=(1, 0)), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2, stride=1),
        nn.Conv2d(6, 4, (2, 3), groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 1)), nn.Flatten(), nn.Linear(8, 4))
    x2 = torch.randn(25, 2, 9, 11, generator=gen, dtype=torch.float64)
    soft = torch.softmax(torch.randn(25, 4, generator=gen, dtype=torch.float64) * 2, dim=1) * 0.7  # mass 0.7
    cases.append(("conv2d-soft-targets", two_d, nn.CrossEntropyLoss(), x2, soft))
    torch.manual_seed(7)
    image = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1),
                          nn.MaxPool2d(2, ceil_mode=True))
    x3 = torch.randn(20, 2, 6, 6, generator=gen, dtype=torch.float64)
    cases.append(("per-pixel-ce", image, nn.CrossEntropyLoss(), x3, torch.randint(0, 3, (20, 3, 3), generator=gen)))
    cases.append(("image-mse", image, nn.MSELoss(), x3, torch.randn(20, 3, 3, 3, generator=gen, dtype=torch.float64)))
    for _, model, *_ in cases:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                with torch.no_grad():
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
                    module.weight.uniform_(-1.5, 1.5)
        model.double().eval()
    return cases


CHAIN_CASES = chain_cases()


@pytest.mark.parametrize("case", CHAIN_CASES, ids=[c[0] for c in CHAIN_CASES])
def test_exact_traces_and_fast_path_on_every_chain_module(case):
    """exact_traces == the explicit block's trace; the Gauss-Newton probes == the double-backward probes."""
    _, model, loss_fn, x, y = case
    exact = exact_traces(model, loss_fn, (x, y), progress=False)
    names = list(quantizable_layers(model))
    assert list(exact) == names
    for name in names:
        expected = float(np.trace(explicit_block(model, loss_fn, x, y, name)))
        assert abs(exact[name].trace - expected) <= 1e-9 * abs(expected), (name, exact[name].trace, expected)
    options = dict(max_probes=24, min_probes=24, rel_tol=0.0, batch_probes=8, progress=False)
    general = hessian_traces(model, loss_fn, (x, y), method="hvp", **options)
    fast = hessian_traces(model, loss_fn, (x, y), method="gauss-newton", **options)
    for name in names:
        assert fast[name].probes == general[name].probes == 24
        assert abs(fast[name].trace - general[name].trace) <= 1e-9 * abs(general[name].trace), name
        assert abs(fast[name].std_error - general[name].std_error) <= 1e-8 * general[name].std_error, name


def test_float32_cnn_fast_path_loader_and_eigenvalues():
    """A float32 CNN through a DataLoader: the fast path equals the general one to float32 rounding;
    top_eigenvalues works on conv blocks (power iteration vs the explicit block's spectrum)."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 5)).eval()
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(90, 1, 8, 8, generator=gen), torch.randint(0, 5, (90,), generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=40)
    options = dict(max_probes=32, min_probes=32, rel_tol=0.0, batch_probes=16, progress=False)
    general = hessian_traces(model, nn.CrossEntropyLoss(), (x, y), method="hvp", **options)
    fast = hessian_traces(model, nn.CrossEntropyLoss(), loader, **options)
    for name in general:
        assert abs(fast[name].trace - general[name].trace) <= 1e-5 * abs(general[name].trace), name
    exact = exact_traces(model, nn.CrossEntropyLoss(), loader, progress=False)
    whole = exact_traces(model, nn.CrossEntropyLoss(), (x, y), progress=False)
    assert exact["0"].trace == pytest.approx(whole["0"].trace, rel=1e-9)

    top = top_eigenvalues(model, nn.CrossEntropyLoss(), (x, y), layers=["0"], iters=300, tol=1e-9, progress=False)
    block = explicit_block(model.double(), nn.CrossEntropyLoss(), x.double(), y, "0")
    assert top["0"] == pytest.approx(np.linalg.eigvalsh(block)[-1], rel=1e-3)
