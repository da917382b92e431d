"""The standard closure for a classification batch (see the contract in :mod:`.base`)."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class BatchClosure:
    """``closure(part, num_parts)`` for ``model`` on the batch ``(x, y)``.

    Sub-batches are ``torch.tensor_split`` chunks; each returned loss is the chunk's mean loss times
    ``num_parts * len(chunk) / len(batch)``, so that the mean over the parts is exactly the batch's mean loss even when
    the batch does not divide evenly. The first evaluation of each chunk also counts correct predictions (``correct``),
    which is what training accuracy reports: the clean pass for SAM/ASAM/AMP/ERM, the noisy pass for DAMP/DAAP/RMP.

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
        self.model, self.x, self.y, self.loss_fn = model, x, y, loss_fn
        self.autocast_dtype = autocast_dtype
        self.correct = torch.zeros((), dtype=torch.long, device=y.device)
        self._seen: set[tuple[int, int]] = set()

    def __call__(self, part: int = 0, num_parts: int = 1) -> Tensor:
        """The loss of sub-batch ``part`` of ``num_parts`` (the whole batch by default), forward only."""
        x, y = self.x, self.y
        if num_parts > 1:
            x, y = torch.tensor_split(x, num_parts)[part], torch.tensor_split(y, num_parts)[part]
        ctx = (
            torch.autocast(x.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            logits = self.model(x)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the loss in full precision under autocast
        loss = self.loss_fn(logits, y)
        if (part, num_parts) not in self._seen:
            self._seen.add((part, num_parts))
            self.correct += (logits.detach().argmax(1) == y).sum()
        return loss * (num_parts * len(y) / len(self.y)) if num_parts > 1 else loss


__all__ = ["BatchClosure"]
