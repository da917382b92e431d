"""Helpers shared by the test modules (import as ``from helpers import ...``)."""

import os
import subprocess
import sys
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
    """``python -m apps.cli ARGS`` in a fresh process from the repository root (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )
