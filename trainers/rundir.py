"""The run directory, in one place: what training writes there and how everyone else reads it.

A run directory holds ``config.json`` (the resolved configuration), ``metrics.jsonl`` (one row per epoch),
``checkpoints/epoch_NNN.pt`` and ``final.pt``, every file written atomically, and the analysis files (``*.h5``)
written into it later. Training, ``landscape compare``, the explorer and ``trajectory`` all go through here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CONFIG = "config.json"
METRICS_FILE = "metrics.jsonl"
CURVATURE = "curvature.jsonl"  # the curvature tracked during training (--track-curvature)
SHARPNESS = "sharpness.json"  # the sharpness suite's measures (landscape sharpness --out)
FINAL = "final.pt"
CHECKPOINTS = "checkpoints"
AVERAGES = "averages.json"  # the test metrics of final_swa.pt / final_ema.pt
SWA = "final_swa.pt"
RUN_MARKERS = (CONFIG, METRICS_FILE, FINAL)  # a folder holding any of these is a run


def within(path: str | Path, root: str | Path) -> Path:
    """``path`` if it, and whatever link it is, stays inside ``root``; a link that leaves ``root`` is refused with a
    ValueError (which names neither the target nor where it lies: the message may be shown to a browser)."""
    path = Path(path)
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"{path}: refused: a link to a file outside {root}")
    return path


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"epoch_{epoch:03d}.pt"


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's ``checkpoints/epoch_NNN.pt`` files in epoch order."""
    found = [
        (int(m.group(1)), p)
        for p in (Path(run_dir) / "checkpoints").glob("epoch_*.pt")
        if (m := re.fullmatch(r"epoch_(\d+)\.pt", p.name))
    ]
    return [p for _, p in sorted(found)]


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The last epoch checkpoint (None before the first)."""
    found = epoch_checkpoints(run_dir)
    return found[-1] if found else None


def final_or_newest(run_dir: str | Path) -> Path | None:
    """The checkpoint that stands for the run: ``final.pt``, else the newest epoch's (a run still training)."""
    final = Path(run_dir) / FINAL
    return final if final.is_file() else newest_checkpoint(run_dir)


def trajectory_checkpoints(run_dir: str | Path) -> tuple[list[Path], Path]:
    """The epoch checkpoints of a finished run (at least three: a plane the PCA can find) and its final one."""
    run_dir = Path(run_dir)
    found = epoch_checkpoints(run_dir)
    final = run_dir / FINAL
    if not final.is_file():
        raise FileNotFoundError(f"{run_dir} has no final.pt (is it a finished run directory?)")
    if len(found) < 3:
        raise ValueError(
            f"{run_dir} has {len(found)} epoch checkpoints; the PCA plane of a trajectory needs >= 3 (train 3 or "
            "more epochs with save_every=1)"
        )
    return found, final


NUMERIC = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_error",
    "test_nll",
    "test_ece",
    "seconds",
    "steps",
    "world_size",
)


def check_rows(rows: object, source: str | Path) -> list[dict]:
    """Metric rows as training writes them: objects whose known fields are numbers (or null)."""
    if not isinstance(rows, list):
        raise ValueError(f"{source}: metrics are a {type(rows).__name__}, not a list of rows")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {i} is a JSON {type(row).__name__}, not an object")
        for key in NUMERIC:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{source}: row {i}: {key!r} is {value!r}, not a number")
    return rows


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({getattr(e, 'msg', type(e).__name__)})") from None


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``, checked (one line each)."""
    rows = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i} is not JSON ({e.msg})") from None
    return check_rows(rows, path)


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
