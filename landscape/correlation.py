"""Which flatness measure predicts generalization: Kendall's τ between each measure and the generalization gap over a
set of runs, with bootstrap intervals, and Jiang et al.'s granulated τ over named hyper-parameter axes.

Jiang et al. (2019, "Fantastic generalization measures", eq. 4): for each axis ``i`` the runs that differ only along
``i`` form groups; ``ψ_i`` is the mean over those groups of τ within the group, and the granulated τ is the mean of
``ψ_i`` over the axes. A measure that only tracks one hyper-parameter (say, the learning rate) scores well on the
plain τ but not on the other axes' ``ψ``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

TARGETS = ("gap", "test_error")
# config entries that are never hyper-parameter axes (where and how a run ran, not what it learned)
NOT_AXES = {"seed", "device", "data_root", "save_every", "eval_batch_size", "world_size", "rank_batch_size", "bf16"}
RUN_MEASURES = ("lambda_max", "trace", "sharpness")  # compare's columns that are flatness measures


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row of ``x`` with the same row of ``y`` (shape ``(..., n)``): ``sum sign(dx) sign(dy)
    / sqrt(untied_x untied_y)`` over the pairs ``i < j``, as :func:`scipy.stats.kendalltau`; NaN where one side is
    all ties. Vectorized over rows (bootstrap resamples) with the pairs in blocks of rows."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    i, j = np.triu_indices(x.shape[-1], 1)
    out = np.empty(x.shape[0])
    step = max(1, 4_000_000 // max(len(i), 1))
    for start in range(0, x.shape[0], step):
        sx = np.sign(x[start : start + step, i] - x[start : start + step, j])
        sy = np.sign(y[start : start + step, i] - y[start : start + step, j])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + step] = (sx * sy).sum(1) / np.sqrt(np.abs(sx).sum(1) * np.abs(sy).sum(1))
    return out


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of τ: the runs resampled with replacement ``resamples`` times."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(x), size=(resamples, len(x)))
    taus = kendall_tau(x[pick], y[pick])
    taus = taus[np.isfinite(taus)]
    if not len(taus):
        return float("nan"), float("nan")
    lo, hi = np.quantile(taus, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def granulated_tau(
    measure: np.ndarray, target: np.ndarray, settings: Sequence[Mapping[str, Any]], axes: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Jiang et al.'s granulated τ: ``(mean of psi over the axes, {axis: psi})``. For axis ``i`` the runs are grouped
    by every other entry of their ``settings`` (the other axes and the seed); ``psi_i`` is the mean τ over groups of
    two or more runs (NaN when there is none)."""
    psi = {}
    for axis in axes:
        groups: dict[tuple, list[int]] = {}
        for k, s in enumerate(settings):
            key = tuple(sorted((a, repr(v)) for a, v in s.items() if a != axis))
            groups.setdefault(key, []).append(k)
        taus = [
            float(kendall_tau(measure[idx], target[idx])[0])
            for idx in (np.array(g) for g in groups.values())
            if len(idx) > 1
        ]
        taus = [t for t in taus if np.isfinite(t)]
        psi[axis] = float(np.mean(taus)) if taus else float("nan")
    finite = [v for v in psi.values() if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), psi


@dataclass
class Correlation:
    """How one measure ranks the runs against the target.

    Attributes:
        measure: the measure's name.
        n: the runs with both numbers.
        tau: Kendall's τ-b (positive: the sharper, the larger the target).
        low, high: its bootstrap interval.
        granulated: Jiang et al.'s granulated τ (NaN without axes).
        psi: τ per hyper-parameter axis (``ψ_i``).
    """

    measure: str
    n: int
    tau: float
    low: float
    high: float
    granulated: float
    psi: dict[str, float] = field(default_factory=dict)


def _flat(config: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def run_row(run: Any, rho: float = 0.1) -> dict[str, Any]:
    """One run as a flat row: its config (``model_kwargs.width``...), ``gap`` (test error minus training error,
    percentage points), ``test_error``, compare's flatness columns and the measures of its ``sharpness.json``."""
    from .report import summary_row

    metrics = run.metrics
    row = _flat(run.config)
    test_error = metrics.get("test_error")
    train_acc = metrics.get("train_acc")
    row["test_error"] = float(test_error) if test_error is not None else float("nan")
    row["gap"] = row["test_error"] - (100.0 - float(train_acc)) if train_acc is not None else float("nan")
    summary = summary_row(run, rho)
    for key in RUN_MEASURES:
        row[key] = float("nan") if summary.get(key) is None else float(summary[key])
    row.update(run.sharpness)
    row["run"] = run.name
    return row


def correlate(
    results: Sequence[Any],
    measures: Sequence[str] | None = None,
    *,
    target: str = "gap",
    axes: Sequence[str] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    rho: float = 0.1,
) -> list[Correlation]:
    """Kendall's τ of each flatness measure with generalization over a set of runs.

    Args:
        results: run folders (paths, or :class:`~landscape.runs.Run`), or rows (dicts of a run's numbers and
            hyper-parameters, e.g. ``{"lr": 0.1, "seed": 0, "gap": 1.5, "apgd@0.1": 0.8}``).
        measures: the measures to rank (default: every measure the runs have: compare's ``lambda_max``, ``trace``,
            ``sharpness`` and each ``sharpness.json``'s).
        target: ``"gap"`` (test error minus training error) or ``"test_error"``.
        axes: the hyper-parameters the runs vary along, for the granulated τ (default: every config entry that
            differs between runs, except the seed and where they ran).
        resamples: bootstrap resamples of the runs.
        level: the interval's coverage.
        seed: the bootstrap's seed.
        rho: the radius of compare's ``sharpness`` column (runs read from folders).

    Returns:
        One :class:`Correlation` per measure, in the order asked.

    Raises:
        ValueError: an unknown target, fewer than three runs, or a measure or axis no run has.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    rows = [r if isinstance(r, Mapping) else run_row(_as_run(r), rho) for r in results]
    if len(rows) < 3:
        raise ValueError(f"correlate needs at least 3 runs, got {len(rows)}")
    if axes is None:
        keys = sorted({k for r in rows for k in r} - NOT_AXES - {"run", target, *TARGETS, *(measures or ())})
        axes = [k for k in keys if not _is_measure(rows, k) and len({repr(r.get(k)) for r in rows}) > 1]
    missing = [a for a in axes if not any(a in r for r in rows)]
    if missing:
        raise ValueError(f"no run has the axis {', '.join(missing)}")
    if measures is None:
        measures = [k for k in _measure_names(rows) if k not in axes]
    settings = [{a: r.get(a) for a in (*axes, "seed")} for r in rows]
    y_all = np.array([_number(r.get(target)) for r in rows])
    out = []
    for m in measures:
        if not any(m in r for r in rows):
            raise ValueError(f"no run has the measure {m!r}")
        x_all = np.array([_number(r.get(m)) for r in rows])
        ok = np.isfinite(x_all) & np.isfinite(y_all)
        x, y = x_all[ok], y_all[ok]
        tau = float(kendall_tau(x, y)[0]) if ok.sum() > 1 else float("nan")
        low, high = (
            bootstrap_interval(x, y, resamples=resamples, level=level, seed=seed)
            if ok.sum() > 2
            else (
                float("nan"),
                float("nan"),
            )
        )
        kept = [s for s, keep in zip(settings, ok) if keep]
        granulated, psi = granulated_tau(x, y, kept, axes) if axes else (float("nan"), {})
        out.append(Correlation(m, int(ok.sum()), tau, low, high, granulated, psi))
    return out


def _as_run(r: Any) -> Any:
    from .runs import find_run

    return find_run(r) if isinstance(r, (str, Path)) else r


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _is_measure(rows: list[Mapping], key: str) -> bool:
    return key in RUN_MEASURES or "@" in key or key.split("_")[0] in ("fisher", "pacbayes", "keskar")


def _measure_names(rows: list[Mapping]) -> list[str]:
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if _is_measure(rows, k)]
    return [k for k in names if any(np.isfinite(_number(r.get(k))) for r in rows)]


def correlation_table(found: list[Correlation], target: str = "gap") -> tuple[list[str], list[list[str]]]:
    """The table of ``landscape compare`` and the example: a row per measure."""
    axes = list(dict.fromkeys(a for c in found for a in c.psi))
    head = ["measure", "n", f"Kendall τ with {target} [95 % interval]", "granulated τ", *[f"ψ {a}" for a in axes]]

    def num(v: float) -> str:
        return "—" if not np.isfinite(v) else f"{v:+.2f}"

    body = [
        [c.measure, str(c.n), f"{num(c.tau)} [{num(c.low)}, {num(c.high)}]", num(c.granulated)]
        + [num(c.psi.get(a, float("nan"))) for a in axes]
        for c in found
    ]
    return head, body


__all__ = ["correlate", "Correlation", "kendall_tau", "granulated_tau"]
