"""Random perturbations at the cost of SGD: DAMP, DAAP and RMP.

Each step splits the batch into ``num_splits`` sub-batches; each sub-batch gets its own
noise draw, a forward/backward at the noisy weights (the gradient is taken with respect
to the noisy value, as in the references), and the weights are restored by copy. The
averaged gradient drives the base optimizer at the clean weights.

The noise of sub-batch ``j`` at step ``t`` is one flat draw (in the parameters' dtype, over
the perturbed tensors in parameter order) from a generator seeded by ``(seed, t, j)``
(:func:`noise_seed`): the draws depend on nothing else, so resume is exact (the step count
is in ``state_dict``) and a run with M sub-batches draws the same noise on one process or
on N ranks holding M/N sub-batches each (the DAMP reference's one draw per device is
M = N; see :meth:`~landscape.trainers.optim.base.PerturbedOptimizer.distribute`). BatchNorm: with
``bn_update="once"`` every sub-batch starts from the same running statistics and the step
keeps their mean (one update per step, the mean of the sub-batch statistics); batch
statistics themselves are per sub-batch (ghost BN), whereas the DAMP reference pools them
across its 8 GPUs with SyncBatchNorm.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal, get_args

import torch
from torch import Tensor
from torch.optim import Optimizer

from landscape._system.ranks import Ranks

from ..rules import is_weight
from .ascent import check_nonneg
from .base import (
    NO_SUB_BATCHES,
    BNUpdate,
    Closure,
    Params,
    PerturbedOptimizer,
    WholeBatch,
)

PerturbMode = Literal["weights", "all"]
PERTURB: tuple[PerturbMode, ...] = get_args(PerturbMode)


def noise_seed(seed: int, step: int, sub_batch: int) -> int:
    """The seed of sub-batch ``sub_batch``'s noise at step ``step``: a 63-bit hash of the triple."""
    digest = hashlib.blake2b(f"{seed}/{step}/{sub_batch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class NoiseOptimizer(PerturbedOptimizer):
    """The shared step of DAMP, DAAP and RMP: each sub-batch's gradient at its own noisy weights, then the base step.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        defaults: the method's hyperparameters (``sigma`` or ``epsilon``), added to every param group.
        num_splits: sub-batches per batch, each with its own noise draw (the DAMP paper's M).
        perturb: ``"weights"`` (conv/linear kernels and norm scales) or ``"all"`` parameters get noise.
        seed: keys the draws (the same noise on 1 or N processes).
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
        defaults: dict,
        *,
        num_splits: int = 8,
        perturb: str = "weights",
        seed: int = 0,
        bn_update: BNUpdate = "once",
        **base_kwargs: Any,
    ) -> None:
        if not (isinstance(num_splits, int) and num_splits >= 1):
            raise ValueError(f"Invalid num_splits: {num_splits} (must be an integer >= 1)")
        if perturb not in PERTURB:
            raise ValueError(f"perturb must be one of {PERTURB}, got {perturb!r}")
        self.num_splits = num_splits
        self.perturb = perturb
        self.seed = seed
        self.steps = 0  # steps taken: with the sub-batch index, it keys the noise
        super().__init__(params, base_optimizer, defaults, bn_update=bn_update, **base_kwargs)
        if perturb == "weights" and all(n is None for n in self._names.values()):
            raise ValueError(
                f"{type(self).__name__} needs parameter names to tell weights from biases: "
                "pass the model or named_parameters(), or perturb='all'"
            )

    @property
    def multi_pass(self) -> bool:  # type: ignore[override]
        """Several sub-batches, each a pass at its own noisy weights."""
        return self.num_splits > 1

    def _perturb(self, group: dict, params: list[Tensor], clean: list[Tensor], z: list[Tensor]) -> None:
        """Move one group's ``params`` (now equal to ``clean``) by the noise built from the draw ``z``."""
        raise NotImplementedError

    def distribute(self, group: Ranks | None = None, *, local_ascent: bool = False) -> None:
        super().distribute(group, local_ascent=local_ascent)
        if self.num_splits % self._dist.world:
            raise ValueError(
                f"{type(self).__name__}: num_splits={self.num_splits} sub-batches do not divide among "
                f"{self._dist.world} ranks"
            )

    def _draw(self, flat: Tensor, g: torch.Generator) -> None:
        """Fill ``flat`` with one sub-batch's draw (the values ``torch.randn(numel, generator=g)`` gives)."""
        flat.normal_(generator=g)

    def _extra_state(self) -> dict:
        return {"seed": self.seed, "steps": self.steps}

    def _load_extra_state(self, state: dict) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.steps = int(state.get("steps", 0))

    def _apply_noise(
        self,
        groups: list[tuple[dict, list[Tensor]]],
        params: list[Tensor],
        clean: list[Tensor],
        numel: int,
        sub_batch: int,
    ) -> None:
        g = torch.Generator(device=params[0].device).manual_seed(noise_seed(self.seed, self.steps, sub_batch))
        flat = getattr(self, "_flat", None)  # one buffer for every draw: no fresh megabytes (page faults) per sub-batch
        if flat is None or flat.numel() != numel or flat.dtype != params[0].dtype or flat.device != params[0].device:
            flat = self._flat = torch.empty(numel, device=params[0].device, dtype=params[0].dtype)
        self._draw(flat, g)
        z = [v.view_as(w) for v, w in zip(flat.split([w.numel() for w in clean]), clean)]
        k = 0
        for group, ps in groups:
            if ps:
                self._perturb(group, ps, clean[k : k + len(ps)], z[k : k + len(ps)])
            k += len(ps)

    def _step(self, closure: Closure) -> Tensor:
        if self.num_splits > 1 and isinstance(closure, WholeBatch):
            raise ValueError(f"{type(self).__name__}: {NO_SUB_BATCHES}")
        self.zero_grad()
        groups = [(g, [p for p in ps if self.perturb == "all" or is_weight(self.name_of(p))]) for g, ps in self._groups]
        params = [p for _, ps in groups for p in ps]
        clean = self._save_weights(params)
        numel = sum(p.numel() for p in params)
        local = self.num_splits // self._dist.world  # this rank's sub-batches: global ones rank*local ...
        once = self.bn_update == "once" and local > 1 and self._bn.buffers
        saved_bn = self._bn.save() if once else None
        bn_sum = None
        losses = []
        for part in range(local):
            if params:
                self._apply_noise(groups, params, clean, numel, self._dist.rank * local + part)
            if saved_bn is not None and part:
                self._bn.restore(saved_bn)
            losses.append(self._backward(closure, part, local))
            if saved_bn is not None:
                bn_sum = (
                    [b.clone() for b in self._bn.floats]
                    if bn_sum is None
                    else list(torch._foreach_add(bn_sum, self._bn.floats))
                )
            if params:
                torch._foreach_copy_(params, clean)
        if bn_sum is not None:
            torch._foreach_mul_(bn_sum, 1.0 / local)
            torch._foreach_copy_(self._bn.floats, bn_sum)
        if self._sync_grads(final=True):
            self.base_optimizer.step()
        self.steps += 1
        return torch.stack(losses).mean()


class DAMP(NoiseOptimizer):
    """Data Augmentation via Multiplicative Perturbations (Trinh et al., NeurIPS 2024).

    Each sub-batch sees ``w * xi`` with ``xi ~ N(1, sigma^2)`` elementwise on the weights (conv/linear kernels and norm
    scales; ``perturb="all"`` adds biases and BN shifts). ``num_splits`` is the paper's M (8 in every reference config);
    ``num_splits=1`` draws one noise per batch. Same cost as SGD: one forward+backward per sample.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        sigma: the standard deviation of the multiplicative noise.
        kw: :class:`NoiseOptimizer`'s options: ``num_splits`` (sub-batches, each with its own draw), ``perturb``
            (``"weights"`` or ``"all"``), ``seed`` (keys the draws), ``bn_update``, and the base optimizer's arguments.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(self, params: Params, base_optimizer: Optimizer, sigma: float = 0.2, **kw: Any) -> None:
        check_nonneg(sigma=sigma)
        super().__init__(params, base_optimizer, {"sigma": sigma}, **kw)

    def _perturb(self, group: dict, params: list[Tensor], clean: list[Tensor], z: list[Tensor]) -> None:
        torch._foreach_addcmul_(params, clean, z, value=group["sigma"])  # w + sigma z w = w * xi


class DAAP(NoiseOptimizer):
    """Data Augmentation via Additive Perturbations (DAMP paper, Algorithm 3): ``w + N(0, sigma^2)``.

    The paper does not say which parameters get noise; the default uses DAMP's filter (weights only) so the two are
    comparable, ``perturb="all"`` noises every parameter.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        sigma: the standard deviation of the additive noise.
        kw: :class:`NoiseOptimizer`'s options: ``num_splits`` (sub-batches, each with its own draw), ``perturb``
            (``"weights"`` or ``"all"``), ``seed`` (keys the draws), ``bn_update``, and the base optimizer's arguments.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(self, params: Params, base_optimizer: Optimizer, sigma: float = 0.01, **kw: Any) -> None:
        check_nonneg(sigma=sigma)
        super().__init__(params, base_optimizer, {"sigma": sigma}, **kw)

    def _perturb(self, group: dict, params: list[Tensor], clean: list[Tensor], z: list[Tensor]) -> None:
        torch._foreach_add_(params, z, alpha=group["sigma"])


class RMP(NoiseOptimizer):
    """Random Model Perturbation, the AMP paper's baseline (AMP's original trainer).

    One forward/backward at ``w + delta``, ``delta ~ U(-b, b)`` elementwise with ``b = sqrt(epsilon / numel)`` per
    tensor, on every parameter.

    Args:
        params: the model (recommended), ``named_parameters()``, plain tensors or param groups (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        base_optimizer: the optimizer that steps, built or its class (see
            :class:`~landscape.trainers.optim.PerturbedOptimizer`).
        epsilon: sets the half-width ``b`` of the uniform noise.
        kw: :class:`NoiseOptimizer`'s options: ``num_splits`` (sub-batches, each with its own draw), ``perturb``
            (``"weights"`` or ``"all"``), ``seed`` (keys the draws), ``bn_update``, and the base optimizer's arguments.

    Raises:
        ValueError: a negative hyperparameter, an unknown option, or no parameters to perturb.
        TypeError: ``base_optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(self, params: Params, base_optimizer: Optimizer, epsilon: float = 0.1, **kw: Any) -> None:
        check_nonneg(epsilon=epsilon)
        super().__init__(params, base_optimizer, {"epsilon": epsilon}, **{"num_splits": 1, "perturb": "all", **kw})

    def _draw(self, flat: Tensor, g: torch.Generator) -> None:
        flat.uniform_(generator=g)  # torch.rand's values

    def _perturb(self, group: dict, params: list[Tensor], clean: list[Tensor], z: list[Tensor]) -> None:
        torch._foreach_mul_(z, 2.0)
        torch._foreach_add_(z, -1.0)  # U(-1, 1)
        torch._foreach_mul_(z, [math.sqrt(group["epsilon"] / w.numel()) for w in clean])
        torch._foreach_add_(params, z)


__all__ = ["DAMP", "DAAP", "RMP"]
