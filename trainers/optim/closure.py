"""The standard closures: any batch and loss (:class:`LossClosure`), and a classification batch ``(x, y)``
(:class:`BatchClosure`); see the contract in :mod:`.base`."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from landscape._batches import chunk, default_size, is_cross_entropy, leaves, takes_model, unpack


class LossClosure:
    """``closure(part, num_parts)`` for ``model`` on any batch, with the loss forms :class:`~landscape.Problem` takes.

    Sub-batches are ``torch.tensor_split`` chunks of every tensor of the batch; each returned loss is the chunk's
    mean loss times ``num_parts * size(chunk) / size(batch)`` (sizes: the leading dimension of the targets), so that
    the mean over the parts is exactly the batch's mean loss even when the batch does not divide evenly. The first
    evaluation of each chunk also adds to the running sums the training row reports: correct predictions
    (``correct``, cross-entropy only) and each of ``metrics`` (``sums``, weighted by chunk size): the clean pass for
    SAM/ASAM/AMP/ERM, the noisy pass for DAMP/DAAP/RMP.

    Args:
        model: the model trained.
        batch: ``(inputs, targets)`` (``model(inputs)``), a dict with its targets under ``"labels"``
            (``model(**rest)``), or anything ``loss(model, batch)`` takes.
        loss: ``loss(outputs, targets)`` with mean reduction (default cross-entropy), or a function whose first
            parameter is named ``model``, called as ``loss(model, batch)``.
        metrics: ``{name: fn}`` of further per-batch means, called like the loss.
        autocast_dtype: run the forward pass under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).

    Raises:
        ValueError: cross-entropy on outputs it cannot mean (one class, or float targets of another shape: a
            regression needs ``loss=``), or metrics called in another form than the loss.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: Any,
        loss: Callable | None = None,
        *,
        metrics: Mapping[str, Callable] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.model, self.batch = model, batch
        self.loss = nn.CrossEntropyLoss() if loss is None else loss
        self.model_loss = takes_model(self.loss)
        self.metrics = dict(metrics or {})
        if any(takes_model(fn) != self.model_loss for fn in self.metrics.values()):
            form = "(model, batch)" if self.model_loss else "(outputs, targets)"
            raise ValueError(f"metrics must be called like the loss, as {form}")
        self.classification = not self.model_loss and is_cross_entropy(self.loss)
        self.autocast_dtype = autocast_dtype
        self.size = default_size(batch)
        device = next((t.device for t in leaves(batch)), torch.device("cpu"))
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name in self.metrics}
        self._seen: set[tuple[int, int]] = set()

    def __call__(self, part: int = 0, num_parts: int = 1) -> Tensor:
        """The loss of sub-batch ``part`` of ``num_parts`` (the whole batch by default), forward only."""
        batch = self.batch if num_parts == 1 else chunk(self.batch, part, num_parts)
        ctx = (
            torch.autocast(self.correct.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        first = (part, num_parts) not in self._seen
        self._seen.add((part, num_parts))
        if self.model_loss:
            with ctx:
                loss = self.loss(self.model, batch)
            values = {k: fn(self.model, batch) for k, fn in self.metrics.items()} if first and self.metrics else {}
        else:
            args, kwargs, targets = unpack(batch)
            with ctx:
                outputs = self.model(*args, **kwargs)
            if isinstance(outputs, Tensor) and outputs.dtype in (torch.float16, torch.bfloat16):
                outputs = outputs.float()  # the loss in full precision under autocast
            if self.classification:
                _check_logits(outputs, targets)
            loss = self.loss(outputs, targets)
            if first and self.classification and not targets.is_floating_point():
                self.correct += (outputs.detach().argmax(1) == targets).sum()
            values = {k: fn(outputs, targets) for k, fn in self.metrics.items()} if first else {}
        n = default_size(batch)
        for name, value in values.items():
            self.sums[name] += torch.as_tensor(value).detach().double() * n
        return loss * (num_parts * n / self.size) if num_parts > 1 else loss


class BatchClosure(LossClosure):
    """``closure(part, num_parts)`` for a classifier on the batch ``(x, y)`` (a :class:`LossClosure`).

    Args:
        model: the model trained.
        x: the batch's inputs.
        y: its targets (class indices for the accuracy count).
        loss_fn: ``loss_fn(outputs, targets)`` with mean reduction.
        autocast_dtype: run the forward pass under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, (x, y), loss_fn, autocast_dtype=autocast_dtype)


def _check_logits(outputs: Any, targets: Any) -> None:
    """Cross-entropy that cannot mean anything is refused: it would train nothing and report zeros."""
    if not isinstance(outputs, Tensor) or outputs.dim() < 2 or outputs.shape[1] < 2:
        shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(
            f"cross-entropy on outputs of shape {shape}: it needs logits over two or more classes (with one it is "
            "always 0); for a regression pass loss=nn.MSELoss() (or your own loss)"
        )
    if isinstance(targets, Tensor) and targets.is_floating_point() and targets.shape != outputs.shape:
        raise ValueError(
            f"cross-entropy with float targets of shape {tuple(targets.shape)}: it takes class indices, or "
            f"probabilities shaped like the outputs {tuple(outputs.shape)}; for a regression pass loss=nn.MSELoss()"
        )


__all__ = ["BatchClosure", "LossClosure"]
