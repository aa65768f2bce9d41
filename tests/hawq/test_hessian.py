"""hawq.hessian: Hutchinson block traces and power-iteration top eigenvalues.

(a) models whose weight-block Hessians are known in closed form (MSE, linear in each weight);
(b) PyHessian's whole-model trace as an independent reference (bias-free model, so the
    whole-model trace is exactly the sum of the weight-block traces);
(c) a DataLoader equals the concatenated batch; the model is left untouched; stopping rule.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hawq.hessian import TraceEstimate, hessian_traces, top_eigenvalues
from qonnx_ir.errors import QonnxError


@pytest.fixture(autouse=True)
def one_thread():
    # these models are tiny: a second intra-op thread only adds synchronisation, and on a shared
    # machine it makes the run several times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hutchinson_sd(h: np.ndarray) -> float:
    """Standard deviation of one Rademacher sample v^T H v: sqrt(2 * sum_{i != j} H_ij^2)."""
    return math.sqrt(2.0 * ((h ** 2).sum() - (np.diag(h) ** 2).sum()))


def check_trace(est: TraceEstimate, exact: float, h: np.ndarray) -> None:
    assert abs(est.trace - exact) <= 0.02 * abs(exact), (est, exact)
    assert abs(est.trace - exact) <= 4 * est.std_error, (est, exact)
    # the reported standard error is the per-probe spread / sqrt(probes): compare the spread
    # with its exact value (sample sd of >= 256 samples: well within 25 %)
    assert est.probes >= 256
    assert est.std_error * math.sqrt(est.probes) == pytest.approx(hutchinson_sd(h), rel=0.25)


# ---------------------------------------------------------------------------------------------
# (a) analytic Hessians


def correlated_inputs(n: int, d: int, gen: torch.Generator, mixing: float = 0.3) -> torch.Tensor:
    mix = torch.eye(d, dtype=torch.float64) + mixing * torch.randn(d, d, generator=gen, dtype=torch.float64)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix


def test_single_linear_mse_matches_closed_form():
    # L(W, b) = 1/(N*out) * sum_n ||W x_n + b - y_n||^2  (nn.MSELoss(reduction='mean') averages
    # over all N*out entries). L is quadratic in W with d2L/dW_ij dW_kl = 2/(N*out) delta_ik
    # sum_n x_nj x_nl, i.e. H_W = 2/(N*out) * kron(I_out, X^T X) (W flattened row-major):
    #   Tr(H_W) = 2/(N*out) * out * ||X||_F^2 = 2/N * ||X||_F^2,
    #   lambda_max(H_W) = 2/(N*out) * lambda_max(X^T X).
    # The bias is excluded from the block (cross terms W-b do not enter).
    gen = torch.Generator().manual_seed(1)
    n, d_in, d_out = 400, 6, 8  # per-probe relative spread ~0.075
    x = correlated_inputs(n, d_in, gen, 0.2)
    y = torch.randn(n, d_out, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = torch.nn.Linear(d_in, d_out).double()
    loss = torch.nn.MSELoss()

    xtx = (x.T @ x).numpy()
    c = 2.0 / (n * d_out)
    h = c * np.kron(np.eye(d_out), xtx)
    exact_trace = 2.0 / n * float((x ** 2).sum())
    assert exact_trace == pytest.approx(np.trace(h))
    exact_top = c * np.linalg.eigvalsh(xtx)[-1]

    est = hessian_traces(model, loss, (x, y), rel_tol=0.005, min_probes=256, max_probes=4096, progress=False)
    assert list(est) == [""]  # the model itself is the Linear: its qualified name is ""
    check_trace(est[""], exact_trace, h)
    assert est[""].n_params == d_in * d_out
    assert est[""].mean_diagonal == pytest.approx(est[""].trace / (d_in * d_out))

    top = top_eigenvalues(model, loss, (x, y), iters=500, tol=1e-8, progress=False)
    assert top[""] == pytest.approx(exact_top, rel=0.01)


def test_two_linear_layers_match_closed_form():
    # z_n = W2 W1 x_n (no bias, no activation), L = 1/(N*out) sum_n ||z_n - y_n||^2 (MSELoss).
    # Each block is exact quadratic in its own weight:
    #   W2 block (input A = X W1^T, N x h): H_2 = 2/(N*out) kron(I_out, A^T A)
    #       Tr = 2/N ||X W1^T||_F^2,   lambda_max = 2/(N*out) lambda_max(A^T A)
    #   W1 block (dz_n/dW1_jk = W2[:, j] x_nk): H_1 = 2/(N*out) kron(W2^T W2, X^T X)
    #       Tr = 2/(N*out) ||W2||_F^2 ||X||_F^2,   lambda_max = 2/(N*out) l_max(W2^T W2) l_max(X^T X)
    gen = torch.Generator().manual_seed(2)
    n, d_in, hidden, d_out = 400, 6, 4, 16  # per-probe relative spread ~0.2 and ~0.12
    x = correlated_inputs(n, d_in, gen, 0.2)
    y = torch.randn(n, d_out, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(d_in, hidden, bias=False),
                                torch.nn.Linear(hidden, d_out, bias=False)).double()
    w1, w2 = model[0].weight.detach().numpy(), model[1].weight.detach().numpy()
    xn = x.numpy()
    a = xn @ w1.T
    c = 2.0 / (n * d_out)
    h1 = c * np.kron(w2.T @ w2, xn.T @ xn)
    h2 = c * np.kron(np.eye(d_out), a.T @ a)
    exact = {"0": c * (w2 ** 2).sum() * (xn ** 2).sum(), "1": 2.0 / n * (a ** 2).sum()}
    assert exact["0"] == pytest.approx(np.trace(h1)) and exact["1"] == pytest.approx(np.trace(h2))
    exact_top = {"0": c * np.linalg.eigvalsh(w2.T @ w2)[-1] * np.linalg.eigvalsh(xn.T @ xn)[-1],
                 "1": c * np.linalg.eigvalsh(a.T @ a)[-1]}

    est = hessian_traces(model, torch.nn.MSELoss(), (x, y), rel_tol=0.005, min_probes=256, max_probes=4096,
                         progress=False)
    check_trace(est["0"], exact["0"], h1)
    check_trace(est["1"], exact["1"], h2)

    top = top_eigenvalues(model, torch.nn.MSELoss(), (x, y), iters=500, tol=1e-8, progress=False)
    for name in exact_top:
        assert top[name] == pytest.approx(exact_top[name], rel=0.01)


# ---------------------------------------------------------------------------------------------
# (b) PyHessian's whole-model trace


def test_sum_of_block_traces_matches_pyhessian():
    from pyhessian import hessian as hessian_mod
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(32, 5, bias=False))
    x = torch.randn(256, 16)
    y = torch.randint(0, 5, (256,))
    loss = torch.nn.CrossEntropyLoss()

    ours = hessian_traces(model, loss, (x, y), rel_tol=0.0, max_probes=256, progress=False)
    total = sum(e.trace for e in ours.values())
    se_total = math.sqrt(sum(e.std_error ** 2 for e in ours.values()))  # independent probes

    # PyHessian: every parameter requiring grad (here exactly the two weights), maxIter probes
    # (its test |mean - previous| / (previous + 1e-6) < tol can fire for tol=0 when the running
    # mean is negative; tol=-inf never fires); trace() returns the per-probe samples v^T H v.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backward(create_graph=True) reference-cycle warning
        h = hessian_mod(model, loss, data=(x, y), cuda=False)
        assert len(h.params) == 2
        samples = np.array(h.trace(maxIter=256, tol=-math.inf))
    model.zero_grad(set_to_none=True)
    assert len(samples) == 256
    ref, se_ref = samples.mean(), samples.std(ddof=1) / math.sqrt(len(samples))

    assert abs(total - ref) <= 3 * math.sqrt(se_total ** 2 + se_ref ** 2), (total, se_total, ref, se_ref)
    # block probes have no cross-layer terms, so their estimate is the sharper one here
    assert se_total < se_ref


# ---------------------------------------------------------------------------------------------
# (c) data handling, model left untouched, stopping rule


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(24, 12), torch.nn.ReLU(), torch.nn.Linear(12, 5))


def data(n: int = 300, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def test_loader_equals_concatenated_batch_and_model_untouched():
    model = mlp()
    model.train()
    model[3].bias.requires_grad_(False)  # a frozen parameter must stay frozen
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data()
    # uneven last batch (300 = 8 * 37 + 4): the weighting by batch size matters
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=37)
    loss = torch.nn.CrossEntropyLoss()

    kw = dict(rel_tol=0.0, max_probes=40, batch_probes=16, progress=False)
    whole = hessian_traces(model, loss, (x, y), **kw)
    split = hessian_traces(model, loss, loader, **kw)
    assert list(whole) == ["0", "3", "5"]
    for name in whole:
        assert split[name].probes == whole[name].probes == 40  # 16 + 16 + 8
        assert split[name].trace == pytest.approx(whole[name].trace, rel=1e-4, abs=1e-7)
        assert split[name].std_error == pytest.approx(whole[name].std_error, rel=1e-4, abs=1e-7)

    top_whole = top_eigenvalues(model, loss, (x, y), iters=15, progress=False)
    top_split = top_eigenvalues(model, loss, loader, iters=15, progress=False)
    for name in top_whole:
        assert top_split[name] == pytest.approx(top_whole[name], rel=1e-4)

    # one layer alone: the same probes as in the full run (they depend on (seed, name) only)
    alone = hessian_traces(model, loss, (x, y), layers=["3"], **kw)
    assert list(alone) == ["3"]
    assert alone["3"].trace == pytest.approx(whole["3"].trace, rel=1e-5)

    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    # eval mode inside: with dropout active the two runs above could not agree; also the
    # mixed modes of submodules come back as they were
    model.eval()
    model[2].train()
    hessian_traces(model, loss, (x, y), max_probes=4, progress=False)
    assert [m.training for m in model.modules()] == [False, False, False, True, False, False, False]


def test_batched_products_equal_one_at_a_time():
    # the probes are a function of (seed, layer name) only, so batch_probes changes how many
    # Hessian-vector products share a backward pass (vmap) but not the samples
    model = mlp(2)
    x, y = data(128, 2)
    loss = torch.nn.CrossEntropyLoss()
    kw = dict(rel_tol=0.0, max_probes=12, progress=False)
    one = hessian_traces(model, loss, (x, y), batch_probes=1, **kw)
    for k in (5, 12):
        many = hessian_traces(model, loss, (x, y), batch_probes=k, **kw)
        for name in one:
            assert many[name].trace == pytest.approx(one[name].trace, rel=1e-5)
            assert many[name].std_error == pytest.approx(one[name].std_error, rel=1e-4)


def test_brevitas_quant_linear():
    # QuantLinear is an nn.Linear: its float weight's block, through the weight quantizer's
    # straight-through estimator; the batched double backward must work through it
    import brevitas.nn as qnn
    torch.manual_seed(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.nn.Sequential(qnn.QuantLinear(16, 24, bias=True, weight_bit_width=4),
                                    qnn.QuantReLU(bit_width=6),
                                    qnn.QuantLinear(24, 5, bias=True, weight_bit_width=6))
        x, y = data(128, 4)
        loss = torch.nn.CrossEntropyLoss()
        one = hessian_traces(model, loss, (x, y), rel_tol=0.0, max_probes=8, batch_probes=1, progress=False)
        many = hessian_traces(model, loss, (x, y), rel_tol=0.0, max_probes=8, batch_probes=8, progress=False)
        top = top_eigenvalues(model, loss, (x, y), iters=20, progress=False)
    assert list(one) == list(top) == ["0", "2"]
    for name in one:
        assert math.isfinite(one[name].trace) and one[name].trace != 0.0
        assert many[name].trace == pytest.approx(one[name].trace, rel=1e-5)
        assert math.isfinite(top[name])


def test_stopping_rule():
    model = mlp(1)
    x, y = data(200, 1)
    loss = torch.nn.CrossEntropyLoss()
    est = hessian_traces(model, loss, (x, y), rel_tol=0.1, min_probes=16, batch_probes=8,
                         max_probes=200, progress=False)
    early = 0
    for e in est.values():
        assert 16 <= e.probes <= 200
        assert e.probes % 8 == 0
        if e.probes < 200:
            early += 1
            assert e.relative_error < 0.1
            assert e.std_error / abs(e.trace) < 0.1
    assert early >= 1  # the rule did fire (the layers' per-probe spreads differ a lot)

    # rel_tol=0 never stops early; the last batch is cut to reach exactly max_probes
    est = hessian_traces(model, loss, (x, y), rel_tol=0.0, min_probes=4, batch_probes=8, max_probes=20,
                         progress=False)
    assert all(e.probes == 20 for e in est.values())


def test_bad_input():
    model = mlp()
    x, y = data(10)
    loss = torch.nn.CrossEntropyLoss()
    with pytest.raises(QonnxError, match="no quantizable layer named 'nope'"):
        hessian_traces(model, loss, (x, y), layers=["nope"], progress=False)
    with pytest.raises(QonnxError, match="max_probes"):
        hessian_traces(model, loss, (x, y), max_probes=0, progress=False)
    with pytest.raises(QonnxError, match="no samples"):
        hessian_traces(model, loss, [], progress=False)
    with pytest.raises(QonnxError, match="no nn.Linear"):
        top_eigenvalues(torch.nn.ReLU(), loss, (x, y), progress=False)


def test_gauss_newton_fast_path_gives_the_hvp_samples():
    """For a ReLU MLP the exact J^T H_out J block equals the Hessian block: same probes, same numbers."""
    from hawq.hessian import hessian_traces

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(200, 6)
    cases = [(torch.nn.CrossEntropyLoss(), torch.randint(0, 4, (200,))), (torch.nn.MSELoss(), torch.randn(200, 4))]
    for loss_fn, y in cases:
        options = dict(max_probes=40, min_probes=40, rel_tol=0.0, batch_probes=8, progress=False)
        general = hessian_traces(model, loss_fn, (x, y), method="hvp", **options)
        fast = hessian_traces(model, loss_fn, (x, y), method="gauss-newton", **options)
        loader = [(x[:120], y[:120]), (x[120:], y[120:])]
        fast_loader = hessian_traces(model, loss_fn, loader, method="auto", **options)
        for name in general:
            for estimate in (fast[name], fast_loader[name]):
                assert estimate.probes == general[name].probes == 40
                # both compute in float32: agreement to float32 rounding, not bit for bit
                assert abs(estimate.trace - general[name].trace) <= 1e-6 * abs(general[name].trace)
                assert abs(estimate.std_error - general[name].std_error) <= 1e-5 * general[name].std_error


def test_gauss_newton_is_refused_where_it_is_not_exact():
    from hawq.hessian import hessian_traces

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    with pytest.raises(QonnxError, match="gauss-newton"):
        hessian_traces(model, torch.nn.CrossEntropyLoss(), (torch.randn(8, 4), torch.randint(0, 2, (8,))),
                       method="gauss-newton", progress=False)


def test_exact_traces_equal_the_trace_of_the_explicit_hessian_block():
    """A tiny ReLU MLP: the full Hessian of each weight block by autograd, its trace, vs exact_traces."""
    from hawq.hessian import exact_traces

    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 6), torch.nn.ReLU(),
                                torch.nn.Linear(6, 3)).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    for loss_fn, y in [(torch.nn.CrossEntropyLoss(), torch.randint(0, 3, (40,))),
                       (torch.nn.MSELoss(), torch.randn(40, 3, dtype=torch.float64))]:
        exact = exact_traces(model, loss_fn, (x, y))
        parameters = {key: value.detach() for key, value in model.named_parameters()}
        for name, layer in [("0", model[0]), ("2", model[2]), ("4", model[4])]:
            weight = layer.weight

            def loss_of(w, name=name):
                return loss_fn(torch.func.functional_call(model, {**parameters, f"{name}.weight": w}, (x,)), y)

            block = torch.autograd.functional.hessian(loss_of, weight.detach().clone())
            expected = float(block.reshape(weight.numel(), weight.numel()).diagonal().sum())
            assert abs(exact[name].trace - expected) <= 1e-9 * abs(expected), (name, exact[name].trace, expected)
            assert exact[name].std_error == 0.0
