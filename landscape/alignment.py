"""Permutation alignment: the copy of one network whose hidden units are reordered to match another's.

A network's hidden units can be permuted without changing its function. Two networks trained from different seeds
may lie in one basin only up to such a permutation (Entezari et al. 2022), so :func:`align` searches for the
permutation of ``model_b`` closest to ``model_a`` before the two are compared (e.g. by
:func:`~landscape.barrier`). Which units may move together is derived from the model itself by a ``torch.fx``
trace (:mod:`landscape._permutations`): linear and convolution chains, residual additions (one shared permutation),
BatchNorm, LayerNorm and GroupNorm, and attention heads moved as whole heads (``nn.MultiheadAttention`` and Hugging
Face's GPT-2 attention). Units the analysis cannot follow stay in place, named in a warning.

- ``method="weights"``: weight matching (Ainsworth et al. 2022, ``samuela/git-re-basin``): coordinate descent in
  which each group's permutation maximizes ``sum <W_a, P W_b>`` over every tensor axis it moves (the others held at
  their current permutations), a linear assignment solved by ``scipy.optimize.linear_sum_assignment``. No data.
- ``method="activations"``: activation matching: each group's permutation maximizes the summed correlation of the
  two networks' unit activations on data (heads, which no single activation shows, by weight matching).
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from typing import Any, Callable, Iterable, Literal

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ._permutations import Axis, Feat, PermutationSpec, _Analysis, _Root, analyse
from .directions import same_architecture
from .problem import Problem

Method = Literal["weights", "activations"]
METHODS = ("weights", "activations")


def unit_rows(t: Tensor, axis: Axis, units: int) -> Tensor:
    """``t`` as a ``(units, -1)`` matrix: one row per unit of ``axis`` (its blocks and repeats side by side)."""
    x = t.movedim(axis.dim, 0).reshape(axis.repeat, units, axis.block, -1)
    return x.transpose(0, 1).reshape(units, -1)


def permute_axis(t: Tensor, axis: Axis, perm: Tensor) -> Tensor:
    """``t`` with the units of ``axis`` reordered: unit ``i`` of the result is unit ``perm[i]`` of ``t``."""
    x = t.movedim(axis.dim, 0)
    shape = x.shape
    x = x.reshape(axis.repeat, len(perm), axis.block, *shape[1:])[:, perm.to(x.device)]
    return x.reshape(shape).movedim(0, axis.dim)


def permute_state(spec: PermutationSpec, state: dict[str, Tensor], perms: list[Tensor], canonical: dict[str, str]):
    """``state`` with every axis of every group permuted (tensors shared under several names alike)."""
    moved = {name: t for name, t in state.items()}
    for group, perm in zip(spec.groups, perms):
        for axis in group.axes:
            moved[axis.name] = permute_axis(moved[axis.name], axis, perm)
    return {name: moved[canonical.get(name, name)] for name in state}


def _by_tensor(spec: PermutationSpec) -> dict[str, list[tuple[int, Axis]]]:
    found: dict[str, list[tuple[int, Axis]]] = defaultdict(list)
    for g, group in enumerate(spec.groups):
        for axis in group.axes:
            found[axis.name].append((g, axis))
    return found


@torch.no_grad()
def weight_matching(
    spec: PermutationSpec,
    a: dict[str, Tensor],
    b: dict[str, Tensor],
    *,
    perms: list[Tensor] | None = None,
    groups: Iterable[int] | None = None,
    max_iter: int = 100,
    seed: int = 0,
) -> list[Tensor]:
    """Ainsworth et al.'s weight matching: the permutation of each group maximizing ``sum <W_a, P W_b>``.

    Args:
        spec: the model's permutation groups.
        a: the reference tensors (parameters; buffers are permuted but not matched).
        b: the tensors to permute, same names and shapes.
        perms: starting permutations (default: identities).
        groups: the groups to optimize (default: all; the others keep ``perms``).
        max_iter: sweeps over the groups at most; it stops at the first sweep that improves nothing.
        seed: the order of the groups in each sweep.

    Returns:
        One permutation per group (``perm[i]``: the unit of ``b`` put at position ``i``).
    """
    perms = [torch.arange(g.size) for g in spec.groups] if perms is None else list(perms)
    todo = list(range(len(spec.groups)) if groups is None else groups)
    by_tensor = _by_tensor(spec)
    matched = [[axis for axis in group.axes if axis.name in a] for group in spec.groups]
    b32 = {axis.name: b[axis.name].float() for axes in matched for axis in axes}
    rows_a = {  # a's side never changes: its unit rows once (float32 products, summed in float64)
        (axis.name, axis.dim): unit_rows(a[axis.name].float(), axis, group.size)
        for group, axes in zip(spec.groups, matched)
        for axis in axes
    }
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for g in rng.permutation(todo):
            group = spec.groups[g]
            cost = torch.zeros(group.size, group.size, dtype=torch.float64)
            for axis in matched[g]:
                wb = b32[axis.name]
                for other_g, other in by_tensor[axis.name]:
                    if other.dim != axis.dim:
                        wb = permute_axis(wb, other, perms[other_g])
                cost += (rows_a[axis.name, axis.dim] @ unit_rows(wb, axis, group.size).T).double()
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols)
            gain = cost[torch.arange(group.size), new].sum() - cost[torch.arange(group.size), perms[g]].sum()
            if gain > 1e-12 * max(1.0, float(cost.abs().max())):
                perms[g], improved = new, True
        if not improved:
            break
    return perms


class _Recorder(fx.Interpreter):
    """Runs a traced model, handing the outputs of chosen nodes to ``sink``."""

    def __init__(self, gm: fx.GraphModule, nodes: dict[str, Any], sink: Callable[[str, Tensor], None]) -> None:
        super().__init__(gm)
        self.nodes, self.sink = nodes, sink

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.nodes and isinstance(out, Tensor):
            self.sink(n.name, out)
        return out


class _Recording(nn.Module):
    """A module view of a traced model that records activations (so a Problem's loss can call it)."""

    def __init__(self, gm: fx.GraphModule, nodes: dict[str, Any], sink: Callable[[str, Tensor], None]) -> None:
        super().__init__()
        self.gm, self.nodes, self.sink = gm, nodes, sink

    def forward(self, *args):
        return _Recorder(self.gm, self.nodes, self.sink).run(*args)


class _Correlations:
    """Per node, the running sums behind the correlation of every unit of ``a`` with every unit of ``b``."""

    def __init__(self) -> None:
        self.sums: dict[str, list[Tensor]] = {}
        self.pending: dict[str, Tensor] = {}

    @staticmethod
    def rows(x: Tensor, feat: Feat) -> Tensor:
        dim = 1 if feat.layout == "first" else -1
        return x.detach().movedim(dim, 0).reshape(x.shape[dim], -1).double().cpu()

    def add(self, name: str, za: Tensor, zb: Tensor) -> None:
        parts = [torch.tensor(float(za.shape[1])), za.sum(1), zb.sum(1), (za * za).sum(1), (zb * zb).sum(1), za @ zb.T]
        before = self.sums.get(name)
        self.sums[name] = parts if before is None else [x + y for x, y in zip(before, parts)]

    def correlation(self, name: str) -> Tensor:
        n, sa, sb, saa, sbb, sab = self.sums[name]
        ma, mb = sa / n, sb / n
        sd_a = (saa / n - ma**2).clamp_min(0).sqrt()
        sd_b = (sbb / n - mb**2).clamp_min(0).sqrt()
        return (sab / n - torch.outer(ma, mb)) / (torch.outer(sd_a, sd_b) + 1e-12)


def _inputs(data: Any, split: str) -> Callable[[nn.Module], Iterable[None]]:
    """``run(module)``: a generator calling ``module`` on every batch of ``data`` (a Problem's split, one input
    tensor, or an iterable of inputs)."""
    if isinstance(data, Problem):
        if split not in data.splits:
            raise ValueError(f"data: the problem has no split {split!r} (it has {', '.join(data.splits)})")

        def run_problem(module: nn.Module) -> Iterable[None]:
            for batch, _ in data.splits[split]:
                data.terms(batch, module, metrics=False)
                yield None

        return run_problem
    batches = [data] if isinstance(data, Tensor) else list(data)

    def run(module: nn.Module) -> Iterable[None]:
        for batch in batches:
            module(*(batch if isinstance(batch, (tuple, list)) else (batch,)))
            yield None

    return run


@torch.no_grad()
def activation_matching(
    analysis: _Analysis, spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, data: Any, split: str
) -> tuple[list[Tensor], list[int]]:
    """Each group's permutation maximizing the summed correlation of its units' activations (over every node
    whose units it moves); ``(perms, groups that no activation showed)``."""
    nodes = {n.name: v for n, v in analysis.node_groups().items()}
    corr = _Correlations()
    root = (lambda m: _Root(m)) if analysis.prefix else (lambda m: m)
    run = _inputs(data, split)
    graph_a = fx.GraphModule(root(model_a), analysis.gm.graph)
    graph_b = fx.GraphModule(root(model_b), analysis.gm.graph)

    def keep(name: str, z: Tensor) -> None:
        corr.pending[name] = _Correlations.rows(z, nodes[name][1])

    def pair(name: str, z: Tensor) -> None:
        corr.add(name, corr.pending.pop(name), _Correlations.rows(z, nodes[name][1]))

    for _ in zip(run(_Recording(graph_a, nodes, keep)), run(_Recording(graph_b, nodes, pair))):
        pass  # a's batch, then b's on the same batch
    cost = [torch.zeros(g.size, g.size, dtype=torch.float64) for g in spec.groups]
    for name, (g, _) in nodes.items():
        if name in corr.sums:
            cost[g] += corr.correlation(name)
    perms, unseen = [], []
    for g, c in enumerate(cost):
        if not c.any():
            unseen.append(g)
        perms.append(torch.as_tensor(linear_sum_assignment(c.numpy(), maximize=True)[1]))
    return perms, unseen


def _states(model_a: nn.Module, model_b: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    a = {k: v.detach().cpu() for k, v in model_a.state_dict().items()}
    b = {k: v.detach().cpu() for k, v in model_b.state_dict().items()}
    same_architecture(a, b)
    return a, b


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    method: Method = "weights",
    data: Any = None,
    split: str = "train",
    max_iter: int = 100,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """A copy of ``model_b`` with its hidden units permuted to match ``model_a``: the same function as ``model_b``.

    Args:
        model_a: the reference network.
        model_b: the network to permute (same architecture; it is not changed).
        method: ``"weights"`` (weight matching, no data) or ``"activations"`` (activation matching on ``data``).
        data: a :class:`~landscape.Problem` (its ``split``), an input tensor or an iterable of inputs: required for
            ``"activations"``; with either method the aligned copy's outputs are checked against ``model_b``'s on it.
        split: the split of a Problem ``data`` used.
        max_iter: coordinate-descent sweeps of weight matching at most.
        seed: the order of the groups in weight matching.
        log: called with one-line messages (groups found, units left in place); ``None``: silent.

    Returns:
        The aligned copy of ``model_b`` (in ``model_b``'s mode and on its device).

    Raises:
        ValueError: models of different architectures, a model fx cannot trace, an unknown method,
            ``"activations"`` without data, or (a defect of the analysis) an aligned copy whose outputs differ.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(model_a, nn.Module) or not isinstance(model_b, nn.Module):
        raise ValueError("model_a and model_b must be torch.nn.Module instances")
    if method == "activations" and data is None:
        raise ValueError("method='activations' needs data= (a Problem or inputs)")
    a, b = _states(model_a, model_b)
    spec, analysis = analyse(model_a)
    if spec.notes:
        warnings.warn("align: " + "; ".join(spec.notes), stacklevel=2)
    params = {k: a[k] for k, _ in model_a.named_parameters() if k in a}
    if method == "weights":
        perms = weight_matching(spec, params, b, max_iter=max_iter, seed=seed)
    else:
        copies = [copy.deepcopy(m).eval() for m in (model_a, model_b)]
        if isinstance(data, Problem):
            copies = [m.to(data.device) for m in copies]
        perms, unseen = activation_matching(analysis, spec, copies[0], copies[1], data, split)
        if unseen:
            perms = weight_matching(spec, params, b, perms=perms, groups=unseen, max_iter=max_iter, seed=seed)
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in perms)
    if log:
        log(f"align ({method}): {len(spec.groups)} permutation groups, {moved} units moved")
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(permute_state(spec, b, perms, analysis.canonical))
    if data is not None:
        _check_same_function(model_b, aligned, data, split)
    return aligned


@torch.no_grad()
def _check_same_function(model_b: nn.Module, aligned: nn.Module, data: Any, split: str) -> None:
    """The aligned copy computes ``model_b``'s outputs on the first batch (eval mode) — or the analysis is wrong."""
    outs = []
    for model in (model_b, aligned):
        training = model.training
        model.eval()
        try:
            seen: list[Tensor] = []
            record = _Outputs(model, seen)
            next(iter(_inputs(data, split)(record)), None)
            outs.append(seen)
        finally:
            model.train(training)
    for x, y in zip(*outs):
        if not torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5 * float(x.abs().max().clamp_min(1))):
            raise ValueError("align: the permuted copy computes a different function (a defect; please report it)")


class _Outputs(nn.Module):
    def __init__(self, model: nn.Module, seen: list[Tensor]) -> None:
        super().__init__()
        self.model, self.seen = model, seen

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        self.seen.extend(t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, Tensor))
        return out


__all__ = ["align", "weight_matching"]
