"""landscape.trainers.loop.fit over a user's own model and DataLoader: the same weights as a hand-written loop."""

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from landscape.trainers.loop import fit
from landscape.trainers.optim import ERM


def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def test_fit_equals_a_hand_loop_and_reports_each_epoch():
    loader = [(x.double(), y) for x, y in data()]
    mine = model()
    opt = ERM(mine, torch.optim.SGD(mine.parameters(), lr=0.5))
    seen = []
    history = fit(
        mine,
        loader,
        opt,
        epochs=3,
        lr_at=lambda e: 0.5 / (e + 1),
        progress=False,
        on_epoch_end=lambda e, row: seen.append((e, row["lr"])),
    )
    hand = model()
    sgd = torch.optim.SGD(hand.parameters(), lr=0.5)
    losses = []
    for epoch in range(3):
        for g in sgd.param_groups:
            g["lr"] = 0.5 / (epoch + 1)
        total = 0.0
        for x, y in loader:
            sgd.zero_grad()
            loss = nn.functional.cross_entropy(hand(x), y)
            loss.backward()
            sgd.step()
            total += loss.item()
        losses.append(total / len(loader))
    for a, b in zip(mine.parameters(), hand.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert [r["epoch"] for r in history] == [1, 2, 3] and seen == [(0, 0.5), (1, 0.25), (2, 0.5 / 3)]
    assert [r["train_loss"] for r in history] == pytest.approx(losses, rel=1e-12)
    assert all(r["steps"] == 4 and 0 <= r["train_acc"] <= 100 for r in history)


def test_fit_stops_where_check_raises():
    mine = model()
    opt = ERM(mine, torch.optim.SGD(mine.parameters(), lr=0.1))

    def check(loss, epoch):
        if epoch == 1:
            raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        fit(mine, [(x.double(), y) for x, y in data()], opt, epochs=3, check=check, progress=False)
