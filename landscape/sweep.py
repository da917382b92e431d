"""Loss against perturbation size, and the sharpness measures built on it.

For each radius ``r`` the weights move by ``delta`` (model in eval mode, restored after):

- ``random``: a Gaussian direction scaled to global norm ``r`` (``normalize="filter"``:
  the filter-normalized direction times ``r``, loss-landscape's coordinate), several trials;
- ``adversarial``: the worst ``delta`` with ``||delta|| <= r`` found by projected
  normalized-gradient ascent from 0 (``steps`` steps of ``2.5 r / steps``): SAM's and
  AMP's inner problem;
- ``multiplicative``: ``w * (1 + r xi)``, ``xi ~ N(0, 1)`` on weights (the DAMP family), trials;
- ``adaptive``: the worst ``delta = T z`` with ``||z|| <= r`` and ``T = |w| + eta`` on
  weights, 1 elsewhere (ASAM's ball), by the same ascent in ``z``.

This draws the AMP poster's "loss values with varying perturbation size" for any checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainers.optim import is_weight

from .directions import normalize_direction
from .evaluation import EvalSet, loss_and_accuracy
from .surface import Displacement

KINDS = ("random", "adversarial", "multiplicative", "adaptive")
SHARPNESS = {"sam": "adversarial", "adaptive": "adaptive", "average": "random"}


@dataclass(frozen=True)
class SweepSettings:
    trials: int = 5
    steps: int = 10
    normalize: str = "none"  # random: "none" (global norm r) or "filter"
    eta: float = 0.01
    seed: int = 0

    def validate(self) -> None:
        if self.trials < 1 or self.steps < 1:
            raise ValueError(f"--trials and --steps must be >= 1, got {self.trials}, {self.steps}")
        if self.normalize not in ("none", "filter"):
            raise ValueError(f"normalize must be 'none' or 'filter', got {self.normalize!r}")


def _norm(xs: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((x.double() ** 2).sum() for x in xs))


def _loss_and_grad(model: nn.Module, params: list[Tensor], data: EvalSet) -> tuple[float, float, list[Tensor]]:
    total, correct = 0.0, 0
    grads = [torch.zeros_like(p) for p in params]
    with torch.enable_grad():
        for x, y in data.batches():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum") / len(data)
            g = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
            torch._foreach_add_(grads, list(g))
            total += loss.item()
            correct += int((logits.argmax(1) == y).sum())
    return total, 100.0 * correct / len(data), grads


class Sweeper:
    """Evaluates one (kind, radius) point at a time on a model moved in place (use as a context manager)."""

    def __init__(self, model: nn.Module, data: EvalSet, settings: SweepSettings = SweepSettings()) -> None:
        settings.validate()
        self.model, self.data, self.s = model, data, settings
        self.disp = Displacement(model, [])
        names = self.disp.names
        self.weight_mask = [is_weight(n) for n in names]
        self.params = [p for n, p in model.named_parameters() if n in set(names)]
        if [n for n, _ in model.named_parameters()] != names:
            raise ValueError("sweeps perturb parameters; the model has floating tensors outside them in this order")

    def __enter__(self) -> "Sweeper":
        self.disp.__enter__()
        self.origin = self.disp.origin
        return self

    def __exit__(self, *exc) -> None:
        self.disp.__exit__(*exc)

    def _generator(self, kind: str, radius_index: int) -> torch.Generator:
        # a stable seed per (kind, radius): a resumed or re-run sweep draws the same perturbations
        return torch.Generator().manual_seed(self.s.seed * 1_000_003 + KINDS.index(kind) * 10_007 + radius_index)

    def _evaluate(self, delta: list[Tensor]) -> tuple[float, float]:
        self.disp.offset(delta)
        return loss_and_accuracy(self.model, self.data)

    def _random(self, r: float, g: torch.Generator) -> list[Tensor]:
        z = [torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) for w in self.origin]
        if self.s.normalize == "filter":
            names = self.disp.names
            z = list(normalize_direction(dict(zip(names, z)), dict(zip(names, self.origin)), "filter", "biasbn").values())
            return [r * d for d in z]
        scale = r / float(_norm(z))
        return [scale * d for d in z]

    def _multiplicative(self, r: float, g: torch.Generator) -> list[Tensor]:
        return [r * torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) * w if m else torch.zeros_like(w)
                for w, m in zip(self.origin, self.weight_mask)]

    def _ascent(self, r: float, adaptive: bool) -> tuple[float, float]:
        t = [(w.abs() + self.s.eta) if (adaptive and m) else torch.ones_like(w) for w, m in zip(self.origin, self.weight_mask)]
        z = [torch.zeros_like(w) for w in self.origin]
        step = 2.5 * r / self.s.steps
        best = (-np.inf, 0.0)
        for _ in range(self.s.steps):
            self.disp.offset([ti * zi for ti, zi in zip(t, z)])
            loss, acc, grads = _loss_and_grad(self.model, self.params, self.data)
            best = max(best, (loss, acc))
            tg = [ti * gi for ti, gi in zip(t, grads)]  # gradient w.r.t. z
            gn = float(_norm(tg))
            if gn == 0:
                break
            z = [zi + (step / gn) * gi for zi, gi in zip(z, tg)]
            zn = float(_norm(z))
            if zn > r:
                z = [zi * (r / zn) for zi in z]
        final = self._evaluate([ti * zi for ti, zi in zip(t, z)])
        return max(best, final)

    @torch.no_grad()
    def point(self, kind: str, r: float, radius_index: int = 0) -> dict[str, object]:
        """``{"loss_mean", "loss_std", "acc_mean", "acc_std", "losses", "accs"}`` at radius ``r``."""
        if kind not in KINDS:
            raise ValueError(f"unknown sweep kind {kind!r}; choose from {', '.join(KINDS)}")
        if r == 0:
            results = [self._evaluate([torch.zeros_like(w) for w in self.origin])] * self.s.trials
        elif kind in ("adversarial", "adaptive"):
            results = [self._ascent(r, adaptive=kind == "adaptive")] * self.s.trials
        else:
            g = self._generator(kind, radius_index)
            draw = self._random if kind == "random" else self._multiplicative
            results = [self._evaluate(draw(r, g)) for _ in range(self.s.trials)]
        losses = np.array([lo for lo, _ in results])
        accs = np.array([a for _, a in results])
        return {"loss_mean": losses.mean(), "loss_std": losses.std(), "acc_mean": accs.mean(), "acc_std": accs.std(),
                "losses": losses, "accs": accs}


def sharpness(model: nn.Module, data: EvalSet, rho: float, measure: str = "sam", settings: SweepSettings = SweepSettings()) -> float:
    """``L(w + delta) - L(w)`` at radius ``rho``: worst case in the L2 ball (``sam``), in ASAM's ball
    (``adaptive``), or the mean over random directions on the sphere (``average``)."""
    if measure not in SHARPNESS:
        raise ValueError(f"unknown sharpness {measure!r}; choose from {', '.join(SHARPNESS)}")
    with Sweeper(model, data, settings) as sw:
        clean = sw.point("random", 0.0)["loss_mean"]
        return float(sw.point(SHARPNESS[measure], rho)["loss_mean"] - clean)
