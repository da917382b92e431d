"""Which device a run or an analysis uses: one rule for every command."""

from __future__ import annotations

import os
import re

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if there is one), ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", str(name))
    if m is None:
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: CUDA is not available on this machine")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def check_device(device: str | torch.device) -> torch.device:
    """A device given from Python, checked once: ``auto``, ``cpu``, a CUDA device this machine has, or any other
    backend torch can allocate on; one line otherwise (the meta device holds no values to compute with)."""
    if isinstance(device, str) and device == "auto":
        return resolve_device(device)
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if d.type == "meta":
        raise ValueError("device 'meta': the meta device holds no values to compute with; use cpu or cuda")
    if d.type == "cuda":
        return resolve_device(str(d))
    if d.type != "cpu":
        try:
            torch.empty(0, device=d)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"device {str(d)!r}: not available here ({str(e).splitlines()[0][:120]})") from None
    return d


def free_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that may still be allocated on ``device``: CUDA's free memory, else the host's MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(what: str, nbytes: int, device: torch.device | str = "cpu") -> None:
    """Refuse, before allocating, work whose memory exceeds what ``device`` has free (one line)."""
    free = free_memory(device)
    if nbytes > free:
        raise ValueError(f"{what} would take {nbytes / 2**30:.1f} GiB of memory; {free / 2**30:.1f} GiB are free")
