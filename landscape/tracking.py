"""Curvature during training: the sharpness of the loss tracked step by step, from any training loop.

:class:`CurvatureTracker` measures, every ``every`` steps, on a :class:`~landscape.Problem` over the live model
(usually a fixed subset of the training data):

- ``"eigenvalues"``: the top-k Hessian eigenvalues (Lanczos, warm-started from the previous measurement's
  eigenvectors; Cohen et al. 2021 compare the top one with ``2/η``);
- ``"preconditioned"``: for Adam-like optimizers, the top eigenvalue of ``P^{-1/2} H P^{-1/2}`` with Adam's
  preconditioner ``P = (1 - β₁^t) (sqrt(v_t / (1 - β₂^t)) + ε)`` from the optimizer's state (Cohen et al. 2022),
  compared with ``2 (1 + β₁) / ((1 - β₁) η)`` (38/η for β₁ = 0.9);
- ``"update"``: along the update ``Δ`` the optimizer is about to take (its step simulated on a copy, with the
  tracking data's gradient): the directional sharpness ``Δᵀ H Δ / Δᵀ Δ`` and the critical learning rate, the
  largest learning rate whose step along the update still lowers the loss, by the exponential-then-bisection line
  search of facebookresearch/scalable-curvature (``measure_critical_lr.py``) — ``2 gᵀg / gᵀHg`` for gradient
  descent on a quadratic;
- ``"grad_norm"``: the gradient norm (and the loss) on the tracking data;
- ``"sam"``: the loss at the SAM ascent point ``θ + ρ g / ||g||`` minus the loss (``ρ`` the optimizer's, else
  ``rho=``).

Each measurement's thresholds for its optimizer: ``2/η`` (gradient descent), ``2 (1 + β)/η`` (heavy-ball momentum
β). The tracker changes nothing of the training run: the model is restored exactly, gradients are taken with
``torch.autograd.grad`` (``.grad`` untouched), the optimizer is simulated on copies, and its random draws come from
its own generator.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import torch
from torch import Tensor

from ._lanczos import lanczos
from ._system.files import atomic_write, strict
from ._system.ranks import join_group
from .curvature import CurvatureOperator
from .io.curvature import read_curvature
from .problem import Problem

MEASURES = ("eigenvalues", "preconditioned", "update", "grad_norm", "sam")
DEFAULT_MEASURES = ("eigenvalues", "grad_norm")


def base_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The optimizer that takes the update: a flat-minima method's base optimizer, or the optimizer itself."""
    return getattr(optimizer, "base_optimizer", optimizer)


def thresholds(optimizer: Any) -> dict[str, float]:
    """The stability thresholds of an optimizer's first param group: ``sharpness_threshold`` (``2/η``, or
    ``2 (1 + β)/η`` with momentum β) for SGD-like ones, ``preconditioned_threshold`` (``2 (1 + β₁) / ((1 - β₁) η)``)
    for Adam-like ones."""
    group = base_optimizer(optimizer).param_groups[0]
    lr = float(group["lr"])
    if "betas" in group:
        b1 = float(group["betas"][0])
        return {"lr": lr, "preconditioned_threshold": 2 * (1 + b1) / ((1 - b1) * lr)}
    momentum = float(group.get("momentum", 0.0) or 0.0)
    return {"lr": lr, "sharpness_threshold": 2 * (1 + momentum) / lr}


def preconditioner(optimizer: Any, params: list[Tensor]) -> list[Tensor] | None:
    """Adam's ``P = (1 - β₁^t) (sqrt(v_t / (1 - β₂^t)) + ε)`` per parameter (Cohen et al. 2022); ``None`` before
    the first step or for an optimizer without second moments."""
    base = base_optimizer(optimizer)
    group_of = {id(p): g for g in base.param_groups for p in g["params"]}
    out = []
    for p in params:
        state, group = base.state.get(p, {}), group_of.get(id(p))
        if group is None or "exp_avg_sq" not in state or "betas" not in group:
            return None
        b1, b2 = (float(b) for b in group["betas"])
        t = float(state["step"])
        v = state.get("max_exp_avg_sq") if group.get("amsgrad") else state["exp_avg_sq"]
        out.append((1 - b1**t) * ((v / (1 - b2**t)).sqrt() + float(group["eps"])))
    return out


def planned_update(optimizer: Any, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """The step ``Δ`` the optimizer would take from ``params`` with ``grads``: its base optimizer's class rebuilt
    over copies of the parameters and of its state, stepped once (the optimizer itself is not touched).

    Raises:
        ValueError: an optimizer that cannot be rebuilt from its param groups.
    """
    base = base_optimizer(optimizer)
    copies = {id(p): p.detach().clone().requires_grad_(True) for p in params}
    groups = [
        {
            **{k: v for k, v in g.items() if k != "params"},
            "params": [copies[id(p)] for p in g["params"] if id(p) in copies],
        }
        for g in base.param_groups
    ]
    try:
        twin = cast(Any, type(base))([g for g in groups if g["params"]])
    except Exception as e:
        raise ValueError(f"cannot simulate {type(base).__name__}'s update ({type(e).__name__}: {e})") from e
    for p in params:
        if p in base.state:
            twin.state[copies[id(p)]] = copy.deepcopy(base.state[p])
    for p, g in zip(params, grads):
        copies[id(p)].grad = g.detach().clone()
    twin.step()
    return [copies[id(p)].detach() - p.detach() for p in params]


def critical_scale(decreases: Callable[[float], bool], *, tol: float = 1e-3, limit: int = 60) -> tuple[float, int]:
    """The largest ``α`` with ``decreases(α)`` (the loss after ``α`` times the update is below the loss now), by
    doubling or halving from 1 to a bracket, then bisection to relative ``tol``; ``(α, evaluations)`` (``inf`` when
    the loss still decreases at ``2**30``)."""
    evals = 0

    def test(a: float) -> bool:
        nonlocal evals
        evals += 1
        return decreases(a)

    lo, hi = 0.0, 1.0
    if test(1.0):
        lo = 1.0
        while test(2 * lo):
            lo *= 2
            if lo > 2**30:
                return math.inf, evals
        hi = 2 * lo
    else:
        while not test(hi / 2):
            hi /= 2
            if hi < 2**-30:
                return 0.0, evals
        lo = hi / 2
    while (hi - lo) > tol * hi and evals < limit:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if test(mid) else (lo, mid)
    return (lo + hi) / 2, evals


class CurvatureTracker:
    """The curvature of ``problem``'s loss every ``every`` steps of a training loop (module docstring).

    Call :meth:`step` at the start of every step (before the update), or pass it to
    :func:`~landscape.fit` as ``on_step=tracker.step``::

        tracker = landscape.CurvatureTracker(problem, every=50, out="run/curvature.jsonl")
        for step, (x, y) in enumerate(loader):
            tracker.step(step, optimizer)
            ...

    Args:
        problem: the live model (the one being trained) on the data the curvature is measured on.
        every: measure on the steps divisible by this (0, every, 2 every, ...).
        top_k: Hessian eigenvalues per measurement.
        measures: any of :data:`MEASURES`.
        out: a JSON-lines file: each measurement appended as it is made; on start the rows already there are the
            history (a killed run resumes without measuring a step twice).
        split: the problem's split measured (default: its first).
        rho: the SAM radius when the optimizer has none.
        tol: Lanczos's residual tolerance (relative to each eigenvalue).
        seed: the Lanczos start of the first measurement.
        warm_start: start each measurement's Lanczos from the previous one's eigenvectors (``False``: from the
            seeded random vector every time).
        log: called with a one-line summary of each measurement; ``None``: silent.

    Attributes:
        history: one dict per measurement: ``step``, ``eigenvalues`` (largest first) and each further measure with
            its cost in products (``*_products``) and seconds.

    Raises:
        ValueError: ``every`` below 1, ``top_k`` below 1, an unknown measure, a problem with no trainable
            parameters, or an ``out`` file that is not a tracker's.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        every: int,
        top_k: int = 1,
        measures: Sequence[str] = DEFAULT_MEASURES,
        out: str | Path | None = None,
        split: str | None = None,
        rho: float = 0.05,
        tol: float = 1e-4,
        seed: int = 0,
        warm_start: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1 (measure every N steps), got {every!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        unknown = [m for m in measures if m not in MEASURES]
        if unknown or not measures:
            raise ValueError(f"measures must be some of {MEASURES}, got {list(measures)!r}")
        if not problem.param_names or not any(p.requires_grad for p in problem.model.parameters()):
            raise ValueError("the problem has no trainable parameters: there is no curvature to track")
        self.problem, self.every, self.top_k, self.measures = problem, every, top_k, tuple(measures)
        self.split = split or next(iter(problem.splits))
        if self.split not in problem.splits:
            raise ValueError(f"no split {self.split!r} in the problem (it has {', '.join(problem.splits)})")
        self.rho, self.tol, self.seed, self.warm_start, self.log = rho, tol, seed, warm_start, log
        self.out = Path(out) if out is not None else None
        self.ranks = join_group(problem.device.type)
        self.history: list[dict] = self._read() if self.out is not None else []
        self._done = {row["step"] for row in self.history}
        self._vectors: Tensor | None = None

    def _read(self) -> list[dict]:
        """The rows of ``out`` (a line cut by a kill is dropped, and the file rewritten without it)."""
        assert self.out is not None
        if not self.out.exists():
            return []
        rows, cut = read_curvature(self.out)
        if cut and self.ranks.is_main:
            text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in rows)
            atomic_write(self.out, lambda tmp: tmp.write_text(text))
        return rows

    def due(self, step: int) -> bool:
        """Whether ``step`` is measured (a multiple of ``every`` not measured before)."""
        return step % self.every == 0 and step not in self._done

    def step(self, step: int, optimizer: Any = None) -> dict | None:
        """Measure at ``step`` if due (before that step's update); returns the row, or ``None`` at once otherwise.

        Args:
            step: the training step about to be taken (0-based, counted over the whole run).
            optimizer: the training optimizer (thresholds, Adam's preconditioner, the planned update, SAM's radius);
                ``None``: those measures are skipped.
        """
        if not self.due(step):
            return None
        tic = time.perf_counter()
        if self.ranks.world > 1:
            with self.problem.sharded(self.ranks):
                row = self._measure(step, optimizer)
        else:
            row = self._measure(step, optimizer)
        row["seconds"] = time.perf_counter() - tic
        row = strict(row)
        self.history.append(row)
        self._done.add(step)
        if self.out is not None and self.ranks.is_main:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with open(self.out, "a") as f:  # one line per measurement, on disk before training goes on
                f.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.log is not None and self.ranks.is_main:
            self.log(f"step {step}: " + ", ".join(f"{k} {_short(v)}" for k, v in row.items() if k != "step"))
        return row

    def _measure(self, step: int, optimizer: Any) -> dict:
        problem, row = self.problem, cast(dict[str, Any], {"step": step})
        if optimizer is not None:
            row.update(thresholds(optimizer))
        with problem.session():
            params = problem.params()
            values, grads = problem.loss_and_grad(self.split, params)
            row["loss"] = values["loss"]
            if "grad_norm" in self.measures:
                row["grad_norm"] = _norm(grads)
            with CurvatureOperator(problem, self.split) as op:
                if "eigenvalues" in self.measures:
                    tic = time.perf_counter()
                    found = lanczos(
                        op.matvec, op.size, min(self.top_k, op.size), tol=self.tol, seed=self.seed,
                        device=op.device, start=self._vectors,
                    )  # fmt: skip
                    self._vectors = found.eigenvectors if self.warm_start else None
                    row.update(
                        eigenvalues=[float(v) for v in found.eigenvalues], eigen_products=found.matvecs,
                        eigen_seconds=time.perf_counter() - tic,
                    )  # fmt: skip
                if "preconditioned" in self.measures and optimizer is not None:
                    row.update(self._preconditioned(op, optimizer, params))
                if "update" in self.measures and optimizer is not None:
                    row.update(self._along_update(op, optimizer, params, grads, values["loss"]))
            if "sam" in self.measures:
                row["sam_sharpness"] = self._sam(optimizer, params, grads, values["loss"])
        return row

    def _preconditioned(self, op: CurvatureOperator, optimizer: Any, params: list[Tensor]) -> dict:
        p = preconditioner(optimizer, params)
        if p is None:
            return {}
        scale = torch.cat([(1.0 / x.double().sqrt()).reshape(-1) for x in p]).to(op.device)
        tic = time.perf_counter()
        found = lanczos(
            lambda v: scale * op.matvec(scale * v).double(), op.size, 1, tol=self.tol, seed=self.seed, device=op.device
        )
        return {
            "preconditioned": float(found.eigenvalues[0]),
            "preconditioned_products": found.matvecs,
            "preconditioned_seconds": time.perf_counter() - tic,
        }

    def _along_update(
        self, op: CurvatureOperator, optimizer: Any, params: list[Tensor], grads: list[Tensor], loss: float
    ) -> dict:
        tic = time.perf_counter()
        delta = planned_update(optimizer, params, grads)
        flat = torch.cat([d.reshape(-1) for d in delta]).double()
        norm2 = float(flat @ flat)
        if norm2 == 0.0:
            return {}
        sharp = float(flat @ op.matvec(flat).double()) / norm2
        lr = float(base_optimizer(optimizer).param_groups[0]["lr"])
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]

            def decreases(a: float) -> bool:
                torch._foreach_copy_(params, saved)
                torch._foreach_add_(params, delta, alpha=a)
                return self.problem.evaluate(self.split)["loss"] < loss

            try:
                scale, evals = critical_scale(decreases)
            finally:
                torch._foreach_copy_(params, saved)
        return {
            "directional_sharpness": sharp,
            "critical_lr": lr * scale,
            "update_products": 1,
            "line_search_evals": evals,
            "update_seconds": time.perf_counter() - tic,
        }

    def _sam(self, optimizer: Any, params: list[Tensor], grads: list[Tensor], loss: float) -> float:
        groups = getattr(optimizer, "param_groups", None) or [{}]  # a SAM-family method keeps rho in its groups
        rho = float(groups[0].get("rho", self.rho))
        norm = max(_norm(grads), 1e-30)
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            torch._foreach_add_(params, [g * float(rho / norm) for g in grads])
            try:
                return self.problem.evaluate(self.split)["loss"] - loss
            finally:
                torch._foreach_copy_(params, saved)


def _norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


__all__ = ["CurvatureTracker", "MEASURES", "critical_scale", "planned_update", "preconditioner", "thresholds"]
