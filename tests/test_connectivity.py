"""landscape.barrier: the loss along the line between two trained minima, checked by hand."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

import landscape
from landscape.connectivity import loss_barrier
from landscape.data import load_dataset
from landscape.trainers.optim import ERM


def digits():
    ds = load_dataset("digits")
    (x, y), (xt, yt) = ds.split("train"), ds.split("test")
    return (x.float() / 16)[:600], y[:600], (xt.float() / 16), yt


def trained(seed: int, bn: bool) -> nn.Module:
    """An MLP (with BatchNorm if ``bn``) trained for a few epochs from ``seed``."""
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(32)] if bn else []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), *norm, nn.ReLU(), nn.Linear(32, 10))
    x, y, _, _ = digits()
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, len(y), 50)]
    landscape.fit(model, batches, ERM(model, torch.optim.SGD, lr=0.1, momentum=0.9), epochs=8, progress=False)
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
