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


def test_fit_keeps_the_optimizers_own_accumulation():
    """``opt.accumulate(4)`` then ``fit(...)`` without ``accumulate=``: the passes still run as 4 micro-batches."""
    from landscape import fit

    model = net(bn=False)
    opt = SAM(model, torch.optim.SGD, lr=0.1)
    opt.accumulate(4)
    seen = []
    real = opt._backward

    def spy(closure, part=0, num_parts=1):
        seen.append(opt.micro_batches)
        return real(closure, part, num_parts)

    opt._backward = spy
    fit(model, batches(1), opt, epochs=1, progress=False)
    assert seen == [4, 4]  # the clean pass and the ascent pass


FP16 = [
    (ERM, {}),
    (SAM, {"rho": 0.05}),
    (AMP, {"epsilon": 0.05, "inner_iter": 2}),
    (DAMP, {"sigma": 0.1, "num_splits": 2}),
]


@pytest.mark.parametrize("cls, kw", FP16, ids=lambda v: getattr(v, "__name__", ""))
def test_fp16_overflow_skips_the_whole_step(cls, kw):
    """float16 autocast with a GradScaler: a batch whose scaled gradients overflow leaves weights and optimizer
    state bit-identical, is counted, and halves the scale; the other steps train."""
    from landscape.trainers.optim import BatchClosure

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = cls(model, torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    for i, scale in enumerate([1.0, 1.0, 1e5, 1.0]):  # the third batch's fp16 activations overflow
        before = (state(model), [v.clone() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)])
        old_scale = scaler.get_scale()
        opt.step(BatchClosure(model, x * scale, y, autocast_dtype=torch.float16), grad_scaler=scaler)
        scaler.update()
        after = (state(model), [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)])
        same = all(torch.equal(before[0][k], after[0][k]) for k in after[0]) and all(
            torch.equal(a, b) for a, b in zip(before[1], after[1])
        )
        assert same == (i == 2), i
        if i == 2:
            assert opt.skipped_steps == 1 and scaler.get_scale() == old_scale * 0.5
    assert opt.skipped_steps == 1


def test_the_closure_and_the_two_step_form_take_the_same_fp16_step():
    from landscape.trainers.optim import BatchClosure

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    models, scalers = [], []
    for form in ("closure", "two-step", "erm-gradscaler"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        method = ERM if form == "erm-gradscaler" else SAM
        opt, scaler = (
            method(model, torch.optim.SGD, lr=0.1, momentum=0.9),
            torch.amp.GradScaler("cpu", init_scale=256.0),
        )
        for _ in range(3):
            if form == "closure":
                opt.step(BatchClosure(model, x, y, autocast_dtype=torch.float16), grad_scaler=scaler)
            elif form == "erm-gradscaler":  # torch's own idiom, for the one-pass method
                with torch.autocast("cpu", dtype=torch.float16):
                    scaler.scale(F.cross_entropy(model(x).float(), y)).backward()
                scaler.step(opt)
                opt.zero_grad()
            else:
                for moved in (False, True):
                    with torch.autocast("cpu", dtype=torch.float16):
                        loss = F.cross_entropy(model(x).float(), y)
                    scaler.scale(loss).backward()
                    if moved:
                        opt.second_step(zero_grad=True, grad_scaler=scaler)
                    else:
                        assert opt.first_step(zero_grad=True, grad_scaler=scaler)
            scaler.update()
        models.append(state(model))
        scalers.append(scaler.get_scale())
    for k, v in models[0].items():
        torch.testing.assert_close(models[1][k], v, rtol=1e-6, atol=1e-7)
    assert scalers[0] == scalers[1] == scalers[2] == 256.0  # no overflow: the scale unchanged
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    sgd, scaler = (
        torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9),
        torch.amp.GradScaler("cpu", init_scale=256.0),
    )
    for _ in range(3):  # ERM through GradScaler.step equals plain SGD through it
        with torch.autocast("cpu", dtype=torch.float16):
            scaler.scale(F.cross_entropy(plain(x).float(), y)).backward()
        scaler.step(sgd)
        scaler.update()
        sgd.zero_grad()
    for k, v in state(plain).items():
        torch.testing.assert_close(models[2][k], v, rtol=0, atol=0)
