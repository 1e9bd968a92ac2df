"""The model zoo. Importing this package registers every model."""

from . import resnet, vgg  # noqa: F401  (registration side effect)
from .registry import VARIANTS, create_model, list_models, min_input_size, register_model, resolve_variant

__all__ = ["VARIANTS", "create_model", "list_models", "min_input_size", "register_model", "resolve_variant"]
