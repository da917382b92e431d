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
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Literal, Union, cast, get_args

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from landscape._system.ranks import Ranks, current_group

Closure = Callable[[int, int], Tensor]
Params = Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]], Iterable[dict]]
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
            BatchNorm statistics are protected), ``named_parameters()``, plain tensors or param-group dicts; all must
            belong to ``base_optimizer``.
        base_optimizer: the optimizer that takes the actual step, built (e.g. ``torch.optim.SGD(...)``), or its
            class (davda54/sam's form: built over ``params`` with ``base_kwargs``); the method shares its
            ``param_groups`` and ``state``.
        defaults: the method's hyperparameters, added to every param group (schedulers and ``state_dict`` see them,
            and groups may override them).
        bn_update: ``"once"`` or ``"every_pass"`` (see the module docstring).
        base_kwargs: the base optimizer's arguments (``lr=0.1, momentum=0.9``) when ``base_optimizer`` is a class.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, no parameters to perturb, or base-optimizer
            arguments with a built base optimizer.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer`` or its class.
    """

    multi_pass = True  # whether a step runs several passes (then BatchNorm statistics need the model)

    def __init__(
        self,
        params: Params,
        base_optimizer: Optimizer | type[Optimizer],
        defaults: dict,
        *,
        bn_update: BNUpdate = "once",
        **base_kwargs: Any,
    ) -> None:
        # torch.optim.Optimizer.__init__ is not called on purpose: the groups and the state
        # are the base optimizer's (as timm's Lookahead does), so they round-trip with it.
        if bn_update not in BN_UPDATES:
            raise ValueError(f"unknown bn_update {bn_update!r}; expected one of {BN_UPDATES}")
        model = params if isinstance(params, nn.Module) else None
        items: list[Any] = list(params.named_parameters()) if isinstance(params, nn.Module) else list(params)
        groups = [g for g in items if isinstance(g, dict)]
        if groups and len(groups) != len(items):
            raise ValueError("params: give parameters or param-group dicts, not both")
        listed = [q for g in groups for q in g["params"]] if groups else items
        named = [item if isinstance(item, tuple) else (None, item) for item in listed]
        if not named:
            raise ValueError("no parameters to perturb")
        if isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer):  # davda54/sam's form
            base_optimizer = base_optimizer(groups or [p for _, p in named], **base_kwargs)
        elif base_kwargs:
            raise ValueError(
                f"{type(self).__name__} takes no {', '.join(sorted(base_kwargs))}: give them to the base optimizer, "
                f"or pass its class (e.g. torch.optim.SGD) to have it built with them"
            )
        if not isinstance(base_optimizer, Optimizer):
            raise TypeError(
                "base_optimizer must be a torch.optim.Optimizer or its class, got " + type(base_optimizer).__name__
            )
        if model is None and self.multi_pass and bn_update == "once":
            warnings.warn(
                f"{type(self).__name__} was given parameters without their model: if it has BatchNorm layers, their "
                "running statistics also move on the extra passes of each step (bn_update='once' needs the model); "
                f"pass the model itself, {type(self).__name__}(model, ...), to keep them to one update per step",
                UserWarning,
                stacklevel=3,
            )
        owned = {id(p) for g in base_optimizer.param_groups for p in g["params"]}
        strangers = [n or f"#{i}" for i, (n, p) in enumerate(named) if id(p) not in owned]
        if strangers:
            raise ValueError(f"parameters not handled by the base optimizer: {', '.join(strangers[:5])}")
        self.base_optimizer = base_optimizer
        self.bn_update = bn_update
        self._hyper = dict(defaults)
        self._names = {id(p): n for n, p in named}
        self._bn = BatchNormState(model)
        self._dist = Ranks()
        self.local_ascent = False
        self.max_grad_norm: float | None = None
        self.micro_batches = 1
        self.skipped_steps = 0  # steps a GradScaler found overflowing gradients in, and skipped whole
        self._grad_scaler: Any = None
        self._link()

    def accumulate(self, micro_batches: int) -> None:
        """Compute every pass's gradient over ``micro_batches`` parts of the batch, one backward each (gradient
        accumulation: the memory of a part, the update of the whole batch). Needs a ``closure(part, num_parts)``.

        Args:
            micro_batches: parts per pass (1: the whole batch at once). DAMP's and DAAP's sub-batches are each split
                into ``micro_batches / num_splits`` parts with the sub-batch's noise when it is larger.

        Raises:
            ValueError: not an integer >= 1.
        """
        if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
            raise ValueError(f"micro_batches must be an integer >= 1, got {micro_batches!r}")
        self.micro_batches = micro_batches

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

    def _sync_grads(self, ascent: bool = False, final: bool = False) -> bool:
        """The gradients' mean over the ranks (a no-op on one process, and for ascent gradients kept local), unscaled
        (a ``GradScaler``'s step), then clipped (:meth:`clip_gradients`): every gradient a method uses passes through
        here. Returns False when a scaled gradient overflowed: the step is then skipped whole."""
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
        if self._grad_scaler is not None and not self._unscale(params, final):
            return False
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.max_grad_norm, foreach=True)
        return True

    def _unscale(self, params: list[Tensor], final: bool) -> bool:
        """Divide the gradients by the scaler's scale; False when one is not finite. The descent gradient goes through
        ``GradScaler.unscale_`` (which records the overflow for ``update()``); an ascent gradient that overflows is
        recorded the same way, through gradients made non-finite on purpose."""
        scaler = self._grad_scaler
        grads = [p.grad for p in params if p.grad is not None]
        if not final:
            torch._foreach_mul_(grads, 1.0 / float(scaler.get_scale()))
            if all(bool(torch.isfinite(g).all()) for g in grads):
                return True
            for g in grads:
                g.fill_(float("nan"))  # what unscale_ below records as an overflow
        scaler.unscale_(self)
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self.skipped_steps += 1
        return finite

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
    def step(self, closure: Callable | None = None, grad_scaler: Any = None) -> Tensor:  # type: ignore[override]
        """One update; ``closure(part, num_parts)`` or ``closure()`` is a forward pass (module docstring).

        Args:
            closure: the forward pass the method repeats at the weights it chooses.
            grad_scaler: a ``torch.amp.GradScaler`` (fp16): every pass's loss is scaled, every gradient unscaled
                before use, and a step whose gradients overflow is skipped whole (weights and optimizer state as
                before it; counted in :attr:`skipped_steps`). Call ``grad_scaler.update()`` after the step, as usual.

        Returns:
            The step's loss (see the module docstring).

        Raises:
            ValueError: no closure (the message says what to pass), or a closure that breaks the contract.
        """
        if closure is None:
            raise ValueError(self._no_closure())
        with self._scaled(grad_scaler):
            return self._step(as_parts(closure))

    @contextmanager
    def _scaled(self, grad_scaler: Any) -> Iterator[None]:
        self._grad_scaler = grad_scaler if grad_scaler is not None and grad_scaler.is_enabled() else None
        try:
            yield
        finally:
            self._grad_scaler = None

    def _no_closure(self) -> str:
        name = type(self).__name__
        return (
            f"{name}.step() needs a closure that runs the forward pass and returns the loss, e.g. "
            f"opt.step(lambda: loss_fn(model(x), y)): {name} evaluates it again at the perturbed weights"
        )

    def _step(self, closure: Closure) -> Tensor:
        raise NotImplementedError

    def _backward(self, closure: Closure, part: int = 0, num_parts: int = 1) -> Tensor:
        """Gradients of one pass (on zeroed gradients at ``part`` 0); returns its loss. With :meth:`accumulate`,
        the pass is parts ``part * k .. part * k + k - 1`` of ``num_parts * k``: the same gradient and loss."""
        k = max(1, self.micro_batches // num_parts) if num_parts > 1 else self.micro_batches
        if k > 1:
            if isinstance(closure, WholeBatch):
                raise ValueError(f"{type(self).__name__}: accumulating micro-batches needs closure(part, num_parts)")
            total = torch.zeros(())
            for i in range(k):
                with torch.enable_grad():
                    loss = closure(part * k + i, num_parts * k)
                    self._scale(loss / (num_parts * k)).backward()
                total = total.to(loss.device) + loss.detach()
            return total / k
        with torch.enable_grad():
            loss = closure(part, num_parts)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"the closure must return the loss as a scalar tensor, got {type(loss).__name__}")
            ran_backward = part == 0 and any(p.grad is not None for _, ps in self._groups for p in ps)
            if ran_backward and not isinstance(closure, WholeBatch):
                raise ValueError("closure(part, num_parts) must not call backward(): the optimizer does")
            if ran_backward and self._grad_scaler is not None:
                raise ValueError(
                    "with a GradScaler the closure must not call backward(): the optimizer scales the loss"
                )
            if not ran_backward:  # a closure() may have run backward itself (torch's convention)
                self._scale(loss / num_parts if num_parts > 1 else loss).backward()
        return loss.detach()

    def _scale(self, loss: Tensor) -> Tensor:
        return loss if self._grad_scaler is None else self._grad_scaler.scale(loss)

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
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        kw: ``bn_update`` (no effect: there is one pass) and the base optimizer's arguments.

    Raises:
        ValueError: a bad hyperparameter or option (see :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        TypeError: ``base_optimizer`` is not an optimizer or its class.
    """

    multi_pass = False

    def __init__(self, params: Params, base_optimizer: Optimizer | type[Optimizer], **kw) -> None:
        super().__init__(params, base_optimizer, {}, **kw)

    @torch.no_grad()
    def step(self, closure: Callable | None = None, grad_scaler: Any = None) -> Tensor | None:  # type: ignore[override]
        """One update; without a closure, the base optimizer's step on the gradients already computed.

        Args:
            closure: the forward pass (optional, as for any torch optimizer).
            grad_scaler: a ``torch.amp.GradScaler`` (fp16), as for :meth:`PerturbedOptimizer.step`.

        Returns:
            The loss, or ``None`` without a closure.
        """
        with self._scaled(grad_scaler):
            if closure is not None:
                return self._step(as_parts(closure))
            if self._sync_grads(final=True):
                self.base_optimizer.step()
        return None

    def _step(self, closure: Closure) -> Tensor:
        self.zero_grad()
        loss = self._backward(closure)
        if self._sync_grads(final=True):
            self.base_optimizer.step()
        return loss


__all__ = ["ERM", "PerturbedOptimizer", "BatchNormState"]
