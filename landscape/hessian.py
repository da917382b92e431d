"""Curvature operators: Hessian- and Gauss-Newton-vector products of the loss over a fixed dataset.

The loss is the mean cross-entropy over every sample of an :class:`EvalSet`, each batch
weighted by its size, with the model in eval mode (BatchNorm uses its running
statistics, so the operator is deterministic; it runs as the equivalent affine map while
the operator is open, see :func:`affine_batchnorm`). Parameters that do not affect the loss
get zero rows. Products use double backward on a gradient graph that is built once and
kept (``cache_graph=True``, the fastest option measured here: ~1.9x a gradient per HVP),
or rebuilt per product to save memory.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch import Tensor
from torch.func import functional_call, jvp, vjp
from torch.nn.modules.batchnorm import _BatchNorm

from .evaluation import EvalSet

KINDS = ("hessian", "ggn")


@contextmanager
def affine_batchnorm(model: nn.Module):
    """Run eval-mode BatchNorm layers as the affine maps they are, ``x * scale + shift``.

    The same function of the input and of gamma/beta, but autograd's generic BatchNorm
    double backward is far costlier than that of two elementwise ops (HVPs 1.5x faster on
    the demo CNN). The layers' own ``forward`` is restored on exit.
    """
    patched = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_var is not None:
            m.forward = _affine_forward(m)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _affine_forward(m: _BatchNorm):
    def forward(x: Tensor) -> Tensor:
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        shift = -m.running_mean * scale + (m.bias if m.bias is not None else 0)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)

    return forward


class CurvatureOperator:
    """``H v`` (or ``G v``) for flat vectors over the parameters ``names`` (default: all trainable).

    Args:
        model: evaluated in eval mode; its mode is restored by :meth:`close` (or ``with``).
        data: the fixed dataset the loss averages over.
        names: parameter names to differentiate (a block of the model), default all.
        kind: ``"hessian"`` or ``"ggn"`` (generalized Gauss-Newton ``J^T H_logits J``, PSD).
        cache_graph: keep the gradient graphs between products (Hessian only).
    """

    def __init__(self, model: nn.Module, data: EvalSet, names: list[str] | None = None, *, kind: str = "hessian",
                 cache_graph: bool = True) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown curvature {kind!r}; expected one of {KINDS}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and (names is None or n in names)]
        if names is not None and len(named) != len(set(names)):
            unknown = sorted(set(names) - {n for n, _ in named})
            raise ValueError(f"no trainable parameters named {', '.join(unknown[:3])}")
        if not named:
            raise ValueError("no parameters to differentiate")
        self.model, self.data, self.kind, self.cache_graph = model, data, kind, cache_graph
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shapes = [p.shape for p in self.params]
        self.size = sum(p.numel() for p in self.params)
        self.device, self.dtype = self.params[0].device, self.params[0].dtype
        self.matvecs = 0
        self._was_training = model.training
        model.eval()
        self._stack = ExitStack()
        self._stack.enter_context(affine_batchnorm(model))
        self._graphs: list[list[Tensor]] | None = None

    def close(self) -> None:
        self._graphs = None
        self._stack.close()
        self.model.train(self._was_training)

    def __enter__(self) -> "CurvatureOperator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _split(self, v: Tensor) -> list[Tensor]:
        return [c.view(s) for c, s in zip(v.split([int(np.prod(s)) for s in self.shapes]), self.shapes)]

    def _batch_grads(self, x: Tensor, y: Tensor) -> list[Tensor]:
        loss = F.cross_entropy(self.model(x), y, reduction="sum") / len(self.data)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True, materialize_grads=True)
        return list(grads)

    def _hvp(self, vs: list[Tensor]) -> list[Tensor]:
        if self.cache_graph and self._graphs is None:
            self._graphs = [self._batch_grads(x, y) for x, y in self.data.batches()]
        out = [torch.zeros_like(p) for p in self.params]
        graphs = self._graphs if self.cache_graph else (self._batch_grads(x, y) for x, y in self.data.batches())
        for grads in graphs:
            hv = torch.autograd.grad(grads, self.params, vs, retain_graph=self.cache_graph, allow_unused=True,
                                     materialize_grads=True)
            torch._foreach_add_(out, [h.detach() for h in hv])
        return out

    def _ggn(self, vs: list[Tensor]) -> list[Tensor]:
        others = {n: p.detach() for n, p in self.model.named_parameters() if n not in self.names}
        buffers = dict(self.model.named_buffers())
        primals = tuple(p.detach() for p in self.params)
        out = [torch.zeros_like(p) for p in self.params]
        for x, y in self.data.batches():
            def logits_of(*ps):
                return functional_call(self.model, {**others, **buffers, **dict(zip(self.names, ps))}, (x,))

            logits, jv = jvp(logits_of, primals, tuple(vs))
            prob = logits.softmax(1)
            hjv = (prob * jv - prob * (prob * jv).sum(1, keepdim=True)) / len(self.data)  # softmax-CE Hessian
            _, pullback = vjp(logits_of, *primals)
            torch._foreach_add_(out, list(pullback(hjv)))
        return out

    def matvec(self, v: Tensor) -> Tensor:
        """The product with a flat vector of length :attr:`size` (torch, on any device)."""
        vs = self._split(v.to(self.device, self.dtype))
        with torch.enable_grad():
            parts = self._hvp(vs) if self.kind == "hessian" else self._ggn(vs)
        self.matvecs += 1
        return torch.cat([p.reshape(-1) for p in parts]).detach()

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def to_scipy(self) -> LinearOperator:
        """A float64 SciPy operator (for ``scipy.sparse.linalg.eigsh`` and friends)."""
        def mv(v: np.ndarray) -> np.ndarray:
            return self.matvec(torch.from_numpy(np.asarray(v).reshape(-1))).double().cpu().numpy()

        return LinearOperator((self.size, self.size), matvec=mv, rmatvec=mv, dtype=np.float64)

    def flat_to_dict(self, v: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, self._split(v)))
