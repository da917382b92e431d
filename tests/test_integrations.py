"""Other people's loops (PyTorch Lightning, Hugging Face's Trainer) with our optimizers: the weights of landscape.fit
with the same seed, method, data order and hyper-parameters."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from landscape import fit
from landscape.trainers.optim import AMP, DAMP, SAM

METHODS = [(SAM, {"rho": 0.05}), (AMP, {"epsilon": 0.05, "inner_iter": 2}), (DAMP, {"sigma": 0.1, "num_splits": 2})]


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def ours(method, kw, batches, model=None, loss=None):
    model = model or net()
    opt = method(model, torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
    fit(model, batches, opt, epochs=2, loss=loss, progress=False)
    return model.state_dict()


def lightning_model(L, optimizer):
    """The LightningModule a user writes for our optimizers: manual optimization, one call per training step."""
    from landscape.trainers.lightning import flat_minima_step

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net = net()

        def forward(self, x):
            return self.net(x)

        def configure_optimizers(self):
            return optimizer(self)

        def training_step(self, batch, batch_idx):
            return flat_minima_step(self, batch, log=None)

    return Model()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, kw", METHODS, ids=lambda v: getattr(v, "__name__", ""))
def test_lightning_manual_optimization_trains_what_fit_trains(method, kw, tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data()
    module = lightning_model(L, lambda m: method(m, torch.optim.SGD, lr=0.1, momentum=0.9, **kw))
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False))
    assert trainer.global_step == 6  # 3 batches x 2 epochs, counted by Lightning
    mine = {f"net.{k}": v for k, v in ours(method, kw, [(x[i : i + 16], y[i : i + 16]) for i in (0, 16, 32)]).items()}
    assert_same(module.state_dict(), mine)


@pytest.mark.parametrize("method, kw", METHODS[:2], ids=lambda v: getattr(v, "__name__", ""))
def test_hugging_face_trainer_trains_what_fit_trains(method, kw, tmp_path):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    from landscape.trainers.huggingface import FlatMinimaTrainer

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net()

        def forward(self, x, labels=None):
            return {"loss": F.cross_entropy(self.net(x), labels)}

    class Rows(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    x, y = data()
    model = Model()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=48, num_train_epochs=2, max_grad_norm=0.0,
        lr_scheduler_type="constant", report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=0, dataloader_drop_last=False,
    )  # fmt: skip
    opt = method(model, torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
    FlatMinimaTrainer(model=model, args=args, train_dataset=Rows(x, y), optimizers=(opt, None)).train()
    # one batch of all 48 rows per epoch: the Trainer's shuffling changes only the order of a sum
    mine = ours(method, kw, [{"x": x, "labels": y}], Model(), loss=lambda model, batch: model(**batch)["loss"])
    assert_same(model.state_dict(), mine)


def test_hugging_face_trainer_refuses_what_it_cannot_do(tmp_path):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    from landscape.trainers.huggingface import FlatMinimaTrainer

    model = net()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="evaluates its own sub-batches"):
        FlatMinimaTrainer(model=model, args=args, optimizers=(DAMP(model, torch.optim.SGD, lr=0.1), None))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, gradient_accumulation_steps=2
    )
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        FlatMinimaTrainer(model=model, args=args, optimizers=(SAM(model, torch.optim.SGD, lr=0.1), None))


def dense_top_eigenvalue(model: nn.Module, loss_of) -> float:
    """The largest eigenvalue of the full Hessian of ``loss_of(model)`` in the model's parameters (by hand)."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten().double() for _, p in model.named_parameters()])

    def f(v):
        parts = dict(zip(names, (c.view(s) for c, s in zip(v.split([s.numel() for s in shapes]), shapes))))
        return loss_of(lambda *a, **k: functional_call(model.double(), parts, a, k))

    return float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat))[-1])


def test_lightning_hessian_callback_writes_the_final_weights_spectrum(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    import landscape
    from landscape.trainers.lightning import hessian_callback

    x, y = data()
    module = lightning_model(L, lambda m: SAM(m, torch.optim.SGD, lr=0.1))
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[hessian_callback((x, y), tmp_path / "curvature", every=2, top_k=1, tol=1e-8)],
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    assert sorted(p.name for p in (tmp_path / "curvature").iterdir()) == ["hessian_epoch_0002.h5"]
    h = landscape.read_hessian(tmp_path / "curvature" / "hessian_epoch_0002.h5")
    assert h.attrs["epoch"] == 2 and module.training  # the module is back in training mode
    top = dense_top_eigenvalue(module.net, lambda f: F.cross_entropy(f(x.double()), y))
    assert float(h.eigenvalues[0]) == pytest.approx(top, rel=1e-4)


def test_hugging_face_hessian_callback(tmp_path):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    import landscape
    from landscape.trainers.huggingface import FlatMinimaTrainer, HessianCallback

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net()

        def forward(self, x, labels=None):
            return {"loss": F.cross_entropy(self.net(x), labels)}

    x, y = data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(y))]
    model = Model()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, num_train_epochs=2, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    callback = HessianCallback([{"x": x, "labels": y}], tmp_path / "curvature", top_k=1, tol=1e-8)
    FlatMinimaTrainer(
        model=model, args=args, train_dataset=rows, optimizers=(SAM(model, torch.optim.SGD, lr=0.1), None),
        callbacks=[callback],
    ).train()  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "curvature").iterdir())
    assert files == ["hessian_epoch_0001.h5", "hessian_epoch_0002.h5"]
    h = landscape.read_hessian(tmp_path / "curvature" / files[-1])
    top = dense_top_eigenvalue(model.net, lambda f: F.cross_entropy(f(x.double()), y))
    assert float(h.eigenvalues[0]) == pytest.approx(top, rel=1e-4)
