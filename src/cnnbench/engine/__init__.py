"""Training and evaluation."""

from .callbacks import Callback, ConsoleProgress
from .evaluate import confusion_matrix, evaluate, per_class_metrics
from .train import fit

__all__ = ["Callback", "ConsoleProgress", "confusion_matrix", "evaluate", "fit", "per_class_metrics"]
