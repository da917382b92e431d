"""Methods on a tiny network: steps vs torch.func by hand, BatchNorm policy, reductions, state round trips."""

import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad

from landscape.trainers.optim import AMP, ASAM, DAMP, METHODS, SAM, BatchClosure, build_method
from landscape.trainers.optim.noise import noise_seed

LR = 0.05


def tiny_net(bn: bool = True) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


def batch(n: int = 12):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def loss_at(model, params, x, y):
    """Loss with weights ``params`` in train mode, on a throwaway copy of the buffers (no side effects)."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    return F.cross_entropy(functional_call(model, {**params, **buffers}, (x,)), y)


def params_of(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def assert_close_dicts(a, b, **kw):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **kw)


def one_step(cls, model, x, y, **kw):
    opt = cls(model, torch.optim.SGD(model.parameters(), lr=LR), **kw)
    opt.step(BatchClosure(model, x, y))
    return params_of(model)


def test_sam_step_by_hand_on_network():
    model, (x, y) = tiny_net(), batch()
    w = params_of(model)
    g = grad(lambda p: loss_at(model, p, x, y))(w)
    norm = torch.sqrt(sum((v**2).sum() for v in g.values()))
    g2 = grad(lambda p: loss_at(model, p, x, y))({k: w[k] + 0.1 * g[k] / norm for k in w})
    expected = {k: w[k] - LR * g2[k] for k in w}
    assert_close_dicts(one_step(SAM, model, x, y, rho=0.1), expected)


def test_asam_step_by_hand_on_network():
    model, (x, y) = tiny_net(), batch()
    w = params_of(model)
    g = grad(lambda p: loss_at(model, p, x, y))(w)
    t = {k: (w[k].abs() + 0.01) if k.endswith("weight") else torch.ones_like(w[k]) for k in w}
    norm = torch.sqrt(sum(((t[k] * g[k]) ** 2).sum() for k in w))
    g2 = grad(lambda p: loss_at(model, p, x, y))({k: w[k] + 0.5 * t[k] ** 2 * g[k] / norm for k in w})
    assert_close_dicts(one_step(ASAM, model, x, y, rho=0.5, eta=0.01), {k: w[k] - LR * g2[k] for k in w})


@pytest.mark.parametrize("inner_iter", [1, 3])
def test_amp_step_by_hand_on_network(inner_iter):
    model, (x, y) = tiny_net(), batch()
    w = params_of(model)
    eps, zeta = 0.05, 2.0
    delta = {k: torch.zeros_like(v) for k, v in w.items()}
    for _ in range(inner_iter):
        g = grad(lambda p: loss_at(model, p, x, y))({k: w[k] + delta[k] for k in w})
        d = {k: delta[k] + zeta * g[k] for k in w}
        delta = {k: d[k] * min(1.0, eps / (d[k].norm().item() + 1e-12)) for k in w}
    assert any(delta[k].norm().item() == pytest.approx(eps) for k in w)  # the projection is exercised
    g_final = grad(lambda p: loss_at(model, p, x, y))({k: w[k] + delta[k] for k in w})
    expected = {k: w[k] - LR * g_final[k] for k in w}
    assert_close_dicts(one_step(AMP, model, x, y, epsilon=eps, inner_lr=zeta, inner_iter=inner_iter), expected)


def test_damp_step_by_hand_on_network():
    """Gradient taken w.r.t. the noisy weights (no xi factor), noise on weights only, mean over sub-batches."""
    model, (x, y) = tiny_net(bn=False), batch()
    w = params_of(model)
    names = [k for k in w if k.endswith("weight")]
    numel = sum(w[k].numel() for k in names)
    total = {k: torch.zeros_like(v) for k, v in w.items()}
    for j, (xs, ys) in enumerate(zip(x.tensor_split(3), y.tensor_split(3))):
        gen = torch.Generator().manual_seed(noise_seed(4, 0, j))  # sub-batch j of step 0
        z = torch.randn(numel, generator=gen, dtype=torch.float64).split([w[k].numel() for k in names])
        noisy = dict(w)
        for k, zk in zip(names, z):
            noisy[k] = w[k] * (1 + 0.2 * zk.view_as(w[k]))
        g = grad(lambda p: loss_at(model, p, xs, ys))(noisy)
        total = {k: total[k] + g[k] / 3 for k in w}
    expected = {k: w[k] - LR * total[k] for k in w}
    assert_close_dicts(one_step(DAMP, model, x, y, sigma=0.2, num_splits=3, seed=4), expected)


def running_stats_after_one_forward(x):
    ref = tiny_net()
    ref.train()
    with torch.no_grad():
        ref(x)
    return {k: v.clone() for k, v in ref.named_buffers()}


@pytest.mark.parametrize("name", ["sam", "asam", "amp"])
def test_extra_passes_leave_batchnorm_statistics_alone(name):
    model, (x, y) = tiny_net(), batch()
    opt = build_method(
        name, model, torch.optim.SGD(model.parameters(), lr=LR), **({"inner_iter": 3} if name == "amp" else {})
    )
    opt.step(BatchClosure(model, x, y))
    assert_close_dicts({k: v for k, v in model.named_buffers()}, running_stats_after_one_forward(x), rtol=0, atol=0)


def test_every_pass_policy_lets_the_perturbed_pass_update_statistics():
    model, (x, y) = tiny_net(), batch()
    SAM(model, torch.optim.SGD(model.parameters(), lr=LR), rho=0.5, bn_update="every_pass").step(
        BatchClosure(model, x, y)
    )
    assert dict(model.named_buffers())["1.num_batches_tracked"].item() == 2
    assert not torch.equal(
        dict(model.named_buffers())["1.running_mean"], running_stats_after_one_forward(x)["1.running_mean"]
    )


def test_damp_parts_update_statistics_once_with_their_mean():
    model, (x, y) = tiny_net(), batch()
    DAMP(model, torch.optim.SGD(model.parameters(), lr=LR), sigma=0.0, num_splits=3).step(BatchClosure(model, x, y))
    ref = tiny_net()
    parts = []
    for xs in x.tensor_split(3):
        r = copy.deepcopy(ref)
        with torch.no_grad():
            r(xs)
        parts.append(dict(r.named_buffers()))
    buffers = dict(model.named_buffers())
    torch.testing.assert_close(buffers["1.running_mean"], sum(p["1.running_mean"] for p in parts) / 3)
    torch.testing.assert_close(buffers["1.running_var"], sum(p["1.running_var"] for p in parts) / 3)
    assert buffers["1.num_batches_tracked"].item() == 1


ZERO = {
    "erm": {},
    "sam": {"rho": 0.0},
    "asam": {"rho": 0.0},
    "amp": {"epsilon": 0.0},
    "damp": {"sigma": 0.0, "num_splits": 3},
    "daap": {"sigma": 0.0, "num_splits": 3},
    "rmp": {"epsilon": 0.0},
}


@pytest.mark.parametrize("name", list(METHODS))
def test_zero_radius_reduces_to_the_base_optimizer(name):
    """rho / epsilon / sigma = 0: the same trajectory as SGD with momentum and weight decay alone."""
    x, y = batch()
    ref, model = tiny_net(bn=False), tiny_net(bn=False)
    sgd = dict(lr=LR, momentum=0.9, nesterov=True, weight_decay=1e-3)
    base = torch.optim.SGD(ref.parameters(), **sgd)
    opt = build_method(name, model, torch.optim.SGD(model.parameters(), **sgd), **ZERO[name])
    for _ in range(4):
        base.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        base.step()
        opt.step(BatchClosure(model, x, y))
    assert_close_dicts(params_of(model), params_of(ref), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(METHODS))
def test_state_dict_round_trip_continues_in_lockstep(name):
    x, y = batch()
    sgd = dict(lr=LR, momentum=0.9, weight_decay=1e-3)
    a = tiny_net()
    splits = {"num_splits": 3} if name in ("damp", "daap") else {}
    opt_a = build_method(name, a, torch.optim.SGD(a.parameters(), **sgd), seed=11, **splits)
    for _ in range(3):
        opt_a.step(BatchClosure(a, x, y))
    buf = io.BytesIO()
    torch.save({"opt": opt_a.state_dict(), "model": a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert all("momentum_buffer" in s for s in saved["opt"]["state"].values())
    b = tiny_net()
    b.load_state_dict(saved["model"])
    opt_b = build_method(
        name, b, torch.optim.SGD(b.parameters(), **sgd), seed=999, **splits
    )  # seed replaced by the saved state
    opt_b.load_state_dict(saved["opt"])
    for _ in range(2):
        opt_a.step(BatchClosure(a, x, y))
        opt_b.step(BatchClosure(b, x, y))
    assert_close_dicts(params_of(a), params_of(b), rtol=0, atol=0)


def test_hyperparameters_live_in_param_groups_and_survive_state_dict():
    model = tiny_net()
    opt = SAM(model, torch.optim.SGD(model.parameters(), lr=LR), rho=0.3)
    assert opt.param_groups[0]["rho"] == 0.3
    opt.param_groups[0]["rho"] = 0.7
    fresh = SAM(model, torch.optim.SGD(model.parameters(), lr=LR), rho=0.3)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["rho"] == 0.7


def test_lr_scheduler_drives_the_wrapped_optimizer():
    model, (x, y) = tiny_net(), batch()
    opt = SAM(model, torch.optim.SGD(model.parameters(), lr=0.1))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(BatchClosure(model, x, y))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_names_are_required_to_tell_weights_from_biases():
    model = tiny_net()
    with pytest.raises(ValueError, match="named_parameters"):
        DAMP(list(model.parameters()), torch.optim.SGD(model.parameters(), lr=LR))
    DAMP(list(model.parameters()), torch.optim.SGD(model.parameters(), lr=LR), perturb="all")  # fine without names


def test_batch_closure_parts_average_to_the_batch_loss():
    model, (x, y) = tiny_net(bn=False), batch(13)  # 13 does not divide by 4
    closure = BatchClosure(model, x, y)
    with torch.no_grad():
        parts = [closure(i, 4) for i in range(4)]
        torch.testing.assert_close(torch.stack(parts).mean(), F.cross_entropy(model(x), y))
    assert closure.correct.item() == (model(x).argmax(1) == y).sum().item()
