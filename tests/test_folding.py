"""The folded, channels-last evaluation path against the model as written (the ground truth)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import landscape
from landscape._folding import FoldedConv, faster_module
from landscape.problem import Problem
from landscape.trainers import create_model


class ViewAfterConv(nn.Module):
    """LeNet-style ``view`` of conv features: channels-last activations cannot take it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 6, 5), nn.BatchNorm2d(6), nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).view(-1, 6 * 4 * 4))


class DataDependent(nn.Module):
    """Control flow on a tensor's value: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((h if h.mean() > 0 else -h).mean((2, 3)))


class SharedFeatures(nn.Module):
    """A conv output used by BatchNorm *and* elsewhere: folding it would change the other use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((self.bn(h) + h).mean((2, 3)))


class TiedConv(nn.Module):
    """One convolution called twice, each time followed by its own BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn1, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        return self.fc(self.bn2(self.conv(torch.relu(self.bn1(self.conv(x))))).mean((2, 3)))


def trained_stats(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so a wrong fold shows."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.normal_(m.bias, 0, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 1.7 + 0.3)
    return model.eval()


# (model, input, FoldedConv layers expected, of which with a BatchNorm)
CASES = {
    "small_cnn": (lambda: create_model("small_cnn", 10, 1, width=8), (1, 8, 8), 3, 3),
    "resnet18": (lambda: create_model("resnet18", 10, 3, width=4), (3, 16, 16), 20, 20),
    "preactresnet18": (lambda: create_model("preactresnet18", 10, 3, width=4), (3, 16, 16), 20, 8),
    "vgg16": (lambda: create_model("vgg16", 10, 3, width=4), (3, 32, 32), 13, 13),
    "wrn (pre-activation)": (lambda: create_model("wrn28_10", 10, 3, depth=10, widen=1), (3, 8, 8), 9, 0),
    "view_after_conv": (ViewAfterConv, (3, 8, 8), 1, 1),
    "shared_features": (SharedFeatures, (3, 8, 8), 1, 0),
    "data_dependent": (DataDependent, (3, 8, 8), 0, 0),
    "tied (one conv, two BatchNorms)": (TiedConv, (3, 8, 8), 2, 2),
    "mlp (no conv)": (lambda: create_model("mlp", 10, 1, image_size=8), (1, 8, 8), 0, 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_faster_module_equals_the_model(name):
    make, shape, convs, with_bn = CASES[name]
    torch.manual_seed(0)
    x, y = torch.randn(40, *shape), torch.randint(0, 10, (40,))
    model = trained_stats(make(), x)
    problem = Problem(model, (x, y), batch_size=16)
    with problem.session():
        fast = faster_module(problem)
        folded = [m for m in fast.modules() if isinstance(m, FoldedConv)] if fast is not None else []
        assert (len(folded), sum(m.bn is not None for m in folded)) == (convs, with_bn)
        with torch.no_grad():
            want = model(x)
            if fast is not None:
                torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-5)
    assert all(not m.training for m in model.modules())  # the problem's eval mode, left as it was


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("dir_type", ["weights", "states"])
@pytest.mark.parametrize("bn", ["eval", "recompute"])
def test_surfaces_equal_the_plain_forward(dims, dir_type, bn):
    torch.manual_seed(0)
    x, y = torch.randn(60, 3, 16, 16), torch.randint(0, 10, (60,))
    model = trained_stats(create_model("resnet18", 10, 3, width=4), x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    problem = Problem(model, {"train": (x, y), "test": (x[:30] * 0.5, y[:30])}, batch_size=25)
    grid = dict(x="-1:1:5", y=None if dims == 1 else "-0.5:0.5:3", dir_type=dir_type, bn=bn, progress=False)
    fast = landscape.surface(problem, **grid)
    plain = landscape.surface(problem, **grid, fast=False)
    for key in ("train_loss", "test_loss", "train_acc"):
        np.testing.assert_allclose(fast.values[key], plain.values[key], rtol=2e-5)
    assert np.ptp(plain.values["train_loss"]) > 0.1  # the grid really moves the loss
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batchnorm_in_training_mode_runs_unfolded():
    """A problem analysed in train mode: BatchNorm uses batch statistics, which no fold can know in advance."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    model = trained_stats(create_model("small_cnn", 10, 1, width=8), x)
    problem = Problem(model, (x, y), batch_size=32, mode="train")
    fast = landscape.surface(problem, "-1:1:3", progress=False)
    plain = landscape.surface(problem, "-1:1:3", progress=False, fast=False)
    np.testing.assert_allclose(fast.values["train_loss"], plain.values["train_loss"], rtol=2e-5)


def test_hessian_through_folded_batchnorm_equals_the_dense_hessian():
    """The curvature operator folds BatchNorm into the convolutions: the products stay exact (float64)."""
    from torch.func import functional_call

    from landscape.curvature import CurvatureOperator

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.Conv2d(3, 2, 3),
        nn.BatchNorm2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    ).double()
    x, y = torch.randn(20, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    trained_stats(model, x)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat):
        params = dict(zip(names, [c.view(s) for c, s in zip(flat.split([s.numel() for s in shapes]), shapes)]))
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    dense = torch.autograd.functional.hessian(loss_of, flat0)
    with CurvatureOperator(Problem(model, (x, y), batch_size=8)) as op:
        assert sum(isinstance(m, FoldedConv) and m.bn is not None for m in op.module.modules()) == 2
        for _ in range(3):
            v = torch.randn(op.size, dtype=torch.float64)
            torch.testing.assert_close(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)


class Counting(nn.Module):
    """Stands in for a compiled module: the model's forward, counted."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)

    def __len__(self):  # as a compiled Sequential's: a module is never tested for truth
        raise TypeError("does not support len()")


@pytest.mark.parametrize("after, switched", [(0.0, True), (1e9, False)])
def test_automatic_compile_takes_over_after_the_first_round(monkeypatch, after, switched):
    import landscape.surfaces as grid

    made = []

    def fake_compiled(problem, module):
        made.append(Counting(problem.model if module is None else module))
        return made[-1]

    monkeypatch.setattr(grid, "compiled_module", fake_compiled)
    monkeypatch.setattr(grid, "COMPILE_AFTER_S", after)
    torch.manual_seed(0)
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    problem = Problem(trained_stats(create_model("small_cnn", 10, 1, width=8), x), (x, y), batch_size=30)
    lines = []
    auto = landscape.surface(problem, "-1:1:20", progress=False, log=lines.append)  # rounds of 8, 8, 4 points
    plain = landscape.surface(problem, "-1:1:20", progress=False, compile=False)
    np.testing.assert_allclose(auto.values["train_loss"], plain.values["train_loss"], rtol=1e-6)
    assert len(made) == int(switched)
    if switched:
        assert made[0].calls == 12  # the 12 points after the first round (one batch each)
        assert any("compiled with torch.compile" in line for line in lines)


def test_a_module_that_fails_to_compile_is_not_used(monkeypatch):
    from landscape._folding import compiled_module

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("inductor: no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module: Broken())
    x, y = torch.randn(10, 1, 8, 8), torch.randint(0, 10, (10,))
    problem = Problem(create_model("small_cnn", 10, 1, width=8), (x, y))
    with problem.session():
        assert compiled_module(problem, None) is None
    with pytest.raises(ValueError, match="torch.compile failed on this model"):
        landscape.surface(problem, "-1:1:3", compile=True, progress=False)  # asked for: a clear error
    auto = landscape.surface(problem, "-1:1:3", progress=False)  # not asked for: eager
    assert np.isfinite(auto.values["train_loss"]).all()


@pytest.mark.parametrize("command", ["hessian", "sweep"])
def test_plain_forward_is_refused_where_it_means_nothing(runs, tmp_path, capsys, command):
    from landscape.apps.cli.__main__ import main

    argv = [command, str(runs / "erm" / "final.pt"), "--out", str(tmp_path / "x.h5"), "--plain-forward"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{command} takes none of" in err and "--plain-forward" in err and len(err.splitlines()) == 1, err


def test_plain_forward_from_the_command_line(runs, tmp_path):
    from landscape.apps.cli.__main__ import main
    from landscape.io import read_surface

    files = {}
    for name, extra in (("fast", []), ("plain", ["--plain-forward"])):
        files[name] = tmp_path / f"{name}.h5"
        argv = ["surface", str(runs / "erm" / "final.pt"), "--x", "-1:1:3", "--samples", "100", "--no-progress"]
        assert main([*argv, "--out", str(files[name]), *extra]) == 0
    fast, plain = (read_surface(files[k]).values["train_loss"] for k in ("fast", "plain"))
    np.testing.assert_allclose(fast, plain, rtol=2e-5)


def test_a_diverged_model_keeps_the_fast_path_and_gives_nan_where_the_model_does():
    torch.manual_seed(0)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))
    model = trained_stats(create_model("small_cnn", 10, 1, width=8), x)
    with torch.no_grad():
        model[1].running_var[0] = float("nan")  # one diverged BatchNorm statistic
    with pytest.raises(ValueError, match="the loss at the model's weights is nan"):
        Problem(model, (x, y))  # refused unless asked for: a NaN analysis is no silent result
    problem = Problem(model, (x, y), check=False)
    with problem.session():
        assert faster_module(problem) is not None  # NaN on both paths counts as agreement
    fast = landscape.surface(problem, "-1:1:3", progress=False)
    plain = landscape.surface(problem, "-1:1:3", progress=False, fast=False)
    assert np.isnan(plain.values["train_loss"]).all() and np.isnan(fast.values["train_loss"]).all()
    assert fast.attrs["nonfinite_points"] == plain.attrs["nonfinite_points"] == 3
