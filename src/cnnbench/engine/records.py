"""What a run folder records: per-epoch metric rows, the study-format log, test predictions and the summary."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from datetime import datetime, timezone
from typing import get_type_hints

import numpy as np
import torch

from ..fileio import write_csv, write_json, write_npz, write_text
from ..layout import LOG_TXT, METRICS_CSV, PREDICTIONS, SUMMARY
from .run import Run
from .runtime import environment

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_top1",
    "test_top5",
    "lr",
    "epoch_time_s",
    "images_per_s",
    "infer_images_per_s",
    "peak_memory_mb",
]
VAL_COLUMNS = ["val_loss", "val_top1", "val_top5"]


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """summary.json, defined once: `finish` builds one (a missing field fails at write time), and
    engine/run_folder.read_summary checks a file against it. Fields without a default are required in every
    summary, with that kind of value; the rest may be absent in folders written before they existed (None)."""

    model: str
    variant: str
    dataset: str
    data_source: str
    seed: int
    epochs: int
    test_images: int
    params: int
    macs: int
    test_loss: float
    test_top1: float
    test_top5: float
    train_time_s: float
    time_per_epoch_s: float
    images_per_s: float
    device: str
    precision: str
    config: dict
    input_shape: list
    classes: list | None = None
    # what `cnnbench predict` and `export` need to prepare an image as training did
    normalization: dict | None = None
    train_images: int | None = None
    pretrained: str | None = None  # where the starting weights came from; None: trained from scratch
    train_loss: float | None = None
    train_acc: float | None = None
    # flip test-time augmentation at the last epoch, beside test_top1 (never instead); None: not natural images
    test_top1_tta: float | None = None
    val_loss: float | None = None  # the val_* three only with --val-split
    val_top1: float | None = None
    val_top5: float | None = None
    compile_s: float | None = None  # torch.compile before the first epoch (--compile), not in train_time_s
    # median over epochs; max over epochs (rows from before these existed lack them: None)
    infer_images_per_s: float | None = None
    peak_memory_mb: float | None = None
    peak_memory_kind: str | None = None
    flops: int | None = None
    start_time: str | None = None
    started_at: str | None = None  # start_time in UTC, comparable anywhere
    end_time: str | None = None
    environment: dict | None = None
    warnings: list | None = None

    def to_dict(self) -> dict:
        """The JSON object, leaving out the val_* fields of a run without a validation split."""
        d = asdict(self)
        return {k: v for k, v in d.items() if not (k in VAL_COLUMNS and v is None)}


# The fields every summary.json holds and the kind of value each must be (RunSummary's required fields).
SUMMARY_FIELDS = {f.name: get_type_hints(RunSummary)[f.name] for f in fields(RunSummary) if f.default is MISSING}


# The metrics.csv columns every epoch row holds as a finite number.
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_top1", "test_top5")


def epoch_row(
    epoch: int, stats: dict, test: dict, test_images: int, peak_memory_mb: float | None, val: dict | None = None
) -> dict:
    """One metrics.csv row from the epoch's training tally and its evaluations."""
    row = {
        "epoch": epoch,
        "train_loss": stats["train_loss"],
        "train_acc": stats["train_acc"],
        "test_loss": test["loss"],
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "lr": stats["lr"],
        "epoch_time_s": stats["time_s"],
        "images_per_s": stats["images"] / stats["time_s"],
        # evaluation speed: inference mode, eval batch size, batch assembly and normalisation included
        "infer_images_per_s": test_images / max(test["time_s"], 1e-9),
        "peak_memory_mb": peak_memory_mb,
    }
    if val is not None:
        row.update(val_loss=val["loss"], val_top1=val["top1"], val_top5=val["top5"])
    return row


def write_epoch_files(run: Run) -> None:
    """metrics.csv and log.txt as they stand after the run's latest epoch."""
    columns = METRIC_COLUMNS + (VAL_COLUMNS if run.data.val_x is not None else [])
    write_csv(run.out / METRICS_CSV, run.state.rows, columns)
    write_text(run.out / LOG_TXT, log_text(run.state.rows, run.state.start_time, None))


def log_text(rows: list[dict], start_time: str, end_time: str | None) -> str:
    """The study's log format (its appendix), so logs can be compared line by line."""
    lines = [f"start time: {start_time}"]
    for r in rows:
        lines += [
            f"----- epoch {r['epoch']} -----",
            f"Finish Training {r['epoch']} epoch, Loss: {r['train_loss']:.6f}, Acc.: {r['train_acc']:.6f}",
            f"Test Loss: {r['test_loss']:.6f}, Top1_Acc: {r['test_top1']:.6f} , Top5_Acc: {r['test_top5']:.6f}",
        ]
    if end_time:
        lines.append(f"End time: {end_time}")
    return "\n".join(lines) + "\n"


def save_predictions(run: Run, logits: torch.Tensor) -> None:
    write_npz(
        run.out / PREDICTIONS,
        logits=logits.numpy().astype(np.float32),
        targets=run.data.test_y.cpu().numpy(),
        preds=logits.argmax(1).numpy(),
        classes=np.array(run.data.classes),
    )


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def utc_of_local_time(text: str) -> str | None:
    """A naive local time as this machine's clock wrote it (``str(datetime.now())``), in UTC ISO 8601."""
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc).replace(microsecond=0).isoformat()
    except (TypeError, ValueError):
        return None


def finish(run: Run) -> dict:
    """Write summary.json and the log's end time; return the summary."""
    last = run.state.rows[-1]
    end_time = str(datetime.now())
    train_time = sum(r["epoch_time_s"] for r in run.state.rows)
    images = sum(r["images_per_s"] * r["epoch_time_s"] for r in run.state.rows)
    summary = RunSummary(
        model=run.config.model,
        variant=run.variant,
        dataset=run.data.name,
        data_source=run.data.source,
        classes=run.data.classes,
        input_shape=list(run.data.train_x.shape[1:]),
        normalization={"mean": run.data.mean.tolist(), "std": run.data.std.tolist()},
        train_images=len(run.data.train_y),
        test_images=len(run.data.test_y),
        epochs=run.config.epochs,
        pretrained=run.pretrained,
        seed=run.config.seed,
        train_loss=last["train_loss"],
        train_acc=last["train_acc"],
        test_loss=last["test_loss"],
        test_top1=last["test_top1"],
        test_top5=last["test_top5"],
        test_top1_tta=run.notes.test_top1_tta,
        **{k: last[k] for k in VAL_COLUMNS if k in last},
        train_time_s=train_time,
        compile_s=run.notes.compile_s,
        time_per_epoch_s=train_time / len(run.state.rows),
        images_per_s=images / max(train_time, 1e-9),
        infer_images_per_s=_median([r.get("infer_images_per_s") for r in run.state.rows]),
        peak_memory_mb=max(
            (r["peak_memory_mb"] for r in run.state.rows if r.get("peak_memory_mb") is not None), default=None
        ),
        peak_memory_kind=run.memory.kind,
        params=run.params,
        macs=run.flops // 2,
        flops=run.flops,
        device=run.device.type,
        precision=run.precision,
        start_time=run.state.start_time,
        started_at=utc_of_local_time(run.state.start_time),
        end_time=end_time,
        environment={**environment(run.device, run.precision), "world_size": run.dist.world_size},
        warnings=run.notes.warnings,
        config=run.config.to_dict(),
    ).to_dict()
    write_text(run.out / LOG_TXT, log_text(run.state.rows, run.state.start_time, end_time))
    write_json(run.out / SUMMARY, summary)
    return summary
