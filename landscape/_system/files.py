"""Files written so that nothing is lost: atomic replacement, free-space checks, one writer at a time (kernel
locks), strict JSON, and the comparison of saved settings a resumed job must share. Training and analysis both
write through here."""

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
