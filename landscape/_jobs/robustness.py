"""Calibration and corruption robustness of a classifier checkpoint, against a baseline (the DAMP paper's
evaluation; the CLI's ``robustness``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from landscape._system.device import resolve_device
from landscape.data import load_dataset
from landscape.data.corruptions import corrupted_split, split_key
from landscape.data.formats import RELEASED_C, read_released_c
from landscape.trainers import classification_metrics, load_checkpoint, predict
from landscape.trainers.metrics import ECE_BINS, reliability

from .._driver import GridJob, Output
from .._evaluation import EvalSet, normalize, subset
from .._system.ranks import Ranks
from ..io.files import sha256
from ..io.results import ResultWriter
from ..problem import Problem, checkpoint_info
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
    conditions = [("clean", 0)] + [(c, int(s)) for c in corruptions for s in severities]
    values = {
        "error": (),
        "nll": (),
        "ece": (),
        "bin_count": (ECE_BINS,),
        "bin_correct": (ECE_BINS,),
        "bin_confidence": (ECE_BINS,),
    }
    grid = (len(attrs["models"]), len(conditions))
    job = GridJob(
        "robustness", grid, values, {}, Output(out, resume, overwrite, opts.progress, log), Ranks(), memory=False
    )

    def create() -> ResultWriter:
        severity: dict[str, object] = {"condition_severity": np.array([s for _, s in conditions])}
        return ResultWriter.create(
            out, "robustness", grid, values, severity, {k: v for k, v in attrs.items() if k != "kind"}, {}
        )

    todo = job.open(create, lambda w: tuple(w.shape) == grid, attrs)
    with job:
        for p in tqdm(
            sorted({k % len(conditions) for k in todo}), desc="robustness", unit="condition", disable=not opts.progress
        ):
            images, labels = _condition_images(
                x,
                y,
                idx,
                total,
                conditions[p],
                source=source,
                dataset=dataset,
                c_root=c_root,
                seed=seed,
                workers=workers,
            )
            data = EvalSet(normalize(images, meta["dataset"]).to(device), labels.to(device), opts.batch_size)
            results = [_predictive_metrics(net, data.batches()) for net in models]
            points = []
            for m in range(grid[0]):
                metrics, rel = results[min(m, len(results) - 1)]
                points.append(
                    (
                        m * len(conditions) + p,
                        {
                            "error": metrics["error"],
                            "nll": metrics["nll"],
                            "ece": metrics["ece"],
                            "bin_count": rel["count"],
                            "bin_correct": rel["correct"],
                            "bin_confidence": rel["confidence_sum"],
                        },
                    )
                )
            job.write(points)
        job.finish("conditions")
    return Path(out)


__all__ = ["calibration", "robustness_analysis"]
