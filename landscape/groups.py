"""Runs that differ only by their seed, as groups: mean ± std (and n) of every number, paired differences against a
baseline group with 95 % intervals, and the group-mean curves the figures overlay with their spread.

One seed proves nothing: a comparison of methods is a comparison of groups. Two runs belong to one group when their
configurations agree in everything but the seed and the settings that do not change the experiment (device,
checkpoint frequency, data folder, number of processes); a user's own run (no ``config.json``) groups by the label,
model and data its analysis files record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from landscape.trainers.optim import METHODS

from .io import Surface, Sweep

if TYPE_CHECKING:
    from .runs import Run

SEEDLESS = ("seed", "device", "save_every", "data_root", "world_size", "rank_batch_size")


@dataclass
class Group:
    """Runs of one experiment with different seeds.

    Attributes:
        name: the group's name: its method, or the settings that tell it apart from groups of the same method.
        runs: its runs, by seed.
    """

    name: str
    runs: list[Run]

    @property
    def method(self) -> str:
        """The method the group's runs were trained with (``erm+swa`` for weight averaging on top of ERM)."""
        return run_method(self.runs[0].config)

    @property
    def seeds(self) -> list[int | None]:
        """Each run's seed (``None`` where its config has none)."""
        return [run_seed(r) for r in self.runs]


def run_seed(run: Run) -> int | None:
    seed = run.config.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def run_method(config: dict) -> str:
    """A run's method as its group is named: the optimizer's, ``+swa`` when the run is its weight average."""
    method = str(config.get("method") or "")
    return f"{method}+swa" if method and config.get("swa_start") else method


def group_key(run: Run) -> str:
    """What must agree for two runs to be seeds of one experiment."""
    return json.dumps(settings(run.config), sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by the settings of their configs that are not the seed (nor device, workers and the like).

    Args:
        runs: the runs to group (:func:`landscape.runs.find_runs`).

    Returns:
        The groups in order of first appearance, each group's runs by seed. Groups are named by their method; where
        two groups share a method, by the settings that tell them apart.
    """
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        keyed.setdefault(group_key(run), []).append(run)
    groups = [
        sorted(members, key=lambda r: (run_seed(r) is None, run_seed(r) or 0, r.name)) for members in keyed.values()
    ]
    methods = [run_method(g[0].config) or g[0].name for g in groups]
    names = list(methods)
    for i, g in enumerate(groups):
        if methods.count(methods[i]) > 1:
            own = settings(g[0].config)
            others = [settings(h[0].config) for j, h in enumerate(groups) if j != i and methods[j] == methods[i]]
            differ = sorted(
                k for k in {*own, *(k for o in others for k in o)} if any(o.get(k) != own.get(k) for o in others)
            )
            detail = ", ".join(f"{k}={_short(own[k]) if k in own else 'default'}" for k in differ[:3])
            names[i] = f"{methods[i]} ({detail})" if detail else f"{methods[i]} ({g[0].name})"
    shown = list(names)  # three differing settings shown may not tell two groups apart: their first run does
    names = [f"{n} [{g[0].name}]" if shown.count(n) > 1 else n for n, g in zip(shown, groups)]
    return [Group(name, members) for name, members in zip(names, groups)]


def settings(config: dict) -> dict:
    """A run's settings that tell experiments apart, one level flat (``hparams: {rho: 0.2}`` -> ``rho: 0.2``), the
    method's defaults filled in: ``--rho 0.05`` and no ``--rho`` are one experiment for SAM."""
    info = METHODS.get(str(config.get("method")))
    flat = dict(info.hparams) if info is not None else {}
    for k, v in config.items():
        if k in SEEDLESS:
            continue
        if isinstance(v, dict):
            flat.update({h: x for h, x in v.items() if x is not None})
        else:
            flat[k] = v
    return flat


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(values: list[float | None]) -> dict:
    """``{"mean", "std", "n", "values"}`` over the finite values (std with n - 1; None below 2 values)."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    n = len(finite)
    return {
        "mean": float(np.mean(finite)) if n else None,
        "std": float(np.std(finite, ddof=1)) if n > 1 else None,
        "n": n,
        "values": [None if v is None or not np.isfinite(v) else float(v) for v in values],
    }


def interval95(diffs: list[float]) -> tuple[float, float] | None:
    """The 95 % Student-t interval of the mean of ``diffs`` (None below 2 values)."""
    n = len(diffs)
    if n < 2:
        return None
    mean, half = float(np.mean(diffs)), float(stats.t.ppf(0.975, n - 1) * np.std(diffs, ddof=1) / np.sqrt(n))
    return mean - half, mean + half


def paired(group: Group, baseline: Group, rows: dict[str, dict], key: str) -> dict:
    """``group - baseline`` for one column, run by run with the same seed (by position where seeds are unknown):
    ``{"mean", "ci95", "n", "diffs"}``."""

    def by_seed(g: Group) -> dict:
        if all(s is not None for s in g.seeds):
            return {s: rows[r.name].get(key) for s, r in zip(g.seeds, g.runs)}
        return {i: rows[r.name].get(key) for i, r in enumerate(g.runs)}

    a, b = by_seed(group), by_seed(baseline)
    diffs = [
        float(a[s]) - float(b[s])
        for s in a
        if s in b and a[s] is not None and b[s] is not None and np.isfinite(a[s]) and np.isfinite(b[s])
    ]
    return {
        "mean": float(np.mean(diffs)) if diffs else None,
        "ci95": interval95(diffs),
        "n": len(diffs),
        "diffs": diffs,
    }


def mean_surface(surfaces: list[Surface]) -> Surface:
    """The mean over seeds of surfaces on one grid (values and, as ``spread``, their std); the first surface alone
    where the grids differ."""
    first = surfaces[0]
    same = [
        s
        for s in surfaces
        if np.array_equal(s.xcoordinates, first.xcoordinates)
        and set(s.values) == set(first.values)
        and (s.ycoordinates is None) == (first.ycoordinates is None)
        and (s.ycoordinates is None or np.array_equal(s.ycoordinates, first.ycoordinates))  # type: ignore[arg-type]
    ]
    if len(same) < 2:
        return first
    values = {n: np.mean([s.values[n] for s in same], axis=0) for n in first.values}
    spread = {n: np.std([s.values[n] for s in same], axis=0, ddof=1) for n in first.values}
    computed = np.logical_and.reduce([s.computed for s in same])
    return Surface(
        first.path,
        first.xcoordinates,
        first.ycoordinates,
        values,
        computed,
        {**first.attrs, "seeds": len(same)},
        first.layout,
        spread=spread,
    )


def mean_sweep(sweeps: list[Sweep]) -> Sweep:
    """The mean over seeds of sweeps with the same kinds and radii; its ``*_std`` is then the std over seeds — for
    the loss, of each seed's increase over its own unperturbed loss (what the figures draw), where radius 0 was
    swept: seeds that sit at different losses but rise alike have no spread."""
    first = sweeps[0]
    same = [s for s in sweeps if s.kinds == first.kinds and np.array_equal(s.radii, first.radii)]
    if len(same) < 2:
        return first
    values = {}
    zero = np.flatnonzero(first.radii == 0)
    for metric in ("loss", "acc"):
        means = np.array([s.values[f"{metric}_mean"] for s in same])
        spread = means - means[..., zero[:1]] if metric == "loss" and zero.size else means
        values[f"{metric}_mean"], values[f"{metric}_std"] = means.mean(axis=0), spread.std(axis=0, ddof=1)
    return Sweep(
        first.path,
        first.radii,
        first.kinds,
        values,
        np.logical_and.reduce([s.computed for s in same]),
        {**first.attrs, "seeds": len(same)},
    )


def mean_spectrum(spectra: list[dict]) -> dict:
    """Eigenvalues by rank: the mean over seeds and its std (over the ranks all share); the first density."""
    tops = [np.asarray(a["eigenvalues"]) for a in spectra if a.get("eigenvalues") is not None]
    out = dict(spectra[0])
    if len(tops) > 1:
        k = min(len(t) for t in tops)
        stacked = np.array([t[:k] for t in tops])
        out["eigenvalues"], out["eigenvalues_std"] = stacked.mean(axis=0), stacked.std(axis=0, ddof=1)
    return out


def mean_curves(curves: list[dict], x: str = "severity", metrics: tuple[str, ...] = ("error", "ece")) -> dict:
    """Curves over a common axis ``x`` (severity, epoch): the mean over seeds with ``*_std``, over the points all
    share (a run still training has fewer epochs)."""
    n = min(len(c[x]) for c in curves)
    out = {x: np.asarray(curves[0][x])[:n]}
    for metric in metrics:
        stacked = np.array([np.asarray(c[metric], float)[:n] for c in curves if metric in c])
        if len(stacked):
            out[metric] = stacked.mean(axis=0)
        if len(stacked) > 1:
            out[f"{metric}_std"] = stacked.std(axis=0, ddof=1)
    return out


HISTORY = ("train_loss", "test_loss", "train_error", "test_error", "test_ece")


def history_curves(rows: list[dict]) -> dict:
    """A run's metrics.jsonl rows as per-epoch arrays of :data:`HISTORY` (errors in %, test loss = test NLL)."""

    def column(key: str, transform=lambda v: v) -> np.ndarray:
        return np.array([transform(r[key]) if isinstance(r.get(key), (int, float)) else np.nan for r in rows], float)

    return {
        "epoch": column("epoch"),
        "train_loss": column("train_loss"),
        "test_loss": column("test_nll"),
        "train_error": column("train_acc", lambda a: 100.0 - a),
        "test_error": column("test_error"),
        "test_ece": column("test_ece"),
    }


CURVATURE = ("loss", "sharpness", "preconditioned", "grad_norm", "sharpness_threshold", "preconditioned_threshold")


def curvature_curves(rows: list[dict]) -> dict:
    """A run's tracked curvature (``curvature.jsonl``) as per-step arrays of :data:`CURVATURE` (``sharpness``: the
    top Hessian eigenvalue; NaN where a row lacks a measure)."""

    def column(key: str) -> np.ndarray:
        return np.array([r[key] if isinstance(r.get(key), (int, float)) else np.nan for r in rows], float)

    top = [r["eigenvalues"][0] if isinstance(r.get("eigenvalues"), list) and r["eigenvalues"] else np.nan for r in rows]
    return {"step": column("step"), **{k: column(k) for k in CURVATURE if k != "sharpness"}, "sharpness": np.array(top)}


def pooled_bins(bins: list[dict]) -> dict:
    """Reliability bins of several prediction sets pooled (sums add up): the union's diagram and ECE."""
    out = {"edges": bins[0]["edges"]}
    for k in ("count", "correct", "confidence_sum"):
        out[k] = np.sum([b[k] for b in bins], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["accuracy"], out["confidence"] = out["correct"] / out["count"], out["confidence_sum"] / out["count"]
    return out


__all__ = ["Group", "group_runs"]
