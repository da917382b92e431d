"""Analyses of checkpoints as jobs: load, evaluate, write a result file (resumable; surfaces also multi-process)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from data import load_dataset
from data.corruptions import corrupted_split, split_key
from data.formats import RELEASED_C, read_released_c
from trainers import classification_metrics, load_checkpoint, predict
from trainers.metrics import ECE_BINS, reliability
from trainers.train import epoch_checkpoints, resolve_device

from .density import spectral_density
from .directions import DIR_TYPES, Direction, difference, pca_directions, random_directions, target_tensors
from .evaluation import EvalSet, eval_sets, normalize, subset
from .hessian import CurvatureOperator
from .lanczos import lanczos
from .parallel import close_group, init_group
from .store import ResultWriter, open_results, read_direction_group, sha256, write_analysis
from .surface import prepare_and_fill
from .sweep import KINDS, Sweeper, SweepSettings
from .trace import trace

SPLITS = ("train", "test")


@dataclass
class EvalOptions:
    """How grid points are evaluated (shared by every surface job)."""

    splits: list[str] = field(default_factory=lambda: ["train"])
    samples: int | None = None
    sample_seed: int = 0
    batch_size: int = 1000
    bn: str = "eval"
    device: str = "auto"
    data_root: str | None = None
    compile: bool = False
    progress: bool = True

    def validate(self) -> None:
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"--split must name train and/or test, got {','.join(self.splits) or 'nothing'}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")


def _attrs(meta: dict, ckpt: Path, opts: EvalOptions) -> dict:
    return {
        "method": meta["method"]["name"], "model": meta["model"]["name"], "dataset": meta["dataset"]["name"],
        "checkpoint": str(ckpt), "checkpoint_sha256": sha256(ckpt), "samples": -1 if opts.samples is None else opts.samples,
        "sample_seed": opts.sample_seed, "bn": opts.bn,
    }


def sets_for(meta: dict, opts: EvalOptions, splits: list[str], device: torch.device) -> dict:
    """Evaluation sets of a checkpoint's dataset as ``opts`` asks (its data root by default)."""
    return eval_sets(meta["dataset"], splits, samples=opts.samples, seed=opts.sample_seed,
                     data_root=opts.data_root or meta["config"].get("data_root"), device=device, batch_size=opts.batch_size)


def load_for_analysis(ckpt: str | Path, opts: EvalOptions, device: torch.device) -> tuple[nn.Module, dict, dict]:
    """The checkpoint's model on ``device`` and its evaluation sets, normalized as in training."""
    model, meta = load_checkpoint(ckpt, device)
    return model, meta, sets_for(meta, opts, opts.splits, device)


def _run(out: str | Path, ckpt: str | Path, make_directions: Callable[[nn.Module], list[Direction]], xs, ys,
         opts: EvalOptions, attrs: dict, *, dir_type: str, resume: bool, overwrite: bool,
         extras: Callable[[list[Direction]], dict] | None = None, log: Callable[[str], None] | None = None) -> Path:
    opts.validate()
    if dir_type not in DIR_TYPES:
        raise ValueError(f"unknown --dir-type {dir_type!r}; expected one of {DIR_TYPES}")
    device = resolve_device(opts.device)
    group, rank_device = init_group(device.type)
    try:
        device = rank_device or device
        model, meta, sets = load_for_analysis(ckpt, opts, device)
        bn_data = sets_for(meta, opts, ["train"], device)["train"] if opts.bn == "recompute" else None
        forward = torch.compile(model) if opts.compile else None
        attrs = {**_attrs(meta, Path(ckpt), opts), "dir_type": dir_type, **attrs}
        prepare_and_fill(Path(out), model, lambda: make_directions(model), xs, ys, sets, attrs, resume=resume,
                         overwrite=overwrite, group=group, extras=extras, log=log, dir_type=dir_type, bn=opts.bn, bn_data=bn_data,
                         forward=forward, progress=opts.progress)
    finally:
        close_group()
    return Path(out)


def random_surface(ckpt: str | Path, out: str | Path, xs: np.ndarray, ys: np.ndarray | None, opts: EvalOptions, *,
                   norm: str = "filter", ignore: str = "biasbn", seed: int = 0, dir_type: str = "weights",
                   orthogonal: bool = False, resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """Loss/accuracy along 1 or 2 normalized random directions around a checkpoint (Li et al. 2018)."""

    def make(model: nn.Module) -> list[Direction]:
        return random_directions(target_tensors(model, dir_type), count=1 if ys is None else 2, seed=seed, norm=norm,
                                 ignore=ignore, orthogonal=orthogonal)

    attrs = {"directions": "random", "norm": norm, "ignore": ignore, "seed": seed, "orthogonal": orthogonal}
    return _run(out, ckpt, make, xs, ys, opts, attrs, dir_type=dir_type, resume=resume, overwrite=overwrite, log=log)


def interpolation_surface(ckpt_a: str | Path, ckpt_b: str | Path, out: str | Path, xs: np.ndarray, opts: EvalOptions, *,
                          dir_type: str = "states", resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """The 1-D line from checkpoint A (x=0) to checkpoint B (x=1) and beyond, un-normalized."""
    model_b = load_checkpoint(ckpt_b)[0]

    def make(model: nn.Module) -> list[Direction]:
        return [difference({k: v.cpu() for k, v in target_tensors(model, dir_type).items()}, target_tensors(model_b, dir_type))]

    attrs = {"directions": "interpolation", "checkpoint_b": str(ckpt_b), "checkpoint_b_sha256": sha256(ckpt_b),
             "norm": "none", "ignore": "none", "seed": -1}
    return _run(out, ckpt_a, make, xs, None, opts, attrs, dir_type=dir_type, resume=resume, overwrite=overwrite, log=log)


def trajectory_checkpoints(run_dir: str | Path) -> tuple[list[Path], Path]:
    run_dir = Path(run_dir)
    found = epoch_checkpoints(run_dir)
    final = run_dir / "final.pt"
    if not final.is_file():
        raise FileNotFoundError(f"{run_dir} has no final.pt (is it a finished run directory?)")
    if len(found) < 2:
        raise ValueError(f"{run_dir} has {len(found)} epoch checkpoints; PCA of a trajectory needs >= 2 (train with --save-every 1)")
    return found, final


def pca_of_run(run_dir: str | Path, ignore: str = "biasbn", dir_type: str = "weights"):
    """PCA directions of a run's saved checkpoints relative to its final weights (Li et al. Sec. 7)."""
    paths, final = trajectory_checkpoints(run_dir)
    center = target_tensors(load_checkpoint(final)[0], dir_type)
    trajectory = [target_tensors(load_checkpoint(p)[0], dir_type) for p in paths]
    return pca_directions(trajectory, center, ignore)  # type: ignore[arg-type]


def auto_range(values: np.ndarray, num: int = 21, margin: float = 0.25) -> np.ndarray:
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = max(hi - lo, 1e-6)
    return np.linspace(lo - margin * span, hi + margin * span, num)


def trajectory_surface(run_dir: str | Path, out: str | Path, xs: np.ndarray | None, ys: np.ndarray | None,
                       opts: EvalOptions, *, ignore: str = "biasbn", resume: bool = False, overwrite: bool = False,
                       log=None) -> Path:
    """A 2-D surface around a run's final weights on its top-2 PCA directions, with the projected path."""
    dirs, ratio, coords = pca_of_run(run_dir, ignore)
    xs = auto_range(coords[:, 0].numpy()) if xs is None else xs
    ys = auto_range(coords[:, 1].numpy()) if ys is None else ys
    extras = {"proj_xcoord": coords[:, 0].numpy(), "proj_ycoord": coords[:, 1].numpy(),
              "explained_variance_ratio_": ratio.numpy()}
    _, final = trajectory_checkpoints(run_dir)
    attrs = {"directions": "pca", "norm": "none", "ignore": ignore, "seed": -1, "run_dir": str(run_dir)}
    return _run(out, final, lambda model: dirs, xs, ys, opts, attrs, dir_type="weights", resume=resume,
                overwrite=overwrite, extras=lambda d: extras, log=log)


def _counting(matvec: Callable, bar) -> Callable:
    def wrapped(v):
        out = matvec(v)
        bar.update(1)
        return out

    return wrapped


def hessian_analysis(ckpt: str | Path, out: str | Path, opts: EvalOptions, *, top_k: int = 5, which: str = "largest",
                     tol: float = 1e-3, trace_matvecs: int = 0, trace_method: str = "hutch++", density: bool = False,
                     density_probes: int = 10, density_steps: int = 80, curvature: str = "hessian", seed: int = 0,
                     overwrite: bool = False) -> Path:
    """Top-k eigenpairs (with residuals), optionally the trace and the spectral density, of a checkpoint's loss.

    The loss averages over the first split of ``opts`` (full or a seeded subset); the file
    (``kind="hessian"``) stores eigenvalues, residuals, eigenvectors (as direction groups
    ``eigenvector_0``... usable as surface axes), trace with its interval, density, and
    the number of operator products each took.
    """
    opts.validate()
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists: pass --overwrite to replace it")
    if top_k < 0 or trace_matvecs < 0:
        raise ValueError("--top-k and --trace-matvecs must be >= 0")
    device = resolve_device(opts.device)
    model, meta, sets = load_for_analysis(ckpt, opts, device)
    split = opts.splits[0]
    arrays: dict[str, np.ndarray] = {}
    directions: dict[str, Direction] = {}
    with CurvatureOperator(model, sets[split], kind=curvature) as op, \
            tqdm(desc=curvature, unit=" products", disable=not opts.progress) as bar:
        mv = _counting(op.matvec, bar)
        if top_k:
            eig = lanczos(mv, op.size, min(top_k, op.size), which=which, tol=tol, seed=seed, device=device)
            arrays.update(eigenvalues=eig.eigenvalues, residuals=eig.residuals, eigen_matvecs=np.int64(eig.matvecs),
                          eigen_converged=np.bool_(eig.converged))
            for i in range(eig.eigenvectors.shape[1]):
                vec = op.flat_to_dict(eig.eigenvectors[:, i].to(op.dtype))
                directions[f"eigenvector_{i}"] = {n: vec.get(n, torch.zeros_like(p)).detach().cpu()
                                                  for n, p in model.named_parameters()}
        if trace_matvecs:
            tr = trace(mv, op.size, trace_matvecs, method=trace_method, seed=seed, device=device)
            arrays.update(trace=np.float64(tr.estimate), trace_stderr=np.float64(tr.stderr),
                          trace_ci95=np.array(tr.ci95), trace_matvecs=np.int64(tr.matvecs))
        if density:
            d = spectral_density(mv, op.size, num_probes=density_probes, steps=density_steps, seed=seed, device=device)
            arrays.update(density_grid=d.grid, density=d.density, slq_nodes=d.nodes, slq_weights=d.weights,
                          density_sigma=np.float64(d.sigma), density_matvecs=np.int64(d.matvecs))
        size = op.size
    attrs = {**_attrs(meta, Path(ckpt), opts), "split": split, "curvature": curvature, "which": which, "tol": tol,
             "seed": seed, "num_params": size, "trace_method": trace_method}
    write_analysis(out, "hessian", arrays, attrs, directions)
    return out


def hessian_surface(ckpt: str | Path, out: str | Path, xs: np.ndarray, ys: np.ndarray | None, opts: EvalOptions, *,
                    hessian_file: str | Path | None = None, seed: int = 0, resume: bool = False, overwrite: bool = False,
                    log=None) -> Path:
    """A surface whose axes are the top Hessian eigenvectors (unit norm), read from ``hessian_file`` or computed."""
    count = 1 if ys is None else 2
    meta = load_checkpoint(ckpt)[1]

    def make(model: nn.Module) -> list[Direction]:
        if hessian_file is not None:
            return [read_direction_group(hessian_file, f"eigenvector_{i}") for i in range(count)]
        with CurvatureOperator(model, sets_for(meta, opts, ["train"], next(model.parameters()).device)["train"]) as op:
            eig = lanczos(op.matvec, op.size, count, seed=seed, device=op.device)
            vecs = [op.flat_to_dict(eig.eigenvectors[:, i].to(op.dtype)) for i in range(count)]
        return [{n: v.get(n, torch.zeros_like(p)).detach().cpu() for n, p in model.named_parameters()} for v in vecs]

    attrs = {"directions": "hessian", "norm": "none", "ignore": "none", "seed": seed,
             "hessian_file": str(hessian_file or "")}
    return _run(out, ckpt, make, xs, ys, opts, attrs, dir_type="weights", resume=resume, overwrite=overwrite, log=log)


SWEEP_CHECKED = ("kind", "kinds", "split", "samples", "sample_seed", "checkpoint_sha256", "trials", "steps", "normalize",
                 "eta", "seed")


def sweep_analysis(ckpt: str | Path, out: str | Path, radii: np.ndarray, opts: EvalOptions, *, kinds: list[str],
                   settings: SweepSettings | None = None, resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """Loss/accuracy against perturbation radius for each kind, one point per (kind, radius), resumable."""
    settings = settings or SweepSettings()
    settings.validate()
    opts.validate()
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown sweep kind {', '.join(bad) or '(none)'}; choose from {', '.join(KINDS)}")
    if np.any(np.asarray(radii) < 0):
        raise ValueError("--radii must be >= 0")
    device = resolve_device(opts.device)
    model, meta, sets = load_for_analysis(ckpt, opts, device)
    split = opts.splits[0]
    attrs = {**_attrs(meta, Path(ckpt), opts), "kind": "sweep", "split": split, "kinds": list(kinds),
             "trials": settings.trials, "steps": settings.steps, "normalize": settings.normalize, "eta": settings.eta,
             "seed": settings.seed}
    values = {"loss_mean": (), "loss_std": (), "acc_mean": (), "acc_std": (), "losses": (settings.trials,),
              "accs": (settings.trials,)}
    writer, created = open_results(
        out, lambda: ResultWriter.create(out, "sweep", (len(kinds), len(radii)), values, {"radii": np.asarray(radii, float)},
                                         {k: v for k, v in attrs.items() if k != "kind"}, {}),
        {k: attrs[k] for k in SWEEP_CHECKED}, lambda w: np.array_equal(w.dataset("radii"), radii),
        resume=resume, overwrite=overwrite)
    try:
        todo = np.flatnonzero(~writer.computed_flat())
        if not created and log and len(todo) < writer.computed_flat().size:
            log(f"resuming: {writer.computed_flat().sum()} of {writer.computed_flat().size} points already computed")
        with Sweeper(model, sets[split], settings) as sw:
            for k in tqdm(todo, desc="sweep", unit="pt", disable=not opts.progress):
                i, j = divmod(int(k), len(radii))
                writer.write([(int(k), sw.point(kinds[i], float(radii[j]), j))])
        writer.finish()
    finally:
        writer.close()
    return Path(out)


def calibration(ckpt: str | Path, opts: EvalOptions, split: str = "test") -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Error/NLL/ECE and the reliability-diagram bins of a checkpoint's predictions on one split (eval mode)."""
    if split not in SPLITS:
        raise ValueError(f"--split must be train or test, got {split!r}")
    device = resolve_device(opts.device)
    model, meta = load_checkpoint(ckpt, device)
    return _predictive_metrics(model, sets_for(meta, opts, [split], device)[split])


def _predictive_metrics(model: nn.Module, data: EvalSet) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    logits, labels = predict(model, data.batches())
    return classification_metrics(logits, labels), reliability(logits.double().softmax(1), labels)


ROBUSTNESS_CHECKED = ("kind", "corruptions", "severities", "source", "corruption_seed", "samples", "sample_seed",
                      "checkpoint_sha256", "baseline_sha256")


def _condition_images(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, total: int, condition: tuple[str, int], *,
                      source: str, dataset: str, c_root: str | None, seed: int, workers: int):
    """Test images and labels of one condition: clean, generated with the corruption suite (cached on disk),
    or read from a released -C set (the same subset of rows)."""
    name, severity = condition
    if name == "clean":
        return x, y
    if source == "generated":
        return corrupted_split(x, split_key(dataset, "test", total, idx), name, severity, seed, indices=idx,
                               workers=workers), y
    cx, cy = read_released_c(c_root, dataset, name, severity)
    if len(cy) != total:
        raise ValueError(f"{dataset}-C {name} severity {severity} has {len(cy)} images, the test split {total}")
    return cx[idx], cy[idx]


def robustness_analysis(ckpt: str | Path, out: str | Path, corruptions: list[str], severities: list[int], opts: EvalOptions,
                        *, baseline: str | Path | None = None, source: str = "generated", c_root: str | None = None,
                        seed: int = 0, workers: int = 1, resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """Error/NLL/ECE (and reliability-bin sums) of a checkpoint, and of a baseline checkpoint, on the clean test
    split and every corruption x severity; one resumable point per (model, condition)."""
    opts.validate()
    if source not in ("generated", "released"):
        raise ValueError(f"--source must be generated or released, got {source!r}")
    if source == "released" and not c_root:
        raise ValueError("--source released needs --c-root (the folder holding CIFAR-10-C/ etc.)")
    device = resolve_device(opts.device)
    model, meta = load_checkpoint(ckpt, device)
    models = [model]
    attrs = {**_attrs(meta, Path(ckpt), opts), "kind": "robustness", "corruptions": list(corruptions),
             "severities": [int(s) for s in severities], "source": source, "corruption_seed": seed,
             "models": ["model"], "baseline": "", "baseline_sha256": "", "split": "test"}
    if baseline is not None:
        base_model, base_meta = load_checkpoint(baseline, device)
        if base_meta["dataset"]["name"] != meta["dataset"]["name"]:
            raise ValueError(f"baseline {baseline} was trained on {base_meta['dataset']['name']}, not {meta['dataset']['name']}")
        attrs.update(models=["model", "baseline"], baseline=str(baseline), baseline_sha256=sha256(baseline),
                     baseline_method=base_meta["method"]["name"])
        if attrs["baseline_sha256"] != attrs["checkpoint_sha256"]:  # the baseline itself (ERM in the demo): once
            models.append(base_model)
    dataset = meta["dataset"]["name"]
    if source == "released" and dataset not in RELEASED_C:
        raise ValueError(f"no released corruption benchmark for {dataset!r} (known: {', '.join(RELEASED_C)}); "
                         f"use --source generated")
    ds = load_dataset(dataset, opts.data_root or meta["config"].get("data_root"))
    x, y = ds.split("test")
    total = len(y)
    idx = subset(total, opts.samples, opts.sample_seed)
    x, y = x[idx], y[idx]
    conditions = [("clean", 0)] + [(c, int(s)) for c in corruptions for s in severities]
    values = {"error": (), "nll": (), "ece": (), "bin_count": (ECE_BINS,), "bin_correct": (ECE_BINS,),
              "bin_confidence": (ECE_BINS,)}
    grid = (len(attrs["models"]), len(conditions))
    writer, created = open_results(
        out, lambda: ResultWriter.create(out, "robustness", grid, values,
                                         {"condition_severity": np.array([s for _, s in conditions])},
                                         {k: v for k, v in attrs.items() if k != "kind"}, {}),
        {k: attrs[k] for k in ROBUSTNESS_CHECKED}, lambda w: tuple(w.shape) == grid, resume=resume, overwrite=overwrite)
    try:
        done = writer.computed_flat().reshape(grid)
        if not created and log and done.any():
            log(f"resuming: {int(done.all(axis=0).sum())} of {len(conditions)} conditions already evaluated")
        for p in tqdm([p for p in range(len(conditions)) if not done[:, p].all()], desc="robustness", unit="condition",
                      disable=not opts.progress):
            images, labels = _condition_images(x, y, idx, total, conditions[p], source=source, dataset=dataset,
                                               c_root=c_root, seed=seed, workers=workers)
            data = EvalSet(normalize(images, meta["dataset"]).to(device), labels.to(device), opts.batch_size)
            results = [_predictive_metrics(net, data) for net in models]
            points = []
            for m in range(grid[0]):
                metrics, rel = results[min(m, len(results) - 1)]
                points.append((m * len(conditions) + p, {
                    "error": metrics["error"], "nll": metrics["nll"], "ece": metrics["ece"], "bin_count": rel["count"],
                    "bin_correct": rel["correct"], "bin_confidence": rel["confidence_sum"]}))
            writer.write(points)
        writer.finish()
    finally:
        writer.close()
    return Path(out)
