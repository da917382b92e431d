"""The sharpness suite: one number for how sharp a minimum is, under each definition the literature uses.

Andriushchenko et al. (2023, "A modern look at the relationship between sharpness and generalization") showed that
whether sharpness predicts anything depends on the definition: worst case or average, L2 or L∞ ball, adaptive or
not, over the whole set or averaged over batches of ``m`` (m-sharpness). Jiang et al. (2019, "Fantastic
generalization measures") found PAC-Bayes flatness the best predictor among many. :func:`sharpness` computes each
(definitions in the README's reference and in :func:`sharpness`'s docstring); :func:`landscape.correlate` says which
of them predicts generalization over a set of runs.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, jvp

from ._ascent import Values
from ._batches import unpack
from .limits import MAX_STEPS, MAX_TRIALS, check_count, check_radii
from .problem import Problem
from .sweeps import Sweeper, SweepSettings, WeightRule

KINDS = ("sam", "adaptive", "average", "apgd", "keskar", "fisher_rao", "pacbayes")
RADIUS_KINDS = ("sam", "adaptive", "average", "apgd", "keskar")  # the kinds measured within a ball of radius rho
NORMS = ("l2", "linf")


class Sharpness(float):
    """A sharpness value (a ``float``: use it as one) with how it was found.

    Attributes:
        kind: the definition (see :func:`sharpness`).
        rho: the radius (``None`` for ``fisher_rao`` and ``pacbayes``).
        std: the spread of ``values`` (over restarts, random draws or blocks of ``m``; 0 for one value).
        values: the measure per restart (``apgd``, ``keskar``), per draw (``average``) or per block (``m=``).
        clean: the unperturbed loss (the mean over blocks with ``m=``).
        evaluations: passes over the data it took (a gradient counts as one).
        seconds: the wall-clock time it took.
        sigma: ``pacbayes``: the largest noise level within the tolerated deviation.
    """

    kind: str
    rho: float | None
    std: float
    values: np.ndarray
    clean: float
    evaluations: int
    seconds: float
    sigma: float | None

    def __new__(cls, value: float, **info) -> Sharpness:
        """The value, with the attributes above as keyword arguments."""
        obj = super().__new__(cls, value)
        obj.__dict__.update(info)
        return obj

    def as_dict(self) -> dict:
        """JSON-ready: the value and everything above."""
        return {
            "value": float(self),
            **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()},
        }


class _Counting(Sweeper):
    """A sweeper that counts its passes over the data (a sharpness's cost)."""

    count = 0

    def _evaluate(self, delta):
        self.count += 1
        return super()._evaluate(delta)

    def objective(self, t):
        f = super().objective(t)

        def counted(z):
            self.count += 1
            return f(z)

        return counted


def _error(values: Values) -> float:
    return (100.0 - values[1]) / 100.0 if np.isfinite(values[1]) else values[0]


def _pacbayes_sigma(sw: Sweeper, clean: Values, t, trials: int, deviation: float, depth: int, upper: float, g) -> float:
    """Jiang et al.'s search: the largest ``sigma`` whose noise ``N(0, sigma^2 T^2)`` moves the training error (the
    loss, for a problem without accuracy) by ``deviation`` on average over ``trials`` draws, by bisection on
    ``[0, upper]`` to within a tenth of ``deviation``."""
    base = _error(clean)
    lo, hi, sigma = 0.0, upper, upper
    for _ in range(depth):
        sigma = (lo + hi) / 2
        noisy = [
            _error(sw._evaluate([sigma * ti * torch.randn(w.shape, generator=g).to(w) for ti, w in zip(t, sw.origin)]))
            for _ in range(trials)
        ]
        moved = float(np.mean(noisy)) - base
        if abs(moved - deviation) < deviation / 10:
            break
        lo, hi = (lo, sigma) if moved > deviation else (sigma, hi)
    return sigma


def fisher_rao(problem: Problem, split: str | None = None) -> float:
    """Jiang et al.'s Fisher-Rao measure (Liang et al. 2019): ``(d + 1)^2`` times the mean over examples of
    ``<w, grad_w loss_i>^2``, ``d`` the number of analysed tensors of rank >= 2 (the layers).

    ``<w, grad_w loss_i>`` is the derivative of example i's loss along the weights themselves: one forward-mode
    product (:func:`torch.func.jvp`) per batch gives it for every example at once (the loss's gradient w.r.t. the
    outputs times their derivative; per example, the leading dim of the outputs).

    Args:
        problem: the model, data and loss (a loss of the form ``loss(outputs, targets)``).
        split: the split the mean runs over (default the problem's first).

    Returns:
        The measure (a squared norm).

    Raises:
        ValueError: a loss of the form ``loss(model, batch)`` (the outputs are needed).
    """
    if problem.model_loss:
        raise ValueError("fisher_rao needs a loss of the form loss(outputs, targets), not loss(model, batch)")
    split = split or next(iter(problem.splits))
    live = dict(problem.model.named_parameters())
    weights = {n: live[n].detach() for n in problem.param_names}
    depth = sum(w.dim() >= 2 for w in weights.values())
    sums = torch.zeros(2, dtype=torch.float64, device=problem.device)  # the sum of squares and the number of examples
    with problem.session():
        for batch, _ in problem.splits[split]:
            args, kwargs, targets = unpack(batch)
            out, along = jvp(  # type: ignore[misc]
                lambda p: functional_call(problem.model, p, args, kwargs), (weights,), (weights,)
            )
            with torch.enable_grad():
                out = out.detach().requires_grad_()
                full = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out  # as Problem.terms
                (g,) = torch.autograd.grad(problem.loss(full, targets), out)
            per_example = len(out) * (g * along).flatten(1).sum(1)  # d/dt loss_i(t w) at t = 1
            sums[0] += per_example.double().pow(2).sum()
            sums[1] += len(out)
    problem.group.sum_([sums])  # under torchrun: over every rank's share
    return (depth + 1) ** 2 * float(sums[0] / sums[1])


def sharpness(
    problem: Problem,
    rho: float | None = None,
    kind: str = "sam",
    *,
    norm: str = "l2",
    adaptive: bool = False,
    eta: float | None = None,
    m: int | None = None,
    restarts: int = 1,
    steps: int = 10,
    trials: int = 5,
    deviation: float = 0.1,
    seed: int = 0,
    is_weight: WeightRule | None = None,
    split: str | None = None,
    fast: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Sharpness:
    """How sharp the problem's minimum is, by one definition (``kind``).

    Radius kinds (``L(w + delta) - L(w)`` for the ``delta`` described, ``delta = T z`` with ``z`` in the ball of
    radius ``rho`` for ``norm``; ``T = 1``, or ``|w| + eta`` on every analysed tensor with ``adaptive=True``):

    - ``"sam"``: the worst case by ``steps`` of projected normalized-gradient ascent from 0 (SAM's ascent when
      ``steps=1``): a loose lower bound of the true worst case;
    - ``"apgd"``: the worst case by Auto-PGD (Croce & Hein 2020) with ``restarts`` (the first from 0, the others
      from random points of the ball): the worst over restarts, their spread in ``std``;
    - ``"average"``: the mean over ``trials`` random points of the ball's boundary (the L2 sphere, the L∞ box's
      vertices);
    - ``"adaptive"``: ``"sam"`` in ASAM's ball, ``T = |w| + eta`` on weights only (``eta`` 0.01 by default);
    - ``"keskar"``: Keskar et al.'s ε-sharpness, ``100 (max L(w + delta) - L(w)) / (1 + L(w))`` over the box
      ``|delta_i| <= rho (|w_i| + 1)``, the maximum by Auto-PGD (they used L-BFGS-B).

    Other kinds (``rho`` unused): ``"fisher_rao"`` (:func:`fisher_rao`) and ``"pacbayes"``: Jiang et al.'s PAC-Bayes
    flatness ``1 / sigma^2``, ``sigma`` the largest noise level whose Gaussian perturbation ``N(0, sigma^2 T^2)``
    raises the training error (the loss, without an accuracy metric) by ``deviation`` on average over ``trials``
    draws (bisection over ``[0, 2]``, 15 halvings).

    Args:
        problem: the model, data and loss (its weights are restored afterwards).
        rho: the radius (required by the radius kinds).
        kind: one of the kinds above.
        norm: ``"l2"`` or ``"linf"``: the ball's norm.
        adaptive: scale the ball elementwise by ``|w| + eta`` (Andriushchenko et al.: ``eta = 0``, exactly invariant
            to rescalings of the weights that leave the function unchanged).
        eta: the offset of the adaptive scale (default 0, ASAM's 0.01 for ``kind="adaptive"``).
        m: m-sharpness: the measure on each block of ``m`` examples of the split (its own worst case), averaged
            (the split must be a pair of tensors); ``None``: the whole split at once.
        restarts: Auto-PGD's restarts (``apgd``, ``keskar``).
        steps: gradient steps per ascent (``sam``, ``adaptive``, ``apgd``, ``keskar``).
        trials: random draws (``average``; ``pacbayes``: per noise level).
        deviation: ``pacbayes``: the tolerated rise of the error (a fraction) or loss.
        seed: the random draws' seed.
        is_weight: the rule on parameter names for which tensors are weights (``kind="adaptive"``).
        split: the split the loss averages over (default the problem's first).
        fast: ``False`` evaluates the model as written (the default evaluates a traced view; same numbers to ~1e-6).
        progress: called with a line per block (``m=``).

    Returns:
        The :class:`Sharpness` (a float with its spread and cost).

    Raises:
        ValueError: an unknown ``kind`` or ``norm``, a missing, negative or too large ``rho``, counts beyond
            :mod:`landscape.limits`, ``m`` on a loader's split, or ``fisher_rao`` with a ``loss(model, batch)``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown sharpness {kind!r}; choose from {', '.join(KINDS)}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if kind in RADIUS_KINDS:
        if rho is None or not rho >= 0:
            raise ValueError(f"sharpness {kind!r} needs a radius rho >= 0, got {rho}")
        check_radii("rho", [rho])
    check_count("restarts", restarts, MAX_TRIALS, least=1)
    check_count("steps", steps, MAX_STEPS, least=1)
    if not deviation > 0:
        raise ValueError(f"deviation must be > 0, got {deviation}")
    eta = (0.01 if kind == "adaptive" else 0.0) if eta is None else eta
    settings = SweepSettings(trials=trials, steps=steps, eta=eta, seed=seed)
    settings.validate()
    split = split or next(iter(problem.splits))
    start = time.perf_counter()
    if kind == "fisher_rao":
        value = fisher_rao(problem, split)
        return Sharpness(value, kind=kind, rho=None, std=0.0, values=np.array([value]), clean=math.nan,
                         evaluations=1, seconds=time.perf_counter() - start, sigma=None)  # fmt: skip
    blocks = [problem] if m is None else problem.blocks(split, m)
    found, cleans, sigmas, evaluations = [], [], [], 0
    for b, block in enumerate(blocks):
        counter = _Counting(block, split, settings, is_weight=is_weight, fast=fast)
        with counter as sw:
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            values, clean, sigma = _measure(sw, kind, rho, norm, adaptive, eta, restarts, trials, deviation, g)
        evaluations += counter.count
        found.append(values)
        cleans.append(clean)
        sigmas.append(sigma)
        if progress:
            progress(f"block {b + 1}/{len(blocks)}: {np.mean(values):.6g}")
    if m is None:
        per = found[0]
        value = float(per.max() if kind in ("apgd", "keskar") else per.mean())
    else:
        per = np.array([v.max() if kind in ("apgd", "keskar") else v.mean() for v in found])
        value = float(per.mean())
    sigma = float(np.mean([s for s in sigmas if s is not None])) if kind == "pacbayes" else None
    return Sharpness(value, kind=kind, rho=rho if kind in RADIUS_KINDS else None, std=float(per.std()), values=per,
                     clean=float(np.mean(cleans)), evaluations=evaluations, seconds=time.perf_counter() - start,
                     sigma=sigma)  # fmt: skip


def _measure(
    sw: Sweeper, kind, rho, norm, adaptive, eta, restarts, trials, deviation, g
) -> tuple[np.ndarray, float, float | None]:
    """One block's measure: the values per restart or draw, the clean loss, and ``pacbayes``' sigma."""
    clean = sw._evaluate([torch.zeros_like(w) for w in sw.origin])
    t = sw.scale("all" if adaptive else "none", eta)
    if kind == "pacbayes":
        sigma = _pacbayes_sigma(sw, clean, t, trials, deviation, 15, 2.0, g)  # the clean pass above, not again
        return np.array([1.0 / sigma**2]), clean[0], sigma
    if kind == "adaptive":
        found = sw.worst(rho, sw.scale("asam", eta), norm=norm)
    elif kind == "keskar":
        found = sw.worst(rho, sw.scale("all", 1.0), norm="linf", auto=True, restarts=restarts, generator=g)
        losses = np.array([v[0] for v in found])
        return 100 * (np.maximum(losses, clean[0]) - clean[0]) / (1 + clean[0]), clean[0], None
    elif kind == "average":
        found = sw.average(rho, t, norm=norm, trials=trials, g=g)
    else:
        found = sw.worst(rho, t, norm=norm, auto=kind == "apgd", restarts=restarts if kind == "apgd" else 1,
                         generator=g)  # fmt: skip
    losses = np.array([v[0] for v in found])
    if kind != "average":
        losses = np.maximum(losses, clean[0])  # the centre is in the ball
    return losses - clean[0], clean[0], None


def parse_measure(text: str, rho: float) -> tuple[str, dict]:
    """``"KIND[_linf][_adaptive][_mM][@RHO]"`` (e.g. ``apgd_linf@0.002``, ``sam_m128``) -> its canonical name and
    :func:`sharpness`'s keyword arguments (``rho`` where the text names none).

    Raises:
        ValueError: an unknown kind or part, or a radius that is not a number.
    """
    head, _, radius = text.strip().partition("@")
    kind = next((k for k in KINDS if head == k or head.startswith(k + "_")), None)
    if kind is None:
        raise ValueError(f"unknown measure {text!r}: its kind must be one of {', '.join(KINDS)}")
    parts = head[len(kind) + 1 :].split("_") if head != kind else []
    kwargs: dict = {"kind": kind}
    for part in parts:
        if part in NORMS:
            kwargs["norm"] = part
        elif part == "adaptive":
            kwargs["adaptive"] = True
        elif part.startswith("m") and part[1:].isdigit():
            kwargs["m"] = int(part[1:])
        else:
            raise ValueError(f"unknown part {part!r} of measure {text!r}: use linf, adaptive or m<size>")
    if kind in RADIUS_KINDS:
        try:
            kwargs["rho"] = float(radius) if radius else rho
        except ValueError:
            raise ValueError(f"measure {text!r}: the radius after @ must be a number") from None
    name = "_".join([kind, *parts]) + (f"@{kwargs['rho']:g}" if kind in RADIUS_KINDS else "")
    return name, kwargs


DEFAULT_MEASURES = ("sam", "apgd", "apgd_adaptive", "average", "keskar@0.001", "fisher_rao", "pacbayes")


def suite(
    problem: Problem,
    measures: Sequence[str] = DEFAULT_MEASURES,
    *,
    rho: float = 0.1,
    log: Callable[[str], None] | None = None,
    **options,
) -> dict[str, Sharpness]:
    """Several measures of one problem at once: ``{canonical name: Sharpness}`` (see :func:`parse_measure`).

    Args:
        problem: the model, data and loss.
        measures: measure names, e.g. ``["apgd", "apgd_linf@0.002", "average_adaptive@0.5", "pacbayes"]``.
        rho: the radius of the measures that name none.
        log: called with a line per measure (its value and cost).
        options: further keyword arguments of :func:`sharpness` (``steps``, ``restarts``, ``trials``, ``seed``,
            ``split``...).

    Raises:
        ValueError: as :func:`sharpness`, or an unknown measure name.
    """
    parsed = [parse_measure(m, rho) for m in measures]
    out = {}
    for name, kwargs in parsed:
        out[name] = sharpness(problem, **kwargs, **options)
        if log:
            s = out[name]
            log(f"{name}: {float(s):.6g} ± {s.std:.2g} ({s.evaluations} passes, {s.seconds:.1f} s)")
    return out


__all__ = ["sharpness", "Sharpness", "fisher_rao", "suite", "parse_measure"]
