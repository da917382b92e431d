"""The one sequence every analysis follows with its result file: open it (new, resumed or replaced, with the
checks that make each safe), agree on that across ``torchrun`` ranks, write as the work goes (point by point or
stage by stage), finish, and read it back.

:class:`Output` groups the options every analysis shares; :func:`open_existing` is the policy for a file that is
already there; :class:`GridJob` is the whole sequence for analyses filled point by point over a grid (surfaces,
interpolations, trajectories, sweeps, robustness). The Hessian, written stage by stage, uses :class:`Output`,
:func:`open_existing` and :func:`check_resumable` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ._system.files import changed_options, remove_stale_temps
from ._system.ranks import Ranks
from .io.files import inspect_file, is_surface, open_h5
from .io.results import MemoryWriter, ResultWriter
from .trainers.rundir import CHECKPOINTS

RESUME_OPTIONS = {  # a stored attribute -> what the user set it with
    "grid": "another grid (x=/y= or radii=)",
    "checkpoint_sha256": "another checkpoint (its contents differ)",
    "checkpoint_b_sha256": "another second checkpoint",
    "weights_sha256": "other model weights",
    "params": "params= (other parameters analysed)",
    "values": "splits= (other values stored)",
    "index_order": "y= (1-D vs 2-D)",
    "kind": "another analysis (kind)",
    "models": "another baseline=",
}

RESUME_KEYS: dict[str, tuple[str, ...]] = {  # per kind: what a resumed file must share with the job resuming it
    "surface": ("kind", "index_order", "directions", "norm", "ignore", "dir_type", "seed", "samples", "sample_seed",
                "bn", "checkpoint_sha256", "checkpoint_b_sha256", "weights_sha256", "params", "values"),
    "sweep": ("kind", "kinds", "split", "samples", "sample_seed", "checkpoint_sha256", "weights_sha256", "params",
              "trials", "steps", "normalize", "eta", "seed"),
    "robustness": ("kind", "corruptions", "severities", "source", "corruption_seed", "samples", "sample_seed",
                   "checkpoint_sha256", "weights_sha256", "baseline_sha256", "split", "models"),
    "hessian": ("kind", "curvature", "which", "tol", "seed", "top_k", "trace_matvecs", "trace_method",
                "density_probes", "density_steps", "split", "samples", "sample_seed", "checkpoint_sha256",
                "weights_sha256", "params"),
}  # fmt: skip


@dataclass(frozen=True)
class Output:
    """Where an analysis's result goes and how the job reports: the keyword arguments every analysis shares.

    Attributes:
        out: the HDF5 file to write as the work goes; ``None`` keeps the result in memory only.
        resume: finish the file a killed job left at ``out`` (its settings must match this job's).
        overwrite: replace an earlier result of the same kind at ``out``.
        progress: show a progress bar (on rank 0 of a ``torchrun`` job).
        log: called with one-line messages (resuming, non-finite points); ``None`` says nothing.
    """

    out: str | Path | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    log: Callable[[str], None] | None = None

    def say(self, ranks: Ranks, message: str) -> None:
        """``message`` to :attr:`log`, once per job (rank 0)."""
        if self.log is not None and ranks.is_main:
            self.log(message)


def check_output(out: str | Path, kind: str, inputs: tuple[str | Path | None, ...] = ()) -> None:
    """Refuse to write a ``kind`` result to ``out`` where that would destroy something else, whatever ``overwrite``
    says: one of the job's ``inputs`` (same file), a checkpoint (``.pt``, or any file inside a run's
    ``checkpoints/``), or an existing file that is not a result of the same kind. Overwriting means replacing
    one's earlier result of this kind, nothing more.

    Raises:
        ValueError: naming which of these ``out`` is.
    """
    out = Path(out)
    if out.suffix == ".pt" or out.parent.name == CHECKPOINTS:
        raise ValueError(
            f"{out}: refused: a result is never written as a checkpoint (.pt) or into a run's {CHECKPOINTS}/ "
            "folder; choose another output path"
        )
    if not out.exists() or out.is_dir():
        return
    for given in inputs:
        if given is not None and Path(given).exists() and out.samefile(given):
            raise ValueError(f"{out} is an input of this job: choose another output path")
    category, reason = inspect_file(out)
    found = "surface" if is_surface(category) else category
    if found != kind:
        what = f"a {found} result" if found else f"not a result file of this toolkit ({reason or 'no kind'})"
        raise ValueError(f"{out} exists and is {what}: it is not replaced by a {kind} result; choose another path")


def open_existing(out: str | Path, kind: str, output: Output) -> bool:
    """The policy for ``out`` before a job writes it: True when a file is there to resume (``output.resume``);
    False when there is none, or the old one was removed to be replaced (``output.overwrite``).

    Raises:
        ValueError: ``out`` may not be written (:func:`check_output`), or it exists and neither ``resume`` nor
            ``overwrite`` was given, or a job still writing it holds its lock.
    """
    out = Path(out)
    check_output(out, kind)
    if not out.exists():
        return False
    if not (output.resume or output.overwrite):
        raise ValueError(f"{out} exists: pass resume=True to finish it or overwrite=True to replace it")
    if output.resume:
        remove_stale_temps(out.parent)  # left by a writer killed mid-write
        return True
    open_h5(out, "r+").close()  # a job still writing it holds its lock: refused, not replaced under it
    out.unlink()
    return False


def check_resumable(out: str | Path, kind: str, stored: dict, attrs: dict, same_grid: bool = True) -> None:
    """Refuse to resume ``out`` (attributes ``stored``) with a job whose settings of :data:`RESUME_KEYS` differ.

    Raises:
        ValueError: naming each setting that differs, as the keyword that sets it.
    """
    wanted = {k: v for k, v in {**attrs, "kind": kind}.items() if k in RESUME_KEYS[kind]}
    before = {k: _plain_seq(stored.get(k)) for k in wanted}
    diff = changed_options(before, {k: _plain_seq(v) for k, v in wanted.items()}, RESUME_OPTIONS)
    if diff or not same_grid:
        raise ValueError(
            f"cannot resume {out}: it was made with {'; '.join(diff or [RESUME_OPTIONS['grid']])}; "
            f"use its options, or overwrite=True to start again"
        )


def _plain_seq(v):
    return list(v) if isinstance(v, (list, tuple, np.ndarray)) else v


class GridJob:
    """An analysis filled point by point over a grid: always in memory (unless ``memory=False``), and in
    ``output.out`` when given, which rank 0 owns. Use as a context manager (the file is closed on any exit)::

        job = GridJob("sweep", shape, values, attrs, output, ranks)
        todo = ranks.agree(lambda: job.open(create, same_grid, attrs))
        with job:
            for k in todo:
                job.write([(k, compute(k))])
            job.finish("sweep points")
    """

    def __init__(
        self,
        kind: str,
        shape: tuple[int, ...],
        values: dict[str, tuple[int, ...]],
        attrs: dict,
        output: Output,
        ranks: Ranks,
        *,
        memory: bool = True,
    ) -> None:
        self.kind, self.shape, self.output, self.ranks = kind, tuple(shape), output, ranks
        self.memory = MemoryWriter(kind, self.shape, values, attrs) if memory else None
        self.file: ResultWriter | None = None
        self.created = False

    def open(
        self, create: Callable[[], ResultWriter], same_grid: Callable[[ResultWriter], bool], wanted: dict
    ) -> list[int]:
        """On rank 0 (inside ``ranks.agree``): create the file (``create()``), or reopen it to resume after checking
        that the settings in ``wanted`` and the grid (``same_grid``) match; returns the flat indices to compute."""
        out = self.output.out
        if out is None:
            return list(range(int(np.prod(self.shape))))
        if open_existing(out, self.kind, self.output):
            self.file = ResultWriter(Path(out))
            try:
                check_resumable(out, self.kind, self.file.attrs, wanted, same_grid(self.file))
            except ValueError:
                self.file.close()
                raise
        else:
            self.file, self.created = create(), True
        done = self.file.computed_flat()
        if done.any():
            self.output.say(self.ranks, f"resuming: {int(done.sum())} of {done.size} points already computed")
        return [int(k) for k in np.flatnonzero(~done)]

    @property
    def writers(self) -> list[MemoryWriter | ResultWriter]:
        return [w for w in (self.memory, self.file) if w is not None]

    def write(self, points: list[tuple[int, dict[str, object]]]) -> None:
        """Store ``(flat index, {value name: number or array})`` pairs in memory and in the file (flushed)."""
        for w in self.writers:
            w.write(points)

    def finish(self, what: str) -> int:
        """Mark the result complete (or not); warn through ``log`` of the ``what`` (e.g. "grid points") that hold a
        NaN or infinite loss. Returns their number (the file's, if any)."""
        nonfinite = [w.finish() for w in self.writers][-1]
        if nonfinite:
            why = "the model diverged there; stored as such"
            self.output.say(self.ranks, f"warning: {nonfinite} {what} are NaN or infinite ({why})")
        return nonfinite

    def __enter__(self) -> GridJob:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    @property
    def written(self) -> Path | None:
        """The file to read the result back from: ``out`` on rank 0, ``None`` without one or on other ranks."""
        return Path(self.output.out) if self.output.out is not None and self.ranks.is_main else None
