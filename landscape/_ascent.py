"""The worst point of a ball: projected gradient ascent (SAM's inner problem) and Auto-PGD (Croce & Hein 2020).

Both work on ``z``, the perturbation in the ball's own coordinates: the weights move by ``delta = T z`` with ``T``
an elementwise scale (1, or ``|w|`` for adaptive sharpness), so the set is ``{T z : ||z|| <= r}`` and its
projection is the plain one (an L2 ball, or a box for L∞). ``objective(z)`` returns the values at ``w + T z`` and
the gradient w.r.t. ``z`` (``T`` times the gradient w.r.t. the weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from landscape.trainers.rules import project_to_ball_

Values = tuple[float, float]  # (loss, accuracy)
Objective = Callable[[list[Tensor]], tuple[Values, list[Tensor]]]

MOMENTUM = 0.75  # Croce & Hein's alpha (the weight of the new point; 1 - alpha on the previous step)
SUCCESS_RATE = 0.75  # rho of their condition 1: halve the step when fewer iterations than this improved


def worse(a: Values | None, b: Values) -> Values:
    """The values with the larger loss; a non-finite loss (the model diverged inside the ball) is the worst case and
    stays (``max`` would keep a finite loss over a NaN)."""
    if a is not None and (not np.isfinite(a[0]) or (np.isfinite(b[0]) and a[0] >= b[0])):
        return a
    return b


def worst_of(found: list[Values]) -> Values:
    best: Values | None = None
    for values in found:
        best = worse(best, values)
    assert best is not None
    return best


def global_norm(xs: list[Tensor]) -> float:
    return math.sqrt(sum(float((x.double() ** 2).sum()) for x in xs))


@dataclass
class Ball:
    """``{z : ||z||_norm <= radius}``: the step direction of ascent and the projection for one norm."""

    radius: float
    norm: str = "l2"  # or "linf"

    def project_(self, z: list[Tensor]) -> None:
        if self.norm == "l2":
            project_to_ball_(z, self.radius, eps=0.0)
        else:
            torch._foreach_clamp_min_(z, -self.radius)
            torch._foreach_clamp_max_(z, self.radius)

    def direction(self, g: list[Tensor]) -> list[Tensor] | None:
        """The steepest ascent direction of unit norm (the norm's dual): ``g / ||g||_2``, or ``sign(g)`` for L∞;
        ``None`` where the gradient is zero."""
        if self.norm == "l2":
            n = global_norm(g)
            return None if n == 0 else [x / n for x in g]
        if all(not bool(x.any()) for x in g):
            return None
        return [x.sign() for x in g]

    def boundary(self, like: list[Tensor], generator: torch.Generator) -> list[Tensor]:
        """A random point of the boundary: uniform on the L2 sphere, or a random vertex of the box."""
        z = [torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x) for x in like]
        if self.norm == "l2":
            n = global_norm(z)
            return [x * (self.radius / n) for x in z]
        return [x.sign() * self.radius for x in z]

    def inside(self, like: list[Tensor], generator: torch.Generator) -> list[Tensor]:
        """A random point of the ball (restarts of Auto-PGD start there): uniform in the box, or on the sphere of a
        uniform radius for L2."""
        if self.norm == "l2":
            u = float(torch.rand((), generator=generator))
            return [x * u for x in self.boundary(like, generator)]
        return [
            (torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x) * 2 - 1) * self.radius for x in like
        ]


def pgd(objective: Objective, start: list[Tensor], ball: Ball, steps: int) -> Values:
    """``steps`` of normalized-gradient ascent of ``2.5 r / steps`` from ``start``, projected back onto the ball
    (SAM's ascent for ``steps=1``); the worst values seen."""
    z, step = start, 2.5 * ball.radius / steps
    best: Values | None = None
    for _ in range(steps):
        values, g = objective(z)
        best = worse(best, values)
        d = ball.direction(g)
        if d is None:
            return best
        z = [zi + step * di for zi, di in zip(z, d)]
        ball.project_(z)
    return worse(best, objective(z)[0])


def checkpoints(steps: int) -> set[int]:
    """Croce & Hein's iterations where the step size may be halved: ``p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, times ``steps``."""
    p, marks = [0.0, 0.22], set()
    while p[-1] < 1:
        marks.add(math.ceil(p[-1] * steps))
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return {m for m in marks if 0 < m < steps}


def apgd(objective: Objective, start: list[Tensor], ball: Ball, steps: int) -> Values:
    """Auto-PGD (Croce & Hein 2020, algorithm 1) maximizing the loss over the ball from ``start``: a first step of
    ``2 r``, then steps with momentum ``0.75``; at each checkpoint the step is halved and the search goes back to
    the best point when fewer than 75 % of the iterations since the last checkpoint raised the loss, or when neither
    the step nor the best loss changed since. ``steps`` gradient evaluations; the worst values seen."""
    eta = 2.0 * ball.radius
    marks = checkpoints(steps)
    x = [s.clone() for s in start]
    values, g = objective(x)
    best, best_x, best_g = values, [xi.clone() for xi in x], g
    prev_x, prev_loss = x, values[0]
    successes, last_mark, last_eta, last_best = 0, 0, eta, values[0]
    for k in range(steps):
        d = ball.direction(g)
        if d is None:
            break
        z = [xi + eta * di for xi, di in zip(x, d)]
        ball.project_(z)
        if k == 0:
            new = z
        else:
            new = [xi + MOMENTUM * (zi - xi) + (1 - MOMENTUM) * (xi - pi) for xi, zi, pi in zip(x, z, prev_x)]
            ball.project_(new)
        prev_x, x = x, new
        if k == steps - 1:
            return worse(best, objective(x)[0])
        values, g = objective(x)
        successes += values[0] > prev_loss
        prev_loss = values[0]
        if worse(best, values) is not best:
            best, best_x, best_g = values, [xi.clone() for xi in x], g
        if k + 1 in marks:
            stalled = eta == last_eta and best[0] == last_best
            if successes < SUCCESS_RATE * (k + 1 - last_mark) or stalled:
                last_eta, eta = eta, eta / 2
                x, prev_x, g = [b.clone() for b in best_x], [b.clone() for b in best_x], best_g
                prev_loss = best[0]
            else:
                last_eta = eta
            successes, last_mark, last_best = 0, k + 1, best[0]
    return best
