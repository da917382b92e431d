"""Trainers: models, flat-minima optimizers (ERM, SAM, ASAM, AMP, DAMP, DAAP, RMP) and the training loop.

Names are imported on first use (PEP 562): reading a checkpoint does not load the optimizers or the loop.
"""

import importlib

_EXPORTS = {
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "classification_metrics": "metrics",
    "evaluate": "metrics",
    "expected_calibration_error": "metrics",
    "predict": "metrics",
    "MODELS": "models",
    "create_model": "models",
    "METHODS": "optim",
    "build_method": "optim",
    "TrainConfig": "train",
}  # the function train is landscape.trainers.train.train: the submodule of that name would shadow it here


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = sorted(_EXPORTS)
