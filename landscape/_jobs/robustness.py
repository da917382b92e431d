"""Calibration and corruption robustness of a classifier checkpoint, against a baseline (the DAMP paper's
evaluation; the CLI's ``robustness``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from landscape._system.device import resolve_device
from landscape.data import load_dataset
from landscape.data.corruptions import corrupted_split, split_key
from landscape.data.formats import RELEASED_C, read_released_c
from landscape.trainers import classification_metrics, load_checkpoint, predict
from landscape.trainers.metrics import reliability

from .._driver import GridJob, Output
from .._evaluation import EvalSet, normalize, subset
from .._system.ranks import Ranks
from ..io.files import sha256
from ..problem import Problem, checkpoint_info
from ..robustness import VALUES, Condition, conditions_of, create_robustness, fill_robustness
from .options import SPLITS, EvalOptions


def calibration(
    ckpt: str | Path, opts: EvalOptions, split: str = "test"
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Error/NLL/ECE and the reliability-diagram bins of a checkpoint's predictions on one split (eval mode)."""
    if split not in SPLITS:
        raise ValueError(f"split must be train or test, got {split!r}")
    problem = Problem.from_checkpoint(
        ckpt,
        split,
        samples=opts.samples,
        sample_seed=opts.sample_seed,
        batch_size=opts.batch_size,
        data_root=opts.data_root,
        device=opts.device,
    )
    return _predictive_metrics(problem.model, problem.splits[split].inputs())


def _predictive_metrics(model: nn.Module, batches) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    logits, labels = predict(model, batches)
    return classification_metrics(logits, labels), reliability(logits.double().softmax(1), labels)


def _condition_images(
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    total: int,
    condition: tuple[str, int],
    *,
    source: str,
    dataset: str,
    c_root: str | None,
    seed: int,
    workers: int,
):
    """Test images and labels of one condition: clean, generated with the corruption suite (cached on disk),
    or read from a released -C set (the same subset of rows)."""
    name, severity = condition
    if name == "clean":
        return x, y
    if source == "generated":
        return corrupted_split(
            x, split_key(dataset, "test", total, idx), name, severity, seed, indices=idx, workers=workers
        ), y
    if c_root is None:
        raise ValueError("source='released' needs c_root= (the folder holding the released *-C files)")
    cx, cy = read_released_c(c_root, dataset, name, severity)
    if len(cy) != total:
        raise ValueError(f"{dataset}-C {name} severity {severity} has {len(cy)} images, the test split {total}")
    return cx[idx], cy[idx]


def robustness_analysis(
    ckpt: str | Path,
    out: str | Path,
    corruptions: list[str],
    severities: list[int],
    opts: EvalOptions,
    *,
    baseline: str | Path | None = None,
    source: str = "generated",
    c_root: str | None = None,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """Error/NLL/ECE (and reliability-bin sums) of a checkpoint, and of a baseline checkpoint, on the clean test
    split and every corruption x severity; one resumable point per (model, condition)."""
    if source not in ("generated", "released"):
        raise ValueError(f"source must be generated or released, got {source!r}")
    if source == "released" and not c_root:
        raise ValueError("the released corruption sets need c_root (the folder holding CIFAR-10-C/ etc.)")
    device = resolve_device(opts.device)
    model, meta = load_checkpoint(ckpt, device)
    models = [model]
    attrs = {
        **checkpoint_info(ckpt, meta, opts.samples, opts.sample_seed),
        "bn": opts.bn,
        "kind": "robustness",
        "corruptions": list(corruptions),
        "severities": [int(s) for s in severities],
        "source": source,
        "corruption_seed": seed,
        "models": ["model"],
        "baseline": "",
        "baseline_sha256": "",
        "split": "test",
    }
    if baseline is not None:
        base_model, base_meta = load_checkpoint(baseline, device)
        if base_meta["dataset"]["name"] != meta["dataset"]["name"]:
            raise ValueError(
                f"baseline {baseline} was trained on {base_meta['dataset']['name']}, not {meta['dataset']['name']}"
            )
        attrs.update(
            models=["model", "baseline"],
            baseline=str(baseline),
            baseline_sha256=sha256(baseline),
            baseline_method=base_meta["method"]["name"],
        )
        if attrs["baseline_sha256"] != attrs["checkpoint_sha256"]:  # the baseline itself (ERM in the demo): once
            models.append(base_model)
    dataset = meta["dataset"]["name"]
    if source == "released" and dataset not in RELEASED_C:
        raise ValueError(
            f"no released corruption benchmark for {dataset!r} (known: {', '.join(RELEASED_C)}); "
            f"use generated corruptions (source='generated')"
        )
    ds = load_dataset(dataset, opts.data_root or meta["config"].get("data_root"))
    x, y = ds.split("test")
    total = len(y)
    idx = subset(total, opts.samples, opts.sample_seed)
    x, y = x[idx], y[idx]
    conditions = conditions_of(corruptions, severities)
    grid = (len(attrs["models"]), len(conditions))
    job = GridJob(
        "robustness", grid, VALUES, {}, Output(out, resume, overwrite, opts.progress, log), Ranks(), memory=False
    )
    todo = job.open(lambda: create_robustness(out, grid[0], conditions, attrs), lambda w: w.shape == grid, attrs)

    def batches_of(condition: Condition):
        images, labels = _condition_images(
            x, y, idx, total, condition, source=source, dataset=dataset, c_root=c_root, seed=seed, workers=workers
        )
        return EvalSet(normalize(images, meta["dataset"]).to(device), labels.to(device), opts.batch_size).batches()

    with job:
        fill_robustness(job, models, conditions, todo, batches_of, opts.progress)
    return Path(out)


__all__ = ["calibration", "robustness_analysis"]
