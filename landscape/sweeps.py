"""Loss against perturbation size (:func:`sweep`), and the sharpness measures built on it (:func:`sharpness`).

For each radius ``r`` the analysed parameters move by ``delta`` (the problem's mode, restored after):

- ``random``: a Gaussian direction scaled to global norm ``r`` (``normalize="filter"``:
  the filter-normalized direction times ``r``, loss-landscape's coordinate), several trials;
- ``adversarial``: the worst ``delta`` with ``||delta|| <= r`` found by projected
  normalized-gradient ascent from 0 (``steps`` steps of ``2.5 r / steps``): SAM's and
  AMP's inner problem;
- ``multiplicative``: ``w * (1 + r xi)``, ``xi ~ N(0, 1)`` on weights (the DAMP family), trials;
- ``adaptive``: the worst ``delta = T z`` with ``||z|| <= r`` and ``T = |w| + eta`` on
  weights, 1 elsewhere (ASAM's ball), by the same ascent in ``z``.

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
from landscape.trainers.rules import adaptive_scale, project_to_ball_
from landscape.trainers.rules import is_weight as default_is_weight

from ._driver import GridJob, Output
from ._folding import faster_module
from .directions import normalize_direction, tensor_sum
from .io import Sweep, read_sweep
from .io.results import ResultWriter
from .limits import MAX_STEPS, MAX_TRIALS, check_count, check_radii
from .problem import Problem
from .surfaces import Displacement, coordinates

SweepKind = Literal["random", "adversarial", "multiplicative", "adaptive"]
SWEEP_KINDS: tuple[SweepKind, ...] = get_args(SweepKind)
SHARPNESS = {"sam": "adversarial", "adaptive": "adaptive", "average": "random"}
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


def _norm(xs: list[Tensor]) -> Tensor:
    return torch.sqrt(tensor_sum((x.double() ** 2).sum() for x in xs))


def _worse(a: tuple[float, float] | None, b: tuple[float, float]) -> tuple[float, float]:
    """The (loss, accuracy) with the larger loss; a non-finite loss (the model diverged inside the ball) is the
    worst case and stays (``max`` would keep a finite loss over a NaN: the unperturbed loss reported at r = 1e30)."""
    if a is not None and (not np.isfinite(a[0]) or (np.isfinite(b[0]) and a[0] >= b[0])):
        return a
    return b


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
        z = [torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) for w in self.origin]
        if self.s.normalize == "filter":
            z = list(
                normalize_direction(
                    dict(zip(self.names, z)), dict(zip(self.names, self.origin)), "filter", "biasbn"
                ).values()
            )
            return [r * d for d in z]
        scale = r / float(_norm(z))
        return [scale * d for d in z]

    def _multiplicative(self, r: float, g: torch.Generator) -> list[Tensor]:
        return [
            r * torch.randn(w.shape, generator=g, dtype=torch.float32).to(w) * w if m else torch.zeros_like(w)
            for w, m in zip(self.origin, self.weight_mask)
        ]

    def _ascent(self, r: float, adaptive: bool) -> tuple[float, float]:
        scales = iter(adaptive_scale([w for w, m in zip(self.origin, self.weight_mask) if m], self.s.eta))
        t = [next(scales) if (adaptive and m) else torch.ones_like(w) for w, m in zip(self.origin, self.weight_mask)]
        z = [torch.zeros_like(w) for w in self.origin]
        step = 2.5 * r / self.s.steps
        best: tuple[float, float] | None = None
        for _ in range(self.s.steps):
            self.disp.offset([ti * zi for ti, zi in zip(t, z)])
            values, grads = self.problem.loss_and_grad(self.split, self.params, self.module)
            best = _worse(best, self._values(values))
            tg = [ti * gi for ti, gi in zip(t, grads)]  # gradient w.r.t. z
            gn = float(_norm(tg))
            if gn == 0:
                break
            z = [zi + (step / gn) * gi for zi, gi in zip(z, tg)]
            project_to_ball_(z, r, eps=0.0)  # the PGD step back onto the ball
        return _worse(best, self._evaluate([ti * zi for ti, zi in zip(t, z)]))

    @torch.no_grad()
    def point(self, kind: str, r: float, radius_index: int = 0) -> dict[str, object]:
        """``{"loss_mean", "loss_std", "acc_mean", "acc_std", "losses", "accs"}`` at radius ``r``
        (accuracies are NaN for a problem without an ``acc`` metric)."""
        if kind not in SWEEP_KINDS:
            raise ValueError(f"unknown sweep kind {kind!r}; choose from {', '.join(SWEEP_KINDS)}")
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
        return {
            "loss_mean": losses.mean(),
            "loss_std": losses.std(),
            "acc_mean": accs.mean(),
            "acc_std": accs.std(),
            "losses": losses,
            "accs": accs,
        }


def sweep(
    problem: Problem,
    radii: Sequence[float] | np.ndarray | str,
    *,
    kinds: Sequence[str] = SWEEP_KINDS,
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


def sharpness(
    problem: Problem,
    rho: float,
    kind: str = "sam",
    *,
    steps: int = 10,
    trials: int = 5,
    eta: float = 0.01,
    seed: int = 0,
    is_weight: WeightRule | None = None,
    split: str | None = None,
    fast: bool = True,
) -> float:
    """``L(w + delta) - L(w)`` at radius ``rho``: one number for a minimum's sharpness.

    Args:
        problem: the model, data and loss (its weights are restored afterwards).
        rho: the radius of the perturbation (>= 0).
        kind: ``"sam"``: the worst case in the L2 ball, found by ``steps`` of projected gradient ascent (SAM's
            definition); ``"adaptive"``: the worst case in ASAM's ball scaled by ``|w| + eta``; ``"average"``: the mean
            over ``trials`` random directions on the sphere.
        steps: ascent steps for ``sam`` and ``adaptive``.
        trials: random draws for ``average``.
        eta: the adaptive ball's offset (ASAM's).
        seed: the draws' seed.
        is_weight: the rule on parameter names for which tensors are weights (the adaptive ball).
        split: the split the loss averages over (default the problem's first).
        fast: ``False`` evaluates the model as written (the default evaluates a traced view; same numbers to ~1e-6).

    Returns:
        The loss increase (a lower bound of the true worst case for ``sam`` and ``adaptive``).

    Raises:
        ValueError: an unknown ``kind``, a negative or too large ``rho``, or counts beyond :mod:`landscape.limits`.
    """
    if kind not in SHARPNESS:
        raise ValueError(f"unknown sharpness {kind!r}; choose from {', '.join(SHARPNESS)}")
    if not rho >= 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    check_radii("rho", [rho])
    settings = SweepSettings(trials=trials, steps=steps, eta=eta, seed=seed)
    with Sweeper(problem, split, settings, is_weight=is_weight, fast=fast) as sw:
        clean = float(sw.point("random", 0.0)["loss_mean"])  # type: ignore[arg-type]
        return float(sw.point(SHARPNESS[kind], rho)["loss_mean"]) - clean  # type: ignore[arg-type]


__all__ = ["sweep", "sharpness"]
