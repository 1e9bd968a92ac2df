"""``cnnbench evaluate RUN_DIR``: a finished (or interrupted) run's checkpoint, re-evaluated in full detail."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..data.loader import load_dataset
from ..fileio import write_csv, write_json
from ..layout import CONFUSION_CSV, EVALUATION_JSON, MISCLASSIFIED_CSV, PER_CLASS_CSV
from .evaluate import confusion_matrix, evaluate, per_class_metrics
from .run_folder import open_run
from .runtime import resolve_device


def load_run_model(run_dir: Path, device: torch.device, full_test_set: bool = False, warn=None):
    """The run's config, data (normalised as in training) and model with its latest checkpoint's weights
    (``full_test_set``: ignore the run's --limit-test). ``warn`` receives what went wrong on the way (a corrupt
    last.pt, so prev.pt was used); by default it is printed to stderr."""
    run = open_run(run_dir, device, warn)
    options = run.config.data_options()
    if full_test_set:
        options = dataclasses.replace(options, limit_test=None)
    data = load_dataset(run.config.dataset, run.config.data_dir, options)
    data = data.normalized_by(run.preprocessing.mean, run.preprocessing.std)
    return run, data


def evaluate_run(run_dir: str | Path, device: str = "auto", draw: Callable | None = None) -> dict:
    """Write evaluation.json, confusion_matrix.csv, per_class.csv and misclassified.csv; then, if given,
    ``draw(run_dir, test_images, label)`` draws the figures (the report floor's job, handed in by the caller)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    run, data = load_run_model(run_dir, dev)
    cfg, precision = run.config, run.precision
    result = evaluate(
        run.model, data.test_x.to(dev), data.test_y.to(dev), data.to(dev), dev, precision, cfg.eval_batch_size
    )
    logits = result.pop("logits")
    summary = {
        "epoch": run.epoch,
        "weights": run.weights,
        **result,
        **write_evaluation_files(run_dir, logits, data.test_y, data.classes),
    }
    write_json(run_dir / EVALUATION_JSON, summary)
    if draw is not None:
        draw(run_dir, data.test_x.cpu().numpy(), f"{cfg.model} on {data.name}")
    return summary


def write_evaluation_files(run_dir: Path, logits: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> dict:
    """Confusion matrix, per-class metrics and the misclassified test images (most confident mistakes first, the
    most instructive ones to look at) from a run's test logits."""
    targets_np = targets.cpu().numpy()
    preds = logits.argmax(1).numpy()
    probs = torch.softmax(logits.float(), 1).numpy()
    cm = confusion_matrix(targets_np, preds, len(classes))
    per_class = per_class_metrics(cm, classes)
    write_csv(
        run_dir / CONFUSION_CSV,
        [{"true": c, **{p: int(v) for p, v in zip(classes, row)}} for c, row in zip(classes, cm)],
        ["true"] + classes,
    )
    write_csv(run_dir / PER_CLASS_CSV, per_class, ["class", "precision", "recall", "f1", "support"])
    wrong = np.flatnonzero(preds != targets_np)
    wrong = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")]
    rows = [
        {
            "index": int(i),
            "true": classes[targets_np[i]],
            "pred": classes[preds[i]],
            "confidence": float(probs[i, preds[i]]),
        }
        for i in wrong
    ]
    write_csv(run_dir / MISCLASSIFIED_CSV, rows, ["index", "true", "pred", "confidence"])
    return {
        "confusion_matrix": cm.tolist(),
        "classes": classes,
        "per_class": per_class,
        "macro_f1": float(np.mean([r["f1"] for r in per_class])),
        "misclassified": len(wrong),
        "test_images": len(targets_np),
    }
