"""Versioned checkpoints of plain dicts and tensors, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from .models import MODELS, create_model

FORMAT = "landscape-checkpoint"
VERSION = 1


SPACE_MARGIN = 1 << 20  # what HDF5 and torch.save add beyond the payload, and room to spare
TEMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


def ensure_space(folder: Path, nbytes: int) -> None:
    """Refuse to start writing ``nbytes`` into ``folder`` when the disk cannot hold them (an HDF5 library that
    runs out of space mid-file can crash the process instead of raising)."""
    free = shutil.disk_usage(folder).free
    if free < nbytes + SPACE_MARGIN:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space in {folder}: writing needs about "
            f"{(nbytes + SPACE_MARGIN) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free",
        )


def atomic_write(path: Path, write: Callable[[Path], object], nbytes: int | None = None) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file, a failed write
    leaves no temporary file. ``nbytes``: the payload's size, checked against the free space first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if nbytes is not None:
        ensure_space(path.parent, nbytes)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError
        if shutil.disk_usage(path.parent).free < SPACE_MARGIN:
            raise OSError(errno.ENOSPC, f"no space left on the device writing {path}") from None
        raise RuntimeError(f"writing {path} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def exclusive(target: str | Path) -> Iterator[None]:
    """Hold ``target`` (a result file or a run directory) for one writer while a job runs: a second job is refused
    with one line, ``--overwrite`` included. The lock is the kernel's (``flock`` on ``.NAME.lock`` beside the
    target), so a killed job never leaves it held; the lock file is removed when the job ends."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{target} is being written by another job (still running?): wait for it to end") from None
        try:  # the lock file may have been removed by the job that held it just before: then lock the new one
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files (``.NAME.tmpPID``) that writers killed mid-write left in ``folder``."""
    removed = []
    for p in Path(folder).glob(".*.tmp*"):
        m = TEMP.match(p.name)
        if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None: strict JSON (no NaN or Infinity tokens)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` to ``path`` atomically, after checking the disk has room for it."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), nbytes=len(data))


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Several files made in memory (a report, a set of figures) into ``folder``: the room for all of them is
    checked before the first is written, so a full disk leaves the earlier set whole rather than half replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    ensure_space(folder, sum(len(b) for b in files.values()))
    for name, data in files.items():
        write_bytes(folder / name, data)


def json_text(obj: Any) -> str:
    """Strict, indented JSON of ``obj`` (non-finite numbers as null)."""
    return json.dumps(strict(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, json_text(obj).encode())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(strict(r), allow_nan=False) + "\n" for r in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text), nbytes=len(text))


def changed_options(saved: dict, now: dict, names: dict[str, str] | None = None) -> list[str]:
    """``rho=0.05 (now 0.1)`` for every setting that differs, by its keyword (``names`` overrides that spelling;
    values too long to read are left out); the command line shows ``--rho 0.05 (now 0.1)``."""
    out = []
    for key in (k for k in now if saved.get(k) != now[k]):
        name = (names or {}).get(key, f"{key}=")
        old, new = (v if isinstance(v, str) else json.dumps(v, default=str) for v in (saved.get(key), now[key]))
        out.append(f"{name}{'' if name.endswith('=') else ' '}{old} (now {new})" if len(old) + len(new) < 60 else name)
    return out


def payload_bytes(obj: Any) -> int:
    """The bytes of every tensor and array in a (nested) payload."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def save_checkpoint(path: Path, payload: dict) -> None:
    """Save ``payload`` (plain types and tensors only) with the format marker and version."""
    full = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda tmp: torch.save(full, tmp), nbytes=payload_bytes(full))


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict; a clear ValueError for anything that is not one of ours."""
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

    Metadata holds ``model`` (spec), ``dataset``, ``method`` (name and hyperparameters),
    ``config``, ``epoch`` and ``metrics`` (the per-epoch history); the resume state
    (optimizer, RNG) is left out.
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
