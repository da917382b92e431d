"""Gradient-ascent perturbations: SAM, ASAM and AMP.

Each step: a clean forward/backward (its loss is returned, its BatchNorm statistics kept),
then ``k`` ascent iterations that move the weights to ``w + offset`` and recompute the
gradient there, then the weights are restored by copy and the base optimizer steps with
the last gradient. Methods differ only in :meth:`AscentOptimizer._offsets`. All offset
arithmetic is foreach and free of host syncs (norms stay on the device).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from torch.nn.utils import get_total_norm
from torch.optim import Optimizer

from ..rules import adaptive_scale, is_weight, project_each_to_ball_, project_to_ball_, scale_to_radius_
from .base import BNUpdate, Closure, Params, PerturbedOptimizer, grads_of

Groups = list[tuple[dict, slice]]  # each param group and its slice of the flat parameter list


def check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"Invalid {name}: {value} (must be >= 0)")


class AscentOptimizer(PerturbedOptimizer):
    def _ascent_steps(self) -> int:
        return 1

    def _offsets(
        self, groups: Groups, params: list[Tensor], clean: list[Tensor], prev: list[Tensor] | None
    ) -> list[Tensor]:
        """New offsets from the gradients now in ``params[i].grad`` (``clean``: the weights before the step).

        May reuse the gradients' (or ``prev``'s) storage: they are dropped right after.
        """
        raise NotImplementedError

    _ascent: _Ascent | None = None

    def _step(self, closure: Closure) -> Tensor:
        self._ascent = None  # a step that failed half-way is not continued
        self.zero_grad()
        loss = self._backward(closure)
        for _ in range(self._ascent_steps()):
            if not self._first_step(zero_grad=True):
                return loss  # overflowing gradients (fp16): the step is skipped whole
            self._backward(closure)
        self._second_step()
        return loss

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False, grad_scaler: Any = None) -> bool:
        """Move the weights to ``w + offset`` from the gradients now in ``.grad`` (davda54/sam's form).

        After a backward pass at the clean weights; then run a forward and backward pass at the moved weights and
        call :meth:`second_step`. AMP with ``inner_iter=k`` takes ``k`` of these (a backward pass before each).

        Args:
            zero_grad: zero the gradients afterwards (ready for the next backward pass).
            grad_scaler: the ``GradScaler`` whose scaled loss made the gradients (fp16): they are unscaled first.

        Returns:
            False when the scaled gradients overflowed: the weights are back at ``w`` and the step is over (skip the
            second pass and :meth:`second_step`; call ``grad_scaler.update()``).
        """
        with self._scaled(grad_scaler):
            return self._first_step(zero_grad)

    def _first_step(self, zero_grad: bool) -> bool:
        if not self._sync_grads(ascent=True):
            self._abandon()
            return False
        a = self._ascent
        if a is None:
            params: list[Tensor] = []
            groups: Groups = []
            for group, ps in self._groups:
                active = [p for p in ps if p.grad is not None]
                groups.append((group, slice(len(params), len(params) + len(active))))
                params += active
            clean = self._save_weights(params)
            a = self._ascent = _Ascent(groups, params, clean, self._bn.save() if self.bn_update == "once" else None)
        else:
            torch._foreach_copy_(a.params, a.clean)
        a.offsets = self._offsets(a.groups, a.params, a.clean, a.offsets)
        torch._foreach_add_(a.params, a.offsets)
        if zero_grad:
            self.zero_grad()
        return True

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False, grad_scaler: Any = None) -> None:
        """Put the clean weights back and step the base optimizer with the gradient at the moved weights.

        Args:
            zero_grad: zero the gradients afterwards.
            grad_scaler: the ``GradScaler`` of the step (fp16): an overflowing gradient skips the base step.

        Raises:
            ValueError: :meth:`first_step` was not called before.
        """
        if self._ascent is None:
            raise ValueError(f"{type(self).__name__}.second_step() comes after first_step() (and a backward pass)")
        with self._scaled(grad_scaler):
            self._second_step()
        if zero_grad:
            self.zero_grad()

    def _second_step(self) -> None:
        finite = self._sync_grads(final=True)  # the descent gradient: always averaged over the ranks
        self._abandon()
        if finite:
            self.base_optimizer.step()

    def _abandon(self) -> None:
        """The clean weights (and BatchNorm statistics) back, the step's ascent state dropped."""
        a, self._ascent = self._ascent, None
        if a is not None:
            torch._foreach_copy_(a.params, a.clean)
            if a.saved_bn is not None:
                self._bn.restore(a.saved_bn)

    @torch.no_grad()
    def step(self, closure: Callable | None = None, grad_scaler: Any = None) -> Tensor | None:  # type: ignore[override]
        """One update (see :meth:`PerturbedOptimizer.step`); without a closure after :meth:`first_step`, the
        :meth:`second_step` (a loop that calls ``optimizer.step()`` itself, such as Hugging Face's ``Trainer``).

        Args:
            closure: the forward pass the method repeats at the weights it chooses.
            grad_scaler: a ``torch.amp.GradScaler`` (fp16), as for :meth:`PerturbedOptimizer.step`.

        Returns:
            The step's loss, or ``None`` when it ends a two-step update.

        Raises:
            ValueError: no closure and no :meth:`first_step` before (the message says what to pass).
        """
        if closure is None and self._ascent is not None:
            self.second_step(grad_scaler=grad_scaler)
            return None
        return super().step(closure, grad_scaler)

    def _no_closure(self) -> str:
        return super()._no_closure() + "; or call first_step() and second_step() around your own backward passes"


@dataclass
class _Ascent:
    """A step between :meth:`AscentOptimizer.first_step` and :meth:`~AscentOptimizer.second_step`."""

    groups: Groups
    params: list[Tensor]
    clean: list[Tensor]
    saved_bn: list[Tensor] | None
    offsets: list[Tensor] | None = None


class SAM(AscentOptimizer):
    """Sharpness-Aware Minimization (Foret et al., ICLR 2021).

    ``offset = rho * g / (||g|| + eps)``, ``||g||`` the global L2 norm over all perturbed parameters; ``rho`` may differ
    per param group. Costs 2 forward + 2 backward passes.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        rho: the radius of the ascent step.
        adaptive: davda54/sam's adaptive variant: the offset scaled elementwise by ``|w|`` on every parameter
            (``ASAM(adaptive_params="all", eta=0)``).
        eps: added to the gradient norm (a zero gradient gives a zero offset).
        bn_update: ``"once"`` (BatchNorm statistics move once per step, as in plain training) or ``"every_pass"``.
        base_kwargs: the base optimizer's arguments when ``base_optimizer`` is a class.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(
        self,
        params: Params,
        base_optimizer: Optimizer,
        rho: float = 0.05,
        adaptive: bool = False,
        *,
        eps: float = 1e-12,
        bn_update: BNUpdate = "once",
        _extra: dict | None = None,
        **base_kwargs: Any,
    ) -> None:
        check_nonneg(rho=rho)
        self.eps = eps
        self.adaptive = adaptive
        extra = {"eta": 0.0, **(_extra or {})} if adaptive else dict(_extra or {})
        super().__init__(params, base_optimizer, {"rho": rho, **extra}, bn_update=bn_update, **base_kwargs)

    def _adapted(self, p: Tensor) -> bool:
        """Whether ``p`` gets the elementwise scaling T (every parameter with ``adaptive=True``, else none)."""
        return self.adaptive

    def _offsets(
        self, groups: Groups, params: list[Tensor], clean: list[Tensor], prev: list[Tensor] | None
    ) -> list[Tensor]:
        offsets = grads_of(params)  # turned into the offsets in place: no allocation
        scaled = []
        for group, sl in groups:
            adapted = [offsets[i] for i in range(sl.start, sl.stop) if self._adapted(params[i])]
            if adapted:
                t = adaptive_scale(
                    [clean[i] for i in range(sl.start, sl.stop) if self._adapted(params[i])], group["eta"]
                )
                torch._foreach_mul_(adapted, t)  # T g
                scaled.append((adapted, t))
        norm = get_total_norm(offsets) if offsets else torch.zeros(())  # ||T g||
        for adapted, t in scaled:
            torch._foreach_mul_(adapted, t)  # T^2 g
        for group, sl in groups:
            if sl.stop > sl.start:
                scale_to_radius_(offsets[sl], group["rho"], norm, self.eps)
        return offsets


class ASAM(SAM):
    """Adaptive SAM (Kwon et al., ICML 2021), the official SamsungLabs rule.

    ``T_w = |w| + eta`` on weights (conv/linear kernels and norm scales, see
    :func:`~landscape.trainers.rules.is_weight`), ``T = 1`` on biases and BN shifts, and
    ``offset = rho * T^2 g / ||T g||``. ``adaptive_params="all", eta=0`` gives davda54/sam's ``adaptive=True`` variant
    (``T = |w|`` on every parameter).

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        rho: the radius of the ascent step in the adaptive norm.
        eta: the offset added to ``|w|``.
        adaptive_params: ``"weights"`` (the rule above) or ``"all"`` (every parameter scaled by ``|w| + eta``).
        kw: :class:`SAM`'s options (``eps``, ``bn_update``) and the base optimizer's arguments.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(
        self,
        params: Params,
        base_optimizer: Optimizer,
        rho: float = 0.5,
        eta: float = 0.01,
        *,
        adaptive_params: str = "weights",
        **kw,
    ) -> None:
        check_nonneg(eta=eta)
        if adaptive_params not in ("weights", "all"):
            raise ValueError(f"adaptive_params must be 'weights' or 'all', got {adaptive_params!r}")
        self.adaptive_params = adaptive_params
        super().__init__(params, base_optimizer, rho, _extra={"eta": eta}, **kw)
        if adaptive_params == "weights" and all(n is None for n in self._names.values()):
            warnings.warn(
                "ASAM was given parameters without names, which cannot tell weights from biases: every parameter "
                "gets the scaling |w| + eta (adaptive_params='all'); pass the model or named_parameters() for the "
                "official rule (weights only)",
                UserWarning,
                stacklevel=2,
            )
            self.adaptive_params = "all"

    def _adapted(self, p: Tensor) -> bool:
        return self.adaptive_params == "all" or is_weight(self.name_of(p))


AMP_RADIUS_WARNING = 0.2  # warn above this share of the weights' norm (ResNet18: 0.035, our small_cnn: 0.13)


class AMP(AscentOptimizer):
    """Adversarial Model Perturbation (Zheng et al., CVPR 2021), as in the reference code.

    The inner problem starts from ``Delta = 0`` and runs ``inner_iter`` projected ascent steps
    ``Delta <- proj_eps(Delta + inner_lr * grad)``, each followed by a forward/backward at ``w + Delta``; the base
    optimizer then steps at ``w`` with the last gradient. Costs ``1 + inner_iter`` forward+backward passes.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        epsilon: the radius of the ball ``Delta`` is projected onto.
        inner_lr: the ascent step size.
        inner_iter: the ascent steps per training step.
        norm: ``"per_tensor"`` (default, the reference code's choice) projects each parameter tensor onto its own
            epsilon-ball; ``"global"`` projects the whole ``Delta`` (the paper's formula).
        bn_update: ``"once"`` (BatchNorm statistics move once per step, as in plain training) or ``"every_pass"``.
        base_kwargs: the base optimizer's arguments when ``base_optimizer`` is a class.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(
        self,
        params: Params,
        base_optimizer: Optimizer,
        epsilon: float = 0.5,
        inner_lr: float = 1.0,
        inner_iter: int = 1,
        *,
        norm: str = "per_tensor",
        bn_update: BNUpdate = "once",
        **base_kwargs: Any,
    ) -> None:
        check_nonneg(epsilon=epsilon, inner_lr=inner_lr)
        if not (isinstance(inner_iter, int) and inner_iter >= 1):
            raise ValueError(f"Invalid inner_iter: {inner_iter} (must be an integer >= 1)")
        if norm not in ("per_tensor", "global"):
            raise ValueError(f"norm must be 'per_tensor' or 'global', got {norm!r}")
        self.norm = norm
        super().__init__(
            params,
            base_optimizer,
            {"epsilon": epsilon, "inner_lr": inner_lr, "inner_iter": inner_iter},
            bn_update=bn_update,
            **base_kwargs,
        )
        self._check_radius()

    def _check_radius(self) -> None:
        """Warn when the largest perturbation is a large share of the weights' norm: epsilon is absolute, and the
        reference's 0.5 per tensor, about 3 % of a CIFAR ResNet's weights, is 27 % of a small CNN's (which then
        trains to a fraction of SAM's accuracy)."""
        params = [p for _, ps in self._groups for p in ps]
        eps = max(g["epsilon"] for g in self.param_groups)
        reach = eps * (len(params) ** 0.5 if self.norm == "per_tensor" else 1.0)
        weights = float(get_total_norm(params)) if params else 0.0
        if weights > 0 and reach > AMP_RADIUS_WARNING * weights:
            warnings.warn(
                f"AMP: epsilon={eps:g} ({self.norm.replace('_', ' ')}) moves the weights by up to {reach:.3g}, "
                f"{100 * reach / weights:.0f} % of their norm {weights:.3g} (the reference's CIFAR nets: about "
                f"3 %): a smaller epsilon (e.g. {eps * 0.1 * weights / reach:.2g})"
                + (" or norm='global'" if self.norm == "per_tensor" else "")
                + " suits this model better",
                UserWarning,
                stacklevel=3,
            )

    def _ascent_steps(self) -> int:
        return self.param_groups[0]["inner_iter"]

    def _offsets(
        self, groups: Groups, params: list[Tensor], clean: list[Tensor], prev: list[Tensor] | None
    ) -> list[Tensor]:
        grads = grads_of(params)
        delta = grads if prev is None else prev  # the first Delta is built in the gradients' storage
        for group, sl in groups:
            if sl.stop == sl.start:
                continue
            d = delta[sl]
            if prev is None:
                torch._foreach_mul_(d, group["inner_lr"])
            else:
                torch._foreach_add_(d, grads[sl], alpha=group["inner_lr"])
            if self.norm == "per_tensor":
                project_each_to_ball_(d, group["epsilon"])
            else:
                project_to_ball_(d, group["epsilon"])
        return delta


__all__ = ["SAM", "ASAM", "AMP"]
