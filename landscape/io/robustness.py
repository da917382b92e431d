"""The robustness result (``kind="robustness"``): error, NLL, ECE and reliability bins per model and condition,
read back checked, with the pooled numbers the DAMP paper reports (per severity, CE, mCE)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.trainers.metrics import ece_from_sums

from ..robustness import corruption_error, mean_corruption_error
from .results import read_grid


@dataclass
class Robustness:
    """A robustness file read back.

    Attributes:
        path: the file it was read from.
        corruptions: the corruption names, in the order of the conditions.
        severities: the severities of each corruption (1-5).
        models: ``["model"]``, or ``["model", "baseline"]`` when a baseline was evaluated.
        values: ``error`` (%), ``nll``, ``ece`` of shape ``(models, conditions)`` and the reliability-bin sums
            ``bin_count``, ``bin_correct``, ``bin_confidence`` of shape ``(models, conditions, bins)``; condition 0
            is the clean test set, then every corruption x severity; NaN where not computed.
        attrs: the file's metadata (settings, provenance).
    """

    path: str
    corruptions: list[str]
    severities: list[int]
    models: list[str]
    values: dict[str, np.ndarray]
    attrs: dict

    def _index(self, model: str) -> int:
        if model not in self.models:
            raise ValueError(f"{self.path} has no {model!r} (it has {', '.join(self.models)})")
        return self.models.index(model)

    def clean(self, metric: str = "error", model: str = "model") -> float:
        """One metric on the clean test set for ``model`` (``"model"`` or ``"baseline"``)."""
        return float(self.values[metric][self._index(model), 0])

    def table(self, metric: str = "error", model: str = "model") -> np.ndarray:
        """(corruptions, severities) of one metric."""
        v = self.values[metric][self._index(model), 1:]
        return v.reshape(len(self.corruptions), len(self.severities), *v.shape[1:])

    def by_severity(self, metric: str = "error", model: str = "model") -> np.ndarray:
        """Per severity, pooled over corruptions (equal-sized sets: the mean; ECE from the summed bins)."""
        if metric == "ece":
            bins = [self.table(n, model) for n in ("bin_count", "bin_correct", "bin_confidence")]
            return np.array([ece_from_sums(*(b[:, s] for b in bins)) for s in range(len(self.severities))])
        return self.table(metric, model).mean(axis=0)

    def mean(self, metric: str = "error", model: str = "model") -> float:
        """Over every corruption and severity (ECE pooled)."""
        if metric == "ece":
            return ece_from_sums(*(self.table(n, model) for n in ("bin_count", "bin_correct", "bin_confidence")))
        return float(self.table(metric, model).mean())

    @property
    def has_baseline(self) -> bool:
        """Whether the file also holds the baseline model (CE and mCE need it)."""
        return "baseline" in self.models

    def ce(self) -> np.ndarray:
        """CE per corruption relative to the baseline (NaN without one)."""
        if not self.has_baseline:
            return np.full(len(self.corruptions), np.nan)
        return corruption_error(self.table("error"), self.table("error", "baseline"))

    def mce(self) -> float:
        """mCE: the mean CE over the common corruptions (NaN without a baseline)."""
        return mean_corruption_error(self.ce(), self.corruptions) if self.has_baseline else float("nan")

    def relative_clean_error(self) -> float:
        """The clean error relative to the baseline's (NaN without one)."""
        return self.clean() / self.clean(model="baseline") if self.has_baseline else float("nan")


def read_robustness(path) -> Robustness:
    """A ``kind="robustness"`` file as a :class:`Robustness`, checked.

    Args:
        path: the file.

    Returns:
        The :class:`Robustness`.

    Raises:
        ValueError: not a robustness file, or its corruptions and severities do not match its conditions.
    """
    attrs, arrays, values = read_grid(path, "robustness", {"models": 0})
    corruptions, severities = attrs.get("corruptions"), attrs.get("severities")
    if not (
        isinstance(corruptions, list)
        and isinstance(severities, list)
        and 1 + len(corruptions) * len(severities) == arrays["computed"].shape[1]
    ):
        raise ValueError(f"{path}: its corruptions and severities do not match its conditions")
    return Robustness(
        str(path),
        list(attrs["corruptions"]),
        [int(s) for s in attrs["severities"]],
        list(attrs["models"]),
        values,
        attrs,
    )


def severity_curves(r: Robustness) -> dict:
    """Error and ECE per severity pooled over corruptions (0 = clean) of one robustness file."""
    return {
        "severity": np.array([0, *r.severities]),
        "error": np.array([r.clean(), *r.by_severity()]),
        "ece": np.array([r.clean("ece"), *r.by_severity("ece")]),
    }


__all__ = ["Robustness", "read_robustness", "severity_curves"]
