"""``cnnbench evaluate RUN_DIR``: a finished (or interrupted) run's checkpoint, re-evaluated in full detail."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..config import config_from_dict
from ..data.loader import load_dataset
from ..errors import ConfigError
from ..fileio import read_json, write_csv, write_json
from ..models import create_model
from .averaging import evaluated_weights
from .checkpoint import load_latest
from .evaluate import confusion_matrix, evaluate, per_class_metrics
from .runtime import resolve_device
from .train import data_options


def load_run_model(run_dir: Path, device: torch.device, full_test_set: bool = False, warn=None):
    """The run's config, data and model with its latest checkpoint's weights (``full_test_set``: ignore the
    run's --limit-test). ``warn`` receives what went wrong on the way (a corrupt last.pt, so prev.pt was used);
    by default it is printed to stderr."""
    if not (run_dir / "config.json").exists():
        raise ConfigError(
            f"{run_dir} is not a cnnbench run folder (it has no config.json). Give the --out folder of "
            f"`cnnbench train`."
        )
    cfg = config_from_dict(read_json(run_dir / "config.json"), where=f"{run_dir / 'config.json'}")
    state = latest_state(run_dir, warn)
    options = data_options(cfg)
    data = load_dataset(
        cfg.dataset, cfg.data_dir, dataclasses.replace(options, limit_test=None) if full_test_set else options
    )
    data = _as_normalized_in_training(run_dir, cfg, data)
    model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans, variant=cfg.variant)
    model.load_state_dict(evaluated_weights(state))
    model = model.to(device, memory_format=torch.channels_last)
    return cfg, data, model, state["epoch"]


def _as_normalized_in_training(run_dir: Path, cfg, data):
    """A fine-tuned run normalised its images with its pretrained weights' statistics, not the data set's."""
    if not cfg.pretrained:
        return data
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    if "normalization" in summary:
        return data.normalized_by(summary["normalization"]["mean"], summary["normalization"]["std"])
    from .pretrained import load_pretrained, normalization_for

    return data.normalized_by(*normalization_for(load_pretrained(cfg.pretrained, cfg.model), data.in_chans))


def latest_state(run_dir: Path, warn=None) -> dict:
    """The run's latest readable checkpoint (last.pt, else prev.pt); what went wrong on the way goes to ``warn``
    (by default printed to stderr), and a run without any checkpoint is a ConfigError."""
    state, problems = load_latest(run_dir / "checkpoints")
    for problem in problems:
        (warn or _print_warning)(problem)
    if state is None:
        raise ConfigError(
            f"{run_dir} has no checkpoint yet: train it first (or resume it with `cnnbench train --out "
            f"{run_dir} --resume`). Published studies leave the weights out: their runs need training again."
        )
    return state


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def evaluate_run(run_dir: str | Path, device: str = "auto", draw: Callable | None = None) -> dict:
    """Write evaluation.json, confusion_matrix.csv, per_class.csv and misclassified.csv; then, if given,
    ``draw(run_dir, test_images, label)`` draws the figures (the report floor's job, handed in by the caller)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg, data, model, epoch = load_run_model(run_dir, dev)
    precision = cfg.precision if dev.type == cfg.device else "fp32"
    result = evaluate(
        model, data.test_x.to(dev), data.test_y.to(dev), data.to(dev), dev, precision, cfg.eval_batch_size
    )
    logits = result.pop("logits")
    summary = {"epoch": epoch, **result, **write_evaluation_files(run_dir, logits, data.test_y, data.classes)}
    write_json(run_dir / "evaluation.json", summary)
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
        run_dir / "confusion_matrix.csv",
        [{"true": c, **{p: int(v) for p, v in zip(classes, row)}} for c, row in zip(classes, cm)],
        ["true"] + classes,
    )
    write_csv(run_dir / "per_class.csv", per_class, ["class", "precision", "recall", "f1", "support"])
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
    write_csv(run_dir / "misclassified.csv", rows, ["index", "true", "pred", "confidence"])
    return {
        "confusion_matrix": cm.tolist(),
        "classes": classes,
        "per_class": per_class,
        "macro_f1": float(np.mean([r["f1"] for r in per_class])),
        "misclassified": len(wrong),
        "test_images": len(targets_np),
    }
