"""The perturbation rules, in one place: which tensors are weights, ASAM's elementwise scale, and the L2-ball
steps. The optimizers (:mod:`landscape.trainers.optim`) take one such step per update; the sweeps
(:mod:`landscape.sweeps`) iterate them (PGD) to measure the worst loss within a radius.

The in-place functions (``*_``) work on lists of tensors with ``torch._foreach_*`` ops and no host syncs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils import get_total_norm


def is_weight(name: str | None) -> bool:
    """Whether a parameter is a weight: a conv/linear kernel or norm-layer scale, which PyTorch names ``*.weight``.

    This is the filter of the official ASAM (``'weight' in name``) and of DAMP's ``kernel``/``scale`` leaves; biases and
    BatchNorm shifts are excluded.

    Args:
        name: the parameter's name in the model (``None`` for a plain tensor: not a weight).

    Returns:
        True for a weight.
    """
    return name is not None and name.rsplit(".", 1)[-1] == "weight"


def adaptive_scale(weights: list[Tensor], eta: float) -> list[Tensor]:
    """ASAM's ``T_w = |w| + eta`` (Kwon et al., eq. 8 with the official ``eta``), a new tensor per weight."""
    if not weights:  # a model without parameters named ``*.weight``: nothing to scale
        return []
    t = list(torch._foreach_abs(weights))
    torch._foreach_add_(t, eta)
    return t


def scale_to_radius_(vectors: list[Tensor], radius: float | Tensor, norm: Tensor, eps: float = 1e-12) -> None:
    """``v <- radius * v / (norm + eps)``: SAM's step onto the sphere of ``radius`` (``norm``: of the gradient the
    step follows, which for ASAM is ``||T g||``, not the norm of ``vectors``)."""
    torch._foreach_mul_(vectors, radius / (norm + eps))


def project_to_ball_(vectors: list[Tensor], radius: float, eps: float = 1e-12) -> None:
    """``v <- v * min(1, radius / ||v||)``, ``||v||`` the global L2 norm: AMP's projection (``norm="global"``)."""
    torch._foreach_mul_(vectors, (radius / (get_total_norm(vectors) + eps)).clamp(max=1.0))


def project_each_to_ball_(vectors: list[Tensor], radius: float, eps: float = 1e-12) -> None:
    """Each tensor onto its own ball of ``radius``: AMP's reference projection (``norm="per_tensor"``)."""
    coef = torch.stack(torch._foreach_norm(vectors)).add_(eps).reciprocal_().mul_(radius).clamp_(max=1.0)
    torch._foreach_mul_(vectors, list(coef.unbind()))  # a tensor per tensor


__all__ = ["is_weight"]
