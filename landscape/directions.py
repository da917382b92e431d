"""Directions in weight space: seeded Gaussian, normalized as Li et al. (2018), interpolation, PCA.

A direction is a ``dict[str, Tensor]`` keyed like the tensors it moves (parameter names
for ``dir_type="weights"``, ``state_dict`` keys for ``"states"``, which adds the BatchNorm
running statistics). Functions here are pure: they return new dicts and never touch a
model.
"""

from __future__ import annotations

from typing import Iterable, Literal, Mapping, get_args

import torch
import torch.nn as nn
from torch import Tensor

Direction = dict[str, Tensor]
NormMode = Literal["filter", "layer", "model", "none"]
IgnoreMode = Literal["biasbn", "none"]
DirType = Literal["weights", "states"]
NORMS: tuple[NormMode, ...] = get_args(NormMode)
IGNORES: tuple[IgnoreMode, ...] = get_args(IgnoreMode)
DIR_TYPES: tuple[DirType, ...] = get_args(DirType)


def target_tensors(model: nn.Module, dir_type: str = "weights") -> Direction:
    """The tensors a direction moves, keyed by name (live views of the model's).

    Args:
        model: the model.
        dir_type: ``"weights"``: the parameters; ``"states"``: the whole ``state_dict`` (also BatchNorm running
            statistics).

    Returns:
        ``{name: tensor}`` (floating-point tensors only for ``states``).

    Raises:
        ValueError: an unknown ``dir_type``.
    """
    if dir_type == "weights":
        return {n: p.detach() for n, p in model.named_parameters()}
    if dir_type == "states":
        return {n: t.detach() for n, t in model.state_dict(keep_vars=True).items()}
    raise ValueError(f"unknown dir_type {dir_type!r}; expected one of {DIR_TYPES}")


def random_direction(weights: Direction, generator: torch.Generator) -> Direction:
    """N(0, 1) entries of the weights' shapes from an explicit generator (zeros for integer tensors)."""
    return {
        n: torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w)
        if w.is_floating_point()
        else torch.zeros_like(w)
        for n, w in weights.items()
    }


def output_axes(model: nn.Module) -> dict[str, int]:
    """The weights whose output units are not along dim 0, and the dim they are along: Hugging Face's ``Conv1D``
    (GPT-2's projections, stored ``(in, out)``) and transposed convolutions (``(in, out / groups, *kernel)``).

    Filter normalization rescales one slice per output unit (a neuron, a channel); loss-landscape (and
    loss-landscapes) slice dim 0 of every tensor, which for these layers is per *input* unit.
    """
    axes = {}
    for prefix, module in model.named_modules():
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd) or (
            type(module).__name__ == "Conv1D" and hasattr(module, "nf")  # transformers.pytorch_utils.Conv1D
        )
        if transposed and isinstance(getattr(module, "weight", None), Tensor):
            axes[f"{prefix}.weight" if prefix else "weight"] = 1
    return axes


def normalize_direction(
    direction: Direction,
    weights: Direction,
    norm: str = "filter",
    ignore: str = "biasbn",
    axes: Mapping[str, int] | None = None,
) -> Direction:
    """Scale ``direction`` to the weights, exactly as loss-landscape's ``net_plotter`` does (but per output unit
    where a layer stores its outputs along another dim, ``axes``).

    Args:
        direction: the raw direction, keyed like ``weights``.
        weights: the model's tensors it is scaled to.
        norm: ``"filter"``: every slice ``k`` along the output dim (dim 0 unless ``axes`` says otherwise) of a
            tensor with ``dim > 1`` becomes ``d_k * ||w_k|| / (||d_k|| + 1e-10)`` (per output channel / output
            neuron); ``"layer"``: each tensor becomes ``d * ||w|| / ||d||``; ``"model"``: the whole direction is
            scaled to ``||w||`` (global); ``"none"``: raw.
        ignore: ``"biasbn"`` zeroes tensors with ``dim <= 1`` (biases, BatchNorm parameters and statistics); with
            ``"none"`` they are set to the weights themselves (loss-landscape's rule).
        axes: ``{name: dim}`` for tensors whose output units lie along ``dim`` (:func:`output_axes` finds
            Hugging Face's ``Conv1D`` and transposed convolutions); every other tensor: dim 0.

    Returns:
        The normalized direction (new tensors).

    Raises:
        ValueError: an unknown ``norm`` or ``ignore``.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown normalization {norm!r}; expected one of {NORMS}")
    if ignore not in IGNORES:
        raise ValueError(f"unknown ignore {ignore!r}; expected one of {IGNORES}")
    out: Direction = {}
    for name, d in direction.items():
        w = weights[name]
        if d.dim() <= 1 or not d.is_floating_point():
            out[name] = torch.zeros_like(d) if ignore == "biasbn" or not d.is_floating_point() else w.clone().to(d)
        elif norm == "filter":
            axis = (axes or {}).get(name, 0)
            dt, wt = d.movedim(axis, 0), w.movedim(axis, 0)
            dn = dt.flatten(1).norm(dim=1)
            wn = wt.flatten(1).norm(dim=1).to(d)
            out[name] = (dt * (wn / (dn + 1e-10)).view(-1, *([1] * (d.dim() - 1)))).movedim(0, axis)
        elif norm == "layer":
            out[name] = d * (w.norm().to(d) / d.norm())
        else:
            out[name] = d.clone()
    if norm == "model":
        moved = [n for n in out if direction[n].dim() > 1 and direction[n].is_floating_point()]
        scale = torch.sqrt(square_sum(weights, moved)) / torch.sqrt(square_sum(out, moved))
        out.update({n: out[n] * scale.to(out[n].dtype) for n in moved})
    return out


def tensor_sum(terms: Iterable[Tensor]) -> Tensor:
    """Python's ``sum`` of 0-d tensors, added in order (the same bits), but a float64 zero tensor when empty."""
    total = torch.zeros((), dtype=torch.float64)
    for t in terms:
        total = total + t
    return total


def square_sum(d: Direction, names: list[str]) -> Tensor:
    """``sum ||d[n]||^2`` over ``names``, in float64."""
    return tensor_sum(d[n].double().pow(2).sum() for n in names)


def dot(a: Direction, b: Direction) -> Tensor:
    return tensor_sum((a[n].double() * b[n].double()).sum() for n in a if a[n].is_floating_point())


def orthogonalize(d: Direction, against: Direction) -> Direction:
    """Gram-Schmidt: ``d`` minus its projection on ``against`` (float64 inner products)."""
    coef = dot(d, against) / dot(against, against)
    return {n: d[n] - coef.to(d[n].dtype) * against[n] if d[n].is_floating_point() else d[n] for n in d}


def random_directions(
    weights: Direction,
    *,
    count: int,
    seed: int,
    norm: str = "filter",
    ignore: str = "biasbn",
    orthogonal: bool = False,
    axes: Mapping[str, int] | None = None,
) -> list[Direction]:
    """``count`` normalized random directions from one generator seeded with ``seed``.

    Args:
        weights: the model's tensors (:func:`target_tensors`); each direction has their names and shapes.
        count: how many directions (1 or 2 for a surface).
        seed: the generator's seed.
        norm: how each is scaled to the weights (see :func:`normalize_direction`).
        ignore: ``"biasbn"`` zeroes 1-D tensors (see :func:`normalize_direction`).
        orthogonal: make the second orthogonal to the first after normalization (exactly orthogonal; its filter norms
            then differ from the weights' by the removed component, tiny for random high-dimensional directions).
        axes: ``{name: dim}`` of output dims other than 0 (see :func:`normalize_direction`).

    Returns:
        The directions, on the weights' devices.
    """
    g = torch.Generator().manual_seed(seed)
    dirs = [normalize_direction(random_direction(weights, g), weights, norm, ignore, axes) for _ in range(count)]
    if orthogonal and count == 2:
        dirs[1] = orthogonalize(dirs[1], dirs[0])
    return dirs


def same_architecture(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    """Raise one line unless two state dicts hold the same tensor names and shapes."""
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))[:3]
        raise ValueError(
            f"the two models differ in their tensors (e.g. {', '.join(missing)}): not the same architecture"
        )
    bad = [n for n in a if a[n].shape != b[n].shape]
    if bad:
        raise ValueError(
            f"the two models differ in shape at {bad[0]}: {tuple(a[bad[0]].shape)} vs {tuple(b[bad[0]].shape)}"
        )


def difference(a: Direction, b: Direction) -> Direction:
    """``b - a`` (interpolation from ``a`` at 0 to ``b`` at 1); the two must have the same tensors and shapes."""
    same_architecture(a, b)
    return {n: (b[n] - a[n]) if a[n].is_floating_point() else torch.zeros_like(a[n]) for n in a}


def pca_directions(
    trajectory: list[Direction], final: Direction, ignore: IgnoreMode = "biasbn"
) -> tuple[list[Direction], Tensor, Tensor]:
    """Top-2 principal directions of ``theta_e - theta_final`` over a training trajectory (Li et al. Sec. 7).

    Uses the T x T Gram matrix, so memory is one (T, P) float64 matrix.

    Args:
        trajectory: the snapshots' tensors in training order, keyed like ``final``.
        final: the end of training (the centre of the plane).
        ignore: ``"biasbn"`` leaves 1-D tensors (biases, BatchNorm) out of the PCA, ``"none"`` keeps them.

    Returns:
        The two unit-norm directions, their explained-variance ratios (of the centred rows, as sklearn's PCA), and the
        (T, 2) coordinates of each snapshot projected on them (the path to draw on the surface; the final point is at
        the origin).

    Raises:
        ValueError: fewer than 2 snapshots besides ``final``, or snapshots that are identical or collinear (no plane).
    """
    if len(trajectory) < 2:
        raise ValueError(
            f"PCA of a trajectory needs at least 2 checkpoints besides the final one, got {len(trajectory)}"
        )
    names = [n for n, w in final.items() if w.is_floating_point() and (w.dim() > 1 or ignore == "none")]
    rows = torch.stack([torch.cat([(t[n].double() - final[n].double()).flatten() for n in names]) for t in trajectory])
    centred = rows - rows.mean(0)
    evals, evecs = torch.linalg.eigh(centred @ centred.T)
    order = evals.argsort(descending=True)
    evals, evecs = evals[order].clamp_min(0), evecs[:, order]
    if not evals[0] > 0:
        raise ValueError("every snapshot holds the same weights: a PCA of zero variance has no plane to draw")
    if not evals[1] > 1e-12 * evals[0]:
        raise ValueError(
            f"the {len(trajectory)} snapshots lie on one line (e.g. two distinct points): the PCA plane needs at "
            "least 3 snapshots that are not collinear"
        )
    comps = []
    for i in range(2):
        v = centred.T @ evecs[:, i]
        comps.append(v / v.norm())
    ratio = evals[:2] / evals.sum()
    coords = rows @ torch.stack(comps, 1)
    dirs = []
    for v in comps:
        d, offset = {}, 0
        for n, w in final.items():
            if n in names:
                d[n] = v[offset : offset + w.numel()].view_as(w).to(w.dtype)
                offset += w.numel()
            else:
                d[n] = torch.zeros_like(w)
        dirs.append(d)
    return dirs, ratio, coords


__all__ = ["Direction", "normalize_direction", "pca_directions", "random_directions", "target_tensors"]
