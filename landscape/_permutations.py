"""Which hidden units of a model can be permuted without changing its function, derived from a ``torch.fx`` trace.

Every tensor flowing through the traced graph gets a *feature space*: the axis of its units (channels of a
convolution, features of a linear layer) and the permutation group that axis belongs to. Layers create spaces
(their outputs) and bind their tensors' axes to the spaces of their inputs and outputs; elementwise operations,
pooling and normalization pass a space on; a residual addition joins the spaces of its operands (one shared
permutation, as in Ainsworth et al. 2022's ResNet spec); attention heads are one space of ``num_heads`` units whose
blocks of ``head_dim`` rows move together. Anything else — an operation not in the tables below, a parameter used
directly, the model's inputs and outputs — *fixes* the spaces it touches (identity permutation), so a tensor reaches
an unknown operation in its original basis and the function is unchanged by construction. What was fixed for which
reason is recorded for the caller to report.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Identity,
)  # fmt: skip
POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
CONVS = {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}
ELEMENTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardtanh, F.hardswish, torch.tanh,
    torch.sigmoid, F.softplus, F.dropout, torch.pow, torch.neg, torch.abs, torch.exp, operator.neg, operator.pow,
    F.tanh, F.sigmoid,
}  # fmt: skip
ELEMENTWISE_METHODS = {"relu", "relu_", "tanh", "sigmoid", "contiguous", "clone", "pow", "neg", "abs", "exp", "float"}
BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, torch.add, torch.sub, torch.mul}
BINARY_METHODS = {"add", "add_", "sub", "mul", "mul_", "div"}
POOL_FUNCTIONS = {
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool2d,
}  # fmt: skip
SHAPE_METHODS = {"size", "dim"}  # read the shape, not the values


@dataclass(frozen=True)
class Axis:
    """One tensor axis a permutation moves: of length ``repeat * units * block``, reshaped to that (repeat, units,
    block) and permuted on the middle: ``block`` for a flattened channel map or a head's rows, ``repeat`` for the
    query, key and value thirds of an attention projection."""

    name: str
    dim: int
    repeat: int = 1
    block: int = 1


@dataclass
class Group:
    """Units that one permutation moves, and every tensor axis bound to them."""

    size: int
    axes: list[Axis] = field(default_factory=list)
    where: str = ""  # the first layer that created it, for messages


@dataclass
class PermutationSpec:
    """The permutation groups of a model (fixed ones left out) and the notes on what could not be permuted."""

    groups: list[Group]
    notes: list[str]


@dataclass(frozen=True)
class Feat:
    """A tensor's units: its space, where its unit axis lies and how many dims it has (``None``: unknown)."""

    space: int
    layout: str  # "first" (dim 1: convolutions), "last" (linear features), "flat_first", "flat_last" (flattened)
    ndim: int | None = None


class Spaces:
    """Union-find over feature spaces; a fixed space is never permuted."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[bool] = []
        self.where: list[str] = []

    def new(self, size: int, where: str, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        self.where.append(where)
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def fix(self, s: int) -> None:
        self.fixed[self.find(s)] = True

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        self.parent[rb] = ra
        if self.size[ra] != self.size[rb] or self.fixed[rb]:
            self.fixed[ra] = True
        return ra


class _Tracer(fx.Tracer):
    """Known layers stay whole; Hugging Face's GPT-2 attention and ``Conv1D`` are recognised by name."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m).__name__ in HF_LEAVES or super().is_leaf_module(m, qualname)


HF_LEAVES = {"GPT2Attention", "Conv1D"}


class _Root(nn.Module):
    """A one-input wrapper, for models whose own ``forward`` signature fx cannot read (decorated, ``**kwargs``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, x):
        return self.m(x)


def trace(model: nn.Module) -> tuple[fx.GraphModule, str]:
    """``(graph module, prefix of its tensor names)`` with the model's layers as leaves.

    Raises:
        ValueError: fx cannot trace the model (data-dependent control flow), with its reason.
    """
    errors = []
    for root, prefix in ((model, ""), (_Root(model), "m.")):
        try:
            return fx.GraphModule(root, _Tracer().trace(root)), prefix
        except Exception as e:  # fx raises many kinds
            errors.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200])
    raise ValueError(f"cannot trace {type(model).__name__} with torch.fx to find its permutable units ({errors[-1]})")


class _Analysis:
    def __init__(self, gm: fx.GraphModule, prefix: str) -> None:
        self.gm, self.prefix = gm, prefix
        self.spaces = Spaces()
        self.feats: dict[fx.Node, Any] = {}  # node -> Feat, or a tuple of Feats for a layer returning a tuple
        self.bound: dict[tuple[str, int], tuple[int, Axis]] = {}  # (tensor, dim) -> (space, axis)
        self.notes: list[str] = []
        first: dict[int, str] = {}  # a tensor shared under several names (tied weights) is bound under its first
        self.canonical = {
            self.strip(k): first.setdefault(id(v), self.strip(k)) for k, v in gm.state_dict(keep_vars=True).items()
        }

    def strip(self, name: str) -> str:
        return name[len(self.prefix) :] if name.startswith(self.prefix) else name

    # --- helpers ---------------------------------------------------------------------------------------------
    def name(self, target: str, tensor: str) -> str:
        name = self.strip(f"{target}.{tensor}")
        return self.canonical.get(name, name)

    def bind(self, space: int, target: str, tensor: str, dim: int, repeat: int = 1, block: int = 1) -> None:
        """``target.tensor``'s axis ``dim`` moves with ``space`` (a tensor bound twice, e.g. tied or reused, joins
        its two spaces)."""
        key = (self.name(target, tensor), dim)
        axis = Axis(key[0], dim, repeat, block)
        if key in self.bound:
            other, old = self.bound[key]
            self.spaces.union(other, space)
            if old != axis:
                self.spaces.fix(space)
            return
        self.bound[key] = (space, axis)

    def fix(self, value: Any, why: str) -> None:
        for feat in self.feats_in(value):
            root = self.spaces.find(feat.space)
            if not self.spaces.fixed[root] and why:
                self.notes.append(f"{self.spaces.where[root]}: left unpermuted ({why})")
            self.spaces.fix(root)

    def feats_in(self, value: Any) -> list[Feat]:
        found: list[Feat] = []

        def visit(n: fx.Node) -> fx.Node:
            found.extend(self.as_list(self.feats.get(n)))
            return n

        fx.node.map_arg(value, visit)
        return found

    @staticmethod
    def as_list(f: Any) -> list[Feat]:
        return [] if f is None else list(f) if isinstance(f, tuple) else [f]

    def fresh(self, size: int, where: str, layout: str = "last", ndim: int | None = None) -> Feat:
        return Feat(self.spaces.new(size, where), layout, ndim)

    def opaque(self, node: fx.Node, why: str) -> None:
        self.fix((node.args, node.kwargs), why)
        self.feats[node] = Feat(self.spaces.new(0, node.name, fixed=True), "last")

    # --- the walk ----------------------------------------------------------------------------------------------
    def run(self) -> PermutationSpec:
        modules = dict(self.gm.named_modules())
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.feats[node] = Feat(self.spaces.new(0, "input", fixed=True), "first")
            elif node.op == "output":
                self.fix(node.args, "")  # the outputs keep their order
            elif node.op == "get_attr":
                self.feats[node] = Feat(self.spaces.new(0, node.target, fixed=True), "last")
            elif node.op == "call_module":
                self.module(node, modules[node.target])
            elif node.op == "call_function":
                self.function(node, node.target)
            else:
                self.method(node)
        return self.spec()

    def input_feat(self, node: fx.Node) -> Feat | None:
        arg = node.args[0] if node.args else None
        f = self.feats.get(arg) if isinstance(arg, fx.Node) else None
        return f if isinstance(f, Feat) else None

    def module(self, node: fx.Node, m: Any) -> None:
        x, t = self.input_feat(node), str(node.target)
        kind = type(m).__name__
        if isinstance(m, nn.Linear) or kind == "Conv1D":
            weight_in = 1 if isinstance(m, nn.Linear) else 0
            n_in, n_out = (m.in_features, m.out_features) if isinstance(m, nn.Linear) else m.weight.shape
            if x is not None:
                self.bind_input(x, t, "weight", weight_in, int(n_in), node)
            out = self.fresh(int(n_out), t, "last", x.ndim if x is not None else None)
            self.bind(out.space, t, "weight", 1 - weight_in)
            if m.bias is not None:
                self.bind(out.space, t, "bias", 0)
            self.feats[node] = out
        elif type(m) in CONVS and m.groups == 1 and isinstance(m.padding, (tuple, int)) and x is not None:
            if x.layout != "first":
                return self.opaque(node, f"{t} reads an axis other than the channels")
            self.bind(x.space, t, "weight", 1)
            out = self.fresh(m.out_channels, t, "first", CONVS[type(m)])
            self.bind(out.space, t, "weight", 0)
            if m.bias is not None:
                self.bind(out.space, t, "bias", 0)
            self.feats[node] = out
        elif isinstance(m, _BatchNorm) and x is not None and (x.layout == "first" or x.ndim == 2):
            for tensor in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m, tensor, None) is not None:
                    self.bind(x.space, t, tensor, 0)
            self.feats[node] = Feat(x.space, "first" if x.layout == "first" else x.layout, x.ndim)
        elif isinstance(m, nn.LayerNorm) and x is not None and x.layout == "last" and len(m.normalized_shape) == 1:
            for tensor in ("weight", "bias"):
                if getattr(m, tensor, None) is not None:
                    self.bind(x.space, t, tensor, 0)
            self.feats[node] = x
        elif (
            isinstance(m, nn.GroupNorm)
            and x is not None
            and x.layout == "first"
            and m.num_groups in (1, m.num_channels)
        ):
            for tensor in ("weight", "bias"):
                if getattr(m, tensor, None) is not None:
                    self.bind(x.space, t, tensor, 0)
            self.feats[node] = x
        elif isinstance(m, nn.Embedding):
            out = self.fresh(m.embedding_dim, t, "last")
            self.bind(out.space, t, "weight", 1)
            self.feats[node] = out
        elif isinstance(m, ELEMENTWISE_MODULES) and x is not None:
            self.feats[node] = x
        elif isinstance(m, POOLS) and x is not None and x.layout == "first":
            self.feats[node] = x
        elif isinstance(m, nn.Flatten) and x is not None and m.start_dim == 1 and m.end_dim == -1:
            self.feats[node] = flattened(x)
        elif isinstance(m, nn.MultiheadAttention):
            self.attention(node, m)
        elif kind == "GPT2Attention":
            self.gpt2_attention(node, m)
        else:
            self.opaque(node, f"{t} ({kind}) is not a layer the analysis knows")

    def bind_input(self, x: Feat, target: str, tensor: str, dim: int, length: int, node: fx.Node) -> None:
        """A linear layer's input axis: whole units, or blocks of a flattened map."""
        if self.spaces.fixed[self.spaces.find(x.space)]:
            return
        n = self.spaces.size[self.spaces.find(x.space)]
        if x.layout == "last" or (x.layout == "first" and x.ndim == 2):
            if length == n:
                return self.bind(x.space, target, tensor, dim)
        elif x.layout.startswith("flat") and n and length % n == 0:
            k = length // n
            return self.bind(x.space, target, tensor, dim, *((1, k) if x.layout == "flat_first" else (k, 1)))
        self.fix(node.args[0], f"{target} reads an axis other than the features")

    def attention(self, node: fx.Node, m: Any) -> None:
        t = str(node.target)
        ins = [a for a in (*node.args[:3], *(node.kwargs.get(k) for k in ("query", "key", "value")))]
        feats = [f for a in ins if isinstance(a, fx.Node) and isinstance(f := self.feats.get(a), Feat)]
        ok = (
            m._qkv_same_embed_dim and m.bias_k is None and not m.add_zero_attn and len(feats) == 3
            and all(f.layout == "last" for f in feats)
        )  # fmt: skip
        if not ok:
            return self.opaque(node, f"{t}: only self-attention with one input projection is permuted")
        space = feats[0].space
        for f in feats[1:]:
            space = self.spaces.union(space, f.space)
        self.bind(space, t, "in_proj_weight", 1)
        heads, d = m.num_heads, m.head_dim
        h = self.spaces.new(heads, f"{t} heads")
        self.bind(h, t, "in_proj_weight", 0, 3, d)
        if m.in_proj_bias is not None:
            self.bind(h, t, "in_proj_bias", 0, 3, d)
        self.bind(h, t, "out_proj.weight", 1, 1, d)
        out = self.fresh(m.embed_dim, f"{t}.out_proj")
        self.bind(out.space, t, "out_proj.weight", 0)
        if m.out_proj.bias is not None:
            self.bind(out.space, t, "out_proj.bias", 0)
        self.fix(node.kwargs.get("attn_mask"), "")
        self.feats[node] = (out, Feat(self.spaces.new(0, t, fixed=True), "last"))

    def gpt2_attention(self, node: fx.Node, m: Any) -> None:
        t, x = str(node.target), self.input_feat(node)
        if x is None or x.layout != "last" or getattr(m, "is_cross_attention", False):
            return self.opaque(node, f"{t}: only GPT-2 self-attention is permuted")
        heads, d = m.num_heads, m.head_dim
        self.bind(x.space, f"{t}.c_attn", "weight", 0)
        h = self.spaces.new(heads, f"{t} heads")
        self.bind(h, f"{t}.c_attn", "weight", 1, 3, d)
        self.bind(h, f"{t}.c_attn", "bias", 0, 3, d)
        self.bind(h, f"{t}.c_proj", "weight", 0, 1, d)
        out = self.fresh(m.embed_dim, f"{t}.c_proj")
        self.bind(out.space, f"{t}.c_proj", "weight", 1)
        self.bind(out.space, f"{t}.c_proj", "bias", 0)
        self.fix(node.kwargs, "")
        self.feats[node] = (out, Feat(self.spaces.new(0, t, fixed=True), "last"))

    def function(self, node: fx.Node, fn: Any) -> None:
        source = node.args[0] if node.args else None
        if fn is operator.getitem and isinstance(source, fx.Node) and isinstance(self.feats.get(source), tuple):
            index = node.args[1]
            self.feats[node] = self.feats[source][index] if isinstance(index, int) else None
            if not isinstance(index, int):
                self.opaque(node, f"an index of {source.name}")
        elif fn in ELEMENTWISE_FUNCTIONS and self.input_feat(node) is not None and not self.feats_in(node.args[1:]):
            self.feats[node] = self.input_feat(node)
        elif fn in BINARY:
            self.binary(node)
        elif fn in POOL_FUNCTIONS and (x := self.input_feat(node)) is not None and x.layout == "first":
            self.feats[node] = x
        elif fn is torch.flatten and (x := self.input_feat(node)) is not None and flatten_args(node, 1):
            self.feats[node] = flattened(x)
        else:
            self.opaque(node, f"{getattr(fn, '__name__', fn)} at {node.name}")

    def method(self, node: fx.Node) -> None:
        name, x = node.target, self.input_feat(node)
        if name in SHAPE_METHODS:
            self.feats[node] = None
        elif name in ELEMENTWISE_METHODS and x is not None and not self.feats_in(node.args[1:]):
            self.feats[node] = x
        elif name in BINARY_METHODS:
            self.binary(node)
        elif name == "flatten" and x is not None and flatten_args(node, 1):
            self.feats[node] = flattened(x)
        elif name in ("view", "reshape") and x is not None and len(node.args) == 3 and node.args[2] == -1:
            self.feats[node] = flattened(x)  # x.view(x.size(0), -1)
        elif name == "mean" and x is not None and x.layout == "first" and x.ndim and self.spatial(node, x.ndim):
            keep = node.kwargs.get("keepdim", False) or (len(node.args) > 2 and node.args[2])
            self.feats[node] = Feat(x.space, "first", x.ndim if keep else x.ndim - len(self.dims(node)))
        else:
            self.opaque(node, f".{name}() at {node.name}")

    @staticmethod
    def dims(node: fx.Node) -> list:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return list(dim) if isinstance(dim, (list, tuple)) else [dim]

    def spatial(self, node: fx.Node, ndim: int) -> bool:
        dims = self.dims(node)
        return all(isinstance(d, int) and 2 <= d % ndim for d in dims)

    def binary(self, node: fx.Node) -> None:
        operands = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        scalars = [a for a in (*node.args, *node.kwargs.values()) if not isinstance(a, fx.Node)]
        feats = [f for a in operands if isinstance(f := self.feats.get(a), Feat)]
        if len(feats) < len(operands) or not feats or not all(isinstance(s, (int, float)) for s in scalars):
            return self.opaque(node, f"{node.name} combines a tensor the analysis does not follow")
        layouts = {f.layout for f in feats}
        ndims = {f.ndim for f in feats}
        if len(layouts) > 1 or len(ndims) > 1 or layouts & {"flat_first", "flat_last"}:
            return self.opaque(node, f"{node.name} adds tensors of different layouts")
        space = feats[0].space
        for f in feats[1:]:
            space = self.spaces.union(space, f.space)
        self.feats[node] = Feat(space, feats[0].layout, feats[0].ndim)

    def spec(self) -> PermutationSpec:
        groups: dict[int, Group] = {}  # root space -> its group, in the order layers bound them
        for space, axis in self.bound.values():
            root = self.spaces.find(space)
            if not self.spaces.fixed[root] and self.spaces.size[root] > 1:
                groups.setdefault(root, Group(self.spaces.size[root], where=self.spaces.where[root])).axes.append(axis)
        self.roots = {root: i for i, root in enumerate(groups)}
        return PermutationSpec(list(groups.values()), list(dict.fromkeys(self.notes)))

    def node_groups(self) -> dict[fx.Node, tuple[int, Feat]]:
        """Nodes whose units belong to a permutable group: ``node -> (group index, feat)`` (activation matching)."""
        found = {}
        for node, f in self.feats.items():
            if (
                isinstance(f, Feat)
                and f.layout in ("first", "last")
                and (root := self.spaces.find(f.space)) in self.roots
            ):
                found[node] = (self.roots[root], f)
        return found


def flattened(x: Feat) -> Feat:
    if x.layout == "first":
        return Feat(x.space, "flat_first", 2)
    return Feat(x.space, "flat_last" if x.ndim != 2 else "last", 2)


def flatten_args(node: fx.Node, start: int) -> bool:
    args = list(node.args[1:]) + [node.kwargs.get("start_dim"), node.kwargs.get("end_dim")]
    given = [a for a in args if a is not None]
    return given[:1] == [start] and all(a == -1 for a in given[1:])


def analyse(model: nn.Module) -> tuple[PermutationSpec, _Analysis]:
    """The permutation groups of ``model`` and the analysis behind them (its graph, for activation matching).

    Raises:
        ValueError: the model cannot be traced.
    """
    gm, prefix = trace(model)
    analysis = _Analysis(gm, prefix)
    return analysis.run(), analysis
