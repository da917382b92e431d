"""Weights saved along a user's own training loop, for :func:`landscape.trajectory` and :func:`landscape.interpolate`.

    for epoch in range(epochs):
        train_one_epoch(model)
        landscape.save_snapshot(model, "runs/mine/snapshots", epoch + 1)
    landscape.trajectory(problem, "runs/mine/snapshots")

A snapshot is a plain ``state_dict()`` file (``step_000012.pt``), written atomically and read
back with ``weights_only=True``; ``torch.save(model.state_dict(), path)`` files and our own
checkpoints are read the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from landscape._system.files import atomic_write
from landscape.trainers.checkpoint import FORMAT, read_checkpoint


def save_snapshot(model: nn.Module, folder: str | Path, step: int) -> Path:
    """Write ``model.state_dict()`` (on the CPU) to ``folder/step_NNNNNN.pt`` atomically (for :func:`trajectory`).

    Args:
        model: the model being trained.
        folder: where the snapshots go (made if missing).
        step: the training step (or epoch) the snapshot is taken at; it orders the trajectory.

    Returns:
        The path written.

    Raises:
        ValueError: a negative ``step``.
    """
    if not (isinstance(step, int) and step >= 0):
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    path = Path(folder) / f"step_{step:06d}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def snapshot_files(folder: str | Path) -> list[Path]:
    """The ``.pt`` files of a folder in the order of the last number in their names (``step_000012.pt``)."""

    def key(p: Path) -> tuple:
        nums = re.findall(r"\d+", p.stem)
        return (int(nums[-1]) if nums else -1, p.name)

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a folder of snapshots")
    return sorted((p for p in folder.glob("*.pt") if not p.name.startswith(".")), key=key)


def load_state(source: Any) -> dict[str, Tensor]:
    """A state dict from a model, a state dict, or a file: a saved ``state_dict()`` or our checkpoint
    (read with ``weights_only=True``: no code is unpickled)."""
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable state dict ({type(e).__name__})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return read_checkpoint(path)["model_state"]
    if not (isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values())):
        raise ValueError(f"{path}: not a state dict (a dict of tensors) or a landscape checkpoint")
    return obj


__all__ = ["save_snapshot"]
