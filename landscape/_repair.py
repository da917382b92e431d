"""REPAIR (Jordan et al. 2022, ``KellerJordan/REPAIR``): the interpolated network with its units' statistics
restored.

Averaging two networks' weights shrinks the variance of their hidden units ("variance collapse"), which is a large
part of the barrier between aligned networks. REPAIR rescales every unit of the interpolated network at ``t`` so
that its mean and standard deviation are ``(1 - t)`` times the first network's plus ``t`` times the second's. As
the reference code does, the correction is a BatchNorm layer after each hidden layer whose affine parameters are
those target statistics: a network with the layers inserted, whose weights at ``t = 0`` and ``t = 1`` carry each
endpoint's statistics, so that the straight line between the two carries exactly the interpolated targets, and the
layers' own statistics are recomputed at every ``t`` with the network's BatchNorm ones. A layer already followed by
BatchNorm needs nothing more: recomputing that BatchNorm is REPAIR there ("RESET").
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ._permutations import Feat, _Root, analyse
from .problem import Problem

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class RepairNorm(nn.BatchNorm1d):
    """BatchNorm over the unit axis of any tensor: dim 1 (``"first"``) or the last (``"last"``)."""

    def __init__(self, units: int, last: bool) -> None:
        super().__init__(units)
        self.last = last

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(-1, 1)).movedim(1, -1) if self.last else super().forward(x)


def _targets(model: nn.Module) -> tuple[fx.GraphModule, str, list[tuple[fx.Node, Feat]]]:
    """The traced model and its hidden layers to repair: permutable outputs not fed straight into BatchNorm."""
    _, analysis = analyse(model)
    gm, modules = analysis.gm, dict(analysis.gm.named_modules())
    chosen = []
    for node, (_, feat) in analysis.node_groups().items():
        if node.op != "call_module" or not isinstance(modules[node.target], LAYERS):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(modules[users[0].target], _BatchNorm):
            continue
        chosen.append((node, feat))
    return gm, analysis.prefix, chosen


@torch.no_grad()
def _statistics(
    problem: Problem, gm: fx.GraphModule, nodes: list[tuple[fx.Node, Feat]], split: str
) -> list[tuple[Tensor, Tensor]]:
    """Per node, (mean, std) of each unit's output over the split (the model in eval mode)."""
    from .alignment import _Correlations, _Recording

    layout = {n.name: f for n, f in nodes}
    sums: dict[str, list] = {}

    def sink(name: str, z: Tensor) -> None:
        rows = _Correlations.rows(z, layout[name])
        s = sums.setdefault(name, [0, 0.0, 0.0])
        sums[name] = [s[0] + rows.shape[1], s[1] + rows.sum(1), s[2] + (rows * rows).sum(1)]

    with problem.session():
        problem.model.eval()
        recording = _Recording(gm, layout, sink)
        for batch, _ in problem.splits[split]:
            problem.terms(batch, recording, metrics=False)
    found = []
    for node, _ in nodes:
        n, s, ss = sums[node.name]
        mean = s / n
        found.append((mean.float(), (ss / n - mean**2).clamp_min(0).sqrt().float()))
    return found


def repaired(problem: Problem, other: dict[str, Tensor], split: str) -> tuple[Problem, dict[str, Tensor]]:
    """(the problem over the network with REPAIR layers, the other endpoint's state for that network).

    Raises:
        ValueError: the model cannot be traced.
    """
    gm, prefix, chosen = _targets(problem.model)
    ours = _statistics(problem, gm, chosen, split)
    b_model = copy.deepcopy(problem.model)
    b_model.load_state_dict(other)
    b_gm = fx.GraphModule(_Root(b_model) if prefix else b_model, gm.graph)
    theirs = _statistics(problem.with_model(b_gm), b_gm, chosen, split)
    fixed = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    by_name = {n.name: n for n in fixed.graph.nodes}
    extra: dict[str, Tensor] = {}
    for i, ((node, feat), (mean_a, std_a), (mean_b, std_b)) in enumerate(zip(chosen, ours, theirs)):
        norm = RepairNorm(len(mean_a), feat.layout == "last").to(problem.device)
        with torch.no_grad():
            norm.weight.copy_(std_a)
            norm.bias.copy_(mean_a)
        name = f"repair_{i}"
        fixed.add_submodule(name, norm)
        target = by_name[node.name]
        with fixed.graph.inserting_after(target):
            new = fixed.graph.call_module(name, (target,))
        target.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
        extra |= {f"{name}.weight": std_b, f"{name}.bias": mean_b}
        extra |= {f"{name}.{k}": v for k, v in norm.state_dict().items() if k not in ("weight", "bias")}
    fixed.recompile()
    state = {prefix + k: v for k, v in other.items()} | extra
    return problem.with_model(fixed), state
