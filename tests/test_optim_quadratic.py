"""Each method's step against a step computed by hand (numpy, float64) on a quadratic."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.trainers.optim import AMP, ASAM, DAAP, DAMP, ERM, RMP, SAM
from landscape.trainers.optim.noise import noise_seed

LR = 0.1
RNG = np.random.default_rng(0)
M = RNG.normal(size=(7, 7))
A = M @ M.T / 7 + np.eye(7)  # SPD
C = RNG.normal(size=7)
W0 = RNG.normal(size=4)  # "weight"
B0 = RNG.normal(size=3)  # "bias"


class Quadratic(nn.Module):
    """L(w, b) = 0.5 (v - c)^T A (v - c) with v = concat(weight, bias)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(W0))
        self.bias = nn.Parameter(torch.tensor(B0))
        self.register_buffer("A", torch.tensor(A))
        self.register_buffer("c", torch.tensor(C))

    def forward(self):
        r = torch.cat([self.weight, self.bias]) - self.c
        return 0.5 * r @ self.A @ r


def grad(v):
    return A @ (v - C)


def run(opt_cls, **kw):
    model = Quadratic()
    opt = opt_cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)
    loss = opt.step(lambda part, num_parts: model())
    v = torch.cat([model.weight, model.bias]).detach().numpy()
    return v, loss


V0 = np.concatenate([W0, B0])
L0 = 0.5 * (V0 - C) @ A @ (V0 - C)


def test_erm_is_plain_gradient_step():
    v, loss = run(ERM)
    np.testing.assert_allclose(v, V0 - LR * grad(V0), rtol=1e-12)
    assert loss.item() == pytest.approx(L0)


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_sam(rho):
    g = grad(V0)
    e = rho * g / (np.linalg.norm(g) + 1e-12)
    v, loss = run(SAM, rho=rho)
    np.testing.assert_allclose(v, V0 - LR * grad(V0 + e), rtol=1e-12)
    assert loss.item() == pytest.approx(L0)  # the clean loss


@pytest.mark.parametrize("eta", [0.0, 0.01, 0.3])
def test_asam_official_rule_scales_weights_only(eta):
    g = grad(V0)
    t = np.concatenate([np.abs(W0) + eta, np.ones(3)])  # T = |w| + eta on "weight", 1 on "bias"
    e = 0.5 * t * t * g / np.linalg.norm(t * g)
    v, _ = run(ASAM, rho=0.5, eta=eta)
    np.testing.assert_allclose(v, V0 - LR * grad(V0 + e), rtol=1e-10)


def test_asam_all_params_variant():
    g = grad(V0)
    t = np.abs(V0)
    e = 2.0 * t * t * g / np.linalg.norm(t * g)
    v, _ = run(ASAM, rho=2.0, eta=0.0, adaptive_params="all")
    np.testing.assert_allclose(v, V0 - LR * grad(V0 + e), rtol=1e-10)


def amp_by_hand(epsilon, inner_lr, inner_iter, norm):
    delta = np.zeros(7)
    for _ in range(inner_iter):
        d = delta + inner_lr * grad(V0 + delta)
        if norm == "per_tensor":
            for sl in (slice(0, 4), slice(4, 7)):
                d[sl] *= min(1.0, epsilon / (np.linalg.norm(d[sl]) + 1e-12))
        else:
            d *= min(1.0, epsilon / (np.linalg.norm(d) + 1e-12))
        delta = d
    return V0 - LR * grad(V0 + delta), delta


@pytest.mark.parametrize("inner_iter", [1, 3])
@pytest.mark.parametrize("epsilon", [100.0, 0.3])  # ball inactive / clip active
@pytest.mark.parametrize("norm", ["per_tensor", "global"])
def test_amp(inner_iter, epsilon, norm):
    expected, delta = amp_by_hand(epsilon, 0.5, inner_iter, norm)
    if epsilon < 1:  # the hand computation really clipped: the largest ball is on its boundary
        norms = (
            [np.linalg.norm(delta[:4]), np.linalg.norm(delta[4:])] if norm == "per_tensor" else [np.linalg.norm(delta)]
        )
        assert max(norms) == pytest.approx(epsilon) and max(norms) <= epsilon + 1e-12
    v, loss = run(AMP, epsilon=epsilon, inner_lr=0.5, inner_iter=inner_iter, norm=norm)
    np.testing.assert_allclose(v, expected, rtol=1e-10)
    assert loss.item() == pytest.approx(L0)


def noise_draws(seed, parts, numel, uniform=False, step=0):
    """The draws of sub-batches 0..parts-1 at ``step``: one generator per (seed, step, sub-batch)."""
    draw = torch.rand if uniform else torch.randn
    return [
        draw(numel, generator=torch.Generator().manual_seed(noise_seed(seed, step, j)), dtype=torch.float64).numpy()
        for j in range(parts)
    ]


@pytest.mark.parametrize("parts", [1, 3])
def test_damp_fixed_noise(parts):
    sigma = 0.3
    gs = []
    for z in noise_draws(7, parts, 4):
        w_noisy = W0 * (1 + sigma * z)  # xi ~ N(1, sigma^2) on the weight only
        gs.append(grad(np.concatenate([w_noisy, B0])))  # gradient wrt the noisy value, no xi factor
    v, _ = run(DAMP, sigma=sigma, num_splits=parts, seed=7)
    np.testing.assert_allclose(v, V0 - LR * np.mean(gs, axis=0), rtol=1e-12)


@pytest.mark.parametrize("perturb", ["weights", "all"])
def test_daap_fixed_noise(perturb):
    sigma = 0.1
    numel = 4 if perturb == "weights" else 7
    gs = []
    for z in noise_draws(3, 2, numel):
        noise = np.concatenate([z, np.zeros(7 - numel)])
        gs.append(grad(V0 + sigma * noise))
    v, _ = run(DAAP, sigma=sigma, num_splits=2, perturb=perturb, seed=3)
    np.testing.assert_allclose(v, V0 - LR * np.mean(gs, axis=0), rtol=1e-12)


def test_rmp_uniform_per_tensor_bound():
    eps = 0.2
    (u,) = noise_draws(5, 1, 7, uniform=True)
    bound = np.concatenate([np.full(4, np.sqrt(eps / 4)), np.full(3, np.sqrt(eps / 3))])
    delta = (2 * u - 1) * bound
    v, _ = run(RMP, epsilon=eps, seed=5)
    np.testing.assert_allclose(v, V0 - LR * grad(V0 + delta), rtol=1e-12)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (SAM, {"rho": -0.1}),
        (ASAM, {"eta": -1.0}),
        (AMP, {"epsilon": -1.0}),
        (AMP, {"inner_iter": 0}),
        (DAMP, {"sigma": -0.2}),
        (DAMP, {"num_splits": 0}),
        (RMP, {"epsilon": float("nan")}),
        (AMP, {"norm": "linf"}),
    ],
)
def test_invalid_hyperparameters(cls, kw):
    model = Quadratic()
    with pytest.raises(ValueError, match="Invalid|must be"):
        cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)


def test_parameters_outside_the_base_optimizer_are_refused():
    model, other = Quadratic(), Quadratic()
    with pytest.raises(ValueError, match="not handled by the base optimizer"):
        SAM(model, torch.optim.SGD(other.parameters(), lr=LR))


def test_step_without_closure_is_an_error():
    model = Quadratic()
    with pytest.raises(ValueError, match="needs a closure"):
        SAM(model, torch.optim.SGD(model.parameters(), lr=LR)).step()


def step_with(opt_cls, closure_kind, **kw):
    """One step with each closure style; returns the new weights."""
    model = Quadratic()
    opt = opt_cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)
    if closure_kind == "parts":
        opt.step(lambda part, num_parts: model())
    elif closure_kind == "plain":  # loss = closure(): forward only, the optimizer runs backward
        opt.step(lambda: model())
    else:  # torch's convention: the closure zeroes the gradients and runs backward itself

        def closure():
            opt.zero_grad()
            loss = model()
            loss.backward()
            return loss

        opt.step(closure)
    return torch.cat([model.weight, model.bias]).detach().numpy()


@pytest.mark.parametrize("closure_kind", ["plain", "torch"])
@pytest.mark.parametrize(
    "cls,kw",
    [
        (ERM, {}),
        (SAM, {"rho": 0.5}),
        (ASAM, {"rho": 0.5}),
        (AMP, {"inner_iter": 2}),
        (DAMP, {"num_splits": 1, "seed": 1}),
        (RMP, {"seed": 1}),
    ],
)
def test_ordinary_zero_argument_closures_give_the_same_step(cls, kw, closure_kind):
    np.testing.assert_array_equal(step_with(cls, closure_kind, **kw), step_with(cls, "parts", **kw))


def test_damp_sub_batches_need_the_part_closure_and_leave_the_weights_alone():
    model = Quadratic()
    opt = DAMP(model, torch.optim.SGD(model.parameters(), lr=LR), num_splits=4)
    with pytest.raises(ValueError, match="one noise draw per batch: use num_splits=1"):
        opt.step(lambda: model())
    np.testing.assert_array_equal(model.weight.detach().numpy(), W0)


def test_part_closure_must_not_run_backward():
    model = Quadratic()
    opt = SAM(model, torch.optim.SGD(model.parameters(), lr=LR))

    def closure(part, num_parts):
        loss = model()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="must not call backward"):
        opt.step(closure)


def test_noise_is_keyed_by_step_and_sub_batch():
    """The second step's noise is the (seed, 1, j) draw, whatever happened before (resume needs nothing else)."""
    model = Quadratic()
    opt = DAMP(model, torch.optim.SGD(model.parameters(), lr=LR), sigma=0.3, num_splits=2, seed=4)
    opt.step(lambda part, num_parts: model())
    v1 = torch.cat([model.weight, model.bias]).detach().numpy()
    gs = [grad(np.concatenate([v1[:4] * (1 + 0.3 * z), v1[4:]])) for z in noise_draws(4, 2, 4, step=1)]
    opt.step(lambda part, num_parts: model())
    np.testing.assert_allclose(
        torch.cat([model.weight, model.bias]).detach().numpy(), v1 - LR * np.mean(gs, axis=0), rtol=1e-12
    )
    assert opt.state_dict()["perturbation"] == {"seed": 4, "steps": 2}
    assert len({noise_seed(0, t, j) for t in range(50) for j in range(8)}) == 400


def clipped(g, c):
    return g * min(1.0, c / (np.linalg.norm(g) + 1e-6))


@pytest.mark.parametrize("cls, kw", [(ERM, {}), (SAM, {"rho": 0.5}), (AMP, {"epsilon": 100.0, "inner_lr": 0.5})])
def test_clip_grad_norm_clips_every_gradient_the_method_uses(cls, kw):
    """As the AMP reference's clip_grad_norm_ inside its closure: the ascent sees the clipped gradient too."""
    c = 0.5 * np.linalg.norm(grad(V0))  # active on both passes
    g = clipped(grad(V0), c)
    if cls is ERM:
        expected = V0 - LR * g
    elif cls is SAM:
        expected = V0 - LR * clipped(grad(V0 + 0.5 * g / np.linalg.norm(g)), c)  # direction unchanged by clipping
    else:
        expected = V0 - LR * clipped(grad(V0 + 0.5 * g), c)  # Delta = inner_lr * clipped gradient
    model = Quadratic()
    opt = cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw) if cls is not AMP else None
    if cls is AMP:
        with pytest.warns(UserWarning, match="AMP: epsilon=100"):  # 100 is far beyond these weights' norm
            opt = cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)
    opt.clip_gradients(c)
    opt.step(lambda part, num_parts: model())
    v = torch.cat([model.weight, model.bias]).detach().numpy()
    np.testing.assert_allclose(v, expected, rtol=1e-6)
    assert not np.allclose(v, run(cls, **kw)[0] if cls is not AMP else V0)  # clipping changed the step
    with pytest.raises(ValueError, match="max_norm must be finite and > 0"):
        opt.clip_gradients(0.0)


def test_amp_warns_when_epsilon_is_large_for_the_model():
    import warnings

    from landscape.trainers.models import create_model

    def build(model, **kw):
        return AMP(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)

    class Small(nn.Module):  # examples/custom_cnn.py's network: epsilon 0.5 per tensor is 27 % of its weights
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
            self.fc = nn.Linear(512, 10)

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"of their norm .*smaller epsilon"):
        build(Small())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(Small(), epsilon=0.1)
        build(create_model("resnet18", 10, 3))  # the reference's setting: about 3 %
        build(create_model("small_cnn", 10, 1))
