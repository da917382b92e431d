"""Classification metrics from logits: error, NLL and expected calibration error."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

ECE_BINS = 15


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins ``(k/bins, (k+1)/bins]`` on the max probability.

    ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` (Guo et al. 2017; the DAMP code's 15 bins).
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=conf.dtype, device=conf.device)
    idx = torch.bucketize(conf, edges[1:-1], right=False)  # bin k holds conf in (edges[k], edges[k+1]]
    count = torch.zeros(bins, dtype=torch.float64, device=conf.device).index_add_(0, idx, torch.ones_like(correct))
    acc_sum = torch.zeros_like(count).index_add_(0, idx, correct)
    conf_sum = torch.zeros_like(count).index_add_(0, idx, conf.double())
    return float((acc_sum - conf_sum).abs().sum() / len(labels))


def classification_metrics(logits: Tensor, labels: Tensor, bins: int = ECE_BINS) -> dict[str, float]:
    """``{"error": %, "nll": mean cross-entropy, "ece": ...}`` of a whole split's logits."""
    logits = logits.double()
    return {
        "error": 100.0 * float((logits.argmax(1) != labels).double().mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(logits.softmax(1), labels, bins),
    }


@torch.inference_mode()
def predict(model: nn.Module, loader) -> tuple[Tensor, Tensor]:
    """Logits and labels of every batch of ``loader``, with the model in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    try:
        outs = [(model(x).float(), y) for x, y in loader]
    finally:
        model.train(was_training)
    return torch.cat([o for o, _ in outs]), torch.cat([y for _, y in outs])


def evaluate(model: nn.Module, loader) -> dict[str, float]:
    return classification_metrics(*predict(model, loader))
