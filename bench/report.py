"""Where benchmark tables go: printed, and saved under the results folder."""

from __future__ import annotations

from pathlib import Path


def report(lines: list[str], out: str | Path, name: str) -> None:
    text = "\n".join(lines)
    print(text)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / name).write_text(text + "\n")
