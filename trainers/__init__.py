"""Trainers: models, flat-minima optimizers (ERM, SAM, ASAM, AMP, DAMP, DAAP, RMP) and the training loop."""

from .checkpoint import load_checkpoint, read_checkpoint
from .metrics import (
    classification_metrics,
    evaluate,
    expected_calibration_error,
    predict,
)
from .models import MODELS, create_model
from .optim import METHODS, build_method
from .train import TrainConfig, train

__all__ = [
    "METHODS",
    "MODELS",
    "TrainConfig",
    "build_method",
    "classification_metrics",
    "create_model",
    "evaluate",
    "expected_calibration_error",
    "load_checkpoint",
    "predict",
    "read_checkpoint",
    "train",
]
