"""Classification metrics from logits: error, NLL and expected calibration error."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

ECE_BINS = 15


def reliability(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per-bin sample count, number correct and summed confidence over ``bins`` equal-width confidence bins,
    and their means ``accuracy`` and ``confidence`` (NaN in an empty bin). The sums add up across prediction
    sets, so the ECE of a union is exact (:func:`ece_from_sums`).

    Bin ``k`` holds the predictions whose max probability lies in ``(k/bins, (k+1)/bins]``; ``edges`` has
    ``bins + 1`` entries.
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf.double(), edges[1:-1].to(conf.device), right=False)
    count = torch.zeros(bins, dtype=torch.float64, device=conf.device).index_add_(0, idx, torch.ones_like(correct))
    acc_sum = torch.zeros_like(count).index_add_(0, idx, correct)
    conf_sum = torch.zeros_like(count).index_add_(0, idx, conf.double())
    n, right, sure = (t.cpu().numpy() for t in (count, acc_sum, conf_sum))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": edges.numpy(),
            "count": n,
            "correct": right,
            "confidence_sum": sure,
            "accuracy": right / n,
            "confidence": sure / n,
        }


def ece_from_sums(count: np.ndarray, correct: np.ndarray, confidence_sum: np.ndarray) -> float:
    """``sum_b |B_b|/N * |acc(B_b) - conf(B_b)| = sum_b |correct_b - confidence_b| / N``, bins on the last axis;
    leading axes (several prediction sets) are summed first, giving the ECE of their union."""
    c, a, f = (
        np.asarray(v, dtype=np.float64).reshape(-1, np.shape(v)[-1]).sum(0) for v in (count, correct, confidence_sum)
    )
    return float(np.abs(a - f).sum() / c.sum())


def ece_from_bins(rel: dict[str, np.ndarray]) -> float:
    """The ECE of one :func:`reliability` result."""
    return ece_from_sums(rel["count"], rel["correct"], rel["confidence_sum"])


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins on the max probability (Guo et al. 2017; the DAMP code's 15).

    Args:
        probs: (N, classes) predicted probabilities.
        labels: (N,) class indices.
        bins: the number of bins.

    Returns:
        The ECE in [0, 1].
    """
    return ece_from_bins(reliability(probs, labels, bins))


def classification_metrics(logits: Tensor, labels: Tensor, bins: int = ECE_BINS) -> dict[str, float]:
    """Error, NLL and ECE of a whole split's logits.

    Args:
        logits: (N, classes).
        labels: (N,) class indices.
        bins: equal-width confidence bins of the ECE.

    Returns:
        ``{"error": percent, "nll": mean cross-entropy, "ece": expected calibration error}``.
    """
    logits = logits.double()
    return {
        "error": 100.0 * float((logits.argmax(1) != labels).double().mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(logits.softmax(1), labels, bins),
    }


@torch.inference_mode()
def predict(model: nn.Module, loader) -> tuple[Tensor, Tensor]:
    """Logits and labels of every batch of ``loader``, with the model in eval mode (its mode restored after).

    Args:
        model: the classifier.
        loader: an iterable of ``(inputs, labels)`` batches.

    Returns:
        ``(logits, labels)`` concatenated over the batches.
    """
    was_training = model.training
    model.eval()
    try:
        outs = [(model(x).float(), y) for x, y in loader]
    finally:
        model.train(was_training)
    return torch.cat([o for o, _ in outs]), torch.cat([y for _, y in outs])


def evaluate(model: nn.Module, loader) -> dict[str, float]:
    """Accuracy, error, NLL and ECE of ``model`` on every batch of ``loader``."""
    return classification_metrics(*predict(model, loader))


__all__ = ["classification_metrics", "evaluate", "expected_calibration_error", "predict"]
