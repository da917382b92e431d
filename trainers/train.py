"""The training loop behind ``landscape train``: config in, run directory out.

A run directory (:mod:`landscape.trainers.rundir`) holds ``config.json``, ``metrics.jsonl`` (one line per
epoch), ``checkpoints/epoch_NNN.pt`` and ``final.pt``, every file written atomically. Resume
continues from the newest checkpoint; on CPU the result equals an uninterrupted run
bit for bit (model, optimizer, loader and RNG states are all checkpointed).
"""

from __future__ import annotations

import inspect
import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import torch
import torch.nn as nn
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from landscape._system.device import resolve_device
from landscape._system.files import changed_options, exclusive, remove_stale_temps, write_json, write_jsonl
from landscape._system.ranks import Ranks, init_group
from landscape.data import Augment, TensorLoader, dataset_info, load_dataset
from landscape.data.corruptions import CorruptHalf, parse_severities

from .checkpoint import read_checkpoint, save_checkpoint
from .distributed import batchnorm_buffers, convert_sync_batchnorm
from .loop import fit
from .metrics import evaluate
from .models import MODELS, create_model
from .optim import build_method, method_info
from .rundir import (
    AVERAGES,
    CHECKPOINTS,
    CONFIG,
    CURVATURE,
    FINAL,
    METRICS_FILE,
    checkpoint_path,
    newest_checkpoint,
)
from .schedules import SCHEDULES, lr_factor

MAX_CROP_PADDING = 64  # pixels of zero padding before a random crop (CIFAR's customary 4)


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` and in every checkpoint).

    Attributes:
        method: ``erm``, ``sam``, ``asam``, ``amp``, ``damp``, ``daap`` or ``rmp``.
        model: a registered model (:data:`~landscape.trainers.MODELS`).
        dataset: a registered dataset (``digits``, the embedded default; ``cifar10``, ...).
        data_root: the folder of an on-disk dataset's files.
        epochs: epochs to train.
        batch_size: training batch size (the global batch under torchrun).
        eval_batch_size: batch size of the per-epoch evaluation.
        lr: the base optimizer's (SGD's) learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: SGD weight decay.
        schedule: the learning-rate schedule: ``constant``, ``step``, ``cosine`` or ``hold-linear``.
        seed: seeds the model's initialization, the data order, augmentation and the methods' noise.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        bf16: bf16 autocast (the same as ``precision="bf16"``).
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast and a ``GradScaler``: overflowing steps
            skipped whole and counted in ``skipped_steps``; the scale is in every checkpoint).
        save_every: write an epoch checkpoint every this many epochs (the trajectory of ``landscape trajectory``).
        crop_padding: random-crop padding (``None``: the dataset's customary augmentation).
        hflip: random horizontal flips (``None``: the dataset's custom).
        bn_update: ``"once"`` or ``"every_pass"``: how BatchNorm statistics move in multi-pass methods.
        augment_corruption: Algorithm 2 of the DAMP paper: this corruption applied to half of each batch.
        augment_severity: the severities it draws from, e.g. ``"1-5"`` (``None``: 1-5).
        sync_bn: BatchNorm statistics of the global batch across torchrun ranks.
        local_ascent: SAM/ASAM/AMP under torchrun: each rank's own ascent gradient (m-sharpness).
        clip_grad_norm: clip every gradient (ascent and descent) to this global L2 norm.
        accumulate: split each pass over a rank's batch into this many micro-batches, one backward each (the update
            of the whole batch, the memory of a micro-batch).
        swa_start: stochastic weight averaging (Izmailov et al. 2018): the equal-weight mean of the weights at the end
            of every epoch from this one (1-based) on, BatchNorm statistics recomputed on the training set, saved as
            ``final_swa.pt``.
        swa_lr: the constant learning rate of the epochs after ``swa_start`` (``None``: the schedule goes on).
        ema: keep an exponential moving average of the weights and buffers, ``decay`` per step, saved as
            ``final_ema.pt``.
        track_curvature: measure the curvature every this many steps (:class:`~landscape.CurvatureTracker`: the top
            Hessian eigenvalue, the gradient norm, the directional sharpness and critical learning rate along the
            update, SAM's sharpness for SAM) into ``curvature.jsonl``.
        track_data: the training examples it is measured on: a fixed subset of this many, seeded with ``seed``
            (``None``: all of them), normalized, not augmented.
        model_kwargs: the model's own options (e.g. ``{"width": 16}``).
        hparams: the method's hyperparameters (unset ones take the method's defaults).
    """

    method: str = "erm"
    model: str = "small_cnn"
    dataset: str = "digits"
    data_root: str | None = None
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1000
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    bf16: bool = False  # the same as precision="bf16" (kept for configs that say so)
    precision: str = "fp32"  # fp32, bf16 (autocast) or fp16 (autocast and a GradScaler)
    save_every: int = 1
    crop_padding: int | None = None  # None: the dataset's customary augmentation
    hflip: bool | None = None
    bn_update: str = "once"
    augment_corruption: str | None = None  # Algorithm 2 of the DAMP paper: this corruption on half of each batch
    augment_severity: str | None = None  # severities drawn from, e.g. "1-5" (None: 1-5)
    sync_bn: bool = False  # BatchNorm statistics of the global batch across torchrun ranks
    local_ascent: bool = False  # SAM/ASAM/AMP under torchrun: each rank's own ascent gradient (m-sharpness)
    clip_grad_norm: float | None = None  # every gradient (ascent and descent) clipped to this global L2 norm
    accumulate: int = 1  # micro-batches per pass (gradient accumulation): the update of the whole batch
    swa_start: int | None = None  # stochastic weight averaging from the end of this epoch (1-based) on
    swa_lr: float | None = None  # the constant learning rate after swa_start (None: the schedule's)
    ema: float | None = None  # an exponential moving average of the weights with this decay per step
    track_curvature: int | None = None  # measure the curvature every this many steps (curvature.jsonl)
    track_data: int | None = None  # on a fixed subset of this many training examples (None: all)
    model_kwargs: dict = field(default_factory=dict)
    hparams: dict = field(default_factory=dict)  # the method's hyperparameters (unset ones take defaults)

    def severities(self) -> list[int]:
        """The severities a corrupted half of a batch draws from (default 1-5)."""
        return parse_severities("1-5" if self.augment_severity is None else self.augment_severity)

    def validate(self, world: int = 1) -> None:
        """Every setting checked before any work, for a job on ``world`` processes (``--nproc`` checks before it
        launches torchrun)."""
        method_info(self.method)
        dataset_info(self.dataset)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(sorted(MODELS))}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "save_every", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.clip_grad_norm is not None and not (self.clip_grad_norm > 0 and math.isfinite(self.clip_grad_norm)):
            raise ValueError(f"clip_grad_norm={self.clip_grad_norm} must be finite and > 0")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value} must be finite and >= 0")
        splits = self.hparams.get("num_splits") or method_info(self.method).hparams.get("num_splits", 1)
        if splits > self.batch_size:
            raise ValueError(f"num_splits={splits} is more sub-batches than the {self.batch_size} images of a batch")
        if self.augment_corruption is not None:
            try:
                severities = self.severities()
            except ValueError as e:
                raise ValueError(str(e).replace("severities=", "augment_severity=")) from None
            CorruptHalf(self.augment_corruption, severities)
        elif self.augment_severity is not None:
            raise ValueError("augment_severity= needs augment_corruption=")
        if self.local_ascent and self.method not in ("sam", "asam", "amp"):
            raise ValueError(f"local_ascent=True applies to sam, asam and amp, not {self.method}")
        if self.crop_padding is not None and not 0 <= self.crop_padding <= MAX_CROP_PADDING:
            raise ValueError(f"crop_padding={self.crop_padding}: must be 0 to {MAX_CROP_PADDING} pixels")
        if self.batch_size % world:
            raise ValueError(f"batch_size={self.batch_size} is the global batch: it must divide among {world} ranks")
        if self.precision not in PRECISIONS or (self.bf16 and self.precision == "fp16"):
            raise ValueError(f"precision={self.precision!r}: choose from {', '.join(PRECISIONS)} (bf16=True is bf16)")
        if self.swa_start is not None and not 1 <= self.swa_start <= self.epochs:
            raise ValueError(f"swa_start={self.swa_start} must be an epoch from 1 to epochs={self.epochs}")
        if self.swa_lr is not None and (self.swa_start is None or not (self.swa_lr > 0 and math.isfinite(self.swa_lr))):
            raise ValueError(f"swa_lr={self.swa_lr} needs swa_start= and must be finite and > 0")
        if self.ema is not None and not 0 <= self.ema < 1:
            raise ValueError(f"ema={self.ema} must be a decay in [0, 1)")
        for name in ("track_curvature", "track_data"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if self.track_data is not None and self.track_curvature is None:
            raise ValueError("track_data= needs track_curvature=")
        if self.accumulate > self.batch_size // world:
            raise ValueError(
                f"accumulate={self.accumulate} is more micro-batches than the {self.batch_size // world} images of a "
                "rank's batch"
            )
        if splits > self.batch_size // world:
            raise ValueError(
                f"num_splits={splits} is more sub-batches than the {self.batch_size // world} images of a rank's batch"
            )
        if world > 1 and "num_splits" in method_info(self.method).hparams and splits % world:
            raise ValueError(f"num_splits={splits} sub-batches do not divide among {world} ranks")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; expected auto, cpu or cuda")

    def resolved_hparams(self) -> dict:
        """The method's hyperparameters: its defaults with the ones this config sets."""
        return {**method_info(self.method).hparams, **{k: v for k, v in self.hparams.items() if v is not None}}


def _model_kwargs(cfg: TrainConfig, ds) -> dict:
    kwargs = {"num_classes": ds.num_classes, "in_channels": ds.in_channels, **cfg.model_kwargs}
    if "image_size" in inspect.signature(MODELS[cfg.model].build).parameters:
        kwargs.setdefault("image_size", ds.image_size)
    return kwargs


def _check_input(model: torch.nn.Module, cfg: TrainConfig, x: torch.Tensor) -> None:
    need = MODELS[cfg.model].min_image_size
    if x.shape[-1] < need:
        raise ValueError(
            f"model {cfg.model!r} needs images of at least {need}x{need}; {cfg.dataset} has "
            f"{x.shape[-2]}x{x.shape[-1]}" + (" (use digits32)" if cfg.dataset == "digits" else "")
        )
    model.eval()
    try:
        with torch.no_grad():
            model(x[:2])
    except RuntimeError as e:
        raise ValueError(
            f"model {cfg.model!r} cannot take {cfg.dataset} images of shape {tuple(x.shape[1:])}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    model.train()


def _config_mismatch(saved: dict, cfg: TrainConfig) -> list[str]:
    """Settings that differ from the saved run's, as the options that set them (a setting newer than the run
    compares with its default; a method's hyperparameters with the method's defaults filled in)."""
    now, default = asdict(cfg), asdict(TrainConfig())
    keys = [k for k in now if k not in ("epochs", "device", "save_every", "hparams")]
    before = {k: saved.get(k, default[k]) for k in keys}
    after = {k: now[k] for k in keys}
    if before["method"] == cfg.method:  # another method's hyperparameters are not a difference of their own
        before.update(
            {
                **method_info(cfg.method).hparams,
                **{k: v for k, v in (saved.get("hparams") or {}).items() if v is not None},
            }
        )
        after.update(cfg.resolved_hparams())
    return changed_options(before, after, {"model_kwargs": "model_kwargs="})


def _check_finite(loss: float, model: nn.Module, cfg: TrainConfig, epoch: int, out: Path) -> None:
    """Stop a diverged run with a clear error; the epoch is not saved, the last good checkpoint stays. A finite
    loss is not enough: a weight or a BatchNorm statistic may already be infinite (``--lr 1000``, ``--sigma 50``),
    and no checkpoint holding one is written or called good."""
    broken = next((n for n, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()), None)
    if not math.isfinite(loss) or broken is not None:
        last = newest_checkpoint(out)
        what = f"the training loss is {loss}" if broken is None else f"{broken} holds NaN or infinite values"
        raise ValueError(
            f"training diverged in epoch {epoch + 1}: {what} (lr={cfg.lr:g} or the method's radius too "
            f"large?); nothing of this epoch was saved" + (f", the last good checkpoint is {last}" if last else "")
        )


def _start(cfg: TrainConfig, out: Path, resume: bool, group: Ranks, held: ExitStack) -> tuple[Path | None, dict | None]:
    """The checkpoint to resume from, decided on rank 0 before any rank writes; rank 0 holds the run directory
    (``held``) until training ends, so a second job into it is refused."""

    def decide() -> str | None:
        held.enter_context(exclusive(out))
        ckpt = newest_checkpoint(out) if resume else None
        if resume:  # a writer killed mid-write left its temporary file: nobody will finish it
            remove_stale_temps(out)
            remove_stale_temps(out / CHECKPOINTS)
        if not resume and out.exists() and any(out.iterdir()):
            raise ValueError(
                f"{out} already holds files: pass resume=True to continue that run, or choose another out="
            )
        if ckpt is not None:
            bad = _config_mismatch(read_checkpoint(ckpt)["config"], cfg)
            if bad:
                raise ValueError(
                    f"cannot resume {out}: it was trained with {'; '.join(bad)}; use its options, or "
                    f"another out= to start a new run"
                )
        return str(ckpt) if ckpt else None

    found = group.agree(decide)
    return (Path(found), read_checkpoint(found)) if found else (None, None)


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Train ``cfg`` into run directory ``out``; returns the last epoch's metrics.

    Under ``torchrun`` every rank trains on its shard of each global batch (``cfg.batch_size``),
    gradients are averaged before every ascent and step, BatchNorm running statistics are
    averaged after every step, and rank 0 writes the run directory.
    """
    cfg.validate()
    out = Path(out)
    device = resolve_device(cfg.device)
    group, rank_device = init_group(device.type)  # joined for the process's lifetime: a group cannot be remade
    with ExitStack() as held:
        return _train(
            cfg, out, rank_device or device, group, resume, progress, log if group.is_main else lambda line: None, held
        )


def _train(
    cfg: TrainConfig,
    out: Path,
    device: torch.device,
    group: Ranks,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    held: ExitStack,
) -> dict:
    cfg.validate(group.world)
    ckpt_path, state = _start(cfg, out, resume, group, held)
    main = group.is_main

    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.dataset, cfg.data_root)
    default_aug = dataset_info(cfg.dataset).augment
    if cfg.crop_padding is not None and cfg.crop_padding > ds.image_size:
        raise ValueError(f"crop_padding={cfg.crop_padding}: more than the {ds.image_size}-pixel images")
    augment = Augment(
        default_aug.crop_padding if cfg.crop_padding is None else cfg.crop_padding,
        default_aug.hflip if cfg.hflip is None else cfg.hflip,
    )
    channels_last = device.type == "cuda"
    common: dict[str, Any] = dict(mean=ds.mean, std=ds.std, device=device, channels_last=channels_last)
    corrupt = (
        CorruptHalf(
            cfg.augment_corruption, parse_severities("1-5" if cfg.augment_severity is None else cfg.augment_severity)
        )
        if cfg.augment_corruption
        else None
    )
    train_loader = TensorLoader(
        ds.train_x,
        ds.train_y,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        augment=augment,
        transform=corrupt,
        seed=cfg.seed,
        shard=(group.rank, group.world),
        **common,
    )
    test_loader = TensorLoader(ds.test_x, ds.test_y, batch_size=cfg.eval_batch_size, **common)

    model_kwargs = _model_kwargs(cfg, ds)
    model_spec = {"name": cfg.model, "kwargs": model_kwargs}
    try:
        model = create_model(cfg.model, **model_kwargs).to(device)
    except (TypeError, ValueError, RuntimeError) as e:  # e.g. --model-arg width=-3
        raise ValueError(
            f"model {cfg.model!r} cannot be built with {cfg.model_kwargs or 'its defaults'}: {str(e).splitlines()[0]}"
        ) from None
    if cfg.sync_bn:
        model = convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    _check_input(model, cfg, train_loader.normalize(ds.train_x[:2].to(device)))
    base = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )
    hparams = cfg.resolved_hparams()
    optimizer = build_method(
        cfg.method,
        model,
        base,
        seed=cfg.seed,
        bn_update=cfg.bn_update,
        clip_grad_norm=cfg.clip_grad_norm,
        **cfg.hparams,
    )
    optimizer.distribute(group, local_ascent=cfg.local_ascent)
    bn_buffers = batchnorm_buffers(model)
    averages = _averages(model, cfg)
    autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get("bf16" if cfg.bf16 else cfg.precision)
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None

    history: list[dict] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer"])
        train_loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        history, start = list(state["metrics"]), state["epoch"]
        for name, avg in averages.items():
            avg.load_state_dict(state["averages"][name])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        log(f"resuming {out} from {ckpt_path.name if ckpt_path else '?'} (epoch {start}/{cfg.epochs})")
    elif main:
        write_json(
            out / CONFIG,
            {**asdict(cfg), "world_size": group.world, "rank_batch_size": cfg.batch_size // group.world},
        )

    def payload(epoch: int) -> dict:
        return {
            "model": model_spec,
            "model_state": model.state_dict(),
            "dataset": ds.spec(),
            "method": {"name": cfg.method, "hparams": hparams},
            "config": asdict(cfg),
            "epoch": epoch,
            "metrics": history,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"name": cfg.schedule, "epoch": epoch, "base_lr": cfg.lr},
            "loader": train_loader.state_dict(),
            "averages": {name: avg.state_dict() for name, avg in averages.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }

    def end_of_epoch(epoch: int, row: dict) -> None:
        """Average (every rank), then evaluate, record and save (rank 0): the run directory's side of an epoch."""
        if "swa" in averages and epoch + 1 >= cast(int, cfg.swa_start):
            averages["swa"].update_parameters(model)
        if not main:
            return
        test = evaluate(model, test_loader)
        train_seconds = row.pop("seconds")
        row.update(
            test_error=test["error"],
            test_nll=test["nll"],
            test_ece=test["ece"],
            seconds=train_seconds,
            steps=row.pop("steps"),
            world_size=group.world,
        )
        history.append(row)
        write_jsonl(out / METRICS_FILE, history)
        if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs:
            save_checkpoint(checkpoint_path(out, epoch + 1), payload(epoch + 1))
        log(
            f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.2f}% | test error {row['test_error']:.2f}% nll {row['test_nll']:.4f} ece "
            f"{row['test_ece']:.4f} | lr {row['lr']:.4g} | {train_seconds:.1f}s"
        )

    tracker = _tracker(cfg, model, ds.spec(), device, out) if cfg.track_curvature else None
    fit(
        model,
        train_loader,
        optimizer,
        epochs=cfg.epochs,
        start=start,
        lr_at=lambda epoch: _lr(cfg, epoch),
        autocast=autocast,
        accumulate=cfg.accumulate,
        grad_scaler=scaler,
        after_step=lambda: _after_step(group, bn_buffers, averages.get("ema"), model),
        reduce=group.sum_,
        world=group.world,
        check=lambda loss, epoch: _check_finite(loss, model, cfg, epoch, out),
        on_epoch_end=end_of_epoch,
        on_step=tracker.step if tracker is not None else None,
        progress=progress and main,
        desc=cfg.method,
    )
    if main:
        save_checkpoint(out / FINAL, payload(cfg.epochs))
        records: dict[str, dict] = {}
        for name, avg in averages.items():
            if name == "swa":  # the mean of weights has no statistics of its own: those of the training set
                clean = TensorLoader(ds.train_x, ds.train_y, batch_size=cfg.eval_batch_size, **common)
                update_bn(clean, avg.module)
            test = evaluate(avg.module, test_loader)
            record = {"kind": name, "n_averaged": int(avg.n_averaged), **{f"test_{k}": v for k, v in test.items()}}
            save_checkpoint(out / f"final_{name}.pt", {**payload(cfg.epochs), "model_state": avg.module.state_dict(),
                                                       "average": record})  # fmt: skip
            log(f"{name}: test error {test['error']:.2f}% nll {test['nll']:.4f} ece {test['ece']:.4f} "
                f"({record['n_averaged']} averaged)")  # fmt: skip
            records[name] = record
        if records:  # the averaged models' test metrics, read by the run model without loading a checkpoint
            write_json(out / AVERAGES, records)
    return group.broadcast(history[-1] if history else {})


def _tracker(cfg: TrainConfig, model: nn.Module, spec: dict, device: torch.device, out: Path):
    """The run's curvature tracker: the live model on its fixed subset of the training set (normalized as in
    training, not augmented), appending to ``curvature.jsonl`` (a resumed run goes on where it stopped)."""
    from landscape._evaluation import eval_sets
    from landscape.problem import Problem
    from landscape.tracking import CurvatureTracker

    sets = eval_sets(
        spec, ["train"], samples=cfg.track_data, seed=cfg.seed, data_root=cfg.data_root, device=device,
        batch_size=cfg.eval_batch_size,
    )  # fmt: skip
    problem = Problem(model, sets, nn.CrossEntropyLoss(), device=device, check=False)
    # SAM's sharpness for SAM only: ASAM's radius (0.5) belongs to its elementwise-scaled ascent, not the plain one
    measures = ("eigenvalues", "grad_norm", "update") + (("sam",) if cfg.method == "sam" else ())
    return CurvatureTracker(problem, every=cast(int, cfg.track_curvature), measures=measures, out=out / CURVATURE)


def _averages(model: nn.Module, cfg: TrainConfig) -> dict[str, AveragedModel]:
    """The weight averages the run keeps: SWA's equal-weight mean, an EMA of weights and buffers."""
    out = {}
    if cfg.swa_start is not None:
        out["swa"] = AveragedModel(model)
    if cfg.ema is not None:
        out["ema"] = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return out


def _lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based): the schedule's, or ``swa_lr`` after ``swa_start``."""
    if cfg.swa_lr is not None and epoch >= cast(int, cfg.swa_start):
        return cfg.swa_lr
    return cfg.lr * lr_factor(cfg.schedule, epoch, cfg.epochs)


def _after_step(group: Ranks, bn_buffers: list[Tensor], ema: AveragedModel | None, model: nn.Module) -> None:
    group.mean_(bn_buffers)  # one set of running statistics, the ranks' mean
    if ema is not None:
        ema.update_parameters(model)


__all__ = ["TrainConfig", "train"]
