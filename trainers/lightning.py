"""PyTorch Lightning with the flat-minima optimizers: manual optimization, one call per training step.

::

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False      # the optimizer runs its own passes
            self.net = ...

        def forward(self, x):
            return self.net(x)

        def configure_optimizers(self):
            return SAM(self, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)

        def training_step(self, batch, batch_idx):
            return flat_minima_step(self, batch)     # loss=nn.MSELoss(), loss(model, batch), ... as fit takes
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from .loop import epoch_hessian
from .optim import LossClosure, NoiseOptimizer


def flat_minima_step(
    module: Any, batch: Any, loss: Callable | None = None, *, log: str | None = "train_loss"
) -> Tensor:
    """One step of the module's flat-minima optimizer (from ``configure_optimizers``) on ``batch``.

    The step goes through Lightning's optimizer wrapper (its hooks run and ``global_step`` counts), except for DAMP
    and DAAP with sub-batches, whose ``closure(part, num_parts)`` Lightning's closure wrapper would hide: their step
    is the optimizer's own, between Lightning's before- and after-step hooks.

    Args:
        module: the ``LightningModule``, with ``automatic_optimization = False``; ``module(inputs)`` is its model.
        batch: the training batch (the forms :func:`landscape.fit` takes).
        loss: ``loss(outputs, targets)`` (default cross-entropy) or ``loss(model, batch)``.
        log: the name the step's loss is logged under (``None``: not logged).

    Returns:
        The step's loss.

    Raises:
        ValueError: automatic optimization is on, or the module's optimizer is not one of ours.
    """
    from .optim import PerturbedOptimizer

    if getattr(module, "automatic_optimization", True):
        raise ValueError("flat_minima_step needs manual optimization: set self.automatic_optimization = False")
    wrapper = module.optimizers()
    optimizer = getattr(wrapper, "optimizer", wrapper)
    if not isinstance(optimizer, PerturbedOptimizer):
        raise ValueError(f"configure_optimizers returned a {type(optimizer).__name__}, not a landscape optimizer")
    closure = LossClosure(module, batch, loss)
    if isinstance(optimizer, NoiseOptimizer) and optimizer.num_splits > 1:
        wrapper._on_before_step()
        value = optimizer.step(closure)
        wrapper._on_after_step()
    else:
        value = wrapper.step(closure=closure)
    if log:
        module.log(log, value, prog_bar=True, on_step=True, on_epoch=True)
    return value


def hessian_callback(
    data: Any, out: str | Path, *, every: int = 1, loss: Callable | None = None, **options: Any
) -> Any:
    """A Lightning ``Callback`` that writes the Hessian analysis every ``every`` epochs (see
    :func:`landscape.trainers.loop.epoch_hessian`): ``L.Trainer(callbacks=[hessian_callback(val_loader, "runs/x")])``.

    Args:
        data: the data the loss averages over (a loader, batches, an ``(inputs, targets)`` pair).
        out: the folder of the files (``hessian_epoch_NNNN.h5``).
        every: analyse after every this many epochs.
        loss: the loss (default cross-entropy), as :class:`~landscape.Problem` takes it.
        options: :func:`landscape.hessian`'s keyword arguments (``top_k``, ``trace``, ...).

    Returns:
        The callback.
    """
    import lightning.pytorch as pl

    class HessianCallback(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            epoch = trainer.current_epoch + 1
            if epoch % every == 0 and trainer.is_global_zero:
                epoch_hessian(module, data, epoch, out, loss=loss, **options)

    return HessianCallback()


__all__ = ["flat_minima_step", "hessian_callback"]
