"""The data an analysis averages over: one split's batches, on the device.

A split comes from a pair of tensors ``(inputs, targets)``, our own :class:`EvalSet`, a
``DataLoader`` or any re-iterable of batches. Batches are ``(x, y, ...)`` tuples or dicts
(Hugging Face style, targets under ``"labels"``). Every analysis passes over the same data
many times, so a split that fits the device budget is kept there as a list of batches
(one pass of the user's loader, then none); a larger one is streamed from the loader on
every pass. Either way each batch carries its weight ``n`` (its size), so means over the
whole split are exact however the batches are cut.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from ._evaluation import EvalSet

Batch = Any
SizeFn = Callable[[Batch], "int | float | Tensor"]
Visit = Callable[[Batch, "float | Tensor"], None]
TARGET_KEY = "labels"


def takes_model(fn: Callable) -> bool:
    """Whether ``fn`` is ``f(model, batch)`` (its first parameter is named ``model``) rather than
    ``f(outputs, targets)``."""
    if isinstance(fn, nn.Module):
        return False
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(names) and names[0] == "model"


def is_cross_entropy(fn: Callable) -> bool:
    """Whether ``fn`` is cross-entropy (then accuracy means something)."""
    return isinstance(fn, nn.CrossEntropyLoss) or fn is F.cross_entropy


def accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Percent of argmax predictions (over dimension 1) equal to the targets."""
    return (outputs.argmax(1) == targets).double().mean() * 100


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Every tensor of a (nested) tuple/list/dict batch moved to ``device``; other leaves unchanged."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return (
            type(batch)(to_device(v, device) for v in batch)
            if not hasattr(batch, "_fields")
            else type(batch)(*(to_device(v, device) for v in batch))
        )
    return batch


def leaves(batch: Batch) -> list[Tensor]:
    """The tensors of a batch in a fixed order."""
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [t for k in batch for t in leaves(batch[k])]
    if isinstance(batch, (tuple, list)):
        return [t for v in batch for t in leaves(v)]
    return []


def unpack(batch: Batch) -> tuple[tuple, dict, Any]:
    """``(args, kwargs, targets)`` of a batch: ``model(*args, **kwargs)`` is compared with ``targets``.

    A tuple/list ``(x, y, ...)`` calls ``model(x)`` against ``y``; a dict calls
    ``model(**rest)`` against its ``"labels"``.
    """
    if isinstance(batch, Mapping):
        if TARGET_KEY not in batch:
            raise ValueError(
                f"data: a dict batch needs its targets under {TARGET_KEY!r} (it has {', '.join(map(str, batch))}), "
                "or pass loss(model, batch)"
            )
        return (), {k: v for k, v in batch.items() if k != TARGET_KEY}, batch[TARGET_KEY]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return (batch[0],), {}, batch[1]
    raise ValueError(f"data: a batch must be an (inputs, targets) tuple or a dict, got {type(batch).__name__}")


def chunk(batch: Batch, part: int, num_parts: int) -> Batch:
    """Sub-batch ``part`` of ``num_parts``: every tensor's ``torch.tensor_split`` chunk along dim 0, the structure
    kept (tuples, lists, dicts); anything else is shared by every part."""
    if isinstance(batch, Tensor):
        return torch.tensor_split(batch, num_parts)[part] if batch.dim() else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: chunk(v, part, num_parts) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, (tuple, list)):
        return type(batch)(chunk(v, part, num_parts) for v in batch)
    return batch


def default_size(batch: Batch) -> int:
    """A batch's weight: the leading dimension of its targets (of its first tensor if it has no targets)."""
    if isinstance(batch, Mapping) and isinstance(batch.get(TARGET_KEY), Tensor):
        first = batch[TARGET_KEY]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], Tensor):
        first = batch[1]
    else:
        found = leaves(batch)
        if not found:
            raise ValueError(f"data: a batch of type {type(batch).__name__} holds no tensors")
        first = found[0]
    return int(first.shape[0]) if first.dim() else 1


def fingerprint(batch: Batch) -> tuple:
    """Shapes and sums of a batch's tensors: equal for the same data, different (almost surely) otherwise."""
    out = []
    for t in leaves(batch):
        d = t.detach().double()
        out.append((tuple(t.shape), float(d.sum()), float(d.abs().sum())))
    return tuple(out)


def device_budget(device: torch.device) -> int:
    """Bytes of data the device may hold: half of what is free (the rest is for the model and its activations)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def check_reiterable(data: Any, name: str) -> None:
    """Refuse data that cannot give the same batches twice, naming the cause."""
    if isinstance(data, DataLoader):
        sampler = getattr(data.batch_sampler, "sampler", data.sampler)
        if isinstance(sampler, RandomSampler):
            raise ValueError(
                f"data[{name!r}]: the DataLoader shuffles (shuffle=True): every pass would see other "
                "batches; use shuffle=False for analysis"
            )
        return
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        raise ValueError(
            f"data[{name!r}]: a {type(data).__name__} (a Dataset) yields single samples; wrap it in "
            "DataLoader(dataset, batch_size=...)"
        )
    if not isinstance(data, Iterable) or isinstance(data, (Tensor, str, bytes)):
        raise ValueError(
            f"data[{name!r}]: expected a DataLoader, a list of batches or (inputs, targets) tensors, "
            f"got {type(data).__name__}"
        )
    if iter(data) is data:
        raise ValueError(
            f"data[{name!r}]: a {type(data).__name__} is an iterator, good for one pass only; pass a "
            "DataLoader, a list of batches or (inputs, targets) tensors"
        )


class Split:
    """One split's batches on ``device`` with their weights; iterate it for ``(batch, n)`` pairs.

    Args:
        data: an :class:`EvalSet`, an ``(inputs, targets)`` pair of tensors, or a re-iterable of batches.
        device: where batches are handed out.
        size_fn: a batch's weight (default :func:`default_size`).
        cache: keep the batches on the device (True), stream them every pass (False), or keep them
            while they fit half the free device memory (None).
        batch_size: the batch size for a pair of tensors.
        visit: called with ``(batch, n)`` for every batch of the first pass (evaluated while at hand).
    """

    def __init__(
        self,
        name: str,
        data: Any,
        device: torch.device,
        *,
        size_fn: SizeFn | None = None,
        cache: bool | None = None,
        batch_size: int = 1000,
        visit: Visit | None = None,
    ) -> None:
        self.name, self.device = name, device
        self.size_fn = size_fn or default_size
        self.cached: list[tuple[Batch, float | Tensor]] | None = None  # the batches kept on the device
        self.source: Iterable = ()  # the user's loader
        self.tensors: EvalSet | None = None  # or a pair of tensors, sliced into batches
        self.prints: list[tuple] | None = None  # the first pass's fingerprints (loaders only)
        self.streamed = False  # True: every pass moves the data to the device again
        self.total = 0.0  # the sum of the batch weights (over all ranks)
        self.shard = (0, 1)  # (rank, world): iteration yields this rank's share (see Problem.sharded)
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
            data = EvalSet(data[0], data[1], batch_size)
        if isinstance(data, EvalSet):
            if len(data.x) != len(data.y):
                raise ValueError(f"data[{name!r}]: {len(data.x)} inputs but {len(data.y)} targets")
            if len(data) == 0:
                raise ValueError(f"data[{name!r}] is empty")
            self._from_tensors(data, cache)
            if visit is not None:
                for batch, n in self:
                    visit(batch, n)
        else:
            check_reiterable(data, name)
            self.source = data
            self.prints, self.total = self._first_pass(cache, visit)

    def _from_tensors(self, data: EvalSet, cache: bool | None) -> None:
        nbytes = data.x.numel() * data.x.element_size() + data.y.numel() * data.y.element_size()
        fits = cache if cache is not None else (data.x.device == self.device or nbytes <= device_budget(self.device))
        self.tensors = EvalSet(data.x.to(self.device), data.y.to(self.device), data.batch_size) if fits else data
        self.streamed = not fits
        self.total = float(len(data)) if self.size_fn is default_size else sum(float(n) for _, n in self)
        if not self.total > 0:
            raise ValueError(f"data[{self.name!r}]: the batch weights sum to {self.total}")

    def _tensor_batches(self) -> Iterator[Batch]:
        data = self.tensors
        rank, world = self.shard
        if world > 1:  # a contiguous block of rows per rank
            rows = slice(rank * len(data) // world, (rank + 1) * len(data) // world)  # type: ignore[arg-type]
            data = EvalSet(data.x[rows], data.y[rows], data.batch_size)  # type: ignore[union-attr]
        for x, y in data.batches():  # type: ignore[union-attr]
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))

    def _first_pass(self, cache: bool | None, visit: Visit | None) -> tuple[list[tuple], float]:
        """One pass over the user's data: weights, fingerprints, and the batches kept while they fit."""
        budget = math.inf if cache else (0 if cache is False else device_budget(self.device))
        kept: list | None = [] if cache is not False else None
        prints, total, nbytes = [], 0.0, 0
        for batch in self.source:
            batch = to_device(batch, self.device)
            n = self._weight(batch)
            prints.append(fingerprint(batch))
            total += float(n)
            if visit:
                visit(batch, n)
            if kept is not None:
                nbytes += sum(t.numel() * t.element_size() for t in leaves(batch))
                if nbytes > budget:
                    warnings.warn(
                        f"data[{self.name!r}]: more than {budget / 2**30:.1f} GiB, half the free memory of "
                        f"{self.device}: streamed from the loader on every pass",
                        stacklevel=4,
                    )
                    kept = None
                else:
                    kept.append((batch, n))
        if not prints:
            raise ValueError(f"data[{self.name!r}] is empty: it gave no batches")
        if not total > 0:
            raise ValueError(f"data[{self.name!r}]: the batch weights sum to {total}")
        self.cached, self.streamed = kept, kept is None
        return prints, total

    def _weight(self, batch: Batch) -> float | Tensor:
        n = self.size_fn(batch)
        if isinstance(n, Tensor) and n.numel() == 1:
            return n.detach().double()
        if isinstance(n, (int, float)) and n >= 0:
            return float(n)
        raise ValueError(f"data[{self.name!r}]: a batch's size must be a number >= 0, got {n!r}")

    def __iter__(self) -> Iterator[tuple[Batch, float | Tensor]]:
        rank, world = self.shard
        if self.tensors is not None:
            if self.size_fn is default_size:
                yield from ((b, float(len(b[1]))) for b in self._tensor_batches())
            else:
                yield from ((b, self._weight(b)) for b in self._tensor_batches())
        elif self.cached is not None:
            yield from self.cached[rank::world]
        else:
            for i, batch in enumerate(self.source):
                if i % world == rank:
                    batch = to_device(batch, self.device)
                    yield batch, self._weight(batch)

    def inputs(self) -> Iterator[Batch]:
        """The batches alone (e.g. for recomputing BatchNorm statistics)."""
        return (b for b, _ in self)

    def again(self) -> Iterator[tuple[Batch, float | Tensor]]:
        """A fresh pass over the user's loader that must give the batches of the first (tensors: a plain pass)."""
        if self.prints is None:
            yield from self
            return
        count = 0
        for i, batch in enumerate(self.source):
            batch = to_device(batch, self.device)
            if i >= len(self.prints) or fingerprint(batch) != self.prints[i]:
                cause = (
                    "more batches"
                    if i >= len(self.prints)
                    else "shuffled order"
                    if fingerprint(batch) in self.prints
                    else "random augmentation or sampling"
                )
                raise ValueError(
                    f"data[{self.name!r}]: a second pass gave other batches (first at batch {i}: "
                    f"{cause}); analysis needs the same data on every pass"
                )
            count += 1
            yield batch, self._weight(batch)
        if count != len(self.prints):
            raise ValueError(
                f"data[{self.name!r}]: two passes gave {len(self.prints)} and {count} batches "
                "(drop_last with a changing dataset?); analysis needs the same data on every pass"
            )


def as_splits(data: Any) -> dict[str, Any]:
    """``{split name: data}``: a mapping of named splits, or one unnamed split called ``train``."""
    if isinstance(data, Mapping):
        if any(isinstance(v, Tensor) for v in data.values()):
            raise ValueError(
                "data: a dict is read as named splits ({'train': loader, 'test': ...}); its values here are "
                "tensors: pass a DataLoader, a list of batches or an (inputs, targets) pair"
            )
        bad = [k for k in data if not (isinstance(k, str) and k.isidentifier() and "_" not in k)]
        if bad or not data:
            raise ValueError(f"data: split names must be letters and digits (no '_'), got {bad or 'no splits'}")
        return dict(data)
    return {"train": data}


def split_names(text: str | Sequence[str]) -> list[str]:
    return [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
