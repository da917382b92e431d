"""A faster evaluation view of a model: eval BatchNorm folded into convolutions, channels-last on CPU.

A loss surface evaluates the same network at thousands of weights. :func:`evaluation_module`
traces the model once (``torch.fx``) into a module that shares its tensors and, at every call,

- folds each eval-mode BatchNorm into the convolution feeding it, from the *current* weights
  and statistics (``w * gamma / sqrt(var + eps)``, one small elementwise op per layer), so the
  BatchNorm pass over the activations disappears;
- on CPU, hands 2-D convolutions their weights in channels-last layout, which keeps oneDNN in
  its native layout end to end (no reorder around every convolution, and max pooling on
  channels-last activations: 5x faster at 8x8 here).

The numbers equal the model's to float rounding (a few 1e-7 relative). A layer whose
BatchNorm is in training mode at call time runs unfolded, so ``--bn recompute`` and
``dir_type="states"`` (which move the statistics) stay exact. Models fx cannot trace are
evaluated as they are. BENCHMARKS.md has the measurements.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from .problem import Problem

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def eval_affine(bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` per channel in eval mode (tracked statistics)."""
    assert bn.running_var is not None and bn.running_mean is not None, "only BatchNorm with running statistics"
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    return scale, (shift + bn.bias if bn.bias is not None else shift)


class FoldedConv(nn.Module):
    """A convolution, and optionally the eval BatchNorm after it, as one convolution (shares their tensors)."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, bn: _BatchNorm | None, channels_last: bool) -> None:
        super().__init__()
        self.conv, self.bn, self.channels_last = conv, bn, channels_last and conv.weight.dim() == 4

    def forward(self, x: Tensor) -> Tensor:
        conv, bn = self.conv, self.bn
        if bn is not None and (bn.training or bn.running_var is None or bn.running_mean is None):
            return bn(conv(x))
        weight, bias = conv.weight, conv.bias
        if bn is not None:
            scale, shift = eval_affine(bn)
            bias = shift if bias is None else shift + bias * scale
            weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
        if self.channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        return conv._conv_forward(x, weight, bias)


def evaluation_module(model: nn.Module, *, channels_last: bool) -> nn.Module | None:
    """The model traced with its convolutions as :class:`FoldedConv`, or ``None`` when that changes nothing
    or fx cannot trace it. Trace in the mode the module will be called in (fx records ``self.training``
    branches as they run)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow, unsupported Python: evaluate the model as it is
        return None
    modules = dict(gm.named_modules())
    count = 0
    for node in list(gm.graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(conv, CONVS) or type(conv) not in CONVS or len(node.args) != 1 or node.kwargs:
            continue  # exact types: a subclass may have its own forward
        users = list(node.users)
        only = users[0] if len(users) == 1 and users[0].op == "call_module" and users[0].args == (node,) else None
        bn = modules.get(only.target) if only is not None and not only.kwargs else None
        if not (isinstance(bn, _BatchNorm) and bn.num_features == conv.out_channels and bn.track_running_stats):
            bn = None
        if bn is None and not (channels_last and conv.weight.dim() == 4):
            continue
        name = f"folded{count}_{node.target}".replace(".", "_")  # numbered: a conv called twice gets two
        gm.add_submodule(name, FoldedConv(conv, bn, channels_last))
        last = users[0] if bn is not None else node
        with gm.graph.inserting_after(last):
            folded = gm.graph.call_module(name, node.args)
        last.replace_all_uses_with(folded)
        if bn is not None:
            gm.graph.erase_node(last)
        gm.graph.erase_node(node)
        count += 1
    if not count:
        return None
    gm.graph.lint()
    gm.recompile()
    return gm


def faster_module(problem: Problem, *, channels_last: bool | None = None) -> nn.Module | None:
    """:func:`evaluation_module` of the problem's model, kept only if its loss on the first batch equals the
    model's (:func:`checked`); channels-last is dropped when the model cannot take it (a ``view`` of conv
    features), and a model that still differs (a hook the trace skipped) is evaluated as written.
    ``channels_last``: default on CPU. Call inside ``problem.session()``."""
    if problem.model_loss:  # the loss takes the model itself: it may need more than its forward
        return None
    first = problem.device.type == "cpu" if channels_last is None else channels_last
    batch = None
    for layout in dict.fromkeys([first, False]):
        module = evaluation_module(problem.model, channels_last=layout)
        if module is None:
            continue
        batch = first_batch(problem) if batch is None else batch  # one fetch: a streamed loader may be slow to start
        if checked(problem, module, batch):
            return module
    return None


def compiled_module(problem: Problem, module: nn.Module | None) -> nn.Module | None:
    """``torch.compile`` of ``module`` (or of the model), compiled now on the first batch and checked there;
    ``None`` where compilation fails (no C++ compiler for inductor, an unsupported operation)."""
    compiled = cast(nn.Module, torch.compile(problem.model if module is None else module))
    return compiled if checked(problem, compiled, first_batch(problem)) else None


def first_batch(problem: Problem) -> Any:
    return next(iter(next(iter(problem.splits.values()))))[0]


def checked(problem: Problem, module: nn.Module, batch: Any) -> bool:
    """Whether ``module`` gives the model's loss on ``batch`` (to 1e-5) without failing."""
    with torch.no_grad():
        plain = problem.terms(batch, metrics=False)["loss"]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # fx prints the failing line of its code
                fast = problem.terms(batch, module, metrics=False)["loss"]
        except Exception:  # terms() words the model's errors as ValueError; compilation raises its own
            return False
    return bool(torch.allclose(fast, plain, rtol=1e-5, atol=1e-6, equal_nan=True))  # NaN weights: NaN both ways
