"""What a folder of runs holds: analysis files by kind, runs with their metrics; paths kept inside the root.

Scanning is cheap to repeat: a file's kind is cached by (path, size, mtime) and a run's summary by the
signature of its files, so the explorer rescans every few seconds and only rereads what changed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from landscape.groups import group_runs, settings
from landscape.io import inspect_file
from landscape.report import SHARPNESS_RHO, columns, group_stats, summary_row
from landscape.runs import Run, find_run
from landscape.trainers.rundir import CURVATURE, RUN_MARKERS

OUTSIDE = "refused: a link to a file outside the served folder"
SCAN_BUDGET = 0.5  # seconds a scan spends opening new files; a large folder's first listing comes, then fills in
CONFIG_COLUMNS = ("lr", "batch_size", "rho", "eta", "epsilon", "sigma", "num_splits", "weight_decay")  # hparams shown


def resolve_under(root: Path, rel: str) -> Path:
    """``root/rel`` if it stays inside ``root`` (symlinks resolved); anything else is refused."""
    root = root.resolve()
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system: no file of ours
        raise PermissionError(f"{rel[:80]!r} is not a path under the served folder") from None
    if not path.is_relative_to(root) or any(part.startswith(".") for part in path.relative_to(root).parts):
        raise PermissionError(f"{rel[:80]!r} is outside the served folder")
    return path


@dataclass(frozen=True)
class Entry:
    rel: str  # posix path relative to the root
    category: str  # surface_1d, surface_2d, hessian, sweep, ...
    run: str  # the folder it lies in, relative to the root ("." for the root itself)
    mtime: float
    size: int


class Catalog:
    """Scans ``root`` on demand; :meth:`scan` returns a JSON-able snapshot for the browser."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"{str(root)!r} is not a folder")
        self._kinds: dict[str, tuple[tuple[int, float], tuple[str | None, str | None]]] = {}
        self._runs: dict[str, tuple[tuple, tuple[dict | None, str | None], Run | None]] = {}
        self._groups: tuple[list, list[dict]] = ([None], [])  # (the runs' signatures, their group rows)
        self._lock = threading.Lock()  # one scan at a time, shared by every client (see current)
        self._snapshot: dict | None = None
        self._pending: set[str] = set()
        self._reader: threading.Thread | None = None
        self._scanned_at = -float("inf")
        self.generation = 0  # counts the scans that found something new: a response cache's key

    def current(self, max_age: float, budget: float = SCAN_BUDGET) -> tuple[dict, int]:
        """The latest snapshot and its generation, rescanning only when it is older than ``max_age`` seconds (or
        files are still to be read): a hundred browsers polling every few seconds cost one scan per interval, not one
        each. Each scan opens new files for at most ``budget`` seconds (see :meth:`scan`)."""
        with self._lock:
            if time.monotonic() - self._scanned_at >= max_age or self._pending:
                snap = self.scan(budget)
                if snap != self._snapshot:
                    self._snapshot, self.generation = snap, self.generation + 1
                self._scanned_at = time.monotonic()
                if self._pending and not (self._reader and self._reader.is_alive()):
                    # the files left are opened in the background; the next scans find them known
                    self._reader = threading.Thread(target=self._read, args=(sorted(self._pending),), daemon=True)
                    self._reader.start()
            assert self._snapshot is not None
            return self._snapshot, self.generation

    def _read(self, paths: list[str]) -> None:
        for name in paths:
            try:
                self._category(Path(name), Path(name).stat())
            except OSError:  # gone since: the next scan will not list it
                pass

    def _category(self, path: Path, stat: os.stat_result) -> tuple[str | None, str | None]:
        """(category, None), or (None, why it is refused); looked at again only when the file changes."""
        key = (stat.st_size, stat.st_mtime)
        cached = self._kinds.get(str(path))
        if cached and cached[0] == key:
            return cached[1]
        try:
            found = inspect_file(path)
        except Exception as e:
            found = (None, f"{path.name}: {type(e).__name__}: {e}")
        self._kinds[str(path)] = (key, found)
        return found

    def scan(self, budget: float | None = None) -> dict:
        """``{"root", "files", "runs", "groups", "problems", "pending"}``: analysis files by kind, a row per run, and
        every file or run left out with the reason (a bad file is listed there; everything else keeps working).

        ``budget``: seconds to spend opening files not seen before; the rest are left for the next scans (counted in
        ``pending``, their runs listed without them), so the first listing of a large folder comes at once and fills
        in. ``None``: every file now."""
        deadline = None if budget is None else time.monotonic() + budget
        self._pending = set()
        files: list[Entry] = []
        holding: set[str] = set()  # folders with an analysis file
        problems: list[dict] = []
        run_dirs: dict[str, list] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            here = Path(dirpath)
            rel_dir = here.relative_to(self.root).as_posix()
            signature = []
            for name in sorted(filenames):
                path = here / name
                if name.startswith("."):  # temporary files of atomic writes
                    continue
                if path.is_symlink():  # never listed; one that leaves ROOT is named (a run's metadata: by find_run)
                    if name.endswith(".h5") and not path.resolve().is_relative_to(self.root):
                        problems.append({"path": path.relative_to(self.root).as_posix(), "reason": OUTSIDE})
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if name.endswith(".h5"):
                    rel = (here / name).relative_to(self.root).as_posix()
                    if deadline is not None and not self._known(path, stat) and time.monotonic() > deadline:
                        self._pending.add(str(path))
                        signature.append((name, "pending"))
                        continue
                    category, reason = self._category(path, stat)
                    if category:
                        files.append(Entry(rel, category, rel_dir, stat.st_mtime, stat.st_size))
                        holding.add(rel_dir)
                        signature.append((name, stat.st_size, stat.st_mtime))
                    elif reason:
                        problems.append({"path": rel, "reason": reason})
                elif name in RUN_MARKERS or name == CURVATURE:  # a run's row and curves follow these files
                    signature.append((name, stat.st_size, stat.st_mtime))
            if rel_dir in holding or any(name in RUN_MARKERS for name in filenames):
                run_dirs[rel_dir] = signature
        runs, found, signatures = [], [], []
        for rel, sig in run_dirs.items():
            row, reason = self._summary(rel, tuple(sig))
            if row is not None:
                runs.append(row)
                found.append(self._runs[rel][2])
                signatures.append((rel, tuple(sig)))
            else:
                problems.append({"path": rel or ".", "reason": reason})
        if self._groups[0] != signatures:  # regrouped only when a run changed, not on every rescan
            by_name = {r["run"]: r for r in runs}
            self._groups = (signatures, group_rows(group_stats(group_runs(found), by_name, COLUMNS), by_name))
        groups = self._groups[1]
        group_of = {name: g["group"] for g in groups for name in g["runs"]}
        runs = [{**r, "group": group_of.get(r["run"], "")} for r in runs]
        return {
            "root": str(self.root),
            "files": [e.__dict__ for e in files],
            "runs": runs,
            "groups": groups,
            "problems": problems,
            "pending": len(self._pending),
        }

    def _known(self, path: Path, stat: os.stat_result) -> bool:
        cached = self._kinds.get(str(path))
        return cached is not None and cached[0] == (stat.st_size, stat.st_mtime)

    def _inspect(self, path: Path) -> tuple[str | None, str | None]:
        """:meth:`_category` for :func:`find_run`: each file opened once per change, not once by the scan and once
        by its run; a file the scan left for later is not there yet."""
        if str(path) in self._pending:
            return None, None
        return self._category(path, path.stat())

    def _summary(self, rel: str, signature: tuple) -> tuple[dict | None, str | None]:
        """The run's table row, or (None, why it cannot be read); recomputed only when its files change."""
        cached = self._runs.get(rel)
        if cached and cached[0] == signature:
            return cached[1]
        run = None
        try:
            run = find_run(self.root / rel, name=rel, root=self.root, inspect=self._inspect)
            config = settings(run.config)
            found: tuple[dict | None, str | None] = (
                {
                    **summary_row(run, SHARPNESS_RHO),
                    "files": len(run.files),
                    **{k: config.get(k) for k in CONFIG_COLUMNS},
                },
                None,
            )
        except Exception as e:
            text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            found = (None, text)
        self._runs[rel] = (signature, found, run)
        return found

    def run(self, rel: str) -> Run:
        return find_run(resolve_under(self.root, rel), name=rel, root=self.root)


def group_rows(stats: list[dict], rows: dict[str, dict]) -> list[dict]:
    """Groups-table rows: per column the mean over seeds and, as ``<key>_std``, the std; the first seed's settings."""
    out = []
    for g in stats:
        first = rows[g["runs"][0]]
        row = {
            "group": g["group"],
            "n": g["n"],
            "runs": g["runs"],
            "seeds": g["seeds"],
            **{k: first.get(k) for k in ("method", "model", "dataset", "epochs", *CONFIG_COLUMNS)},
        }
        for c in COLUMNS:
            row[c.key], row[f"{c.key}_std"] = g[c.key]["mean"], g[c.key]["std"]
        out.append(row)
    return out


COLUMNS = columns(SHARPNESS_RHO)
FLATNESS = ("test_error", "sharpness", "lambda_max", "trace", "mce")  # first: visible without scrolling
METRIC_COLUMNS = [c for k in FLATNESS for c in COLUMNS if c.key == k] + [c for c in COLUMNS if c.key not in FLATNESS]
TEXT, NUMBER = None, -1  # no digits: a text column; -1: a number shown as it is
TABLE_COLUMNS = (
    [("run", "run", TEXT), ("group", "group", TEXT), ("seed", "seed", NUMBER)]
    + [(c.key, c.header, c.digits) for c in METRIC_COLUMNS]
    + [("method", "method", TEXT), ("model", "model", TEXT), ("dataset", "dataset", TEXT), ("epochs", "epochs", NUMBER)]
    + [(k, k, NUMBER) for k in CONFIG_COLUMNS]
    + [("files", "analysis files", NUMBER)]
)
GROUP_COLUMNS = (
    [("group", "group", TEXT), ("n", "seeds", NUMBER)]
    + [(c.key, c.header, c.digits) for c in METRIC_COLUMNS]
    + [("method", "method", TEXT), ("model", "model", TEXT), ("dataset", "dataset", TEXT), ("epochs", "epochs", NUMBER)]
    + [(k, k, NUMBER) for k in CONFIG_COLUMNS]
)
