"""cnnbench: train, evaluate and compare convolutional networks on image classification data."""

from .config import TrainConfig, load_config_file
from .data import DataOptions, load_dataset
from .engine import evaluate, fit
from .models import create_model, list_models, register_model
from .version import __version__

__all__ = [
    "DataOptions",
    "TrainConfig",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load_config_file",
    "load_dataset",
    "register_model",
    "__version__",
]
