"""cnnbench: train, evaluate and compare convolutional networks on image classification data."""

__version__ = "0.1.0"

from .config import TrainConfig, load_config_file  # noqa: E402
from .data import DataOptions, load_dataset  # noqa: E402
from .engine import evaluate, fit  # noqa: E402
from .models import create_model, list_models, register_model  # noqa: E402

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
