"""The training loop over any model, loader, loss and flat-minima optimizer: ``fit``.

``landscape train`` is this loop plus a run directory (evaluation, metrics.jsonl, checkpoints); a user with
their own model and ``DataLoader`` calls it directly::

    from landscape import fit
    from landscape.trainers.optim import SAM
    opt = SAM(model, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    history = fit(model, loader, opt, epochs=10, lr_at=lambda epoch: 0.1 * 0.5 ** (epoch // 5))
    history = fit(model, loader, opt, epochs=10, loss=nn.MSELoss())          # a regression
    history = fit(model, loader, opt, epochs=10, loss=lambda model, batch: model(**batch).loss)  # dict batches
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .optim import LossClosure, PerturbedOptimizer

CHECK_EVERY = 20  # steps between looks at the running loss (each costs a device sync)


def fit(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: PerturbedOptimizer,
    *,
    epochs: int,
    loss: Callable | None = None,
    metrics: Mapping[str, Callable] | None = None,
    accumulate: int | None = None,
    grad_scaler: Any = None,
    start: int = 0,
    lr_at: Callable[[int], float] | None = None,
    autocast: torch.dtype | None = None,
    after_step: Callable[[], None] | None = None,
    reduce: Callable[[list[Tensor]], None] | None = None,
    world: int = 1,
    check: Callable[[float, int], None] | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int, Any], object] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` with a flat-minima method in a plain loop, epochs ``start .. epochs - 1``.

    Args:
        model: the model (put in train mode for the epoch).
        loader: re-iterable batches, one epoch per pass: ``(inputs, targets)``, dicts with their targets under
            ``"labels"``, or anything ``loss(model, batch)`` takes.
        optimizer: a method of :mod:`landscape.trainers.optim` around the base optimizer.
        epochs: the epoch to stop before.
        loss: ``loss(outputs, targets)`` with mean reduction (default cross-entropy), or a function whose first
            parameter is named ``model``, called as ``loss(model, batch)`` (the forms :class:`~landscape.Problem`
            takes).
        metrics: ``{name: fn}`` of further per-batch means, called like the loss, reported as ``train_<name>``.
        accumulate: run each pass over a batch as this many micro-batches, one backward each (gradient accumulation:
            the update of the whole batch; see :meth:`~landscape.trainers.optim.PerturbedOptimizer.accumulate`);
            ``None`` keeps the optimizer's own setting.
        grad_scaler: a ``torch.amp.GradScaler`` for float16 autocast (``autocast=torch.float16``): losses scaled,
            gradients unscaled before every use, overflowing steps skipped whole and counted (``skipped_steps`` in
            the row), the scale updated after every step.
        start: the epoch to start at (a resumed run).
        lr_at: ``lr_at(epoch)`` sets every param group's learning rate before the epoch.
        autocast: run the passes under ``torch.autocast`` in this dtype (e.g. ``torch.bfloat16``).
        after_step: runs after every step (e.g. averaging BatchNorm statistics over processes).
        reduce: ``reduce(tensors)`` sums the epoch's totals over ``world`` processes in place before the row is made.
        world: the number of processes (torchrun) whose totals ``reduce`` sums.
        check: ``check(loss, epoch)`` sees the running loss every :data:`CHECK_EVERY` steps on one process and the
            epoch's loss at its end (raise to stop, e.g. on a non-finite loss).
        on_epoch_end: ``on_epoch_end(epoch, row)`` may add to the row (evaluation) and save.
        on_step: ``on_step(step, optimizer)`` before every step, ``step`` counted over the run from 0 (the epochs
            before ``start`` counted by ``len(loader)``), e.g. a :class:`~landscape.CurvatureTracker`'s ``step``.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        One row per epoch: ``epoch`` counted from 1, ``lr``, ``train_loss`` (the mean batch loss of the loss
        optimized), ``train_acc`` in % (cross-entropy only), ``train_<name>`` per metric, ``seconds``, ``steps``.

    Raises:
        ValueError: a loss that cannot be computed on the first batch (the reason in one line), or cross-entropy on
            outputs it cannot mean (a regression without ``loss=``).
    """
    if accumulate is not None:
        optimizer.accumulate(accumulate)
    history = []
    names = list(metrics or {})
    classification = True
    done = start * len(loader) if on_step is not None and start and hasattr(loader, "__len__") else 0  # type: ignore[arg-type]
    for epoch in range(start, epochs):
        lr = lr_at(epoch) if lr_at is not None else optimizer.param_groups[0]["lr"]
        for g in optimizer.param_groups:
            g["lr"] = lr
        tic = time.perf_counter()
        model.train()
        device = next(model.parameters()).device
        # loss sum, correct, seen, then each metric's sum (this process)
        totals = torch.zeros(3 + len(names), dtype=torch.float64, device=device)
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, disable=not progress)
        steps = 0
        for step, batch in enumerate(bar):
            if on_step is not None:
                on_step(done, optimizer)
                done += 1
            closure = LossClosure(model, batch, loss, metrics=metrics, autocast_dtype=autocast)
            classification = closure.classification
            first = step == 0 and epoch == start
            totals[0] += _first(optimizer, closure, grad_scaler) if first else optimizer.step(closure, grad_scaler)
            if grad_scaler is not None:
                grad_scaler.update()
            totals[1] += closure.correct
            totals[2] += closure.size
            for i, name in enumerate(names):
                totals[3 + i] += closure.sums[name]
            steps = step + 1
            if after_step is not None:
                after_step()
            if step % CHECK_EVERY == CHECK_EVERY - 1:
                running = totals[0].item() / steps
                if check is not None and world == 1:
                    check(running, epoch)
                bar.set_postfix(loss=f"{running:.4f}")
        if reduce is not None:
            reduce([totals])
        if check is not None:
            check(totals[0].item(), epoch)
        seen = max(totals[2].item(), 1.0)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": totals[0].item() / world / max(steps, 1)}
        if classification:
            row["train_acc"] = 100.0 * totals[1].item() / seen
        row.update({f"train_{name}": totals[3 + i].item() / seen for i, name in enumerate(names)})
        if grad_scaler is not None:
            row["skipped_steps"] = optimizer.skipped_steps
        row.update(seconds=time.perf_counter() - tic, steps=steps)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        history.append(row)
    return history


def _first(optimizer: PerturbedOptimizer, closure: LossClosure, grad_scaler: Any) -> Tensor:
    """The first step, whose failure is the loss's or the batch's: said in one line."""
    try:
        return optimizer.step(closure, grad_scaler)
    except ValueError:
        raise
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else "no detail"
        raise ValueError(f"the loss cannot be computed on the first batch: {type(e).__name__}: {text[:300]}") from e


def epoch_hessian(
    model: nn.Module, data: Any, epoch: int, out: str | Path, *, loss: Callable | None = None, **options: Any
) -> Path:
    """The Hessian analysis of ``model`` on ``data`` after ``epoch``, written to ``out/hessian_epoch_NNNN.h5`` (a
    ``kind="hessian"`` file the explorer, ``plot`` and ``compare`` read): what the Lightning and Hugging Face
    callbacks call, and a ``fit(on_epoch_end=...)`` can too.

    Args:
        model: the model being trained (restored exactly afterwards, training mode included).
        data: what :class:`~landscape.Problem` takes: a loader, batches, an ``(inputs, targets)`` pair, named splits.
        epoch: the epoch just finished (1-based), in the file name and its ``epoch`` attribute.
        out: the folder of the files.
        loss: as :class:`~landscape.Problem` takes it (default cross-entropy).
        options: :func:`landscape.hessian`'s keyword arguments (``top_k``, ``trace``, ``density``, ...).

    Returns:
        The file written.
    """
    from landscape.curvature import hessian
    from landscape.problem import Problem

    path = Path(out) / f"hessian_epoch_{epoch:04d}.h5"
    problem = Problem(model, data, loss, check=False)
    hessian(problem, out=path, overwrite=True, progress=False, attrs={"epoch": epoch}, **options)
    return path


__all__ = ["epoch_hessian", "fit"]
