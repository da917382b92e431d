"""Trace estimation from matrix-vector products: Hutchinson and Hutch++ (Meyer et al. 2021), with intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
from scipy import stats
from torch import Tensor

TraceMethod = Literal["hutch++", "hutchinson"]
TRACE_METHODS: tuple[TraceMethod, ...] = get_args(TraceMethod)


@dataclass
class TraceResult:
    estimate: float
    stderr: float
    ci95: tuple[float, float]  # Student-t interval of the stochastic part
    matvecs: int
    method: str


def _rademacher(n: int, m: int, g: torch.Generator, device) -> Tensor:
    return (torch.randint(0, 2, (n, m), generator=g, dtype=torch.float64) * 2 - 1).to(device)


def _interval(exact: float, samples: Tensor, method: str, matvecs: int) -> TraceResult:
    m = samples.numel()
    mean = float(samples.mean())
    stderr = float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("inf")
    half = float(stats.t.ppf(0.975, m - 1)) * stderr if m > 1 else float("inf")
    est = exact + mean
    return TraceResult(est, stderr, (est - half, est + half), matvecs, method)


def trace(
    matvec: Callable[[Tensor], Tensor],
    n: int,
    num_matvecs: int = 99,
    *,
    method: str = "hutch++",
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TraceResult:
    """Estimate ``tr(A)`` with ``num_matvecs`` products.

    Hutch++ spends a third of them on a sketch ``Q = orth(A S)``, takes ``tr(Q^T A Q)``
    exactly (another third), and Hutchinson on the deflated rest (the last third); the
    interval covers that stochastic part. Plain Hutchinson averages ``z^T A z`` over
    Rademacher ``z``.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"unknown trace method {method!r}; expected one of {TRACE_METHODS}")
    g = torch.Generator().manual_seed(seed)

    def apply(V: Tensor) -> Tensor:
        return torch.stack([matvec(v).to(device, torch.float64) for v in V.T], 1)

    if method == "hutchinson" or num_matvecs < 3 or n < 3:
        z = _rademacher(n, num_matvecs, g, device)
        return _interval(0.0, (z * apply(z)).sum(0), "hutchinson", num_matvecs)
    m = min(num_matvecs // 3, n)
    Q, _ = torch.linalg.qr(apply(_rademacher(n, m, g, device)))
    exact = float(torch.trace(Q.T @ apply(Q)))
    rest = num_matvecs - 2 * m
    z = _rademacher(n, max(rest, 2), g, device)
    z = z - Q @ (Q.T @ z)
    return _interval(exact, (z * apply(z)).sum(0), "hutch++", 2 * m + z.shape[1])
