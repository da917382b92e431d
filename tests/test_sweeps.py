"""Perturbation sweeps and sharpness: r = 0 is the clean loss, first-order limits, ordering, resume."""

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape._jobs import EvalOptions, sweep_analysis
from landscape.flatness import sharpness
from landscape.io import read_sweep
from landscape.problem import Problem
from landscape.sweeps import Sweeper, SweepSettings
from landscape.trainers.optim import is_weight

OPTS = EvalOptions(samples=300, device="cpu", progress=False)


@pytest.fixture(scope="module")
def loaded(runs):
    return Problem.from_checkpoint(runs / "erm" / "final.pt", samples=300, device="cpu")


def clean_loss_and_grad(problem):
    model, data = problem.model, problem.splits["train"].tensors
    params = list(model.parameters())
    model.eval()
    loss = F.cross_entropy(model(data.x), data.y)
    return loss.item(), torch.autograd.grad(loss, params), params


def test_radius_zero_is_the_clean_loss_and_the_model_is_restored(loaded):
    model = loaded.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clean, _, _ = clean_loss_and_grad(loaded)
    with Sweeper(loaded) as sw:
        for kind in ("random", "adversarial", "multiplicative", "adaptive"):
            assert sw.point(kind, 0.0)["loss_mean"] == pytest.approx(clean, rel=1e-6)
        sw.point("multiplicative", 0.3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_adversarial_and_adaptive_reach_their_first_order_maximum(loaded):
    """For a tiny radius, max over the ball of L(w + delta) - L(w) is r ||g|| (adaptive: r ||T g||)."""
    model = loaded.model
    clean, grads, params = clean_loss_and_grad(loaded)
    names = [n for n, _ in model.named_parameters()]
    g_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    t = [(p.detach().abs() + 0.01) if is_weight(n) else torch.ones_like(p) for n, p in zip(names, params)]
    tg_norm = torch.sqrt(sum(((ti * g).double() ** 2).sum() for ti, g in zip(t, grads))).item()
    r = 1e-4
    with Sweeper(loaded, settings=SweepSettings(steps=10)) as sw:
        assert sw.point("adversarial", r)["loss_mean"] - clean == pytest.approx(r * g_norm, rel=2e-2)
        assert sw.point("adaptive", r)["loss_mean"] - clean == pytest.approx(r * tg_norm, rel=2e-2)
    assert sharpness(loaded, r, "sam") == pytest.approx(r * g_norm, rel=2e-2)


def test_adversarial_is_at_least_random(loaded, tmp_path, runs):
    out = sweep_analysis(
        runs / "erm" / "final.pt",
        tmp_path / "s.h5",
        np.linspace(0, 2, 5),
        OPTS,
        kinds=["random", "adversarial"],
        settings=SweepSettings(trials=3, steps=5),
    )
    sw = read_sweep(out)
    assert sw.values["losses"].shape == (2, 5, 3) and sw.computed.all()
    assert np.all(sw.curve("adversarial") >= sw.curve("random") - 1e-9)
    assert np.all(np.diff(sw.curve("adversarial")) > 0)  # a bigger ball holds a worse point
    assert sw.curve("random")[0] == sw.curve("adversarial")[0]


def test_resume_recomputes_only_missing_points_and_agrees(runs, tmp_path, capsys):
    from landscape.apps.cli.__main__ import main

    args = [
        "sweep",
        str(runs / "erm" / "final.pt"),
        "--radii",
        "0:1:4",
        "--samples",
        "200",
        "--trials",
        "2",
        "--steps",
        "3",
        "--no-progress",
    ]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 0
    full = read_sweep(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r+") as f:  # as if killed after half the points
        computed = f["computed"][:]
        computed[2:] = 0
        f["computed"][...] = computed
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "a.h5"), "--resume"]) == 0
    assert "resuming: 8 of 16 points already computed" in capsys.readouterr().out
    again = read_sweep(tmp_path / "a.h5")
    np.testing.assert_array_equal(again.values["losses"], full.values["losses"])  # same seeds per (kind, radius)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--kind", "gaussian"], "unknown sweep kind gaussian"),
        (["--radii", "-1:1:3"], "--radii must be >= 0"),
        (["--trials", "0"], "argument --trials: must be >= 1, got 0"),
    ],
)
def test_sweep_bad_input(runs, tmp_path, capsys, argv, message):
    from landscape.apps.cli.__main__ import main

    assert main(["sweep", str(runs / "erm" / "final.pt"), "--out", str(tmp_path / "x.h5"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
