"""Corruption robustness: error, NLL and ECE per corruption and severity, CE and mCE against a baseline.

:func:`corruption_robustness` evaluates a :class:`~landscape.Problem`'s classifier (and a baseline) on one split,
clean and under every corruption x severity. A robustness result (``kind="robustness"``) holds, per model and per
condition (``clean``, then every corruption x severity), the error (%), NLL, ECE and the reliability-bin sums, so that
pooled numbers (per severity over all corruptions, as the DAMP paper reports) are exact: the pooled ECE is computed
from summed bins, not averaged.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from tqdm import tqdm

from landscape.data.corruptions import ALL, COMMON, SEVERITIES, corrupt_images
from landscape.trainers.metrics import ECE_BINS, classification_metrics, predict, reliability

from ._driver import GridJob, Output
from ._system.ranks import Ranks
from .io.results import ResultWriter
from .problem import Problem, preserved, weights_sha256

if TYPE_CHECKING:
    from .io.robustness import Robustness

VALUES: dict[str, tuple[int, ...]] = {  # a robustness file's values per (model, condition)
    "error": (),
    "nll": (),
    "ece": (),
    "bin_count": (ECE_BINS,),
    "bin_correct": (ECE_BINS,),
    "bin_confidence": (ECE_BINS,),
}
Condition = tuple[str, int]  # ("clean", 0) or (corruption, severity)


def corruption_error(errors: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """``CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}`` (Hendrycks & Dietterich; DAMP eq. 27), rows = corruptions."""
    return np.sum(errors, axis=-1) / np.sum(baseline, axis=-1)


def mean_corruption_error(ce: np.ndarray, names: list[str]) -> float:
    """mCE: the mean CE over the 15 common corruptions among ``names`` (over all of them if none is common)."""
    common = [i for i, n in enumerate(names) if n in COMMON]
    return float(np.mean(ce[common] if common else ce))


def conditions_of(corruptions: Sequence[str], severities: Sequence[int]) -> list[Condition]:
    """``clean`` first, then every corruption x severity, the order of a robustness file's conditions."""
    return [("clean", 0)] + [(c, int(s)) for c in corruptions for s in severities]


def create_robustness(out: str | Path, models: int, conditions: list[Condition], attrs: dict) -> ResultWriter:
    """An empty, resumable robustness file for ``models`` x ``conditions``."""
    severity: dict[str, object] = {"condition_severity": np.array([s for _, s in conditions])}
    plain = {k: v for k, v in attrs.items() if k != "kind"}
    return ResultWriter.create(out, "robustness", (models, len(conditions)), VALUES, severity, plain, {})


def fill_robustness(
    job: GridJob,
    models: list[nn.Module],
    conditions: list[Condition],
    todo: list[int],
    batches_of: Callable[[Condition], Iterable[tuple[Tensor, Tensor]]],
    progress: bool,
) -> None:
    """Evaluate every condition with a point left in ``todo`` for each model and write it. ``batches_of(condition)``
    gives its ``(inputs, labels)`` batches; the file's models beyond ``models`` repeat the last one (a baseline that
    is the model itself is evaluated once)."""
    rows = job.shape[0]
    for p in tqdm(
        sorted({k % len(conditions) for k in todo}), desc="robustness", unit="condition", disable=not progress
    ):
        results = []
        for net in models:
            logits, labels = predict(net, batches_of(conditions[p]))
            if logits.dim() != 2 or labels.dim() != 1 or labels.is_floating_point():
                raise ValueError(
                    "robustness needs a classifier: logits of shape (N, classes) and integer labels of shape (N,), "
                    f"got outputs {tuple(logits.shape)} and labels {tuple(labels.shape)}"
                )
            results.append((classification_metrics(logits, labels), reliability(logits.double().softmax(1), labels)))
        points = []
        for m in range(rows):
            metrics, rel = results[min(m, len(results) - 1)]
            values: dict[str, object] = {"error": metrics["error"], "nll": metrics["nll"], "ece": metrics["ece"]}
            values.update(bin_count=rel["count"], bin_correct=rel["correct"], bin_confidence=rel["confidence_sum"])
            points.append((m * len(conditions) + p, values))
        job.write(points)
    job.finish("conditions")


def _images(problem: Problem, split: str) -> tuple[Tensor, Tensor]:
    """The split's images (uint8, or float in [0, 1]) and labels, gathered on the CPU."""
    xs, ys = [], []
    for batch in problem.splits[split].inputs():
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)):
            raise ValueError(f"robustness needs (images, labels) batches; split {split!r} has another kind of batch")
        xs.append(batch[0].detach().cpu())
        ys.append(batch[1].detach().cpu())
    x, y = torch.cat(xs), torch.cat(ys)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"robustness corrupts images of shape (N, 1 or 3, H, W); split {split!r} holds {tuple(x.shape)}"
        )
    if x.dtype != torch.uint8 and not (x.is_floating_point() and float(x.min()) >= 0 and float(x.max()) <= 1):
        raise ValueError(
            f"robustness corrupts raw images: uint8 (0-255) or float in [0, 1], normalized inside the model "
            f"(as RobustBench's models do); split {split!r} holds {x.dtype} in [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}]"
        )
    return x, y


def corruption_robustness(
    problem: Problem,
    *,
    corruptions: Sequence[str] = COMMON,
    severities: Sequence[int] = SEVERITIES,
    split: str | None = None,
    baseline: nn.Module | None = None,
    seed: int = 0,
    workers: int = 1,
    batch_size: int = 500,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
) -> Robustness:
    """Error, NLL and ECE of the problem's classifier, and of a baseline, clean and under every corruption x severity.

    The split's images are corrupted as raw images (Hendrycks & Dietterich's suite, image ``i`` seeded by its index)
    and handed to the model in the form the problem holds them, so the model must take raw images: uint8, or float
    in [0, 1], with any normalization inside the model (as RobustBench's models do).

    Args:
        problem: a classifier (logits of shape ``(N, classes)``) and its data, ``(images, labels)`` batches.
        corruptions: the corruption names (default the 15 common ones; see ``landscape.data.corruptions``).
        severities: severities 1-5.
        split: the split to evaluate (default ``test`` if the problem has one, else its first).
        baseline: a second classifier evaluated on the same images (CE and mCE are relative to it).
        seed: the corruptions' seed.
        workers: processes that corrupt the images.
        batch_size: images per forward pass.
        out: the HDF5 file to write as conditions finish (``kind="robustness"``, as ``landscape robustness``
            writes; ``None``: in memory).
        resume: finish the file a killed job left at ``out``.
        overwrite: replace an earlier robustness result at ``out``.
        progress: a progress bar over the conditions.
        log: called with one-line messages (resuming); ``None``: silent.
        attrs: extra attributes stored with the result.

    Returns:
        The :class:`~landscape.Robustness` (``mce()``, ``by_severity()``, ``table()``).

    Raises:
        ValueError: an unknown corruption or severity, a split the problem lacks, batches that are not raw
            ``(images, labels)``, a model that is not a classifier, or an output that exists (without ``resume`` or
            ``overwrite``), may not be replaced, or was made with other settings.
    """
    from .io.robustness import Robustness, read_robustness  # the result type computes CE with this module's numerics

    unknown = [c for c in corruptions if c not in ALL]
    if unknown or not corruptions:
        raise ValueError(f"unknown corruption {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must be among 1-5, got {list(severities)}")
    split = split or ("test" if "test" in problem.splits else next(iter(problem.splits)))
    if split not in problem.splits:
        raise ValueError(f"no split {split!r} in the problem (it has {', '.join(problem.splits)})")
    x, y = _images(problem, split)
    conditions = conditions_of(corruptions, severities)
    names = ["model"] + (["baseline"] if baseline is not None else [])
    info = problem.file_attrs()
    attrs = {
        **info,
        "kind": "robustness",
        "corruptions": list(corruptions),
        "severities": [int(s) for s in severities],
        "source": "generated",
        "corruption_seed": seed,
        "models": names,
        "baseline": "" if baseline is None else type(baseline).__name__,
        "baseline_sha256": "" if baseline is None else weights_sha256(baseline.state_dict()),
        "split": split,
        **(attrs or {}),
    }
    shape = (len(names), len(conditions))
    job = GridJob("robustness", shape, VALUES, attrs, Output(out, resume, overwrite, progress, log), Ranks())

    def create() -> ResultWriter:
        return create_robustness(out, len(names), conditions, attrs)  # type: ignore[arg-type]  # out is not None here

    todo = job.open(create, lambda w: w.shape == shape, attrs)

    def batches_of(condition: Condition) -> Iterable[tuple[Tensor, Tensor]]:
        name, severity = condition
        images = x if name == "clean" else _as(corrupt_images(_raw(x), name, severity, seed, workers=workers), x)
        for i in range(0, len(y), batch_size):
            yield images[i : i + batch_size].to(problem.device), y[i : i + batch_size].to(problem.device)

    with ExitStack() as stack, job:
        models = [stack.enter_context(problem.session())]
        if baseline is not None and attrs["baseline_sha256"] != info.get("weights_sha256"):
            home = next(baseline.parameters(), torch.empty(0)).device
            stack.callback(baseline.to, home)  # after preserved() has put its weights back: the model goes home
            stack.enter_context(preserved(baseline))
            models.append(baseline.to(problem.device))
        fill_robustness(job, models, conditions, todo, batches_of, progress)
    if job.written is not None:
        return read_robustness(job.written)
    memory = job.memory
    assert memory is not None
    return Robustness("", list(corruptions), [int(s) for s in severities], names, dict(memory.arrays), memory.attrs)


def _raw(x: Tensor) -> Tensor:
    """uint8 images from uint8 or [0, 1] floats (what the corruption suite takes)."""
    return x if x.dtype == torch.uint8 else (x * 255).round().clamp(0, 255).to(torch.uint8)


def _as(raw: Tensor, like: Tensor) -> Tensor:
    """Corrupted uint8 images back in the form the problem's images came in."""
    return raw if like.dtype == torch.uint8 else (raw.to(like.dtype) / 255)


__all__ = ["corruption_error", "corruption_robustness", "mean_corruption_error"]
