"""landscape.barrier and landscape.connect: the loss along lines and curves between trained minima, checked by hand."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

import landscape
from landscape import _curves
from landscape._permutations import analyse
from landscape.alignment import permute_state
from landscape.apps.cli.__main__ import main
from landscape.connectivity import loss_barrier
from landscape.data import load_dataset
from landscape.io.files import file_category, read_attrs
from landscape.trainers.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from landscape.trainers.optim import ERM


def digits():
    ds = load_dataset("digits")
    (x, y), (xt, yt) = ds.split("train"), ds.split("test")
    return (x.float() / 16)[:600], y[:600], (xt.float() / 16), yt


def trained(seed: int, bn: bool, lr: float = 0.1) -> nn.Module:
    """An MLP (with BatchNorm if ``bn``) trained for a few epochs from ``seed``."""
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(32)] if bn else []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), *norm, nn.ReLU(), nn.Linear(32, 10))
    x, y, _, _ = digits()
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, len(y), 50)]
    landscape.fit(model, batches, ERM(model, torch.optim.SGD, lr=lr, momentum=0.9), epochs=8, progress=False)
    return model.eval()


def test_the_line_and_its_barrier_are_the_loss_evaluated_by_hand(tmp_path):
    a, b = trained(0, bn=False), trained(1, bn=False)
    x, y, xt, yt = digits()
    problem = landscape.Problem(a, {"train": (x, y), "test": (xt, yt)})
    out = tmp_path / "barrier.h5"
    r = landscape.barrier(problem, b, points=6, bn="eval", progress=False, out=out)
    sa, sb = a.state_dict(), b.state_dict()
    by_hand = []
    for t in r.t:
        w = {k: (1 - t) * sa[k] + t * sb[k] for k in sa}
        with torch.no_grad():
            by_hand.append(float(F.cross_entropy(functional_call(a, w, (x,)), y)))
    np.testing.assert_allclose(r.values["train_loss"], by_hand, rtol=1e-5)
    chord = (1 - r.t) * by_hand[0] + r.t * by_hand[-1]
    assert r.barrier["train"] == pytest.approx(max(0.0, max(np.array(by_hand) - chord)), rel=1e-5)
    assert r.barrier["train"] > 0.1  # two seeds of an MLP are not one basin without alignment
    read = landscape.read(out)
    assert read.attrs["barrier_train"] == pytest.approx(r.barrier["train"]) and read.attrs["analysis"] == "barrier"
    np.testing.assert_allclose(read.values["test_loss"], r.values["test_loss"])


def test_batchnorm_statistics_are_recomputed_along_the_line():
    """At the ends both modes agree (the models' own statistics describe them); in between, interpolated
    statistics are not those of the interpolated weights, and recomputing them lowers the loss."""
    a, b = trained(0, bn=True), trained(1, bn=True)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)})
    eval_mode = landscape.barrier(problem, b, points=5, bn="eval", progress=False)
    recomputed = landscape.barrier(problem, b, points=5, bn="recompute", progress=False)
    mid = recomputed.values["train_loss"][2]
    assert mid < eval_mode.values["train_loss"][2]
    assert recomputed.barrier["train"] < eval_mode.barrier["train"]
    w = {k: (v + b.state_dict()[k]) / 2 if v.is_floating_point() else v for k, v in a.state_dict().items()}
    by_hand = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    by_hand.load_state_dict(w)
    by_hand.train()
    by_hand[2].reset_running_stats()
    by_hand[2].momentum = None  # the cumulative mean over the training batches: what "recompute" means
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            by_hand(x[i : i + 1000])
        by_hand.eval()
        assert mid == pytest.approx(float(F.cross_entropy(by_hand(x), y)), rel=1e-4)


def test_bad_input_is_one_line():
    a = trained(0, bn=False)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)})
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="shape") as e:
        landscape.barrier(problem, other, progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="points must be an integer >= 3"):
        landscape.barrier(problem, a, points=2)
    assert loss_barrier(np.linspace(0, 1, 3), np.array([1.0, 1.0, 2.0])) == 0.0  # below the chord: no barrier
    assert np.isnan(loss_barrier(np.linspace(0, 1, 3), np.array([1.0, np.nan, 2.0])))  # diverged: not a 0 barrier


def line_by_hand(model: nn.Module, other: nn.Module, x, y, ts) -> list[float]:
    sa, sb = model.state_dict(), other.state_dict()
    losses = []
    for t in ts:
        w = {k: torch.lerp(sa[k], sb[k], float(t)) for k in sa}
        with torch.no_grad():
            losses.append(float(F.cross_entropy(functional_call(model, w, (x,)), y)))
    return losses


def test_alignment_lowers_the_barrier_and_the_aligned_line_is_the_loss_by_hand():
    a, b = trained(0, bn=False, lr=0.02), trained(1, bn=False, lr=0.02)
    x, y, xt, yt = digits()
    problem = landscape.Problem(a, {"train": (x, y), "test": (xt, yt)})
    naive = landscape.barrier(problem, b, points=6, bn="eval", progress=False)
    for method in ("weights", "activations"):
        aligned = landscape.barrier(problem, b, points=6, align=method, bn="eval", progress=False)
        assert aligned.barrier["train"] < 0.8 * naive.barrier["train"], method
        assert aligned.attrs["align"] == method
        b_aligned = landscape.align(a, b, method=method, data=problem)
        with torch.no_grad():
            torch.testing.assert_close(b_aligned(x), b(x), atol=1e-5, rtol=1e-5)  # b's function, other units
        np.testing.assert_allclose(aligned.values["train_loss"], line_by_hand(a, b_aligned, x, y, aligned.t), rtol=1e-5)
    np.testing.assert_allclose(naive.values["train_loss"], line_by_hand(a, b, x, y, naive.t), rtol=1e-5)


def test_repair_rescales_every_hidden_unit_to_the_interpolated_statistics():
    """At t = 1/2 each hidden unit of the averaged MLP gets the mean of the endpoints' means and standard
    deviations (REPAIR); evaluated by hand it gives the barrier's midpoint; the ends are the models'."""
    a, b = trained(0, bn=False, lr=0.02), trained(1, bn=False, lr=0.02)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)})
    plain = landscape.barrier(problem, b, points=3, align="weights", progress=False)
    repaired = landscape.barrier(problem, b, points=3, align="weights", bn="repair", progress=False)
    assert repaired.attrs["bn"] == "repair"
    assert abs(repaired.values["train_loss"][1] - plain.values["train_loss"][1]) > 1e-3
    np.testing.assert_allclose(repaired.values["train_loss"][[0, 2]], plain.values["train_loss"][[0, 2]], rtol=1e-3)
    sa, sb = a.state_dict(), landscape.align(a, b).state_dict()
    hidden = lambda s: F.linear(x.flatten(1), s["1.weight"], s["1.bias"])  # noqa: E731
    target_mean = (hidden(sa).mean(0) + hidden(sb).mean(0)) / 2
    target_std = (hidden(sa).std(0, unbiased=False) + hidden(sb).std(0, unbiased=False)) / 2
    mid = {k: (sa[k] + sb[k]) / 2 for k in sa}
    h = hidden(mid)  # the split is one batch: the recomputed statistics are its mean and unbiased variance
    h = (h - h.mean(0)) / torch.sqrt(h.var(0) + 1e-5) * target_std + target_mean
    by_hand = F.cross_entropy(F.linear(torch.relu(h), mid["3.weight"], mid["3.bias"]), y)
    assert repaired.values["train_loss"][1] == pytest.approx(float(by_hand), rel=1e-4)


def test_a_trained_curve_goes_around_the_barrier_and_untrained_it_is_the_line():
    a, b = trained(0, bn=True), trained(1, bn=True)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)}, batch_size=50)
    line = landscape.barrier(problem, b, points=7, progress=False)
    untrained = landscape.connect(problem, b, epochs=0, points=7, progress=False)
    np.testing.assert_allclose(untrained.values["train_loss"], line.values["train_loss"], rtol=1e-5)
    sa, sb = a.state_dict(), b.state_dict()
    for k, bend in untrained.bends[0].items():
        torch.testing.assert_close(bend, (sa[k] + sb[k]) / 2)  # the midpoint of the line
    for curve in ("bezier", "polychain"):
        c = landscape.connect(problem, b, curve=curve, epochs=6, points=7, progress=False)
        assert c.values["train_loss"].max() < line.values["train_loss"].max(), curve
        np.testing.assert_allclose(c.values["train_loss"][[0, -1]], line.values["train_loss"][[0, -1]], rtol=1e-5)
        assert c.history[-1] < c.history[0]


def test_curve_coefficients():
    t = np.array([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(
        _curves.coefficients("bezier", 1, t), [[1, 0, 0], [9 / 16, 6 / 16, 1 / 16], [0.25, 0.5, 0.25], [0, 0, 1]]
    )
    np.testing.assert_allclose(
        _curves.coefficients("polychain", 1, t), [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]]
    )
    np.testing.assert_allclose(_curves.coefficients("bezier", 3, np.linspace(0, 1, 9)).sum(1), 1.0)


def test_a_killed_curve_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    a, b = trained(0, bn=True), trained(1, bn=True)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)}, batch_size=100)
    whole = landscape.connect(problem, b, epochs=3, points=5, progress=False, out=tmp_path / "whole.h5")
    real = _curves.train_epoch
    calls = []

    def dies_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("landscape.connectivity.train_epoch", dies_in_the_second_epoch)
    out = tmp_path / "curve.h5"
    with pytest.raises(KeyboardInterrupt):
        landscape.connect(problem, b, epochs=3, points=5, progress=False, out=out)
    assert (tmp_path / "curve.h5.train.pt").exists() and not out.exists()
    monkeypatch.setattr("landscape.connectivity.train_epoch", real)
    with pytest.raises(ValueError, match="unfinished training: resume=True"):
        landscape.connect(problem, b, epochs=3, points=5, progress=False, out=out)  # never discarded unasked
    with pytest.raises(ValueError, match="lr"):
        landscape.connect(problem, b, epochs=3, lr=0.01, points=5, progress=False, out=out, resume=True)
    done = landscape.connect(problem, b, epochs=3, points=5, progress=False, out=out, resume=True)
    assert done.history == whole.history
    for k, v in whole.bends[0].items():
        torch.testing.assert_close(done.bends[0][k], v, rtol=0, atol=0)
    read = landscape.read(out)
    assert read.attrs["directions"] == "curve" and read.attrs["barrier_train"] == pytest.approx(done.barrier["train"])
    assert not (tmp_path / "curve.h5.train.pt").exists()


def test_connectivity_refuses_a_random_problem_in_one_line():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10))
    x, y, _, _ = digits()
    problem = landscape.Problem(model, {"train": (x, y)}, mode="train", check=False)
    for analysis in (landscape.barrier, landscape.connect):
        with pytest.raises(ValueError, match="dropout is active") as e:
            analysis(problem, copy.deepcopy(model), progress=False)
        assert "\n" not in str(e.value)
    problem = landscape.Problem(model.eval(), {"train": (x, y)})
    with pytest.raises(ValueError, match="align must be"):
        landscape.barrier(problem, model, align="magic")
    with pytest.raises(ValueError, match="curve must be"):
        landscape.connect(problem, model, curve="spline")
    with pytest.raises(ValueError, match="bends must be"):
        landscape.connect(problem, model, bends=0)


def test_compare_reports_the_barriers_between_seeds(tmp_path):
    """A group's barriers over its pairs of seeds: the table's mean ± std is that of the files' own numbers."""
    models = [trained(s, bn=True) for s in range(3)]
    x, y, xt, yt = digits()
    runs = []
    for s in range(3):
        run = tmp_path / f"seed{s}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"method": "erm", "seed": s, "model": "mlp", "dataset": "digits"}))
        problem = landscape.Problem(models[s], {"train": (x, y), "test": (xt, yt)}, batch_size=200)
        other = models[(s + 1) % 3]
        landscape.barrier(problem, other, points=5, out=run / "barrier_next.h5", progress=False)
        landscape.barrier(
            problem, other, points=5, align="weights", out=run / "barrier_aligned_next.h5", progress=False
        )
        landscape.connect(problem, other, epochs=1, points=5, out=run / "curve_next.h5", progress=False)
        runs.append(str(run))
    out = tmp_path / "report"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    row = next(line for line in md.split("Mode connectivity")[1].splitlines() if line.startswith("| erm "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    for cell, name in zip(cells[1:], ("barrier_next", "barrier_aligned_next", "curve_next")):
        values = [read_attrs(tmp_path / f"seed{s}" / f"{name}.h5")["barrier_test"] for s in range(3)]
        assert cell == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (test, n=3)", name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["connectivity"][0]["barrier_aligned"]["n"] == 3
    assert (out / "connectivity.png").stat().st_size > 10_000
    assert "between two seeds" in (out / "report.html").read_text()


def test_the_commands_write_what_the_functions_compute(runs, tmp_path, capsys):
    """``landscape barrier`` and ``align`` on two checkpoints: the file holds the API's line, the printed barrier is
    the file's; the aligned checkpoint computes B's function from weights closer to A's."""
    a, b = runs / "erm" / "final.pt", runs / "sam" / "final.pt"
    out = tmp_path / "aligned_line.h5"
    args = ["--align", "weights", "--split", "train,test", "--samples", "200", "--points", "5", "--no-progress"]
    assert main(["barrier", str(a), str(b), *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    problem = landscape.Problem.from_checkpoint(a, ["train", "test"], samples=200)
    api = landscape.barrier(problem, b, points=5, align="weights", progress=False)
    read = landscape.read(out)
    np.testing.assert_allclose(read.values["test_loss"], api.values["test_loss"], rtol=1e-6)
    assert f"barrier {read.attrs['barrier_test']:.4g}" in printed and read.attrs["align"] == "weights"
    model_b, _ = load_checkpoint(b)
    spec, analysis = analyse(model_b)  # B with its units shuffled: the same function, far from A
    perms = [torch.randperm(g.size, generator=torch.Generator().manual_seed(0)) for g in spec.groups]
    payload = {k: v for k, v in read_checkpoint(b).items() if k not in ("format", "version")}
    payload["model_state"] = permute_state(spec, payload["model_state"], perms, analysis.canonical)
    shuffled, aligned = tmp_path / "sam_shuffled.pt", tmp_path / "sam_aligned.pt"
    save_checkpoint(shuffled, payload)
    assert main(["align", str(a), str(shuffled), "--samples", "200", "--out", str(aligned)]) == 0
    (model_a, _), (model_s, _), (model_c, meta) = (load_checkpoint(p) for p in (a, shuffled, aligned))
    x = problem.splits["test"].tensors.x[:50]
    with torch.no_grad():
        torch.testing.assert_close(model_s(x), model_b(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model_c(x), model_b(x), atol=1e-5, rtol=1e-5)

    def distance(m):
        return sum(float((p - q).detach().pow(2).sum()) for p, q in zip(model_a.parameters(), m.parameters()))

    assert distance(model_c) == pytest.approx(distance(model_b)) and distance(model_s) > 1.5 * distance(model_b)
    assert meta["config"]["aligned_to"] == str(a)
    curve = tmp_path / "curve.h5"
    argv = ["connect", str(a), str(aligned), "--epochs", "1", "--plane", "3", "--samples", "200", "--points", "3"]
    assert main([*argv, "--no-progress", "--out", str(curve)]) == 0
    assert file_category(curve) == "curve" and file_category(tmp_path / "curve_plane.h5") == "curve_plane"
    for argv, message in [
        (["barrier", str(a), "--out", str(tmp_path / "x.h5")], "give two models A and B, got 1"),
        (["connect", str(a), str(b), "--bends", "20", "--out", str(tmp_path / "x.h5")], "bends must be"),
        (["barrier", str(a), str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.h5")], "does not exist"),
        (["align", str(a), str(b), "--out", str(b)], "is one of the inputs"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_the_plane_of_a_curve_holds_both_models_and_the_bend(tmp_path):
    """Garipov et al.'s plane: at the origin the first model's loss, on the x axis at |θ_b - θ_a| the second's, at
    the bend's projection the bend's loss — each evaluated by hand; the curve is the surface's path."""
    a, b = trained(0, bn=False, lr=0.02), trained(1, bn=False, lr=0.02)
    x, y, _, _ = digits()
    problem = landscape.Problem(a, {"train": (x, y)})
    curve = landscape.connect(problem, b, epochs=2, points=5, progress=False, out=tmp_path / "curve.h5")
    sa, sb = a.state_dict(), b.state_dict()
    names = [n for n, _ in a.named_parameters()]
    flat = lambda d: torch.cat([d[n].reshape(-1).double() for n in names])  # noqa: E731
    u, w = flat(sb) - flat(sa), flat(curve.bends[0]) - flat(sa)
    e1 = u / u.norm()
    e2 = (w - (w @ e1) * e1) / (w - (w @ e1) * e1).norm()
    xs, ys = [0.0, float(w @ e1), float(u.norm())], [0.0, float(w @ e2)]
    plane = landscape.curve_plane(problem, tmp_path / "curve.h5", x=xs, y=ys, progress=False, out=tmp_path / "p.h5")

    def loss(state):
        with torch.no_grad():
            return float(F.cross_entropy(functional_call(a, state, (x,)), y))

    got = plane.values["train_loss"]  # (y, x)
    assert got[0, 0] == pytest.approx(loss(sa), rel=1e-5)
    assert got[0, 2] == pytest.approx(loss(sb), rel=1e-4)
    assert got[1, 1] == pytest.approx(loss(curve.bends[0]), rel=1e-4)
    assert plane.extras["proj_xcoord"][-1] == pytest.approx(float(u.norm()), rel=1e-5)
    assert landscape.read(tmp_path / "p.h5").attrs["directions"] == "curve_plane"
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))  # same names, other shapes
    with pytest.raises(ValueError, match="differ in shape at 1.weight") as e:
        landscape.curve_plane(landscape.Problem(narrow, {"train": (x, y)}), tmp_path / "curve.h5", progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="bend lies on the straight line"):
        landscape.curve_plane(problem, landscape.connect(problem, b, epochs=0, points=3, progress=False))
