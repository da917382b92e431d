"""The sharpness suite against closed forms: the trust-region subproblem, separable boxes, Gaussian noise on a
quadratic, rescaling invariance, per-example products, and blocks computed one by one."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import brentq

import landscape
from landscape.directions import normalize_direction, output_axes, random_directions
from landscape.problem import Problem


class Quadratic(nn.Module):
    """``g^T d + d^T H d / 2`` with ``d = w - w0``: one parameter named ``w`` (not ``*.weight``)."""

    def __init__(self, g, h, w0):
        super().__init__()
        self.w = nn.Parameter(w0.clone())
        self.register_buffer("g", g)
        self.register_buffer("h", h)
        self.register_buffer("w0", w0.clone())

    def value(self, d):
        return self.g @ d + 0.5 * d @ (self.h @ d)


def quadratic_problem(g, h, w0):
    model = Quadratic(g, h, w0)

    def loss(model, batch):
        return model.value(model.w - model.w0)

    return Problem(model, (torch.zeros(4, 1), torch.zeros(4)), loss)


def tensors(n, seed, diagonal=False):
    rng = np.random.default_rng(seed)
    if diagonal:
        h = np.diag(rng.normal(size=n) * 2)
    else:
        a = rng.normal(size=(n, n))
        h = (a + a.T) / 2
    return rng.normal(size=n) * 0.3, h


def trust_region_max(g, h, r):
    """max of g^T d + d^T H d / 2 over ||d|| <= r for indefinite H: d = (lambda I - H)^-1 g on the sphere, lambda >
    lambda_max (g has a component along the top eigenvector: not the hard case)."""
    lam, v = np.linalg.eigh(h)
    gb = v.T @ g
    lam_star = brentq(lambda x: np.linalg.norm(gb / (x - lam)) - r, lam[-1] + 1e-12, lam[-1] + 1e6)
    d = v @ (gb / (lam_star - lam))
    return g @ d + 0.5 * d @ h @ d


@pytest.mark.parametrize("r", [0.3, 2.0])
def test_apgd_solves_the_trust_region_subproblem_and_sam_is_its_closed_form(r):
    g, h = tensors(20, 0)
    w0 = torch.linspace(-1, 1, 20, dtype=torch.float64)
    p = quadratic_problem(torch.tensor(g), torch.tensor(h), w0)
    exact = trust_region_max(g, h, r)
    found = landscape.sharpness(p, r, "apgd", steps=100, restarts=2, fast=False)
    assert exact >= float(found) >= 0.999 * exact
    assert found.evaluations == 2 * 101 + 1 and len(found.values) == 2
    d = r * g / np.linalg.norm(g)  # SAM's one ascent step
    assert float(landscape.sharpness(p, r, "sam", steps=1, fast=False)) == pytest.approx(
        max(g @ d + 0.5 * d @ h @ d, 0.0), rel=1e-9
    )
    pgd = landscape.sharpness(p, r, "sam", steps=10, fast=False)
    assert float(pgd) < float(found)  # today's 10-step ascent is a looser lower bound
    # the model has no parameter named *.weight: ASAM's ball is the plain one (and nothing fails)
    assert float(landscape.sharpness(p, r, "adaptive", steps=10, fast=False)) == pytest.approx(float(pgd))


def box_max(g, h, lo, hi):
    """max of a separable quadratic sum_i g_i d_i + h_i d_i^2 / 2 over the box lo <= d <= hi, coordinate by
    coordinate (the ends, and the stationary point where h_i < 0)."""
    total = 0.0
    for gi, hi_, a, b in zip(g, h, lo, hi):
        cands = [a, b] + ([-gi / hi_] if hi_ < 0 and a <= -gi / hi_ <= b else [])
        total += max(gi * c + 0.5 * hi_ * c * c for c in cands)
    return total


def test_apgd_in_the_box_and_keskar_reach_the_separable_maximum():
    g, h = tensors(12, 1, diagonal=True)
    w0 = np.linspace(-2, 2, 12)
    p = quadratic_problem(torch.tensor(g), torch.tensor(h), torch.tensor(w0))
    r = 0.4
    exact = box_max(g, np.diag(h), -r * np.ones(12), r * np.ones(12))
    found = landscape.sharpness(p, r, "apgd", norm="linf", steps=100, restarts=2, fast=False)
    assert exact >= float(found) >= 0.999 * exact
    # Keskar et al.: the box |d_i| <= eps (|w_i| + 1), reported as 100 * rise / (1 + L(w)); L(w) = 0 here
    eps = 0.1
    bound = eps * (np.abs(w0) + 1)
    keskar = landscape.sharpness(p, eps, "keskar", steps=100, fast=False)
    assert float(keskar) == pytest.approx(100 * box_max(g, np.diag(h), -bound, bound), rel=1e-3)
    average = landscape.sharpness(p, r, "average", norm="linf", trials=200, fast=False)
    # the box's vertices: E[g^T d + d^T H d / 2] = r^2 tr(H) / 2 (the signs are independent), within the noise
    assert float(average) == pytest.approx(0.5 * r**2 * np.trace(h), abs=4 * average.std / np.sqrt(200))


def test_pacbayes_sigma_matches_the_gaussian_expectation_on_a_quadratic():
    """E[L(w + sigma xi)] - L(w) = sigma^2 tr(H) / 2 for g = 0: the sigma whose rise is 0.1 is sqrt(0.2 / tr H)."""
    h = np.diag(np.linspace(0.5, 3.0, 30))
    p = quadratic_problem(torch.zeros(30, dtype=torch.float64), torch.tensor(h), torch.zeros(30, dtype=torch.float64))
    flat = landscape.sharpness(p, kind="pacbayes", trials=40, deviation=0.1, fast=False)
    expected = np.sqrt(0.2 / np.trace(h))
    assert flat.sigma == pytest.approx(expected, rel=0.1)
    assert float(flat) == pytest.approx(1 / flat.sigma**2)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def classification(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def test_adaptive_sharpness_is_invariant_to_rescaling_relu_layers_and_the_plain_one_is_not():
    data = classification()
    a = mlp()
    b = mlp()
    alpha = 4.0
    with torch.no_grad():
        b[0].weight.mul_(alpha)
        b[0].bias.mul_(alpha)
        b[2].weight.div_(alpha)
    pa, pb = Problem(a, data), Problem(b, data)
    assert pa.evaluate("train")["loss"] == pytest.approx(pb.evaluate("train")["loss"], rel=1e-12)  # one function
    kw = dict(kind="apgd", steps=20, adaptive=True)
    assert float(landscape.sharpness(pb, 0.3, **kw)) == pytest.approx(
        float(landscape.sharpness(pa, 0.3, **kw)), rel=1e-2
    )
    plain_a = landscape.sharpness(pa, 0.3, "apgd", steps=20)
    plain_b = landscape.sharpness(pb, 0.3, "apgd", steps=20)
    assert abs(float(plain_b) / float(plain_a) - 1) > 0.1


def test_m_sharpness_averages_each_block_worst_case_and_m_equal_n_is_the_full_measure():
    data = classification(60)
    p = Problem(mlp(), data)
    full = landscape.sharpness(p, 0.2, "sam", steps=5)
    assert float(landscape.sharpness(p, 0.2, "sam", steps=5, m=60)) == float(full)
    blocked = landscape.sharpness(p, 0.2, "sam", steps=5, m=20)
    one_by_one = [
        float(landscape.sharpness(Problem(p.model, (data[0][i : i + 20], data[1][i : i + 20])), 0.2, "sam", steps=5))
        for i in (0, 20, 40)
    ]
    assert blocked.values == pytest.approx(one_by_one, rel=1e-9)
    assert float(blocked) == pytest.approx(np.mean(one_by_one), rel=1e-9)
    assert blocked.std == pytest.approx(np.std(one_by_one), rel=1e-9)
    with pytest.raises(ValueError, match="loader"):
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=20)
        landscape.sharpness(Problem(p.model, loader), 0.2, m=20)


def test_fisher_rao_is_the_mean_squared_derivative_along_the_weights():
    x, y = classification(30)
    model = mlp()
    p = Problem(model, (x, y), batch_size=7)
    params = list(model.parameters())
    per_example = []
    for i in range(len(y)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
        per_example.append(sum(float((g * w.detach()).sum()) for g, w in zip(grads, params)))
    depth = 2  # two weight matrices
    expected = (depth + 1) ** 2 * np.mean(np.square(per_example))
    assert float(landscape.sharpness(p, kind="fisher_rao")) == pytest.approx(expected, rel=1e-9)
    assert landscape.fisher_rao(p) == pytest.approx(expected, rel=1e-9)


def test_bad_arguments_are_one_line_errors():
    p = Problem(mlp(), classification())
    for kwargs, match in [
        (dict(kind="apgd"), "needs a radius"),
        (dict(rho=0.1, kind="worst"), "unknown sharpness"),
        (dict(rho=0.1, norm="l1"), "norm must be"),
        (dict(rho=0.1, m=0), "block size"),
        (dict(kind="pacbayes", deviation=0), "deviation"),
    ]:
        with pytest.raises(ValueError, match=match):
            landscape.sharpness(p, **kwargs)


class Conv1D(nn.Module):
    """Hugging Face's GPT-2 projection: weight stored (in, out), ``nf`` outputs."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_filter_normalization_is_per_output_unit_for_transposed_layouts():
    model = nn.Sequential(Conv1D(4, 3), nn.ConvTranspose2d(2, 5, 3), nn.Linear(3, 6))
    assert output_axes(model) == {"0.weight": 1, "1.weight": 1}
    weights = {n: p.detach() for n, p in model.named_parameters()}
    (d,) = random_directions(weights, count=1, seed=7, axes=output_axes(model))
    for name, axis in [("0.weight", 1), ("1.weight", 1), ("2.weight", 0)]:
        w_units = weights[name].movedim(axis, 0).flatten(1).norm(dim=1)
        d_units = d[name].movedim(axis, 0).flatten(1).norm(dim=1)
        assert torch.allclose(d_units, w_units, rtol=1e-5), name
    plain = normalize_direction({"0.weight": d["0.weight"]}, {"0.weight": weights["0.weight"]})
    assert not torch.allclose(plain["0.weight"].norm(dim=0), weights["0.weight"].norm(dim=0), rtol=1e-3)
