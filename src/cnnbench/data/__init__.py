"""Data sets: where they come from (sources), how files are read (readers), how batches are made (loader)."""

from .loader import Augment, DataOptions, Dataset, load_dataset, prepare, train_batches
from .sources import dataset_names, load_raw, locate, resolve_data_root

__all__ = [
    "Augment",
    "DataOptions",
    "Dataset",
    "dataset_names",
    "load_dataset",
    "load_raw",
    "locate",
    "prepare",
    "resolve_data_root",
    "train_batches",
]
