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


def diabetes(batch_size: int = 64):
    """scikit-learn's diabetes data (shipped with it), standardized: a regression of 10 features."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))


def test_a_regression_trains_on_the_loss_it_is_given_and_reports_it():
    from landscape.trainers.optim import SAM

    batches, net = diabetes(), mlp()
    frozen = mlp()  # lr 0: the row's loss is the plain mean of the batch losses, computed by hand below
    rows = fit(frozen, batches, ERM(frozen, torch.optim.SGD, lr=0.0), epochs=1, loss=nn.MSELoss(), progress=False,
               metrics={"mae": lambda out, t: (out - t).abs().mean()})  # fmt: skip
    with torch.no_grad():
        mse = sum(float(nn.functional.mse_loss(frozen(x), y)) for x, y in batches) / len(batches)
        mae = sum(float((frozen(x) - y).abs().sum()) for x, y in batches) / sum(len(y) for _, y in batches)
    assert rows[0]["train_loss"] == pytest.approx(mse, rel=1e-6) and rows[0]["train_mae"] == pytest.approx(
        mae, rel=1e-6
    )
    assert "train_acc" not in rows[0]  # accuracy means nothing for a regression
    history = fit(net, batches, SAM(net, torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9), epochs=15,
                  loss=nn.MSELoss(), progress=False)  # fmt: skip
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]


def test_cross_entropy_on_a_regression_and_a_broken_loss_are_one_line_errors():
    batches, net = diabetes(), mlp()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=r"outputs of shape \(64, 1\).*pass loss=nn.MSELoss\(\)") as e:
        fit(net, batches, ERM(net, torch.optim.SGD, lr=0.1), epochs=1, progress=False)
    assert "\n" not in str(e.value)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # nothing trained on a zero loss
    with pytest.raises(ValueError, match="cannot be computed on the first batch: AttributeError"):
        fit(net, batches, ERM(net, torch.optim.SGD, lr=0.1), epochs=1, progress=False, loss=lambda out, t: out.nope)


class TinyLM(nn.Module):
    """A Hugging Face-style language model: ``model(input_ids=..., labels=...)`` returns an object with ``.loss``."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(vocab, 16), nn.Linear(16, vocab)

    def forward(self, input_ids, labels=None):
        logits = self.head(torch.tanh(self.embed(input_ids)))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()) if labels is not None else None
        return type("Out", (), {"loss": loss, "logits": logits})()


@pytest.mark.parametrize("method", ["sam", "damp"])
def test_dict_batches_with_a_model_loss_train_a_language_model(method):
    from landscape.trainers.optim import DAMP, SAM

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 11, (64, 9), generator=g)
    ids[:, 1::2] = (ids[:, ::2][:, : ids[:, 1::2].shape[1]] + 1) % 11  # a learnable rule: each odd token follows
    batches = [{"input_ids": ids[i : i + 16, :-1], "labels": ids[i : i + 16, 1:]} for i in range(0, 64, 16)]
    model = TinyLM()
    opt = (
        SAM(model, torch.optim.SGD, rho=0.05, lr=0.5)
        if method == "sam"
        else DAMP(model, torch.optim.SGD, sigma=0.05, num_splits=2, lr=0.5)
    )
    history = fit(model, batches, opt, epochs=20, loss=lambda model, batch: model(**batch).loss, progress=False)
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"] and "train_acc" not in history[0]
