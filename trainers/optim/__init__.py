"""Flat-minima methods as optimizers wrapping a base optimizer, and their registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch.nn as nn
from torch.optim import Optimizer

from ..rules import is_weight
from .ascent import AMP, ASAM, SAM
from .base import ERM, BatchNormState, BNUpdate, PerturbedOptimizer
from .closure import BatchClosure, LossClosure
from .noise import DAAP, DAMP, RMP, NoiseOptimizer


@dataclass(frozen=True)
class MethodInfo:
    """A method's registration.

    Attributes:
        name: its name (``build_method(name, ...)``, ``--method``).
        cls: its optimizer class.
        hparams: its settable hyperparameters and their defaults.
        passes: forward+backward passes per step (for the docs and the benchmark).
        description: one line for ``--help``.
    """

    name: str
    cls: type[PerturbedOptimizer]
    hparams: dict = field(default_factory=dict)  # settable hyperparameters and their defaults
    passes: str = "1"  # forward+backward passes per step, for the docs and the benchmark
    description: str = ""


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("erm", ERM, {}, "1", "the base optimizer alone"),
        MethodInfo("sam", SAM, {"rho": 0.05}, "2", "sharpness-aware minimization"),
        MethodInfo(
            "asam", ASAM, {"rho": 0.5, "eta": 0.01, "adaptive_params": "weights"}, "2", "adaptive SAM (official rule)"
        ),
        MethodInfo(
            "amp",
            AMP,
            {"epsilon": 0.5, "inner_lr": 1.0, "inner_iter": 1, "norm": "per_tensor"},
            "1 + inner_iter",
            "adversarial model perturbation",
        ),
        MethodInfo(
            "damp",
            DAMP,
            {"sigma": 0.2, "num_splits": 8, "perturb": "weights"},
            "1",
            "multiplicative Gaussian weight noise",
        ),
        MethodInfo(
            "daap", DAAP, {"sigma": 0.01, "num_splits": 8, "perturb": "weights"}, "1", "additive Gaussian weight noise"
        ),
        MethodInfo("rmp", RMP, {"epsilon": 0.1}, "1", "uniform random model perturbation (AMP's baseline)"),
    )
}


def method_info(name: str) -> MethodInfo:
    """The registration of method ``name``.

    Raises:
        ValueError: an unknown method (the known ones are listed).
    """
    info = METHODS.get(name)
    if info is None:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return info


def build_method(
    name: str,
    model: nn.Module,
    base_optimizer: Optimizer,
    *,
    seed: int = 0,
    bn_update: str = "once",
    clip_grad_norm: float | None = None,
    **hparams,
) -> PerturbedOptimizer:
    """``METHODS[name]`` around ``base_optimizer`` for ``model``, as the training loop builds it.

    Args:
        name: a method of :data:`METHODS` (``erm``, ``sam``, ``asam``, ``amp``, ``damp``, ``daap``, ``rmp``).
        model: the model trained (its parameter names select weights; its BatchNorm layers are handled per
            ``bn_update``).
        base_optimizer: the optimizer that takes the descent step (e.g. SGD over ``model.parameters()``).
        seed: the noise seed of the noise methods (DAMP, DAAP, RMP).
        bn_update: ``"once"`` (BatchNorm statistics move once per step, as in plain training) or ``"every_pass"``.
        clip_grad_norm: clip every gradient the method uses to this global L2 norm (``None``: no clipping).
        hparams: the method's hyperparameters (``rho``, ``sigma``, ...); unset ones take the method's defaults.

    Returns:
        The method, an ``torch.optim.Optimizer``.

    Raises:
        ValueError: an unknown method, or hyperparameters the method does not take.
    """
    info = method_info(name)
    wrong = sorted(set(hparams) - set(info.hparams))
    if wrong:
        allowed = ", ".join(info.hparams) or "none"
        raise ValueError(f"method {name!r} takes no {', '.join(wrong)} (its hyperparameters: {allowed})")
    kwargs = {**info.hparams, **{k: v for k, v in hparams.items() if v is not None}}
    if issubclass(info.cls, NoiseOptimizer):
        kwargs["seed"] = seed
    method = info.cls(model, base_optimizer, bn_update=cast(BNUpdate, bn_update), **kwargs)  # checked by the class
    method.clip_gradients(clip_grad_norm)
    return method


__all__ = [
    "AMP",
    "ASAM",
    "DAAP",
    "DAMP",
    "ERM",
    "METHODS",
    "RMP",
    "SAM",
    "BatchClosure",
    "LossClosure",
    "BatchNormState",
    "MethodInfo",
    "NoiseOptimizer",
    "PerturbedOptimizer",
    "build_method",
    "is_weight",
    "method_info",
]
