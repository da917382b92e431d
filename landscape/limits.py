"""The largest sizes an analysis accepts, checked before any work or allocation (one line each, naming the
argument): a documented ceiling, and the memory the request would take on its device.

The ceilings are far above what a study uses and far below what hangs a machine: `hessian --top-k 24058` asked
for every eigenpair of a small model (hours of products, gigabytes of Krylov vectors); ``--trace 1000000000`` and
``--radii 0:1:100000000`` ended with the kernel's OOM killer.
"""

from __future__ import annotations

import warnings

import torch

from landscape._system.device import check_memory

#: Eigenpairs at most (Lanczos keeps about 4k + 20 Krylov vectors of the parameters' size).
MAX_TOP_K = 1_000
#: Beyond this many eigenpairs a warning says what they cost.
FEW_TOP_K = 100
#: Hessian-vector products of a trace, or of a density (probes x steps), at most.
MAX_MATVECS = 100_000
#: Random or adaptive draws per radius of a sweep, at most.
MAX_TRIALS = 10_000
#: PGD steps per radius, at most.
MAX_STEPS = 10_000
#: Coordinates along one grid axis, or radii of a sweep, at most.
MAX_AXIS_POINTS = 100_000
#: A perturbation's norm at most: its square must stay finite in float32 (a norm of 1e30 overflowed to inf, the
#: projection onto the ball then zeroed the perturbation, and r = 1e30 reported the unperturbed loss).
MAX_RADIUS = 1e12
FLOAT64 = 8


def check_count(name: str, value: object, ceiling: int | None, least: int = 0) -> int:
    """``value`` as an int within ``least..ceiling``.

    Args:
        name: the keyword the value was given as (named in the error).
        value: the count; a bool, a float or anything else that is not an int is refused.
        ceiling: the largest allowed (``None``: no ceiling).
        least: the smallest allowed.

    Returns:
        ``value`` as an int.

    Raises:
        ValueError: naming ``name``, the value and the allowed range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, got {value}")
    if ceiling is not None and value > ceiling:
        raise ValueError(f"{name} {value:,} is more than this toolkit runs ({ceiling:,}; see landscape.limits)")
    return value


def check_eigenpairs(top_k: int, size: int, device: torch.device | str) -> None:
    """Refuse more eigenpairs than the parameter count, :data:`MAX_TOP_K` or the memory allow.

    A warning past :data:`FEW_TOP_K` (each eigenpair costs several Hessian-vector products).

    Args:
        top_k: the eigenpairs asked for.
        size: the number of analysed parameters.
        device: where the Krylov vectors would live (its free memory is checked).

    Raises:
        ValueError: too many eigenpairs, or vectors that do not fit in memory.
    """
    check_count("top_k", top_k, None)
    if top_k > size:
        raise ValueError(f"top_k {top_k} is more eigenpairs than the {size} analysed parameters have")
    check_count("top_k", top_k, MAX_TOP_K)
    check_memory(f"top_k={top_k} (Lanczos vectors)", min(size, 4 * top_k + 20) * size * FLOAT64, device)
    if top_k > FEW_TOP_K:
        warnings.warn(f"top_k={top_k}: Lanczos will take about {4 * top_k + 20} Hessian-vector products", stacklevel=3)


def check_matvecs(name: str, count: int, vectors: int, size: int, device: torch.device | str) -> None:
    """Refuse ``count`` products beyond :data:`MAX_MATVECS`, or ``vectors`` of them kept at once beyond the memory free.

    Args:
        name: the keyword the count was given as (named in the error).
        count: the products asked for.
        vectors: how many vectors of ``size`` numbers are kept at once.
        size: the number of analysed parameters.
        device: where the vectors would live.

    Raises:
        ValueError: too many products, or vectors that do not fit in memory.
    """
    check_count(name, count, MAX_MATVECS)
    check_memory(f"{name}={count:,}", vectors * size * FLOAT64, device)


def check_radii(name: str, radii) -> None:
    """Refuse perturbation radii beyond :data:`MAX_RADIUS` (or not finite).

    Args:
        name: the keyword the radii were given as (named in the error).
        radii: the radii (a number or an array).

    Raises:
        ValueError: naming ``name`` and the offending radius.
    """
    largest = float(max(radii, default=0.0))
    if largest > MAX_RADIUS:
        raise ValueError(f"{name}: a radius of {largest:g} is more than this toolkit perturbs by ({MAX_RADIUS:g})")


__all__ = [
    "FEW_TOP_K",
    "MAX_AXIS_POINTS",
    "MAX_MATVECS",
    "MAX_RADIUS",
    "MAX_STEPS",
    "MAX_TOP_K",
    "MAX_TRIALS",
    "check_count",
    "check_eigenpairs",
    "check_matvecs",
    "check_radii",
]
