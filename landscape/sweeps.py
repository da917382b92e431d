"""Loss against perturbation size (:func:`sweep`); the sharpness measures (:mod:`landscape.flatness`) use its
:class:`Sweeper`.

For each radius ``r`` the analysed parameters move by ``delta`` (the problem's mode, restored after):

- ``random``: a Gaussian direction scaled to global norm ``r`` (``normalize="filter"``:
  the filter-normalized direction times ``r``, loss-landscape's coordinate), several trials;
- ``adversarial``: the worst ``delta`` with ``||delta|| <= r`` found by projected
  normalized-gradient ascent from 0 (``steps`` steps of ``2.5 r / steps``): SAM's and
  AMP's inner problem;
- ``multiplicative``: ``w * (1 + r xi)``, ``xi ~ N(0, 1)`` on weights (the DAMP family), trials;
- ``adaptive``: the worst ``delta = T z`` with ``||z|| <= r`` and ``T = |w| + eta`` on
  weights, 1 elsewhere (ASAM's ball), by the same ascent in ``z``;
- ``apgd``: the worst ``delta`` in the L2 ball by Auto-PGD (Croce & Hein 2020: momentum, step-size halving) with
  ``trials`` restarts (the first from 0, the others from random points of the ball): the point's loss is the worst
  over the restarts, its std their spread. A far tighter lower bound of the true worst case than ``adversarial``.

"Weights" are decided by a rule on parameter names, by default :func:`landscape.trainers.optim.is_weight`
(PyTorch's ``*.weight``: conv/linear kernels and norm scales, not biases), the rule ASAM and
DAMP use; pass ``is_weight=`` to change it. This draws the AMP poster's "loss values with
varying perturbation size" for any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from landscape._system.ranks import join_group
from landscape.trainers.rules import adaptive_scale
from landscape.trainers.rules import is_weight as default_is_weight

from ._ascent import Ball, Objective, Values, apgd, pgd, worst_of
from ._driver import GridJob, Output
from ._folding import faster_module
from .directions import normalize_direction, output_axes
from .io import Sweep, read_sweep
from .io.results import ResultWriter
from .limits import MAX_STEPS, MAX_TRIALS, check_count, check_radii
from .problem import Problem
from .surfaces import Displacement, coordinates

SweepKind = Literal["random", "adversarial", "multiplicative", "adaptive", "apgd"]
SWEEP_KINDS: tuple[SweepKind, ...] = get_args(SweepKind)
DEFAULT_KINDS = SWEEP_KINDS[:4]  # apgd, with its restarts, is asked for by name
SweepNormalize = Literal["none", "filter"]
NORMALIZE: tuple[SweepNormalize, ...] = get_args(SweepNormalize)
WeightRule = Callable[[str], bool]


@dataclass(frozen=True)
class SweepSettings:
    trials: int = 5
    steps: int = 10
    normalize: str = "none"  # random: "none" (global norm r) or "filter"
    eta: float = 0.01
    seed: int = 0

    def validate(self) -> None:
        check_count("trials", self.trials, MAX_TRIALS, least=1)
        check_count("steps", self.steps, MAX_STEPS, least=1)
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


class Sweeper:
    """Evaluates one (kind, radius) point at a time on a model moved in place (use as a context manager)."""

    def __init__(
        self,
        problem: Problem,
        split: str | None = None,
        settings: SweepSettings = SweepSettings(),
        *,
        is_weight: WeightRule | None = None,
        fast: bool = True,
    ) -> None:
        settings.validate()
        self.split = split or next(iter(problem.splits))
        if self.split not in problem.splits:
            raise ValueError(f"no split {self.split!r} in the problem (it has {', '.join(problem.splits)})")
        self.problem, self.s = problem, settings
        self.rule = is_weight or default_is_weight
        self.fast = fast

    def __enter__(self) -> Sweeper:
        self._session = self.problem.session()
        self._session.__enter__()
        self.disp = Displacement(self.problem.model, [], "weights", self.problem.param_names)
        self.disp.__enter__()
        live = dict(self.problem.model.named_parameters())
        self.names, self.origin = self.disp.names, self.disp.origin
        self.params: list[Tensor] = [live[n] for n in self.names]  # the Parameters themselves: gradients w.r.t. them
        self.weight_mask = [bool(self.rule(n)) for n in self.names]
        self.axes = output_axes(self.problem.model)
        self.module = faster_module(self.problem) if self.fast else None  # the same function, faster
        return self

    def __exit__(self, *exc) -> None:
        self.disp.__exit__(*exc)
        self._session.__exit__(*exc)

    def _generator(self, kind: str, radius_index: int) -> torch.Generator:
        # a stable seed per (kind, radius): a resumed or re-run sweep draws the same perturbations
        return torch.Generator().manual_seed(self.s.seed * 1_000_003 + SWEEP_KINDS.index(kind) * 10_007 + radius_index)

    def _values(self, values: dict[str, float]) -> tuple[float, float]:
        return values["loss"], values.get("acc", float("nan"))

    def _evaluate(self, delta: list[Tensor]) -> tuple[float, float]:
        self.disp.offset(delta)
        return self._values(self.problem.evaluate(self.split, self.module))

    def _random(self, r: float, g: torch.Generator) -> list[Tensor]:
        if self.s.normalize != "filter":
            return Ball(r).boundary(self.origin, g)
        z = [torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) for w in self.origin]
        named = normalize_direction(
            dict(zip(self.names, z)), dict(zip(self.names, self.origin)), "filter", "biasbn", self.axes
        )
        return [r * d for d in named.values()]

    def _multiplicative(self, r: float, g: torch.Generator) -> list[Tensor]:
        return [
            r * torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) * w if m else torch.zeros_like(w)
            for w, m in zip(self.origin, self.weight_mask)
        ]

    def scale(self, kind: str, eta: float) -> list[Tensor]:
        """The ball's elementwise scale ``T`` (``delta = T z``): ``"asam"``: ``|w| + eta`` on weights, 1 elsewhere
        (ASAM's); ``"all"``: ``|w| + eta`` on every analysed tensor (Andriushchenko et al.'s adaptive sharpness for
        ``eta = 0``); ``"none"``: 1."""
        if kind == "none":
            return [torch.ones_like(w) for w in self.origin]
        scaled = [m or kind == "all" for m in self.weight_mask]
        scales = iter(adaptive_scale([w for w, s in zip(self.origin, scaled) if s], eta))
        return [next(scales) if s else torch.ones_like(w) for w, s in zip(self.origin, scaled)]

    def objective(self, t: list[Tensor]) -> Objective:
        """``z -> (values at w + T z, gradient w.r.t. z)``: what the ascent maximizes."""

        def f(z: list[Tensor]) -> tuple[Values, list[Tensor]]:
            self.disp.offset([ti * zi for ti, zi in zip(t, z)])
            values, grads = self.problem.loss_and_grad(self.split, self.params, self.module)
            return self._values(values), [ti * gi for ti, gi in zip(t, grads)]

        return f

    def worst(
        self,
        r: float,
        t: list[Tensor],
        *,
        norm: str = "l2",
        auto: bool = False,
        restarts: int = 1,
        generator: torch.Generator | None = None,
    ) -> list[Values]:
        """The worst values found in ``{T z : ||z||_norm <= r}``, one per restart: ``steps`` of PGD, or Auto-PGD
        (``auto``); the first restart starts at the centre, the others at random points of the ball."""
        ball, objective = Ball(r, norm), self.objective(t)
        generator = generator or torch.Generator().manual_seed(self.s.seed)
        found = []
        for i in range(restarts):
            start = [torch.zeros_like(w) for w in self.origin] if i == 0 else ball.inside(self.origin, generator)
            found.append((apgd if auto else pgd)(objective, start, ball, self.s.steps))
        return found

    def average(self, r: float, t: list[Tensor], *, norm: str, trials: int, g: torch.Generator) -> list[Values]:
        """Values at ``w + T z`` for ``trials`` random ``z`` on the ball's boundary."""
        ball = Ball(r, norm)
        return [self._evaluate([ti * zi for ti, zi in zip(t, ball.boundary(self.origin, g))]) for _ in range(trials)]

    @torch.no_grad()
    def point(self, kind: str, r: float, radius_index: int = 0) -> dict[str, object]:
        """``{"loss_mean", "loss_std", "acc_mean", "acc_std", "losses", "accs"}`` at radius ``r``
        (accuracies are NaN for a problem without an ``acc`` metric)."""
        if kind not in SWEEP_KINDS:
            raise ValueError(f"unknown sweep kind {kind!r}; choose from {', '.join(SWEEP_KINDS)}")
        g = self._generator(kind, radius_index)
        if r == 0:
            results = [self._evaluate([torch.zeros_like(w) for w in self.origin])] * self.s.trials
        elif kind in ("adversarial", "adaptive"):
            t = self.scale("asam" if kind == "adaptive" else "none", self.s.eta)
            results = self.worst(r, t) * self.s.trials
        elif kind == "apgd":
            results = self.worst(r, self.scale("none", 0.0), auto=True, restarts=self.s.trials, generator=g)
        else:
            draw = self._random if kind == "random" else self._multiplicative
            results = [self._evaluate(draw(r, g)) for _ in range(self.s.trials)]
        losses = np.array([lo for lo, _ in results])
        accs = np.array([a for _, a in results])
        worst = results.index(worst_of(results))  # apgd: the worst over restarts is the point's value
        return {
            "loss_mean": losses[worst] if kind == "apgd" else losses.mean(),
            "loss_std": losses.std(),
            "acc_mean": accs[worst] if kind == "apgd" else accs.mean(),
            "acc_std": accs.std(),
            "losses": losses,
            "accs": accs,
        }


def sweep(
    problem: Problem,
    radii: Sequence[float] | np.ndarray | str,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    trials: int = 5,
    steps: int = 10,
    normalize: str = "none",
    eta: float = 0.01,
    seed: int = 0,
    is_weight: WeightRule | None = None,
    split: str | None = None,
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
) -> Sweep:
    """Loss and accuracy against perturbation radius for each kind (module docstring), one point per
    (kind, radius); with ``out=`` written point by point to a resumable ``kind="sweep"`` file.

    Under ``torchrun`` each rank takes a share of the data (losses and gradients are summed over the ranks) and
    rank 0 writes the file.

    Args:
        problem: the model, data and loss (its weights are restored afterwards).
        radii: radii >= 0 (an array or ``"MIN:MAX:NUM"``), at most :data:`~landscape.limits.MAX_RADIUS`.
        kinds: any of ``random``, ``adversarial``, ``multiplicative``, ``adaptive``.
        trials: draws per radius for random and multiplicative perturbations.
        steps: ascent (PGD) steps for adversarial and adaptive ones.
        normalize: ``"none"`` (random directions of global norm r) or ``"filter"`` (filter-normalized).
        eta: the adaptive ball's offset (ASAM's).
        seed: the draws' seed (each (kind, radius) has its own stream: a resumed sweep draws the same).
        is_weight: the rule on parameter names for which tensors are weights (multiplicative, adaptive);
            default :func:`landscape.trainers.rules.is_weight` (the tensors PyTorch names ``*.weight``).
        split: the split the loss averages over (default the problem's first).
        fast: ``False`` evaluates the model as written (the default evaluates a traced view with eval BatchNorm
            folded; same numbers to ~1e-6).
        out: the HDF5 file to write as the work goes (``None``: the result stays in memory).
        resume: finish the file a killed job left at ``out`` (its settings must match; nothing finished is
            recomputed).
        overwrite: replace an earlier result of the same kind at ``out``.
        progress: show a progress bar (on rank 0 of a ``torchrun`` job).
        log: called with one-line messages (resuming, non-finite points); ``None``: silent.
        attrs: extra attributes stored with the result.

    Returns:
        The :class:`~landscape.io.Sweep`.

    Raises:
        ValueError: an unknown kind, a negative or too large radius, counts beyond :mod:`landscape.limits`, or an
            output that exists (without ``resume``/``overwrite``), may not be replaced, or was made with other
            settings.
    """
    settings = SweepSettings(trials=trials, steps=steps, normalize=normalize, eta=eta, seed=seed)
    settings.validate()
    kinds = list(kinds)
    bad = [k for k in kinds if k not in SWEEP_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown sweep kind {', '.join(bad) or '(none)'}; choose from {', '.join(SWEEP_KINDS)}")
    radii = coordinates(radii, "radii")
    if np.any(radii < 0):
        raise ValueError("radii must be >= 0")
    check_radii("radii", radii)
    sweeper = Sweeper(problem, split, settings, is_weight=is_weight, fast=fast)
    attrs = {
        **problem.file_attrs(),
        "split": sweeper.split,
        "kinds": kinds,
        "trials": trials,
        "steps": steps,
        "normalize": normalize,
        "eta": eta,
        "seed": seed,
        "params": problem.params_attr(),
        **(attrs or {}),
    }
    values = {"loss_mean": (), "loss_std": (), "acc_mean": (), "acc_std": (), "losses": (trials,), "accs": (trials,)}
    grid = (len(kinds), len(radii))
    ranks = join_group(problem.device.type)
    job = GridJob("sweep", grid, values, attrs, Output(out, resume, overwrite, progress, log), ranks)

    def create() -> ResultWriter:
        return ResultWriter.create(out, "sweep", grid, values, {"radii": radii}, attrs, {})  # type: ignore[arg-type]

    def same_grid(w: ResultWriter) -> bool:
        return np.array_equal(w.dataset("radii"), radii)  # type: ignore[arg-type]

    todo = ranks.agree(lambda: job.open(create, same_grid, attrs))  # every rank computes every point on its share
    with job, problem.sharded(ranks), sweeper as sw:
        for k in tqdm(todo, desc="sweep", unit="pt", disable=not (progress and ranks.is_main)):
            i, j = divmod(k, len(radii))
            job.write([(k, sw.point(kinds[i], float(radii[j]), j))])
        job.finish("sweep points")
    if job.written is not None:
        return read_sweep(job.written)
    memory = job.memory
    assert memory is not None
    return Sweep("" if out is None else str(out), radii, kinds, memory.arrays, memory.computed, memory.attrs)


__all__ = ["sweep"]
