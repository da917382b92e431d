"""Versioned checkpoints of plain dicts and tensors, written atomically, read with ``weights_only=True``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .models import create_model

FORMAT = "landscape-checkpoint"
VERSION = 1


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))


def save_checkpoint(path: Path, payload: dict) -> None:
    """Save ``payload`` (plain types and tensors only) with the format marker and version."""
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp))


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict; a clear ValueError for anything that is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's unpickler fails on junk bytes with any error (KeyError, ...)
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}"
        raise ValueError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path}: not a landscape checkpoint (made by another tool? it lacks format={FORMAT!r})")
    if ck.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint version {ck['version']} is newer than this toolkit reads ({VERSION})")
    return ck


def build_model(spec: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's ``{"name", "kwargs"}`` spec."""
    return create_model(spec["name"], **spec["kwargs"])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The rebuilt model (eval mode, on ``device``) and the checkpoint's metadata.

    Metadata holds ``model`` (spec), ``dataset``, ``method`` (name and hyperparameters),
    ``config``, ``epoch`` and ``metrics`` (the per-epoch history); the resume state
    (optimizer, RNG) is left out.
    """
    ck = read_checkpoint(path)
    model = build_model(ck["model"])
    try:
        model.load_state_dict(ck["model_state"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit model {ck['model']['name']!r} ({str(e).splitlines()[0]})") from None
    meta = {k: v for k, v in ck.items() if k not in ("model_state", "optimizer", "rng", "loader")}
    return model.to(device).eval(), meta
