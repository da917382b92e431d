"""The curvature tracked during training: ``curvature.jsonl``, one JSON object per measurement (a
:class:`~landscape.CurvatureTracker`'s ``history``), appended as training goes."""

from __future__ import annotations

import json
from pathlib import Path


def read_curvature(path: str | Path) -> tuple[list[dict], bool]:
    """(the rows of a tracker's file, whether its last line was cut short by a kill and left out).

    Raises:
        ValueError: a line that is not a JSON object with an integer ``step`` (other than a cut last line).
    """
    lines = Path(path).read_text(errors="replace").splitlines(keepends=True)  # bytes that are not text: not JSON
    rows: list[dict] = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith("\n"):  # the last line, cut short by a kill
                return rows, True
            raise ValueError(f"{path}: line {i + 1} is not JSON: not a curvature tracker's file") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int) or isinstance(row["step"], bool):
            raise ValueError(f"{path}: line {i + 1} has no integer 'step': not a curvature tracker's file")
        rows.append(row)
    return rows, False


__all__: list[str] = []  # read through landscape.runs (a run's curvature) and the tracker
