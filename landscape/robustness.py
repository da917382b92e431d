"""Corruption robustness: error, NLL and ECE per corruption and severity, CE and mCE against a baseline.

A robustness file (``kind="robustness"``) holds, per model (the checkpoint, and the baseline if one
was given) and per condition (``clean``, then every corruption x severity), the error (%), NLL, ECE
and the reliability-bin sums, so that pooled numbers (per severity over all corruptions, as the DAMP
paper reports) are exact: the pooled ECE is computed from summed bins, not averaged.
"""

from __future__ import annotations

import numpy as np

from landscape.data.corruptions import COMMON


def corruption_error(errors: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """``CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}`` (Hendrycks & Dietterich; DAMP eq. 27), rows = corruptions."""
    return np.sum(errors, axis=-1) / np.sum(baseline, axis=-1)


def mean_corruption_error(ce: np.ndarray, names: list[str]) -> float:
    """mCE: the mean CE over the 15 common corruptions among ``names`` (over all of them if none is common)."""
    common = [i for i, n in enumerate(names) if n in COMMON]
    return float(np.mean(ce[common] if common else ce))


__all__ = ["corruption_error", "mean_corruption_error"]
