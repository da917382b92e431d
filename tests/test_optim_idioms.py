"""The optimizers in the forms users already write: davda54/sam's constructor and first_step/second_step, step()
without a closure, plain parameters."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from landscape.trainers.optim import AMP, ASAM, DAMP, ERM, SAM

METHODS = [
    (SAM, {"rho": 0.05}),
    (SAM, {"rho": 0.1, "adaptive": True}),
    (ASAM, {"rho": 0.5, "eta": 0.01}),
    (AMP, {"epsilon": 0.05, "inner_lr": 0.5, "inner_iter": 1}),
    (AMP, {"epsilon": 0.05, "inner_lr": 0.5, "inner_iter": 3}),
]


def net(bn: bool = True) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double().train()


def batches(n: int = 4):
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(12, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g))] * n


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cls, kw", METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_first_and_second_step_equal_the_closure_form(cls, kw):
    """davda54/sam's loop (the user's own backward passes) and our closure, step for step, BatchNorm included."""
    steps = kw.get("inner_iter", 1)
    a, b = net(), net()
    opt_a = cls(a, torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4, **kw)  # the class and its kwargs
    opt_b = cls(b, torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4), **kw)
    for x, y in batches():
        F.cross_entropy(a(x), y).backward()
        for _ in range(steps):
            opt_a.first_step(zero_grad=True)
            F.cross_entropy(a(x), y).backward()
        opt_a.second_step(zero_grad=True)
        opt_b.step(lambda: F.cross_entropy(b(x), y))
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-6, atol=1e-9)


def test_adaptive_sam_is_davda54s_formula_by_hand():
    """davda54/sam's adaptive step on a linear least-squares model, computed with numpy."""
    torch.manual_seed(0)
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    w0 = torch.randn(3, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    model.weight.data[0] = w0
    with pytest.warns(UserWarning, match="BatchNorm"):  # it cannot know that this model has none
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, adaptive=True, lr=0.1)
    opt.step(lambda: ((model(x)[:, 0] - t) ** 2).mean())
    X, T, w = x.numpy(), t.numpy(), w0.numpy()

    def g(v):
        return 2 * X.T @ (X @ v - T) / len(T)

    e = 0.3 * w**2 * g(w) / (np.linalg.norm(np.abs(w) * g(w)) + 1e-12)
    np.testing.assert_allclose(model.weight.detach().numpy()[0], w - 0.1 * g(w + e), rtol=1e-12)


def test_the_class_form_builds_the_base_optimizer_with_its_arguments():
    model = net(bn=False)
    with pytest.warns(UserWarning, match="pass the model itself"):
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9, nesterov=True)
    assert isinstance(opt.base_optimizer, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["rho"]) == (0.1, 0.9, True, 0.05)
    groups = [{"params": [model[0].weight], "lr": 0.01}, {"params": [model[0].bias, *model[2].parameters()]}]
    with pytest.warns(UserWarning):
        opt = SAM(groups, torch.optim.SGD, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    with pytest.raises(ValueError, match="takes no lr, momentum: give them to the base optimizer"):
        SAM(model, torch.optim.SGD(model.parameters(), lr=0.1), lr=0.1, momentum=0.9)


def test_plain_parameters_say_what_changes():
    model = net()
    with (
        pytest.warns(UserWarning, match="without names.*adaptive_params='all'"),
        pytest.warns(UserWarning, match="BatchNorm"),
    ):
        opt = ASAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert opt.adaptive_params == "all"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model itself: no warning
        SAM(model, torch.optim.SGD, lr=0.1)
        ERM(model.parameters(), torch.optim.SGD, lr=0.1)  # one pass: nothing to say


def test_step_without_a_closure():
    model = net()
    x, y = batches(1)[0]
    with pytest.raises(
        ValueError, match=r"needs a closure .* opt.step\(lambda: loss_fn\(model\(x\), y\)\).*first_step"
    ):
        SAM(model, torch.optim.SGD, lr=0.1).step()
    with pytest.raises(ValueError, match="needs a closure"):
        DAMP(model, torch.optim.SGD, lr=0.1).step()
    with pytest.raises(ValueError, match="after first_step"):
        SAM(model, torch.optim.SGD, lr=0.1).second_step()
    a, b = net(), net()
    erm, sgd = ERM(a, torch.optim.SGD, lr=0.1, momentum=0.9), torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for opt, m in ((erm, a), (sgd, b)):
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            assert opt.step() is None  # torch's convention: the gradients already computed
    for k, v in state(a).items():
        torch.testing.assert_close(v, state(b)[k], rtol=0, atol=0)


ACCUMULATED = [
    (ERM, {}),
    (SAM, {"rho": 0.05}),
    (ASAM, {"rho": 0.5}),
    (AMP, {"epsilon": 0.05, "inner_lr": 0.5, "inner_iter": 2}),
    (DAMP, {"sigma": 0.1, "num_splits": 2}),
]


@pytest.mark.parametrize("cls, kw", ACCUMULATED, ids=lambda v: getattr(v, "__name__", str(v)))
def test_micro_batches_give_the_whole_batchs_update(cls, kw):
    """One step over 4 micro-batches, each with its own backward, equals one step over the whole batch (float64)."""
    from landscape.trainers.optim import BatchClosure

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
    runs = []
    for k in (1, 4):
        model = net(bn=False)
        opt = cls(model, torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
        opt.accumulate(k)
        calls = []
        for _ in range(3):
            closure = BatchClosure(model, x, y)
            real = closure.__call__
            loss = opt.step(lambda part, parts: calls.append(parts) or real(part, parts))
        runs.append((state(model), float(loss), set(calls)))
    (whole, loss1, parts1), (micro, loss4, parts4) = runs
    assert parts1 == ({2} if cls is DAMP else {1}) and parts4 == {4}  # the micro-batches really ran
    assert loss4 == pytest.approx(loss1, rel=1e-12)
    for k in whole:
        torch.testing.assert_close(micro[k], whole[k], rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="micro_batches must be an integer >= 1"):
        opt.accumulate(0)
