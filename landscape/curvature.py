"""Curvature of a :class:`~landscape.problem.Problem`'s loss: Hessian- and Gauss-Newton-vector products,
and :func:`hessian` (top eigenpairs, trace, spectral density) over them.

The loss is the problem's: its mean over every batch of a split, each batch weighted by its
size, with the model in the problem's mode (eval by default: BatchNorm uses its running
statistics, so the operator is deterministic; it runs as the equivalent affine map while the
operator is open, see :func:`affine_batchnorm`). Parameters that do not affect the loss get
zero rows. Products use double backward on a gradient graph built once and kept
(``cache_graph=True``, the fastest option measured here: ~1.9x a gradient per HVP), or rebuilt
per product to save memory.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, get_args

import numpy as np
import torch
import torch.nn as nn
from scipy.sparse.linalg import LinearOperator
from torch import Tensor
from torch.func import functional_call, jvp, vjp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from landscape._system.files import exclusive
from landscape._system.ranks import join_group

from ._batches import unpack
from ._density import spectral_density
from ._driver import Output, check_resumable, open_existing
from ._folding import eval_affine, faster_module
from ._lanczos import WHICH, lanczos
from ._trace import TRACE_METHODS
from ._trace import trace as estimate_trace
from .directions import Direction
from .io.directions import read_direction_group
from .io.files import base_attrs
from .io.hessian import Hessian, read_hessian, write_hessian
from .limits import MAX_MATVECS, check_count, check_eigenpairs, check_matvecs
from .problem import Problem

CurvatureKind = Literal["hessian", "ggn"]
CURVATURE_KINDS: tuple[CurvatureKind, ...] = get_args(CurvatureKind)
DEFAULT_TRACE_MATVECS = 99


@contextmanager
def affine_batchnorm(model: nn.Module) -> Iterator[None]:
    """Run eval-mode BatchNorm layers as the affine maps they are, ``x * scale + shift``.

    The same function of the input and of gamma/beta, but autograd's generic BatchNorm
    double backward is far costlier than that of two elementwise ops (HVPs 1.5x faster on
    the demo CNN). The layers' own ``forward`` is restored on exit.
    """
    patched = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and not m.training and m.track_running_stats and m.running_var is not None:
            setattr(m, "forward", _affine_forward(m))  # an instance attribute shadows the class's forward
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _affine_forward(m: _BatchNorm) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        scale, shift = eval_affine(m)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)

    return forward


class CurvatureOperator:
    """``H v`` (or ``G v``) for flat vectors over the problem's analysed parameters.

    Use it as a context manager (or call :meth:`close`): it changes the model (BatchNorm in affine form, the math
    attention kernel) while it lives and restores it afterwards.

    Args:
        problem: the model, data and loss; the model is restored by :meth:`close` (or ``with``).
        split: the split the loss averages over (default: the problem's first).
        kind: ``"hessian"`` or ``"ggn"`` (generalized Gauss-Newton ``J^T H_out J``, PSD for convex
            losses; needs a ``loss(outputs, targets)``).
        cache_graph: keep the gradient graphs between products (Hessian only).

    Raises:
        ValueError: an unknown ``kind``, ``"ggn"`` with a ``loss(model, batch)``, or a split the problem lacks.
    """

    def __init__(
        self, problem: Problem, split: str | None = None, *, kind: str = "hessian", cache_graph: bool = True
    ) -> None:
        if kind not in CURVATURE_KINDS:
            raise ValueError(f"unknown curvature {kind!r}; expected one of {CURVATURE_KINDS}")
        if kind == "ggn" and problem.model_loss:
            raise ValueError(
                "the Gauss-Newton matrix needs a loss(outputs, targets); this problem's loss takes (model, batch)"
            )
        self.split = split or next(iter(problem.splits))
        if self.split not in problem.splits:
            raise ValueError(f"no split {self.split!r} in the problem (it has {', '.join(problem.splits)})")
        self.problem, self.kind, self.cache_graph = problem, kind, cache_graph
        self._stack = ExitStack()
        self.model = self._stack.enter_context(problem.session())
        self._stack.enter_context(affine_batchnorm(self.model))
        # BatchNorm after a convolution folded into it: 1.2-1.4x faster HVPs (BENCHMARKS.md); channels-last is not
        # (its double backward is slower)
        self.module = faster_module(problem, channels_last=False) if kind == "hessian" else None
        self._stack.enter_context(sdpa_kernel(SDPBackend.MATH))  # the fused attention kernels have no double backward
        self.names = list(problem.param_names)
        self.params = problem.params()
        self.shapes = [p.shape for p in self.params]
        self.size = sum(p.numel() for p in self.params)
        self.device, self.dtype = self.params[0].device, self.params[0].dtype
        self.total = problem.splits[self.split].total
        self.matvecs = 0
        self._graphs: list[list[Tensor]] | None = None

    def close(self) -> None:
        """Release the operator's graphs and its model changes (BatchNorm, attention kernels)."""
        self._graphs = None
        self._stack.close()

    def __enter__(self) -> CurvatureOperator:
        return self

    @contextmanager
    def on(self, block: Problem) -> Iterator[CurvatureOperator]:
        """The operator over another problem's split of the same name (a block of this one's data, see
        :meth:`Problem.blocks`), the model still prepared; this one's data back on exit."""
        saved = (self.problem, self.total, self._graphs)
        self.problem, self.total, self._graphs = block, block.splits[self.split].total, None
        try:
            yield self
        finally:
            self.problem, self.total, self._graphs = saved

    def __exit__(self, *exc) -> None:
        self.close()

    def _split(self, v: Tensor) -> list[Tensor]:
        return [c.view(s) for c, s in zip(v.split([int(np.prod(s)) for s in self.shapes]), self.shapes)]

    def _batches(self) -> Iterator[tuple[Any, float | Tensor]]:
        return iter(self.problem.splits[self.split])

    def _batch_grads(self, batch: Any, n: float | Tensor) -> list[Tensor]:
        loss = self.problem.terms(batch, self.module, metrics=False)["loss"] * (n / self.total)
        return list(
            torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True, materialize_grads=True)
        )

    def _hvp(self, vs: list[Tensor]) -> list[Tensor]:
        if self.cache_graph and self._graphs is None:
            self._graphs = [self._batch_grads(b, n) for b, n in self._batches()]
        out = [torch.zeros_like(p) for p in self.params]
        graphs = (self._graphs or []) if self.cache_graph else (self._batch_grads(b, n) for b, n in self._batches())
        for grads in graphs:
            # a gradient with no graph is constant: the loss is linear in that tensor, and its Hessian rows are zero
            live = [(g, v) for g, v in zip(grads, vs) if g.requires_grad]
            if not live:
                continue
            hv = torch.autograd.grad(
                [g for g, _ in live],
                self.params,
                [v for _, v in live],
                retain_graph=self.cache_graph,
                allow_unused=True,
                materialize_grads=True,
            )
            torch._foreach_add_(out, [h.detach() for h in hv])
        return out

    def _ggn(self, vs: list[Tensor]) -> list[Tensor]:
        chosen = set(self.names)
        others = {n: p.detach() for n, p in self.model.named_parameters() if n not in chosen}
        buffers = dict(self.model.named_buffers())
        primals = tuple(p.detach() for p in self.params)
        out = [torch.zeros_like(p) for p in self.params]
        for batch, n in self._batches():
            args, kwargs, targets = unpack(batch)

            def outputs_of(*ps: Tensor) -> Tensor:
                return functional_call(self.model, {**others, **buffers, **dict(zip(self.names, ps))}, args, kwargs)

            outputs, jv = jvp(outputs_of, primals, tuple(vs))[:2]
            if not isinstance(outputs, Tensor):
                raise ValueError(
                    f"the Gauss-Newton matrix needs the model to return a tensor, not {type(outputs).__name__}"
                )
            o = outputs.detach().requires_grad_(True)
            g = torch.autograd.grad(self.problem.loss(o, targets) * (n / self.total), o, create_graph=True)[0]
            hjv = torch.autograd.grad(g, o, jv)[0]  # the loss's Hessian in the outputs, times J v
            pullback = vjp(outputs_of, *primals)[1]
            torch._foreach_add_(out, list(pullback(hjv)))
        return out

    def matvec(self, v: Tensor) -> Tensor:
        """The product with a flat vector of length :attr:`size` (torch, on any device)."""
        vs = self._split(v.to(self.device, self.dtype))
        with torch.enable_grad():
            parts = self._hvp(vs) if self.kind == "hessian" else self._ggn(vs)
        self.problem.group.sum_(parts)  # ranks holding shards of the data: the whole data's product
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
        """A flat vector split into tensors keyed by parameter name (views, in the analysed order)."""
        return dict(zip(self.names, self._split(v)))

    def to_direction(self, v: Tensor) -> Direction:
        """A flat vector as a direction over every parameter of the model (zero outside the analysed ones), on the
        CPU."""
        parts = self.flat_to_dict(v.to(self.dtype))
        return {n: parts.get(n, torch.zeros_like(p)).detach().cpu() for n, p in self.model.named_parameters()}


def _counting(matvec: Callable[[Tensor], Tensor], bar: tqdm) -> Callable[[Tensor], Tensor]:
    def wrapped(v: Tensor) -> Tensor:
        out = matvec(v)
        bar.update(1)
        return out

    return wrapped


def hessian(
    problem: Problem,
    *,
    top_k: int = 5,
    which: str = "largest",
    tol: float = 1e-3,
    trace: bool | int = False,
    trace_method: str = "hutch++",
    density: bool = False,
    density_probes: int = 10,
    density_steps: int = 80,
    curvature: str = "hessian",
    batches: int = 0,
    batch_size: int = 128,
    split: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
) -> Hessian:
    """Top-k eigenpairs (with residuals), optionally the trace and the spectral density, of the problem's loss.

    Under ``torchrun`` each rank takes a share of the data and the products are summed over the ranks
    (the same operator as one process, up to the order of float sums); rank 0 writes the file.

    Args:
        problem: the model, data and loss.
        top_k: eigenpairs by Lanczos with full reorthogonalization (0: none).
        which: ``"largest"`` eigenvalues, or ``"smallest"`` (the most negative).
        tol: Lanczos stops when every residual ``||Hv - lambda v|| <= tol * |lambda|``.
        trace: estimate the trace with this many products (``True``: 99; ``False``: no trace), with a 95 %
            interval.
        trace_method: ``"hutch++"`` (Meyer et al. 2021) or ``"hutchinson"``.
        density: the spectral density by stochastic Lanczos quadrature.
        density_probes: random probes of the density (each a Lanczos run).
        density_steps: Lanczos steps per probe.
        curvature: ``"hessian"`` or ``"ggn"`` (generalized Gauss-Newton).
        batches: also the top eigenvalue on each of this many batches of ``batch_size`` examples (consecutive
            blocks of the split, which must be a pair of tensors): the per-minibatch histogram of Park & Kim's
            how-do-vits-work (0: none). A batch's loss is a noisy sample of the whole split's; its spread says how
            much one batch's sharpness can be trusted.
        batch_size: the examples per batch of ``batches``.
        split: the split the loss averages over (default the problem's first).
        seed: the seed of Lanczos's start vector and of the trace and density probes.
        out: also write a ``kind="hessian"`` file (eigenvectors as direction groups ``eigenvector_i``, usable as
            surface axes) after each finished stage (eigenpairs, trace, density). While the job runs the file is
            locked against a second writer.
        resume: finish a killed job's file without recomputing its finished stages.
        overwrite: replace an earlier Hessian result at ``out``.
        progress: a progress bar of the products (its total: every stage's cap; Lanczos usually stops earlier).
        log: called with one-line messages (resuming); ``None``: silent.
        attrs: extra attributes stored with the result.

    Returns:
        The :class:`~landscape.Hessian` (read back from ``out`` on rank 0 when written).

    Raises:
        ValueError: an unknown ``which``, ``trace_method`` or ``curvature``, counts beyond
            :mod:`landscape.limits` or the memory free, ``tol <= 0``, or an output that exists (without
            ``resume``/``overwrite``), may not be replaced, or was made with other settings.
    """
    trace_matvecs = DEFAULT_TRACE_MATVECS if trace is True else check_count("trace", int(trace), MAX_MATVECS)
    if which not in WHICH or trace_method not in TRACE_METHODS:
        raise ValueError(f"which must be one of {WHICH} and trace_method one of {TRACE_METHODS}")
    if density:
        check_count("density_probes", density_probes, MAX_MATVECS, least=1)
        check_count("density_steps", density_steps, MAX_MATVECS, least=2)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    group = join_group(problem.device.type)
    blocks = _batches_of(problem, split, batches, batch_size) if batches else []
    size = sum(p.numel() for p in problem.params())
    check_eigenpairs(top_k, size, problem.device)
    check_matvecs("trace", trace_matvecs, 2 * trace_matvecs, size, problem.device)
    if density:
        check_matvecs("density_probes x density_steps", density_probes * density_steps, 3, size, problem.device)
    wanted = {
        **problem.file_attrs(),
        "curvature": curvature,
        "which": which,
        "tol": tol,
        "seed": seed,
        "top_k": top_k,
        "trace_matvecs": trace_matvecs,
        "trace_method": trace_method,
        "density_probes": density_probes if density else 0,
        "density_steps": density_steps if density else 0,
        **({"batches": batches, "batch_size": batch_size} if batches else {}),  # files without them stay resumable
        "params": problem.params_attr(),
        "split": split or next(iter(problem.splits)),
        **(attrs or {}),
    }
    result = Hessian()

    output = Output(out, resume, overwrite, progress, log)

    def start() -> list[str]:
        """Rank 0: check the output, and with ``resume`` read the stages a killed job finished (their names)."""
        nonlocal result
        if out is None or not open_existing(out, "hessian", output):
            return []
        stored = read_hessian(out)
        check_resumable(out, "hessian", stored.attrs, wanted)
        result = stored
        return list(stored.attrs.get("stages_done") or [])

    with exclusive(out) if out is not None and group.is_main else nullcontext():
        done = group.agree(start)
        stages = [
            name
            for name, asked in (("eigen", top_k), ("trace", trace_matvecs), ("density", density), ("batches", batches))
            if asked
        ]
        if done:
            output.say(group, f"resuming {out}: {', '.join(done)} already computed")
        with (
            problem.sharded(group),
            CurvatureOperator(problem, split, kind=curvature) as op,
            tqdm(
                desc=curvature,
                unit=" products",
                total=_planned(
                    top_k, op.size, trace_matvecs, density_probes * density_steps if density else 0, batches, done
                ),
                disable=not (progress and group.is_main),
            ) as bar,
        ):
            mv = _counting(op.matvec, bar)
            device = op.device
            result.attrs = {
                "kind": "hessian",
                **base_attrs(),
                **wanted,
                "split": op.split,
                "num_params": op.size,
                "stages_done": list(done),
                "complete": False,
            }
            for stage in stages:
                if stage in done:
                    continue
                if stage == "eigen":
                    eig = lanczos(mv, op.size, top_k, which=which, tol=tol, seed=seed, device=device)
                    result.eigenvalues, result.residuals = eig.eigenvalues, eig.residuals
                    result.eigen_matvecs, result.eigen_converged = eig.matvecs, eig.converged
                    result.eigenvectors = [
                        op.to_direction(eig.eigenvectors[:, i]) for i in range(eig.eigenvectors.shape[1])
                    ]
                elif stage == "trace":
                    tr = estimate_trace(mv, op.size, trace_matvecs, method=trace_method, seed=seed, device=device)
                    result.trace, result.trace_stderr = tr.estimate, tr.stderr
                    result.trace_ci95, result.trace_matvecs = np.array(tr.ci95), tr.matvecs
                elif stage == "batches":
                    values, products = _batch_eigenvalues(op, blocks, tol, seed, bar)
                    result.batch_eigenvalues, result.batch_matvecs = values, products
                else:
                    d = spectral_density(
                        mv, op.size, num_probes=density_probes, steps=density_steps, seed=seed, device=device
                    )
                    result.density_grid, result.density = d.grid, d.density
                    result.slq_nodes, result.slq_weights = d.nodes, d.weights
                    result.density_sigma, result.density_matvecs = d.sigma, d.matvecs
                result.attrs["stages_done"] = [*result.attrs["stages_done"], stage]
                result.attrs["complete"] = len(result.attrs["stages_done"]) == len(stages)
                if out is not None and group.is_main:  # each finished stage is kept: a kill loses only the current one
                    write_hessian(out, result)
            result.attrs["complete"] = True
            if out is not None and group.is_main and not stages:
                write_hessian(out, result)
    if out is not None and group.is_main:
        return read_hessian(out)
    return result


def _planned(top_k: int, n: int, trace: int, density: int, batches: int, done: list[str]) -> int:
    """The products the progress bar counts to (Lanczos: its iteration cap, usually more than it needs)."""
    lanczos_cap = min(n, max(4 * top_k + 20, 40)) if top_k else 0
    per_batch = min(n, 40)
    stages = (("eigen", lanczos_cap), ("trace", trace), ("density", density), ("batches", batches * per_batch))
    return sum(c for stage, c in stages if stage not in done)


def _batches_of(problem: Problem, split: str | None, count: int, size: int) -> list[Problem]:
    """The first ``count`` full blocks of ``size`` examples of the split, checked before any work."""
    check_count("batches", count, MAX_MATVECS, least=1)
    name = split or next(iter(problem.splits))
    full = [b for b in problem.blocks(name, size) if b.splits[name].total == size]
    if count > len(full):
        raise ValueError(
            f"batches={count} of batch_size={size}: the split {name!r} holds {len(full)} full batches of that size"
        )
    return full[:count]


def _batch_eigenvalues(
    op: CurvatureOperator, blocks: list[Problem], tol: float, seed: int, bar: tqdm
) -> tuple[np.ndarray, int]:
    """The top eigenvalue of each block's curvature, and the products it took."""
    values, products = [], 0
    for block in blocks:
        with op.on(block):
            eig = lanczos(_counting(op.matvec, bar), op.size, 1, tol=tol, seed=seed, device=op.device)
        values.append(float(eig.eigenvalues[0]))
        products += eig.matvecs
    return np.array(values), products


def hessian_directions(problem: Problem, count: int, source: Any = None, *, seed: int = 0) -> list[Direction]:
    """The top ``count`` Hessian eigenvectors as directions: from ``source`` (a :class:`Hessian` or its file)
    or computed on the problem's ``train`` split (its first if none is called so)."""
    if source is None:
        split = "train" if "train" in problem.splits else None
        with CurvatureOperator(problem, split) as op:
            eig = lanczos(op.matvec, op.size, count, seed=seed, device=op.device)
            return [op.to_direction(eig.eigenvectors[:, i]) for i in range(count)]
    vectors = (
        source.eigenvectors
        if isinstance(source, Hessian)
        else [read_direction_group(source, f"eigenvector_{i}") for i in range(count)]
    )
    if len(vectors) < count:
        raise ValueError(f"the Hessian result holds {len(vectors)} eigenvectors; the surface needs {count}")
    return list(vectors[:count])


__all__ = ["CurvatureOperator", "hessian"]
