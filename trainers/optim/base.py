"""The one base class behind every method: a perturbation rule wrapped around a base optimizer.

Closure contract (the same for every method, ERM included)::

    def closure(part: int, num_parts: int) -> Tensor:
        # forward ONLY (no zero_grad, no backward) on sub-batch `part` of `num_parts`
        # (part 0 of 1 is the whole batch); return the loss of that sub-batch, scaled so
        # that the mean over the parts equals the batch's mean loss.

The optimizer owns ``zero_grad`` and ``backward`` because it decides which passes run,
at which weights, and how sub-batches are weighted. :class:`landscape.trainers.optim.BatchClosure`
builds such a closure for a model and a batch. An ordinary torch closure ``loss = closure()``
(a forward on the whole batch; it may call ``backward`` itself, torch's convention) serves
every method that needs whole batches only: all but DAMP/DAAP with ``num_splits > 1``, whose
sub-batches each get their own noise draw. ``step(closure)`` returns the loss at the
clean weights (SAM/ASAM/AMP/ERM) or the mean loss at the noisy weights (DAMP/DAAP/RMP,
which never evaluate the clean weights).

Every method perturbs the weights in place, computes gradients there, restores the
weights by copy and lets the base optimizer step (weight decay therefore acts at the
clean weights). Under ``torchrun``, :meth:`PerturbedOptimizer.distribute` averages the
gradients over the ranks (each holding an equal shard of the global batch) before every
ascent and every step, so the perturbation is the one a single process computes from the
whole batch; ``local_ascent=True`` keeps the ascent gradients per rank (m-sharpness).
BatchNorm running statistics change once per step by default (``bn_update="once"``);
``"every_pass"`` reproduces reference codes that let every pass update them (e.g. AMP's).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable, Literal, Union, cast, get_args

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from landscape._system.ranks import Ranks, current_group

Closure = Callable[[int, int], Tensor]
Params = Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]]]
BNUpdate = Literal["once", "every_pass"]
BN_UPDATES: tuple[BNUpdate, ...] = get_args(BNUpdate)


class WholeBatch:
    """An ordinary ``loss = closure()`` in the ``closure(part, num_parts)`` contract (whole batch only)."""

    def __init__(self, fn: Callable[[], Tensor]) -> None:
        self.fn = fn

    def __call__(self, part: int = 0, num_parts: int = 1) -> Tensor:
        if num_parts != 1:
            raise ValueError(NO_SUB_BATCHES)
        return self.fn()


NO_SUB_BATCHES = (
    "a closure() without arguments evaluates the whole batch, one noise draw per batch: use num_splits=1, "
    "or a closure(part, num_parts) that evaluates sub-batch `part` (see landscape.trainers.optim.BatchClosure)"
)


def grads_of(params: list[Tensor]) -> list[Tensor]:
    """The gradients of ``params`` (each has one: the methods keep only parameters with a gradient)."""
    return [cast(Tensor, p.grad) for p in params]


def as_parts(closure: Callable) -> Closure:
    """``closure`` if it takes ``(part, num_parts)``, else an ordinary zero-argument closure wrapped in
    :class:`WholeBatch`."""
    try:
        inspect.signature(closure).bind(0, 1)
    except TypeError:
        return WholeBatch(closure)
    except ValueError:  # no signature to read (a builtin): assume the contract
        pass
    return closure


class BatchNormState:
    """The running statistics of a model's BatchNorm layers, saved and restored as one group.

    Args:
        model: the model (``None``: no statistics to protect).
    """

    def __init__(self, model: nn.Module | None) -> None:
        mods = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats] if model else []
        self.buffers = [
            b for m in mods for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None
        ]
        self.floats = [b for b in self.buffers if b.is_floating_point()]

    def save(self) -> list[Tensor]:
        """Copies of the BatchNorm buffers (to restore after an ascent pass)."""
        return [b.clone() for b in self.buffers]

    def restore(self, saved: list[Tensor]) -> None:
        """Put back the buffers :meth:`save` copied."""
        if self.buffers:
            torch._foreach_copy_(self.buffers, saved)


class PerturbedOptimizer(Optimizer):
    """Base of all methods; shares ``param_groups`` and ``state`` with the wrapped optimizer.

    Args:
        params: the parameters to perturb: the model itself (recommended: names tell weights from biases and its
            BatchNorm statistics are protected), ``named_parameters()``, or plain tensors; all must belong to
            ``base_optimizer``.
        base_optimizer: an already-built optimizer (e.g. SGD) that takes the actual step; the method shares its
            ``param_groups`` and ``state``.
        defaults: the method's hyperparameters, added to every param group (schedulers and ``state_dict`` see them,
            and groups may override them).
        bn_update: ``"once"`` or ``"every_pass"`` (see the module docstring).

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(
        self, params: Params, base_optimizer: Optimizer, defaults: dict, *, bn_update: BNUpdate = "once"
    ) -> None:
        # torch.optim.Optimizer.__init__ is not called on purpose: the groups and the state
        # are the base optimizer's (as timm's Lookahead does), so they round-trip with it.
        if not isinstance(base_optimizer, Optimizer):
            raise TypeError(
                f"base_optimizer must be a torch.optim.Optimizer instance, got {type(base_optimizer).__name__}"
            )
        if bn_update not in BN_UPDATES:
            raise ValueError(f"unknown bn_update {bn_update!r}; expected one of {BN_UPDATES}")
        named = (
            list(params.named_parameters())
            if isinstance(params, nn.Module)
            else [item if isinstance(item, tuple) else (None, item) for item in params]
        )
        if not named:
            raise ValueError("no parameters to perturb")
        owned = {id(p) for g in base_optimizer.param_groups for p in g["params"]}
        strangers = [n or f"#{i}" for i, (n, p) in enumerate(named) if id(p) not in owned]
        if strangers:
            raise ValueError(f"parameters not handled by the base optimizer: {', '.join(strangers[:5])}")
        self.base_optimizer = base_optimizer
        self.bn_update = bn_update
        self._hyper = dict(defaults)
        self._names = {id(p): n for n, p in named}
        self._bn = BatchNormState(params if isinstance(params, nn.Module) else None)
        self._dist = Ranks()
        self.local_ascent = False
        self.max_grad_norm: float | None = None
        self._link()

    def clip_gradients(self, max_norm: float | None) -> None:
        """Clip every gradient the method uses, ascent and descent alike, to a global L2 norm of ``max_norm`` (after
        the ranks' average): the AMP reference's ``clip_grad_norm_(params, 50)`` inside its closure."""
        if max_norm is not None and not (max_norm > 0 and math.isfinite(max_norm)):
            raise ValueError(f"max_norm must be finite and > 0, got {max_norm}")
        self.max_grad_norm = max_norm

    def distribute(self, group: Ranks | None = None, *, local_ascent: bool = False) -> None:
        """Average gradients over the ranks of ``group`` (default: the torchrun job) before every ascent and every
        step; with ``local_ascent`` each rank perturbs with its own gradient (SAM's m-sharpness), and only the
        descent gradient is averaged."""
        self._dist = group or current_group()
        self.local_ascent = local_ascent

    def _sync_grads(self, ascent: bool = False) -> None:
        """The gradients' mean over the ranks (a no-op on one process, and for ascent gradients kept local), then
        clipped (:meth:`clip_gradients`): every gradient a method uses passes through here."""
        params = [p for g in self.param_groups for p in g["params"]]
        if not (self._dist.world == 1 or (ascent and self.local_ascent)):
            used = torch.tensor([float(p.grad is not None) for p in params])
            self._dist.sum_([used])  # a parameter no rank used keeps grad None, as on one process
            grads = []
            for p, u in zip(params, used.tolist()):
                if u:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    grads.append(p.grad)
            self._dist.mean_(grads)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.max_grad_norm, foreach=True)

    def _link(self) -> None:
        base = self.base_optimizer
        self.param_groups = base.param_groups
        self.state = base.state
        self.defaults = {**base.defaults, **self._hyper}
        for group in self.param_groups:
            for key, value in self._hyper.items():
                group.setdefault(key, value)
        self._groups = [(g, [p for p in g["params"] if id(p) in self._names]) for g in self.param_groups]

    def name_of(self, p: Tensor) -> str | None:
        """The parameter's name in the model (``None`` for plain parameters)."""
        return self._names.get(id(p))

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The base optimizer's state dict (momentum included) plus this method's own state."""
        sd = self.base_optimizer.state_dict()
        extra = self._extra_state()
        if extra:
            sd["perturbation"] = extra
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the base optimizer's state and the method's own (noise generator, step count)."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("perturbation", None)
        self.base_optimizer.load_state_dict(state_dict)
        self._link()
        if extra:
            self._load_extra_state(extra)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients through the base optimizer."""
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    # --- stepping ---------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> Tensor:  # type: ignore[override]
        """One update; ``closure(part, num_parts)`` or ``closure()`` is a forward pass (module docstring)."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure returning the loss (a forward pass)")
        return self._step(as_parts(closure))

    def _step(self, closure: Closure) -> Tensor:
        raise NotImplementedError

    def _backward(self, closure: Closure, part: int = 0, num_parts: int = 1) -> Tensor:
        """Gradients of one pass (on zeroed gradients at ``part`` 0); returns its loss."""
        with torch.enable_grad():
            loss = closure(part, num_parts)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"the closure must return the loss as a scalar tensor, got {type(loss).__name__}")
            ran_backward = part == 0 and any(p.grad is not None for _, ps in self._groups for p in ps)
            if ran_backward and not isinstance(closure, WholeBatch):
                raise ValueError("closure(part, num_parts) must not call backward(): the optimizer does")
            if not ran_backward:  # a closure() may have run backward itself (torch's convention)
                (loss / num_parts if num_parts > 1 else loss).backward()
        return loss.detach()

    def _save_weights(self, params: list[Tensor]) -> list[Tensor]:
        """Copy ``params`` into persistent buffers (allocated once, reused every step)."""
        key = tuple(map(id, params))
        if getattr(self, "_backup_key", None) != key:
            self._backup = [torch.empty_like(p) for p in params]
            self._backup_key = key
        if params:
            torch._foreach_copy_(self._backup, params)
        return self._backup


class ERM(PerturbedOptimizer):
    """Empirical risk minimization: one forward/backward, then the base optimizer's step.

    Identical to calling the base optimizer directly; it exists so that every method follows one closure contract.

    Args:
        params: the parameters to perturb: the model itself (recommended: names tell weights from biases and its
            BatchNorm statistics are protected), ``named_parameters()``, or plain tensors; all must belong to
            ``base_optimizer``.
        base_optimizer: an already-built optimizer (e.g. SGD) that takes the actual step; the method shares its
            ``param_groups`` and ``state``.
        kw: ``bn_update`` (no effect: there is one pass).

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(self, params: Params, base_optimizer: Optimizer, **kw) -> None:
        super().__init__(params, base_optimizer, {}, **kw)

    def _step(self, closure: Closure) -> Tensor:
        self.zero_grad()
        loss = self._backward(closure)
        self._sync_grads()
        self.base_optimizer.step()
        return loss


__all__ = ["ERM", "PerturbedOptimizer", "BatchNormState"]
