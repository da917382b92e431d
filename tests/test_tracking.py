"""landscape.CurvatureTracker: each measure against its closed form or a dense eigendecomposition, and a training run
that is bit for bit the same with and without the tracker."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

import landscape
from landscape.apps.explorer.catalog import Catalog
from landscape.apps.explorer.views import curvature_figure
from landscape.groups import group_runs
from landscape.plots import plotly
from landscape.report import overlay_figures
from landscape.runs import find_runs
from landscape.tracking import critical_scale
from landscape.trainers.optim import SAM


class Quadratic(nn.Module):
    """``L(θ) = ½ θᵀAθ - bᵀθ``: its Hessian is ``A`` everywhere."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.theta = nn.Parameter(torch.linspace(-1.0, 1.0, len(b), dtype=torch.float64))


def quadratic_loss(model, batch):
    t = model.theta
    return 0.5 * t @ model.a @ t - model.b @ t


def quadratic(n: int = 6, seed: int = 0) -> tuple[Quadratic, landscape.Problem]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.5, 4.0, n, dtype=torch.float64)) @ q.T
    model = Quadratic(a, torch.randn(n, generator=g, dtype=torch.float64))
    return model, landscape.Problem(model, (torch.zeros(1, 1), torch.zeros(1)), quadratic_loss)


def test_on_a_quadratic_every_measure_is_its_closed_form():
    model, problem = quadratic()
    a, b = model.a, model.b
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = landscape.CurvatureTracker(problem, every=1, top_k=2, measures=("eigenvalues", "update", "grad_norm"))
    row = tracker.step(0, opt)
    g = a @ model.theta.detach() - b
    np.testing.assert_allclose(row["eigenvalues"], torch.linalg.eigvalsh(a).flip(0)[:2].numpy(), rtol=1e-8)
    assert row["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-10)
    assert row["directional_sharpness"] == pytest.approx(float(g @ a @ g / (g @ g)), rel=1e-8)  # along -lr g
    assert row["critical_lr"] == pytest.approx(float(2 * (g @ g) / (g @ a @ g)), rel=1e-3)  # L(θ - η g) < L(θ)
    assert row["sharpness_threshold"] == pytest.approx(2 / 0.1) and tracker.step(0, opt) is None  # measured once
    momentum = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert landscape.tracking.thresholds(momentum)["sharpness_threshold"] == pytest.approx(2 * 1.9 / 0.1)


def test_the_preconditioned_sharpness_of_adam_is_that_of_the_explicit_matrix():
    model, problem = quadratic(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(5):  # a few real steps: second moments in the state
        opt.zero_grad()
        quadratic_loss(model, None).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    tracker = landscape.CurvatureTracker(problem, every=1, measures=("preconditioned",))
    row = tracker.step(5, opt)
    state = opt.state[model.theta]
    t, (b1, b2), eps = float(state["step"]), opt.param_groups[0]["betas"], opt.param_groups[0]["eps"]
    p = (1 - b1**t) * ((state["exp_avg_sq"] / (1 - b2**t)).sqrt() + eps)
    m = torch.diag(p.rsqrt()) @ model.a @ torch.diag(p.rsqrt())
    assert row["preconditioned"] == pytest.approx(float(torch.linalg.eigvalsh(m)[-1]), rel=1e-6)
    assert row["preconditioned_threshold"] == pytest.approx(38 / 0.01)


def mlp_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    return model, x, y, landscape.Problem(model, (x, y))


def test_tracked_eigenvalues_equal_the_dense_hessian_of_the_saved_weights():
    model, x, y, problem = mlp_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = landscape.CurvatureTracker(problem, every=10, top_k=2)
    saved = {}
    for step in range(31):
        if tracker.step(step, opt) is not None:
            saved[step] = {k: v.detach().clone() for k, v in model.named_parameters()}
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert [r["step"] for r in tracker.history] == [0, 10, 20, 30]
    names = list(saved[0])
    shapes = [saved[0][n].shape for n in names]
    for row in tracker.history:
        flat = torch.cat([saved[row["step"]][n].reshape(-1) for n in names]).double()

        def loss(v):
            parts = dict(zip(names, (c.view(s) for c, s in zip(v.split([s.numel() for s in shapes]), shapes))))
            return F.cross_entropy(functional_call(model.double(), parts, (x.double(),)), y)

        dense = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat)).flip(0)[:2]
        model.float()
        np.testing.assert_allclose(row["eigenvalues"], dense.numpy(), rtol=1e-4)
    assert tracker.history[-1]["eigen_products"] < tracker.history[0]["eigen_products"]  # warm starts


def test_the_training_run_is_bitwise_the_same_with_and_without_the_tracker(tmp_path):
    def run(track: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
        batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]
        opt = SAM(model, torch.optim.SGD, lr=0.1, momentum=0.9, rho=0.05)
        tracker = None
        if track:
            problem = landscape.Problem(model, (x, y), check=False)
            measures = ("eigenvalues", "update", "grad_norm", "sam")
            tracker = landscape.CurvatureTracker(problem, every=2, measures=measures, out=tmp_path / "c.jsonl")
        landscape.fit(model, batches, opt, epochs=3, progress=False, on_step=tracker.step if tracker else None)
        return model.state_dict(), copy.deepcopy(opt.state_dict()), torch.get_rng_state(), tracker

    (sa, oa, ra, _), (sb, ob, rb, tracker) = run(False), run(True)
    assert [r["step"] for r in tracker.history] == [0, 2, 4, 6, 8]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(ra, rb)
    for pa, pb in zip(oa["state"].values(), ob["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa if isinstance(pa[k], torch.Tensor))
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert rows == tracker.history and rows[1]["sam_sharpness"] > 0 and rows[1]["critical_lr"] > 0


def test_a_killed_run_resumes_without_measuring_twice(tmp_path):
    model, x, y, problem = mlp_problem()
    out = tmp_path / "curvature.jsonl"
    first = landscape.CurvatureTracker(problem, every=5, out=out)
    for step in range(16):
        first.step(step)
    text = out.read_text()
    out.write_text(text[: len(text) - len(text.splitlines(keepends=True)[-1]) // 2])  # the last row cut by a kill
    again = landscape.CurvatureTracker(problem, every=5, out=out)
    assert [r["step"] for r in again.history] == [0, 5, 10]
    for step in range(10, 21):
        again.step(step)
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [0, 5, 10, 15, 20]


def test_bad_input_is_one_line(tmp_path):
    model, x, y, problem = mlp_problem()
    for kwargs, message in [
        ({"every": 0}, "every must be an integer >= 1"),
        ({"every": 5, "measures": ("hessian",)}, "measures must be some of"),
        ({"every": 5, "top_k": 0}, "top_k must be"),
    ]:
        with pytest.raises(ValueError, match=message) as e:
            landscape.CurvatureTracker(problem, **kwargs)
        assert "\n" not in str(e.value)
    (tmp_path / "other.jsonl").write_text('{"epoch": 1}\n')
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00{\n" * 3)
    for name in ("other.jsonl", "binary.jsonl"):
        with pytest.raises(ValueError, match="not a curvature tracker's file") as e:
            landscape.CurvatureTracker(problem, every=5, out=tmp_path / name)
        assert "\n" not in str(e.value)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        landscape.CurvatureTracker(problem, every=5)


def test_the_critical_scale_brackets_then_bisects():
    scale, evals = critical_scale(lambda a: a < 3.3)
    assert scale == pytest.approx(3.3, rel=1e-3) and evals < 20
    assert critical_scale(lambda a: a < 0.01)[0] == pytest.approx(0.01, rel=1e-3)


def test_landscape_train_tracks_full_batch_gradient_descent(tmp_path):
    """``--batch-size full --track-curvature 1``: one row per step; a step's top eigenvalue is ``eigsh``'s for the
    epoch checkpoint holding those weights, on the same fixed subset."""
    from scipy.sparse.linalg import eigsh

    from landscape.apps.cli.__main__ import main

    run = tmp_path / "gd"
    argv = ["train", "--model", "mlp", "--epochs", "2", "--batch-size", "full", "--lr", "0.2", "--momentum", "0"]
    argv += ["--weight-decay", "0", "--schedule", "constant", "--track-curvature", "1", "--track-data", "200"]
    assert main([*argv, "--out", str(run), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "curvature.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and all(r["sharpness_threshold"] == 10.0 for r in rows)
    assert json.loads((run / "config.json").read_text())["batch_size"] == 1437  # the whole training set
    problem = landscape.Problem.from_checkpoint(run / "checkpoints" / "epoch_001.pt", samples=200)  # after step 0
    with landscape.CurvatureOperator(problem) as op:
        top = eigsh(op.to_scipy(), k=1, which="LA", tol=1e-10)[0][0]
    assert rows[1]["eigenvalues"][0] == pytest.approx(top, rel=1e-4)
    # a second seed: compare draws the group's mean over seeds, the explorer each run
    assert main([*argv, "--seed", "1", "--out", str(tmp_path / "gd1"), "--no-progress"]) == 0
    seeds = [[json.loads(line)["eigenvalues"][0] for line in (r / "curvature.jsonl").read_text().splitlines()]
             for r in (run, tmp_path / "gd1")]  # fmt: skip
    groups = group_runs(find_runs([run, tmp_path / "gd1"]))
    figure = overlay_figures(groups, plotly, only=("curvature",))["curvature"]
    mean = next(t for t in figure.data if t.name.endswith("top eigenvalue, train"))
    np.testing.assert_allclose(mean.y, np.mean(seeds, axis=0), rtol=1e-12)
    np.testing.assert_allclose(mean.error_y.array, np.std(seeds, axis=0, ddof=1), rtol=1e-9)
    shown = curvature_figure(Catalog(tmp_path), ["gd"])
    np.testing.assert_allclose(next(t for t in shown.data if "top eigenvalue" in t.name).y, seeds[0])
