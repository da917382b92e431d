"""Runs: what one run directory holds (a training run, or a user's folder of result files), found by reading each
file's kind, and which folders are runs. The comparison report (:mod:`landscape.report`), the explorer and the
groups read runs through here; every file read stays inside a root (links out of it are refused)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from landscape.trainers.checkpoint import read_checkpoint
from landscape.trainers.rundir import (
    AVERAGES,
    CONFIG,
    CURVATURE,
    METRICS_FILE,
    SHARPNESS,
    SWA,
    check_rows,
    final_or_newest,
    read_json,
    read_metrics,
    within,
)

from .io import inspect_file
from .io.curvature import read_curvature
from .io.files import read_attrs


@dataclass
class Run:
    """What one run directory holds, found by reading each file's kind.

    Attributes:
        name: the run's name (its folder's, or ``parent/folder`` where two share one).
        path: the run directory.
        config: its ``config.json`` (empty for a folder of result files only).
        metrics: the last epoch's row of ``metrics.jsonl``, with ``train_seconds`` summed over epochs.
        metrics_source: the file the metrics came from (``None``: none).
        checkpoint: ``final.pt``, else the newest epoch checkpoint (``None``: none).
        files: one analysis file per category (``surface_2d``, ``sweep``, ``hessian``, ...).
        ignored: ``(category, file)`` of further files of a category already found.
        problems: ``(file, why)`` of analysis files left out (unreadable, or behind a link out of the root).
        history: one metrics row per epoch.
        curvature: the curvature tracked during training (``curvature.jsonl``), one row per measurement.
        sharpness: the sharpness suite's measures (``sharpness.json``, ``landscape sharpness --out``), by name.
    """

    name: str
    path: Path
    config: dict
    metrics: dict  # the last epoch's row, and train_seconds summed over epochs
    metrics_source: Path | None
    checkpoint: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    ignored: list[tuple[str, Path]] = field(default_factory=list)  # (category, file) beyond the first
    problems: list[tuple[Path, str]] = field(default_factory=list)  # (file, why) analysis files left out
    history: list[dict] = field(default_factory=list)  # one metrics row per epoch
    curvature: list[dict] = field(default_factory=list)  # curvature.jsonl: one row per tracked step
    sharpness: dict[str, float] = field(default_factory=dict)  # sharpness.json: measure name -> value


def _cost(history: list[dict]) -> dict:
    """Training time summed over epochs, and per optimizer step where the rows count their steps."""
    seconds = sum(row.get("seconds") or 0 for row in history)
    steps = [row.get("steps") for row in history]
    counted = [n for n in steps if isinstance(n, int) and n > 0]
    per_step = 1000 * seconds / sum(counted) if steps and len(counted) == len(steps) else None
    return {"train_seconds": seconds, "ms_per_step": per_step}


def read_sharpness(path: Path) -> dict[str, float]:
    """``{measure: value}`` of a ``sharpness.json`` (a user's file: every entry checked, one-line errors)."""
    record = read_json(path)
    measures = record.get("measures") if isinstance(record, dict) else None
    if not isinstance(measures, dict):
        raise ValueError(f"{path}: no 'measures' object")
    out = {}
    for name, entry in measures.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{path}: measure {str(name)[:60]!r} has no number 'value'")
        out[str(name)] = float(value)
    return out


def find_run(
    path: str | Path,
    name: str | None = None,
    root: str | Path | None = None,
    inspect: Callable[[Path], tuple[str | None, str | None]] = inspect_file,
) -> Run:
    """What a run directory holds (config, metrics, checkpoint, analysis files), found by each file's kind.

    Args:
        path: the run directory (a training run, or any folder of result files).
        name: the run's name (default: the folder's).
        root: bounds what is read (default: the run directory): a config, metrics or checkpoint behind a link that
            leaves it refuses the run; an analysis file behind such a link, or one that cannot be read, is left out
            and listed in ``Run.problems`` with its reason.
        inspect: what a file is (:func:`~landscape.io.inspect_file`; the explorer passes its cached answers).

    Returns:
        The :class:`Run`.

    Raises:
        ValueError: a malformed config, metrics file or checkpoint (naming the file and the problem), or one behind a
            link out of ``root``.
        NotADirectoryError: ``path`` is not a folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is not a run directory")
    root = Path(root) if root is not None else path
    within(path, root)
    ckpt = final_or_newest(path)
    if ckpt is not None:
        within(ckpt, root)
    history: list[dict] = []
    source: Path | None = None
    if (path / METRICS_FILE).is_file():  # written every epoch: current even while the run trains
        source = within(path / METRICS_FILE, root)
        history = read_metrics(source)
    elif ckpt is not None:
        history, source = check_rows(read_checkpoint(ckpt).get("metrics", []), ckpt), ckpt
    metrics = {**history[-1], **_cost(history)} if history else {}
    config = read_json(within(path / CONFIG, root)) if (path / CONFIG).is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{path / CONFIG}: a JSON {type(config).__name__}, not an object")
    if config.get("swa_start") and (path / SWA).is_file() and (path / AVERAGES).is_file():
        ckpt = within(path / SWA, root)  # an SWA run stands for its averaged model: its checkpoint and test metrics
        record = read_json(within(path / AVERAGES, root))
        swa = record.get("swa") if isinstance(record, dict) else None
        if not isinstance(swa, dict):
            raise ValueError(f"{path / AVERAGES}: no 'swa' record")
        check_rows([swa], path / AVERAGES)  # its numbers as a metrics row's: a wrong type is refused, not skipped
        metrics.update({k: v for k, v in swa.items() if k in ("test_error", "test_nll", "test_ece")})
    run = Run(name or path.name, path, config, metrics, source, ckpt, history=history)
    if (path / CURVATURE).is_file():
        run.curvature = read_curvature(within(path / CURVATURE, root))[0]
    if (path / SHARPNESS).is_file():
        try:
            run.sharpness = read_sharpness(within(path / SHARPNESS, root))
        except ValueError as e:
            run.problems.append((path / SHARPNESS, str(e)))
    for f in sorted(path.glob("*.h5")):
        try:
            category, reason = inspect(within(f, root))
        except ValueError as e:
            category, reason = None, str(e)
        if category is None:
            if reason:
                run.problems.append((f, reason))
        elif category in run.files:
            run.ignored.append((category, f))
        else:
            run.files[category] = f
    if not run.files and ckpt is None and not history:
        raise ValueError(f"{path}: no metrics, checkpoint or analysis files: not a run directory")
    if not config and run.files:  # a user's own run: what its analysis files say about the problem
        attrs = read_attrs(next(iter(run.files.values())))
        run.config = {
            "method": attrs.get("label") or attrs.get("method", ""),
            "model": attrs.get("model", ""),
            "dataset": attrs.get("dataset", ""),
        }
    return run


def find_runs(paths: list[str | Path]) -> list[Run]:
    """The runs in ``paths``, named by their folder, or ``parent/folder`` where two folders share a name.

    Args:
        paths: run directories.

    Returns:
        One :class:`Run` per path, in order.

    Raises:
        ValueError: a malformed run (see :func:`find_run`), or a folder named twice (each run counts once).
        NotADirectoryError: a path that is not a folder.
    """
    folders = [Path(p) for p in paths]
    seen: dict[Path, Path] = {}
    for p in folders:
        if (real := p.resolve()) in seen:
            raise ValueError(f"{p} is named twice (as {seen[real]} too): each run counts once in a comparison")
        seen[real] = p
    names = [p.resolve().name for p in folders]
    return [find_run(p, f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n) for p, n in zip(folders, names)]


__all__ = ["Run", "find_run", "find_runs"]
