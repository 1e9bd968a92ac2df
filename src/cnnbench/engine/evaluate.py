"""Evaluation: loss, top-1/top-5 and the logits, and the per-class statistics derived from predictions."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.loader import Dataset, eval_batches
from .runtime import autocast, eval_mode, synchronize


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    data: Dataset,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 512,
    channels_last: bool = True,
) -> dict:
    """Mean cross-entropy (no label smoothing), top-1 and top-5 accuracy (fractions), float32 logits and the
    wall time it took (``time_s``)."""
    start = time.perf_counter()
    logits = []
    with eval_mode(model):
        for xb, _ in eval_batches(x, y, data, batch_size, channels_last):
            with autocast(device, precision):
                out = model(xb.to(device, non_blocking=True))
            logits.append(out.float())
    logits_t = torch.cat(logits)
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {
        **loss_and_accuracy_from_logits(logits_t, y.to(logits_t.device)),
        "logits": logits_t.cpu(),
        "time_s": elapsed,
    }


def flip_tta_top1(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logits: torch.Tensor,
    data: Dataset,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 512,
    channels_last: bool = True,
) -> float:
    """Top-1 of flip test-time augmentation: the mean of the softmax on each image and on its mirror image
    (``logits``: the plain evaluation's, so only the mirrored pass runs)."""
    mirrored = evaluate(model, x.flip(3), y, data, device, precision, batch_size, channels_last)["logits"]
    probs = logits.float().softmax(1) + mirrored.softmax(1)
    return (probs.argmax(1) == y.cpu()).float().mean().item()


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(targets * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_metrics(cm: np.ndarray, classes: list[str]) -> list[dict]:
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return [
        {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]


def loss_and_accuracy_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    correct = topk == targets[:, None]
    return {
        "loss": F.cross_entropy(logits, targets).item(),
        # argmax, not topk's first column: topk breaks ties (frequent among bf16 logits) differently
        "top1": (logits.argmax(1) == targets).float().mean().item(),
        "top5": correct.any(dim=1).float().mean().item(),
    }
