"""Versioned checkpoints of plain dicts and tensors, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from landscape._system.files import atomic_write, payload_bytes

from .models import MODELS, create_model

FORMAT = "landscape-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """Save ``payload`` (plain types and tensors only) with the format marker and version."""
    full = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda tmp: torch.save(full, tmp), nbytes=payload_bytes(full))


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked.

    Args:
        path: the file (read with ``weights_only=True``).

    Returns:
        The dict of plain types and tensors.

    Raises:
        ValueError: anything that is not one of our checkpoints (the reason is given).
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        newest = sorted(path.glob("*.pt")) or sorted(path.glob("checkpoints/*.pt"))
        hint = f" (e.g. {path / 'final.pt' if (path / 'final.pt').is_file() else newest[-1]})" if newest else ""
        raise IsADirectoryError(f"{str(path)!r} is a folder: give a checkpoint file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}"
        raise ValueError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path}: not a landscape checkpoint (made by another tool? it lacks format={FORMAT!r})")
    if not isinstance(ck.get("version"), int) or ck["version"] > VERSION:
        raise ValueError(f"{path}: checkpoint version {ck.get('version')!r} is not one this toolkit reads ({VERSION})")
    check_checkpoint(ck, path)
    return ck


SCALAR = (int, float, bool, str, type(None))


def check_checkpoint(ck: dict, path: str | Path) -> None:
    """The one validator every reader goes through (CLI, ``Problem.from_checkpoint``, compare, the explorer): the
    fields a checkpoint must hold, their types, a known model and dataset; one line naming the file and the field.
    (The model's arguments are bounded when it is built: :func:`~landscape.trainers.models.create_model`.)"""
    from landscape.data import DATASETS

    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{path}: field {field!r} {why} (not a valid landscape checkpoint)")

    def table(field: str, value: object) -> dict:
        if not isinstance(value, dict):
            raise bad(field, "is missing" if value is None else f"is a {type(value).__name__}, not a dict")
        return value

    model = table("model", ck.get("model"))
    if model.get("name") not in MODELS:
        raise bad("model.name", f"is {model.get('name')!r}, not a known model ({', '.join(sorted(MODELS))})")
    kwargs = table("model.kwargs", model.get("kwargs"))
    if not all(isinstance(k, str) and isinstance(v, SCALAR) for k, v in kwargs.items()):
        raise bad("model.kwargs", "holds something other than named numbers")
    for key in ("num_classes", "in_channels"):
        if not isinstance(kwargs.get(key), int):
            raise bad(f"model.kwargs.{key}", "is missing or not an integer")
    state = table("model_state", ck.get("model_state"))
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise bad("model_state", "holds something other than named tensors")
    dataset = table("dataset", ck.get("dataset"))
    if dataset.get("name") not in DATASETS:
        raise bad("dataset.name", f"is {dataset.get('name')!r}, not a known dataset ({', '.join(sorted(DATASETS))})")
    for key in ("mean", "std"):
        if not isinstance(dataset.get(key), list) or not all(isinstance(v, (int, float)) for v in dataset[key]):
            raise bad(f"dataset.{key}", "is missing or not a list of numbers")
    if not isinstance(table("method", ck.get("method")).get("name"), str):
        raise bad("method.name", "is missing or not a string")
    table("config", ck.get("config"))
    if not isinstance(ck.get("epoch"), int):
        raise bad("epoch", "is missing or not an integer")
    if not isinstance(ck.get("metrics", []), list):
        raise bad("metrics", "is not a list of rows")


def build_model(spec: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's ``{"name", "kwargs"}`` spec."""
    return create_model(spec["name"], **spec["kwargs"])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The rebuilt model (eval mode, on ``device``) and the checkpoint's metadata.

    Args:
        path: one of our checkpoints (read with ``weights_only=True``: no code is unpickled).
        device: where the model goes.

    Returns:
        ``(model, meta)``: ``meta`` holds ``model`` (spec), ``dataset``, ``method`` (name and hyperparameters),
        ``config``, ``epoch`` and ``metrics`` (the per-epoch history); the resume state (optimizer, RNG) is left out.

    Raises:
        ValueError: not one of our checkpoints, a newer format, or fields of the wrong type or size.
    """
    ck = read_checkpoint(path)
    model = build_model(ck["model"])
    try:
        model.load_state_dict(ck["model_state"])
    except RuntimeError as e:
        raise ValueError(
            f"{path}: weights do not fit model {ck['model']['name']!r} ({str(e).splitlines()[0]})"
        ) from None
    meta = {k: v for k, v in ck.items() if k not in ("model_state", "optimizer", "rng", "loader")}
    return model.to(device).eval(), meta


__all__ = ["load_checkpoint", "read_checkpoint"]
