"""Spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019; Lin et al. 2016).

For each of ``num_probes`` random unit vectors, ``steps`` Lanczos iterations give a
Gauss quadrature (Ritz values as nodes, squared first eigenvector components as
weights); the density is their average, smoothed by Gaussians. The three-term recurrence
keeps only three vectors (no stored basis, unlike PyHessian's ``density``), so memory is
O(n) whatever ``steps`` is; loss of orthogonality only duplicates converged nodes,
which the quadrature weights absorb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor


@dataclass
class Density:
    nodes: np.ndarray  # (probes, steps) Ritz values
    weights: np.ndarray  # (probes, steps), each row sums to 1
    grid: np.ndarray
    density: np.ndarray  # on grid; integrates to 1
    sigma: float
    matvecs: int


def slq_nodes(
    matvec: Callable[[Tensor], Tensor], n: int, steps: int, g: torch.Generator, device
) -> tuple[np.ndarray, np.ndarray]:
    v = torch.randn(n, generator=g, dtype=torch.float64).to(device)
    v /= v.norm()
    v_prev = torch.zeros_like(v)
    alpha, beta = [], []
    b = 0.0
    for _ in range(min(steps, n)):
        w = matvec(v).to(device, torch.float64)
        a = float(w @ v)
        w = w - a * v - b * v_prev
        alpha.append(a)
        b = float(w.norm())
        if b < 1e-10:
            break
        beta.append(b)
        v_prev, v = v, w / b
    theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta[: len(alpha) - 1]))
    return theta, s[0] ** 2


def spectral_density(
    matvec: Callable[[Tensor], Tensor],
    n: int,
    *,
    num_probes: int = 10,
    steps: int = 80,
    seed: int = 0,
    num_grid: int = 2000,
    sigma: float | None = None,
    device: torch.device | str = "cpu",
) -> Density:
    """The smoothed eigenvalue density of a symmetric operator (``num_probes * steps`` products)."""
    if num_probes < 1 or steps < 1:
        raise ValueError(f"need num_probes >= 1 and steps >= 1, got {num_probes}, {steps}")
    g = torch.Generator().manual_seed(seed)
    runs = [slq_nodes(matvec, n, steps, g, device) for _ in range(num_probes)]
    width = max(len(t) for t, _ in runs)
    nodes = np.full((num_probes, width), np.nan)
    weights = np.zeros((num_probes, width))
    for i, (t, w) in enumerate(runs):
        nodes[i, : len(t)], weights[i, : len(w)] = t, w
    lo, hi = np.nanmin(nodes), np.nanmax(nodes)
    sigma = sigma or max(hi - lo, 1e-12) * 0.01
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, num_grid)
    flat_t, flat_w = nodes[~np.isnan(nodes)], weights[~np.isnan(nodes)]
    dens = (flat_w[None, :] * np.exp(-0.5 * ((grid[:, None] - flat_t[None, :]) / sigma) ** 2)).sum(1)
    dens /= num_probes * sigma * np.sqrt(2 * np.pi)
    return Density(nodes, weights, grid, dens, sigma, sum(len(t) for t, _ in runs))
