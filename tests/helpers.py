"""Helpers shared by the test modules (import as ``from helpers import ...``)."""

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the figures a comparison report draws
REPORT_FIGURES = (
    "training",
    "slices",
    "surfaces",
    "sweeps",
    "spectra",
    "calibration",
    "robustness",
    "corruption_errors",
)


def cli(*args, env=None, **kw):
    """``python -m landscape.apps.cli ARGS`` in a fresh process from the repository root (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "landscape.apps.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


@contextmanager
def live_writer(code: str):
    """Another process running ``code`` that holds a file open until this block ends;
    the block starts once the code has printed ``ready``."""
    script = f"import time\n{textwrap.dedent(code)}\nprint('ready', flush=True)\ntime.sleep(60)\n"
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "ready"
        yield job
    finally:
        job.kill()
        job.wait()
