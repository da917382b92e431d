"""Datasets: the embedded digits default, standard on-disk formats, and a fast tensor loader."""

from . import digits, formats  # noqa: F401  (register the datasets)
from .dataset import DATASETS, Augment, DatasetInfo, ImageDataset, dataset_info, load_dataset
from .loader import TensorLoader

__all__ = ["DATASETS", "Augment", "DatasetInfo", "ImageDataset", "TensorLoader", "dataset_info", "load_dataset"]
