"""A Problem: a model, the data its loss averages over, and the loss — what every analysis takes.

Users bring their own objects: any ``nn.Module``, a ``DataLoader`` (or a list of batches, or
an ``(inputs, targets)`` pair of tensors), and a torch loss ``loss(outputs, targets)`` with
mean reduction or a function ``loss(model, batch)``. The loss of the problem is the mean over
the whole data, each batch weighted by its size. Our own checkpoints are one way in
(:meth:`Problem.from_checkpoint`). Analyses run inside :meth:`Problem.session`, which
leaves the model exactly as it found it.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import math
from collections.abc import Iterable, Mapping
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch
import torch.nn as nn
from torch import Tensor

from landscape._system.device import check_device, resolve_device
from landscape._system.ranks import Ranks
from landscape.trainers.checkpoint import load_checkpoint

from ._batches import Batch, SizeFn, Split, accuracy, as_splits, is_cross_entropy, split_names, takes_model, unpack
from ._evaluation import EvalSet, eval_sets
from .io.files import sha256

Mode = Literal["eval", "train"]
MODES = ("eval", "train")
CHECK_RTOL = 1e-6
RANDOM_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    if first is not None:
        return first.device
    buffer = next(iter(model.buffers()), None)
    return buffer.device if buffer is not None else torch.device("cpu")


@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """The model leaves exactly as it came: weights, buffers (non-persistent ones too), each module's train/eval
    mode, ``requires_grad``."""

    def live() -> dict[str, Tensor]:  # looked up again on exit: moving a model replaces its buffer objects
        return {**{f"p:{n}": t for n, t in model.named_parameters()}, **{f"b:{n}": t for n, t in model.named_buffers()}}

    saved = {k: t.detach().clone() for k, t in live().items()}
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        now = live()
        with torch.no_grad():
            for k, v in saved.items():
                now[k].copy_(v)
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def select_params(model: nn.Module, params: Any) -> list[str]:
    """Names of the parameters to analyse: all trainable ones (all, if none is), a submodule's, a glob
    pattern over names (``"layer3.*"``), or a list of names or tensors."""
    named = list(model.named_parameters())
    if not named:
        raise ValueError("model: it has no parameters to analyse")
    if params is None:
        chosen = [n for n, p in named if p.requires_grad]
        return chosen or [n for n, _ in named]
    if isinstance(params, nn.Module):
        ids = {id(p) for p in params.parameters()}
        chosen = [n for n, p in named if id(p) in ids]
        if not chosen:
            raise ValueError(f"params: the {type(params).__name__} given is not part of the model")
        return chosen
    if isinstance(params, str):
        chosen = [n for n, _ in named if fnmatch.fnmatchcase(n, params)]
        if not chosen:
            raise ValueError(f"params: no parameter name matches {params!r} (names look like {named[0][0]!r})")
        return chosen
    if not isinstance(params, Iterable) or isinstance(params, Tensor):
        raise ValueError(
            f"params: expected a submodule, a glob over names, or a list of names or parameters, got "
            f"{type(params).__name__}"
        )
    by_id = {id(p): n for n, p in named}
    names = {n for n, _ in named}
    wanted = []
    for item in params:
        name = by_id.get(id(item)) if isinstance(item, Tensor) else item
        if name not in names:
            raise ValueError(
                f"params: {item if isinstance(item, str) else 'a tensor'!r} is not a parameter of the model"
            )
        wanted.append(name)
    if not wanted:
        raise ValueError("params: empty selection")
    return [n for n, _ in named if n in set(wanted)]


class Sums:
    """Size-weighted sums of per-batch means on the device (no host sync until :meth:`means`)."""

    def __init__(self, keys: list[str], device: torch.device) -> None:
        self.sums = {k: torch.zeros((), dtype=torch.float64, device=device) for k in keys}
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, values: dict[str, Tensor], n: float | Tensor) -> None:
        for k, v in values.items():
            self.sums[k] += v.detach().double() * n
        self.total += n

    def means(self, group: Ranks = Ranks()) -> dict[str, float]:
        """The means over the data; with a group of ranks each holding a shard, over all of it."""
        both = torch.stack([self.total, *self.sums.values()])
        group.sum_([both])
        return {k: float(v / both[0]) for k, v in zip(self.sums, both[1:])}


class Problem:
    """A model, data and loss to analyse (see the module docstring).

    Args:
        model: any ``nn.Module``; analyses move it in place and restore it exactly.
        data: a ``DataLoader``, a re-iterable of batches, an ``(inputs, targets)`` pair of tensors, or a
            dict of such named splits (``{"train": ..., "test": ...}``; one unnamed split is ``train``).
        loss: ``loss(outputs, targets)`` with mean reduction (default ``nn.CrossEntropyLoss()``), or a
            function whose first parameter is named ``model``, called as ``loss(model, batch)``.
        metrics: ``{name: fn}`` of further per-batch means, called like the loss; default: ``acc``
            (percent) for cross-entropy.
        params: which parameters to analyse: names, glob patterns, a predicate on (name, parameter) or the
            parameters themselves; default all trainable.
        device: where to run (default: the model's device); the model returns home afterwards.
        mode: the model's mode during analyses: ``"eval"`` (BatchNorm running statistics, no dropout)
            or ``"train"``.
        batch_size: batch size for an ``(inputs, targets)`` pair.
        batch_size_fn: a batch's weight (default: the leading dimension of its targets), e.g. the number
            of non-padding tokens.
        cache: keep the data on the device (True), stream it (False), or keep it while it fits (None).
        label: a name for the problem, stored in result files (e.g. the training method).
        check: check once that two passes over the data give the same batches and the same loss.

    Raises:
        ValueError: a model that is not an ``nn.Module``, an unknown ``mode``, a bad ``batch_size``, a device this
            machine lacks, data or a loss that cannot be evaluated (with the reason), parameters that select
            nothing, or a loss that is not finite at the model's weights.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss: Callable | None = None,
        *,
        metrics: Mapping[str, Callable] | None = None,
        params: Any = None,
        device: str | torch.device | None = None,
        mode: Mode = "eval",
        batch_size: int = 1000,
        batch_size_fn: SizeFn | None = None,
        cache: bool | None = None,
        label: str = "",
        check: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.model, self.mode, self.label = model, mode, str(label)
        self.loss = nn.CrossEntropyLoss() if loss is None else loss
        if not callable(self.loss):
            raise ValueError(f"loss: expected a callable, got {type(self.loss).__name__}")
        reduction = getattr(self.loss, "reduction", "mean")
        if reduction != "mean":
            raise ValueError(
                f"loss: {type(self.loss).__name__}(reduction={reduction!r}); the analyses need "
                "reduction='mean' (batches are weighted by their size)"
            )
        self.model_loss = takes_model(self.loss)
        self.metrics = (
            dict(metrics) if metrics is not None else ({"acc": accuracy} if is_cross_entropy(self.loss) else {})
        )
        for name, fn in self.metrics.items():
            if not (isinstance(name, str) and name.isidentifier()) or name == "loss" or not callable(fn):
                raise ValueError(f"metrics: {name!r} must be an identifier other than 'loss', mapped to a function")
            if takes_model(fn) != self.model_loss:
                form = "(model, batch)" if self.model_loss else "(outputs, targets)"
                raise ValueError(f"metrics: {name!r} must take {form} like the loss")
        self.param_names = select_params(model, params)
        self.device = check_device(device) if device is not None else model_device(model)
        if self.device.type == "meta" or any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise ValueError("model: its tensors are on the meta device (no values to analyse); load its weights first")
        self.info: dict = {}  # provenance stored in result files (see file_attrs)
        self.group = Ranks()  # the ranks sharing the data (see sharded)
        self.meta: dict = {}  # a checkpoint's metadata (from_checkpoint)
        self._depth = 0
        self.splits: dict[str, Split] = {}
        with self.session() if check else nullcontext():
            for name, d in as_splits(data).items():
                first = self._sums()
                self.splits[name] = Split(
                    name,
                    d,
                    self.device,
                    size_fn=batch_size_fn,
                    cache=cache,
                    batch_size=batch_size,
                    visit=partial(self._accumulate, first) if check else None,
                )
                if check:
                    self._check(name, first)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        split: str | list[str] = "train",
        *,
        samples: int | None = None,
        sample_seed: int = 0,
        batch_size: int = 1000,
        data_root: str | None = None,
        device: str | torch.device = "auto",
        params: Any = None,
    ) -> Problem:
        """A checkpoint of ``landscape train`` on its dataset's ``split`` (``"train"``, ``"test"`` or both),
        normalized as in training, optionally a fixed seeded subset of ``samples`` per split."""
        names = split_names(split)
        bad = [s for s in names if s not in ("train", "test")]
        if bad or not names:
            raise ValueError(f"split must name train and/or test, got {','.join(names) or 'nothing'}")
        device = resolve_device(str(device))
        model, meta = load_checkpoint(path, device)
        sets = eval_sets(
            meta["dataset"],
            names,
            samples=samples,
            seed=sample_seed,
            batch_size=batch_size,
            data_root=data_root or meta["config"].get("data_root"),
            device=device,
        )
        problem = cls(
            model,
            sets,
            nn.CrossEntropyLoss(),
            params=params,
            device=device,
            batch_size=batch_size,
            label=meta["method"]["name"],
            check=False,
        )  # fixed tensors and a deterministic model
        problem.meta = meta
        problem.info = checkpoint_info(path, meta, samples, sample_seed)
        return problem

    # --- running the model ---------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[nn.Module]:
        """The model on the problem's device, in the problem's mode, selected parameters requiring grad;
        restored exactly on exit (re-entrant)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.model
            finally:
                self._depth -= 1
            return
        home = model_device(self.model)
        with preserved(self.model):
            self._depth = 1
            try:
                if home != self.device:
                    self.model.to(self.device)
                self.model.train(self.mode == "train")
                for p in self.params():
                    p.requires_grad_(True)
                yield self.model
            finally:
                self._depth = 0
                if home != self.device:
                    self.model.to(home)

    def with_model(self, model: nn.Module) -> Problem:
        """The same data, loss, metrics and settings over another model (all its trainable parameters analysed),
        e.g. the network with REPAIR's layers inserted, or the point of a curve."""
        other = copy.copy(self)
        other.model, other.param_names, other._depth = model, select_params(model, None), 0
        return other

    def blocks(self, split: str, size: int) -> list[Problem]:
        """The split cut into consecutive blocks of ``size`` examples (the last may be smaller), each a problem of
        its own over the same model with that block as its only split: m-sharpness and per-batch curvature measure
        each block on its own.

        Raises:
            ValueError: a split that is not a pair of tensors (a loader's batches cannot be regrouped), or a bad
                ``size``.
        """
        data = self.splits[split].tensors
        if data is None:
            raise ValueError(
                f"data[{split!r}] is a loader: blocks of {size} examples need the split as an (inputs, targets) pair "
                "of tensors"
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"a block size must be an integer >= 1, got {size!r}")
        out = []
        for start in range(0, len(data), size):
            rows = slice(start, start + size)
            block = copy.copy(self)
            block.splits = {
                split: Split(
                    split,
                    EvalSet(data.x[rows], data.y[rows], min(size, data.batch_size)),
                    self.device,
                    size_fn=self.splits[split].size_fn,
                )
            }
            out.append(block)
        return out

    def params(self) -> list[Tensor]:
        """The analysed parameters (live tensors), in the model's order."""
        live = dict(self.model.named_parameters())
        return [live[n] for n in self.param_names]

    def params_attr(self) -> str | list[str]:
        """The analysed parameters as result files record them: ``"all"`` or their names."""
        return "all" if len(self.param_names) == len(list(self.model.parameters())) else list(self.param_names)

    def terms(self, batch: Batch, module: nn.Module | None = None, *, metrics: bool = True) -> dict[str, Tensor]:
        """``{"loss": mean loss of the batch, metric: ...}`` (module: e.g. a compiled model sharing the weights)."""
        module = self.model if module is None else module
        fns: dict[str, Callable[..., Tensor]] = self.metrics if metrics else {}
        try:
            if self.model_loss:
                loss = self.loss(module, batch)
                out = {"loss": loss, **{k: fn(module, batch) for k, fn in fns.items()}}
            else:
                args, kwargs, targets = unpack(batch)
                outputs = module(*args, **kwargs)
                if isinstance(outputs, Tensor) and outputs.dtype in (torch.float16, torch.bfloat16):
                    outputs = outputs.float()  # the loss in full precision
                loss = self.loss(outputs, targets)
                out = {"loss": loss, **{k: fn(outputs, targets) for k, fn in fns.items()}}
        except ValueError:
            raise
        except Exception as e:
            text = str(e).strip().splitlines()[0] if str(e).strip() else "no detail"
            raise ValueError(f"model/loss failed on a batch: {type(e).__name__}: {text[:300]}") from e
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss: returned {shape}, not a scalar tensor (use reduction='mean')")
        if loss.is_complex():
            raise ValueError(f"loss: returned a complex number ({loss.dtype}); the analyses need a real loss")
        out = {k: (v if isinstance(v, Tensor) else torch.as_tensor(float(v))).reshape(()) for k, v in out.items()}
        return out

    def evaluate(self, split: str, module: nn.Module | None = None) -> dict[str, float]:
        """Mean loss and metrics over a split at the current weights (no gradients)."""
        sums = self._sums()
        with self.session():
            for batch, n in self.splits[split]:
                self._accumulate(sums, batch, n, module)
        return sums.means(self.group)

    def loss_and_grad(
        self, split: str, params: list[Tensor], module: nn.Module | None = None
    ) -> tuple[dict[str, float], list[Tensor]]:
        """Mean loss and metrics over a split, and the gradient of the mean loss w.r.t. ``params``
        (``module``: e.g. a folded view sharing the weights)."""
        sums, total = self._sums(), self.splits[split].total
        grads = [torch.zeros_like(p) for p in params]
        with self.session():
            for batch, n in self.splits[split]:
                with torch.enable_grad():
                    values = self.terms(batch, module)
                    g = torch.autograd.grad(
                        values["loss"] * (n / total), params, allow_unused=True, materialize_grads=True
                    )
                torch._foreach_add_(grads, list(g))
                sums.add(values, n)
        self.group.sum_(grads)
        return sums.means(self.group), grads

    def _sums(self) -> Sums:
        return Sums(["loss", *self.metrics], self.device)

    @contextmanager
    def sharded(self, group: Ranks) -> Iterator[None]:
        """Each rank of ``group`` takes its share of every split (a block of rows of tensors, every world-th batch
        of a loader); means, gradients and curvature products are summed over the ranks, so every analysis sees
        the operator one process sees (up to the order of float sums)."""
        previous = self.group
        self.group = group
        for split in self.splits.values():
            split.shard = (group.rank, group.world)
        try:
            yield
        finally:
            self.group = previous
            for split in self.splits.values():
                split.shard = (previous.rank, previous.world)

    def forward_all(self, split: str) -> None:
        """One forward pass over a split's batches (e.g. to collect BatchNorm statistics in train mode)."""
        for batch, _ in self.splits[split]:
            self.terms(batch, metrics=False)

    # --- checks and metadata --------------------------------------------------------------

    def _accumulate(self, sums: Sums, batch: Batch, n: float | Tensor, module: nn.Module | None = None) -> None:
        with torch.inference_mode():
            sums.add(self.terms(batch, module), n)

    def _check(self, name: str, first: Sums) -> None:
        """A second pass must give the batches and the loss of the first (curvlinops' ``check_deterministic``):
        shuffling, augmentation or a random layer would turn every analysis into noise."""
        second = self._sums()
        for batch, n in self.splits[name].again():
            self._accumulate(second, batch, n)
        a, b = first.means()["loss"], second.means()["loss"]
        if not math.isfinite(a):
            raise ValueError(f"data[{name!r}]: {self._nonfinite_cause(name)}")
        if not (a == b or (a != a and b != b) or abs(a - b) <= CHECK_RTOL * max(abs(a), abs(b))):
            raise ValueError(
                f"model: the same data[{name!r}] gave the loss {a:.8g}, then {b:.8g}: {self._random_cause()}"
            )

    def check_deterministic(self, split: str) -> None:
        """Two evaluations of the split's first batch give the same loss: analyses that compare points (barriers,
        curves) would otherwise measure noise.

        Raises:
            ValueError: the loss changed between the two evaluations, with the likely cause.
        """
        with self.session():
            batch, _ = next(iter(self.splits[split]))
            with torch.inference_mode():
                a, b = (float(self.terms(batch, metrics=False)["loss"]) for _ in range(2))
        if not (a == b or (a != a and b != b) or abs(a - b) <= CHECK_RTOL * max(abs(a), abs(b))):
            raise ValueError(f"model: the same batch gave the loss {a:.8g}, then {b:.8g}: {self._random_cause()}")

    def _nonfinite_cause(self, name: str) -> str:
        """Which batch makes the loss at the model's weights NaN or infinite, and whether its inputs do."""
        for i, (batch, _) in enumerate(self.splits[name].again(), 1):
            with torch.inference_mode():
                loss = float(self.terms(batch, metrics=False)["loss"])
            if not math.isfinite(loss):
                inputs = [t for t in (batch.values() if isinstance(batch, dict) else batch) if isinstance(t, Tensor)]
                bad = any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in inputs)
                cause = (
                    "its inputs hold NaN or infinite values"
                    if bad
                    else "the model or the loss gives it on finite inputs"
                )
                return f"the loss at the model's weights is {loss} on batch {i} ({cause}); every analysis would be NaN"
        return "the loss at the model's weights is not finite; every analysis would be NaN"

    def _random_cause(self) -> str:
        found = [
            f"{type(m).__name__} at {n!r}"
            for n, m in self.model.named_modules()
            if isinstance(m, RANDOM_LAYERS) and getattr(m, "p", 0) > 0
        ]
        if found and self.mode == "train":
            return f"dropout is active in train mode ({', '.join(found[:3])}); use mode='eval' (the default)"
        return f"something in the model is random in {self.mode} mode; analyses need a deterministic loss"

    def file_attrs(self) -> dict:
        """What result files record about the problem (checkpoint provenance, or the user's model)."""
        if self.info:
            return dict(self.info)
        return {
            "source": "python",
            "label": self.label,
            "model": type(self.model).__name__,
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "num_params": sum(p.numel() for p in self.model.parameters()),
            "loss": getattr(self.loss, "__name__", type(self.loss).__name__),
            "mode": self.mode,
            "data_size": [split.total for split in self.splits.values()],
            "weights_sha256": weights_sha256(self.model.state_dict()),
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {s.total:g}{' streamed' if s.streamed else ''}" for k, s in self.splits.items())
        n = sum(p.numel() for p in self.params())
        return (
            f"Problem({type(self.model).__name__}, {n} analysed parameters, loss "
            f"{getattr(self.loss, '__name__', type(self.loss).__name__)}, data {{{sizes}}}, {self.device}, {self.mode})"
        )


def checkpoint_info(path: str | Path, meta: dict, samples: int | None, sample_seed: int) -> dict:
    """What result files record about a checkpoint and the data subset it was evaluated on."""
    return {
        "source": "checkpoint",
        "method": meta["method"]["name"],
        "model": meta["model"]["name"],
        "dataset": meta["dataset"]["name"],
        "checkpoint": str(path),
        "checkpoint_sha256": sha256(path),
        "samples": -1 if samples is None else samples,
        "sample_seed": sample_seed,
    }


def weights_sha256(state: Mapping[str, Tensor]) -> str:
    """A digest of every tensor of a state dict: resuming a file checks it is the same model."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


__all__ = ["Problem"]
