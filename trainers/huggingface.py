"""Hugging Face's ``Trainer`` with the two-pass flat-minima optimizers (SAM, ASAM, AMP) and ERM.

::

    opt = SAM(model, torch.optim.AdamW, rho=0.05, lr=5e-5)
    trainer = FlatMinimaTrainer(model=model, args=args, train_dataset=ds, optimizers=(opt, None))
    trainer.train()

The training step runs the clean pass, :meth:`~landscape.trainers.optim.SAM.first_step` and the pass at the moved
weights; the ``Trainer``'s own ``optimizer.step()`` is then the second step (gradient clipping, the learning-rate
schedule, logging and checkpoints stay the ``Trainer``'s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from transformers import Trainer, TrainerCallback

from .loop import epoch_hessian
from .optim import PerturbedOptimizer
from .optim.ascent import AscentOptimizer


class FlatMinimaTrainer(Trainer):
    """A ``transformers.Trainer`` whose training step serves a two-pass method; any ``Trainer`` argument works.

    Args:
        args: the ``Trainer``'s positional arguments.
        kwargs: the ``Trainer``'s keyword arguments; ``optimizers=(method, scheduler)`` gives the method (built over
            the model), ``None`` for the scheduler keeps the ``Trainer``'s.

    Raises:
        ValueError: no method of ours in ``optimizers``, a method with sub-batches (DAMP, DAAP, RMP: use
            :func:`landscape.fit` or Lightning), or gradient accumulation (each micro-batch would take its own ascent).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        method = self.optimizer
        if not isinstance(method, PerturbedOptimizer):
            raise ValueError("FlatMinimaTrainer needs optimizers=(method, scheduler) with a landscape optimizer")
        if not isinstance(method, AscentOptimizer) and method.multi_pass:
            raise ValueError(f"{type(method).__name__} evaluates its own sub-batches: train it with landscape.fit")
        if self.args.gradient_accumulation_steps > 1:
            raise ValueError(
                "gradient_accumulation_steps > 1 would take an ascent step per micro-batch; "
                "use a larger per-device batch, or landscape.fit(..., accumulate=K)"
            )

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """The clean pass, then each ascent's :meth:`first_step` and pass; the ``Trainer`` takes the second step.

        Args:
            model: the model being trained.
            inputs: the batch.
            num_items_in_batch: as the ``Trainer`` passes it.

        Returns:
            The loss at the clean weights.
        """
        method = getattr(self.optimizer, "optimizer", self.optimizer)  # inside accelerate's wrapper
        if not isinstance(method, AscentOptimizer):
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        loss = self._pass(model, inputs, num_items_in_batch)
        for _ in range(method._ascent_steps()):
            method.first_step(zero_grad=True)
            self._pass(model, inputs, num_items_in_batch)
        return loss

    def _pass(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any) -> torch.Tensor:
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        assert isinstance(loss, torch.Tensor)  # return_outputs=False: the loss alone
        self.accelerator.backward(loss)
        return loss.detach()


class HessianCallback(TrainerCallback):
    """A ``TrainerCallback`` that writes the Hessian analysis every ``every`` epochs (see
    :func:`landscape.trainers.loop.epoch_hessian`): ``Trainer(..., callbacks=[HessianCallback(batches, "runs/x")])``.

    Args:
        data: the data the loss averages over: batches as the model takes them (dicts with ``labels``, or
            ``(inputs, targets)``), or named splits.
        out: the folder of the files (``hessian_epoch_NNNN.h5``).
        every: analyse after every this many epochs.
        loss: the loss, as :class:`~landscape.Problem` takes it (for Hugging Face models
            ``lambda model, batch: model(**batch).loss``, the default here).
        options: :func:`landscape.hessian`'s keyword arguments (``top_k``, ``trace``, ...).
    """

    def __init__(
        self, data: Any, out: str | Path, *, every: int = 1, loss: Callable | None = None, **options: Any
    ) -> None:
        self.data, self.out, self.every, self.options = data, out, every, options
        self.loss = loss or _model_loss

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Analyse after the epochs due (on the main process)."""
        epoch = round(state.epoch or 0)
        if model is not None and epoch and epoch % self.every == 0 and state.is_world_process_zero:
            epoch_hessian(model, self.data, epoch, self.out, loss=self.loss, **self.options)


def _model_loss(model: Any, batch: Any) -> Any:
    out = model(**batch)
    return out["loss"] if isinstance(out, dict) else out.loss


__all__ = ["FlatMinimaTrainer", "HessianCallback"]
