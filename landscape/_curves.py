"""Curves between two minima (Garipov et al. 2018, ``timgaripov/dnn-mode-connectivity``), for any module.

A curve is ``φ(t) = sum_i c_i(t) θ_i`` over control points ``θ_0`` (the first minimum), the bends and ``θ_{k+1}``
(the second): Bernstein weights for a Bezier curve, piecewise-linear ones for a polygonal chain. Training samples
``t`` uniformly for every batch and takes a step on the bends down the loss at ``φ(t)``; the network is called with
``φ(t)``'s tensors by ``torch.func.functional_call``, so no layer is rewritten as a "curve layer" and any
``nn.Module`` works. BatchNorm uses batch statistics while training (its running statistics are not those of
``φ(t)``); the evaluation recomputes them at every point.
"""

from __future__ import annotations

from math import comb
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from ._batches import chunk
from ._system.ranks import Ranks
from .problem import Problem

CurveKind = Literal["bezier", "polychain"]
CURVES = ("bezier", "polychain")


def coefficients(curve: CurveKind, bends: int, t: Any) -> np.ndarray:
    """The weights of the control points ``θ_0 .. θ_{bends+1}`` at each ``t`` (rows sum to 1)."""
    t = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    n = bends + 1
    i = np.arange(n + 1)
    if curve == "bezier":
        return np.array([comb(n, k) for k in i]) * t**i * (1 - t) ** (n - i)
    s = np.clip(t[:, 0] * n, 0, n)
    seg = np.minimum(np.floor(s).astype(int), n - 1)
    w = np.zeros((len(s), n + 1))
    w[np.arange(len(s)), seg] = 1 - (s - seg)
    w[np.arange(len(s)), seg + 1] = s - seg
    return w


def on_line(a: dict[str, Tensor], b: dict[str, Tensor], bends: int) -> list[dict[str, Tensor]]:
    """Bends evenly spaced on the straight line (Garipov et al.'s initialisation): the untrained curve is the line."""
    return [{k: torch.lerp(a[k], b[k], i / (bends + 1)) for k in a} for i in range(1, bends + 1)]


def combine(weights: np.ndarray, tensors: list[Tensor]) -> Tensor:
    """``sum_i weights[i] * tensors[i]`` (differentiable in the tensors)."""
    out = tensors[0] * float(weights[0])
    for w, t in zip(weights[1:], tensors[1:]):
        out = out + float(w) * t
    return out


class _At(nn.Module):
    """The model called with other tensors (a point of the curve), for :meth:`Problem.terms`."""

    def __init__(self, model: nn.Module, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        self.model, self.tensors = model, tensors

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.tensors, args, kwargs)


def train_epoch(
    problem: Problem,
    controls: list[dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    curve: CurveKind,
    split: str,
    generator: torch.Generator,
    ranks: Ranks,
    bar: tqdm,
) -> float:
    """One pass over the split, a step per batch at a fresh ``t``; the mean training loss. Every rank draws the
    same ``t`` and takes its part of each batch; gradients are summed over the ranks."""
    bends = [t for c in controls[1:-1] for t in c.values()]
    names = list(controls[0])
    sums = torch.zeros(2, dtype=torch.float64)  # this rank's part of (loss x batch weight, batch weight)
    with problem.session():
        for m in problem.model.modules():
            m.train(isinstance(m, _BatchNorm))  # batch statistics; dropout and the rest as in evaluation
        for batch, n in problem.splits[split]:
            t = float(torch.rand((), generator=generator))
            c = coefficients(curve, len(controls) - 2, t)[0]
            point = {k: combine(c, [ctrl[k] for ctrl in controls]) for k in names}
            part = chunk(batch, ranks.rank, ranks.world) if ranks.world > 1 else batch
            share = problem.splits[split].size_fn(part) / float(n) if ranks.world > 1 else 1.0
            optimizer.zero_grad(set_to_none=False)
            with torch.enable_grad():
                loss = problem.terms(part, _At(problem.model, point), metrics=False)["loss"]
                (loss * share).backward()
            ranks.sum_([b.grad for b in bends if b.grad is not None])
            optimizer.step()
            sums += torch.tensor([float(loss.detach()) * share * float(n), share * float(n)], dtype=torch.float64)
            bar.update(1)
    ranks.sum_([sums])
    return float(sums[0] / sums[1].clamp_min(1e-30))


def default_optimizer(lr: float) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
    """SGD with momentum 0.9, as Garipov et al. train their curves."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)
