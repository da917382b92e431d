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

from typing import Any, Callable

from torch import Tensor

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


__all__ = ["flat_minima_step"]
