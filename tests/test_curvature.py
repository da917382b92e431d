"""Curvature against exact dense matrices: HVP/GGN products, Lanczos, trace, spectral density."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from landscape._density import spectral_density
from landscape._lanczos import lanczos
from landscape._trace import trace
from landscape.curvature import CurvatureOperator
from landscape.problem import Problem


def flat_loss(model, names, shapes, x, y):
    """Mean cross-entropy as a function of one flat parameter vector (for dense Hessians)."""

    def loss_of(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[i : i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return loss_of


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 3)
        self.unused = nn.Linear(2, 2)  # never called: must get zero curvature, not a crash

    def forward(self, x):
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = Tiny().double()
    with torch.no_grad():  # non-trivial BN statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    dense = torch.autograd.functional.hessian(flat_loss(model, names, shapes, x, y), flat0)
    return model, x, y, dense


def operator(problem, **kw):
    model, x, y, _ = problem
    return CurvatureOperator(Problem(model, (x, y), batch_size=15), **kw)  # batches of 15, 15, 10


@pytest.mark.parametrize("cache", [True, False])
def test_hvp_equals_dense_hessian(problem, cache):
    dense = problem[3]
    op = operator(problem, cache_graph=cache)
    for seed in range(3):
        v = torch.randn(op.size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    assert op.matvecs == 3
    unused = slice(op.size - 6, op.size)  # the unused layer's rows are zero
    assert (
        torch.count_nonzero(dense[unused]) == 0
        and torch.count_nonzero(op.matvec(torch.ones(op.size, dtype=torch.float64))[unused]) == 0
    )


def test_ggn_equals_dense_gauss_newton(problem):
    model, x, y, _ = problem
    op = operator(problem, kind="ggn")
    params = {n: p.detach() for n, p in model.named_parameters()}
    flat0 = torch.cat([p.flatten() for p in params.values()])

    def logits_of(flat):
        d, i = {}, 0
        for n, p in params.items():
            d[n] = flat[i : i + p.numel()].view_as(p)
            i += p.numel()
        return functional_call(model, d, (x,))

    J = torch.autograd.functional.jacobian(logits_of, flat0)  # (N, C, P)
    p = logits_of(flat0).softmax(1)
    H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # softmax-CE Hessian per sample
    G = torch.einsum("ncp,ncd,ndq->pq", J, H, J) / len(y)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), G @ v, rtol=1e-10, atol=1e-12)


def test_lanczos_top_and_bottom_eigenpairs(problem):
    dense = problem[3]
    evals, evecs = torch.linalg.eigh(dense)
    op = operator(problem)
    top = lanczos(op.matvec, op.size, k=5, tol=1e-8)
    assert top.converged and top.matvecs < op.size
    np.testing.assert_allclose(top.eigenvalues, evals.flip(0)[:5].numpy(), rtol=1e-4)
    for i in range(5):
        cos = abs(float(top.eigenvectors[:, i] @ evecs[:, -1 - i]))
        assert cos == pytest.approx(1.0, abs=1e-6)
    # reported residuals are the true ones
    for i in range(5):
        v = top.eigenvectors[:, i]
        assert float((dense @ v - top.eigenvalues[i] * v).norm()) == pytest.approx(top.residuals[i], abs=1e-8)
    bottom = lanczos(op.matvec, op.size, k=2, which="smallest", tol=1e-8)
    assert evals[0] < 0  # the problem has negative curvature
    np.testing.assert_allclose(bottom.eigenvalues, evals[:2].numpy(), rtol=1e-4)


def test_lanczos_default_tolerance_is_cheap_and_accurate(problem):
    dense = problem[3]
    top1 = lanczos(operator(problem).matvec, dense.shape[0], k=1, tol=1e-3)
    assert top1.converged and top1.matvecs <= 12
    assert top1.eigenvalues[0] == pytest.approx(torch.linalg.eigvalsh(dense)[-1].item(), rel=1e-4)


def test_known_spectrum_quadratic():
    diag = torch.tensor([10.0, 5.0, 4.0, 1.0, 0.5, -2.0] + [0.01] * 94, dtype=torch.float64)
    mv = lambda v: diag * v  # noqa: E731
    top = lanczos(mv, 100, k=3, tol=1e-10)
    np.testing.assert_allclose(top.eigenvalues, [10.0, 5.0, 4.0], rtol=1e-10)
    assert lanczos(mv, 100, k=1, which="smallest", tol=1e-10).eigenvalues[0] == pytest.approx(-2.0)
    exact = float(diag.sum())
    assert trace(mv, 100, 300).estimate == pytest.approx(exact, rel=1e-10)  # sketch spans everything: exact
    est = trace(mv, 100, 30, seed=3)
    assert est.ci95[0] <= exact <= est.ci95[1]


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_trace_interval_covers_the_exact_trace(problem, method):
    dense = problem[3]
    exact = float(torch.trace(dense))
    op = operator(problem)
    hits = 0
    for seed in range(20):
        est = trace(op.matvec, op.size, 30, method=method, seed=seed)
        hits += est.ci95[0] <= exact <= est.ci95[1]
    assert hits >= 16  # a 95% interval: at least 16 of 20 (fails with probability < 2%)
    assert trace(op.matvec, op.size, 30, method=method, seed=0).matvecs <= 30


def test_density_integrates_to_one_and_matches_the_exact_histogram(problem):
    dense = problem[3]
    evals = torch.linalg.eigvalsh(dense).numpy()
    model, x, y, _ = problem
    op = CurvatureOperator(Problem(model, (x, y), batch_size=40))
    d = spectral_density(op.matvec, op.size, num_probes=20, steps=op.size, sigma=1e-3)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(d.weights.sum(1), 1.0)
    cdf = np.cumsum(d.density) * (d.grid[1] - d.grid[0])
    for t in np.quantile(evals, [0.1, 0.5, 0.9]) + 1e-6:
        exact = np.mean(evals <= t)
        assert np.interp(t, d.grid, cdf) == pytest.approx(exact, abs=0.12)
    assert np.nanmax(d.nodes) == pytest.approx(evals[-1], rel=1e-6)  # extreme nodes converge


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    from landscape.trainers.train import TrainConfig, train

    root = tmp_path_factory.mktemp("mlp")
    cfg = TrainConfig(model="mlp", model_kwargs={"width": 8, "depth": 1}, epochs=2)
    train(cfg, root, progress=False, log=lambda line: None)
    return root / "final.pt"


def dense_hessian_of_checkpoint(ckpt, samples):
    problem = Problem.from_checkpoint(ckpt, samples=samples, device="cpu")
    model = problem.model.double()
    x, y = problem.splits["train"].tensors.x.double(), problem.splits["train"].tensors.y
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    return torch.autograd.functional.hessian(flat_loss(model, names, shapes, x, y), flat0, vectorize=True)


def test_hessian_cli_against_the_dense_hessian(mlp_run, tmp_path, capsys):
    from landscape.apps.cli.__main__ import main
    from landscape.io.results import read_analysis

    out = tmp_path / "h.h5"
    assert (
        main(
            [
                "hessian",
                str(mlp_run),
                "--top-k",
                "3",
                "--trace",
                "60",
                "--density",
                "--density-probes",
                "4",
                "--samples",
                "300",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "largest eigenvalues" in capsys.readouterr().out
    attrs, arrays = read_analysis(out, "hessian")
    dense = dense_hessian_of_checkpoint(mlp_run, 300)
    evals = torch.linalg.eigvalsh(dense).numpy()
    assert attrs["num_params"] == dense.shape[0] == 610
    np.testing.assert_allclose(arrays["eigenvalues"], evals[::-1][:3], rtol=1e-4)
    assert np.all(arrays["residuals"] <= 1e-3 * np.abs(arrays["eigenvalues"]))
    lo, hi = arrays["trace_ci95"]
    assert lo <= evals.sum() <= hi
    assert np.trapezoid(arrays["density"], arrays["density_grid"]) == pytest.approx(1.0, abs=1e-3)


def test_hessian_surface_axis_has_the_top_curvature(mlp_run, tmp_path):
    """Along a unit top eigenvector, the loss's second difference at 0 is the top eigenvalue."""
    from landscape._jobs import EvalOptions, hessian_analysis, hessian_surface
    from landscape.io import read_surface
    from landscape.io.results import read_analysis

    opts = EvalOptions(samples=300, device="cpu", progress=False)
    h = hessian_analysis(mlp_run, tmp_path / "h.h5", opts, top_k=1)
    lam = read_analysis(h)[1]["eigenvalues"][0]
    step = 0.05
    s = read_surface(hessian_surface(mlp_run, tmp_path / "s.h5", np.array([-step, 0.0, step]), None, opts))
    lm, l0, lp = s.values["train_loss"]
    assert (lp - 2 * l0 + lm) / step**2 == pytest.approx(lam, rel=2e-2)
    from_file = read_surface(
        hessian_surface(mlp_run, tmp_path / "f.h5", np.array([-step, 0.0, step]), None, opts, hessian_file=h)
    )
    np.testing.assert_allclose(from_file.values["train_loss"], s.values["train_loss"], rtol=1e-5)


def test_operator_restores_the_model(problem):
    model = problem[0]
    model.train()
    bn_forward = type(model.bn).forward
    with operator(problem) as op:
        op.matvec(torch.ones(op.size, dtype=torch.float64))
        assert not model.training and "forward" in vars(model.bn)  # affine BatchNorm while open
    assert model.training and "forward" not in vars(model.bn) and type(model.bn).forward is bn_forward
    model.eval()


def test_per_batch_top_eigenvalues_equal_each_batch_dense_hessian(problem, tmp_path):
    """How-do-vits-work's histogram: the top eigenvalue of each block of 12 examples (the short last one left out),
    each against that block's own dense Hessian; written to the file and drawn."""
    import landscape
    from landscape.plots import mpl, plotly
    from landscape.plots.catalog import figures_for
    from landscape.plots.checks import text_defects

    model, x, y, dense = problem
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    expected = [
        torch.linalg.eigvalsh(
            torch.autograd.functional.hessian(flat_loss(model, names, shapes, x[i : i + 12], y[i : i + 12]), flat0)
        )[-1].item()
        for i in (0, 12, 24)
    ]
    p = Problem(model, (x, y), batch_size=15)
    h = landscape.hessian(p, top_k=1, batches=3, batch_size=12, tol=1e-8, out=tmp_path / "h.h5", progress=False)
    assert h.batch_eigenvalues == pytest.approx(expected, rel=1e-6)
    assert h.eigenvalues[0] == pytest.approx(torch.linalg.eigvalsh(dense)[-1].item(), rel=1e-6)  # the whole split's
    assert h.attrs["batch_size"] == 12 and h.batch_matvecs > 0
    figs = figures_for(h, False, mpl)
    assert set(figs) == {"spectrum", "batches"} and text_defects(figs["batches"]) == []
    assert len(figures_for(h, False, plotly)["batches"].data[0].x) == 3
    with pytest.raises(ValueError, match="holds 3 full batches"):
        landscape.hessian(p, top_k=0, batches=4, batch_size=12, progress=False)
