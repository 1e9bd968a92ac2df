"""The one way to open a trained run folder: its config, its preprocessing, its weights and the precision it is
evaluated in. evaluate, robustness, insight, predict, export and ``--pretrained RUN`` all read runs through here
(as pycls's trainer and tester share one checkpoint loader), so a run answers the same way to each of them."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn

from ..config import TrainConfig, config_from_dict
from ..errors import ConfigError, TrainingError
from ..fileio import read_csv, read_json, write_json
from ..layout import CHECKPOINTS_DIR, CONFIG_JSON, INIT_WEIGHTS, METRICS_CSV, PREPROCESSING_JSON, SUMMARY
from ..models import create_model
from .averaging import evaluated_weights
from .checkpoint import load_latest
from .records import METRIC_FIELDS, SUMMARY_FIELDS, utc_of_local_time

# The statistics torchvision's ImageNet weights were trained with (its ImageClassification preset).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = "imagenet"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input, exactly as in training: decoded to grey or RGB, resized to
    ``resize`` (bilinear, antialiased) if set, zero-padded to ``pad_to`` if smaller, then (x / 255 - mean) / std."""

    classes: list[str]
    input_shape: tuple[int, int, int]  # C x H x W the model takes
    mean: list[float]
    std: list[float]
    resize: int | None
    pad_to: int | None
    image_size: tuple[int, int] | None = None  # H x W of the training images before padding (None: older runs)

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "input_shape": list(self.input_shape),
            "image_size": list(self.image_size) if self.image_size else None,
            "input": "float32 N x C x H x W, pixels in [0, 255] scaled to [0, 1], then minus mean and divided by std, "
            "per channel",
        }

    @classmethod
    def from_dict(cls, d: dict, where: Path) -> Preprocessing:
        try:
            return cls(
                [str(c) for c in d["classes"]],
                tuple(int(v) for v in d["input_shape"]),
                [float(v) for v in d["mean"]],
                [float(v) for v in d["std"]],
                d["resize"],
                d["pad_to"],
                tuple(int(v) for v in d["image_size"]) if d.get("image_size") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"{where} is damaged ({type(e).__name__}: {e}); delete it and cnnbench derives the preprocessing "
                "from the run's config again."
            ) from None


def preprocessing_of(data, cfg: TrainConfig) -> Preprocessing:
    """A loaded data set's preprocessing under ``cfg`` (its mean and std as the run normalises: the data set's own,
    or the pretrained weights' where the run was fine-tuned and ``data`` was normalised by them)."""
    return Preprocessing(
        list(data.classes),
        tuple(int(v) for v in data.train_x.shape[1:]),
        [float(v) for v in data.mean.tolist()],
        [float(v) for v in data.std.tolist()],
        cfg.resize,
        cfg.pad_to,
        data.unpadded_size,
    )


def write_preprocessing(run_dir: Path, prep: Preprocessing) -> None:
    """Written when the run starts, so an interrupted run is as usable as a finished one."""
    write_json(Path(run_dir) / PREPROCESSING_JSON, prep.to_dict())


def read_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG_JSON
    if not path.exists():
        raise ConfigError(
            f"{run_dir} is not a cnnbench run folder (it has no {CONFIG_JSON}). Give the --out folder of "
            "`cnnbench train`, or a folder under a study's runs/."
        )
    try:
        saved = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(
            f"{path} is damaged ({type(e).__name__}: {e}); it records how the run was trained, so the run cannot be "
            "used without it. Restore it from a copy, or train the run again."
        ) from None
    return config_from_dict(saved, where=str(path))


def read_preprocessing(run_dir: Path, cfg: TrainConfig | None = None) -> Preprocessing:
    """The run's recorded preprocessing; runs from before it was recorded at the start derive it once from their
    summary, else from the data set and the weights they started from."""
    run_dir = Path(run_dir)
    if (run_dir / PREPROCESSING_JSON).exists():
        return Preprocessing.from_dict(read_json(run_dir / PREPROCESSING_JSON), run_dir / PREPROCESSING_JSON)
    cfg = cfg or read_config(run_dir)
    summary = read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else {}
    if "normalization" in summary:
        norm = summary["normalization"]
        return Preprocessing(
            list(summary["classes"]), tuple(summary["input_shape"]), norm["mean"], norm["std"], cfg.resize, cfg.pad_to
        )
    from ..data.loader import load_dataset  # only for old, unfinished runs: decoding the data is the slow path

    data = load_dataset(cfg.dataset, cfg.data_dir, dataclasses.replace(cfg.data_options(), limit_test=1))
    if cfg.pretrained:
        data = data.normalized_by(*channel_normalization(*source_normalization(cfg.pretrained), data.in_chans))
    return preprocessing_of(data, cfg)


def source_normalization(source: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation weights from ``source`` (``--pretrained``'s value) were trained with: ImageNet's for
    torchvision's weights and bare state_dict files, a run's own for a cnnbench run or one of its checkpoints."""
    path = Path(source).expanduser()
    if source == IMAGENET:
        return IMAGENET_MEAN, IMAGENET_STD
    run = path if path.is_dir() else path.parent.parent if path.parent.name == CHECKPOINTS_DIR else None
    if run is not None and (run / CONFIG_JSON).exists():
        prep = read_preprocessing(run)
        return tuple(prep.mean), tuple(prep.std)
    return IMAGENET_MEAN, IMAGENET_STD


def channel_normalization(mean, std, in_chans: int) -> tuple[list[float], list[float]]:
    """A normalisation for ``in_chans`` input channels: grey input gets the mean of the RGB ones."""
    mean, std = list(mean), list(std)
    if in_chans == 1 and len(mean) == 3:
        return [sum(mean) / 3], [sum(std) / 3]
    return mean, std


def latest_state(run_dir: Path, warn: Callable[[str], None] | None = None) -> dict:
    """The run's latest readable checkpoint (last.pt, else prev.pt); what went wrong on the way goes to ``warn``
    (by default printed to stderr), and a run without any checkpoint is a ConfigError."""
    state, problems = load_latest(Path(run_dir) / CHECKPOINTS_DIR)
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


def evaluation_precision(cfg: TrainConfig, device: torch.device) -> str:
    """Evaluations run in the precision the run trained in where they run on the same kind of device (so they
    reproduce its test numbers), else in float32. Attacks override this with float32 always."""
    return cfg.precision if device.type == cfg.device else "fp32"


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    config: TrainConfig
    preprocessing: Preprocessing
    model: nn.Module  # the evaluated weights (the moving average where the run kept one), eval mode, on ``device``
    epoch: int  # epochs the loaded checkpoint had finished
    precision: str  # see evaluation_precision

    @property
    def weights(self) -> dict:
        """Which weights a measurement came from, as every file derived from them records it (a report leaves out a
        measurement the run has since trained past)."""
        return {"epoch": self.epoch, "of_epochs": self.config.epochs, "finished": self.epoch >= self.config.epochs}


def open_run(
    run_dir: str | Path,
    device: torch.device | str = "cpu",
    warn: Callable[[str], None] | None = None,
    channels_last: bool = True,
) -> TrainedRun:
    """A trained (or interrupted) run, ready to evaluate: config, preprocessing, latest weights, precision."""
    run_dir = Path(run_dir)
    device = torch.device(device)
    cfg = read_config(run_dir)
    prep = read_preprocessing(run_dir, cfg)
    state = latest_state(run_dir, warn)
    model = create_model(
        cfg.model, num_classes=len(prep.classes), in_chans=prep.channels, variant=cfg.variant, width=cfg.width
    )
    try:
        model.load_state_dict(evaluated_weights(state))
    except RuntimeError as e:
        raise TrainingError(
            f"The checkpoint in {run_dir / CHECKPOINTS_DIR} does not fit the model its config describes "
            f"({str(e).splitlines()[0]}): the folder was edited by hand or mixes two runs."
        ) from None
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).eval()
    run = TrainedRun(run_dir, cfg, prep, model, int(state["epoch"]), evaluation_precision(cfg, device))
    if not run.weights["finished"]:
        (warn or _print_warning)(
            f"{run_dir} is unfinished: its latest weights are those of epoch {run.epoch} of {cfg.epochs}, and what "
            "this command measures describes those weights, not the finished model (the files it writes say so, and "
            f"a report leaves them out once the run trains on). `cnnbench train --out {run_dir} --resume` finishes "
            "the run."
        )
    return run


def started_at(run_dir: Path) -> datetime | None:
    """The earliest instant a run folder shows the run had begun (UTC): its summary's start time where it finished,
    else the oldest of the files a run writes once it trains (its initial weights, its per-epoch metrics). None: the
    folder shows no training yet. Used to tell whether a protocol came before a study's results."""
    found = []
    if (run_dir / SUMMARY).exists():
        try:
            summary = read_json(run_dir / SUMMARY)
            if summary.get("started_at"):
                found.append(datetime.fromisoformat(summary["started_at"]))
            elif utc_of_local_time(summary.get("start_time")):  # runs from before started_at: local time
                found.append(datetime.fromisoformat(utc_of_local_time(summary["start_time"])))
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            pass  # a damaged summary: the files' own times below still tell
    for name in (INIT_WEIGHTS, METRICS_CSV, SUMMARY):
        if (run_dir / name).exists():
            found.append(datetime.fromtimestamp((run_dir / name).stat().st_mtime, timezone.utc))
    return min(found) if found else None


class DamagedRun(ValueError):
    """A run folder file the report cannot use; the message names the file and what is wrong with it."""


def check_value(where: str, key: str, value, kind: type) -> None:
    if kind in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (kind is float or float(value).is_integer())
    else:
        ok = isinstance(value, kind)
    if not ok:
        shown = repr(value)[:60]
        raise DamagedRun(
            f"{where}: {key!r} is {shown}, not {'a finite number' if kind in (int, float) else kind.__name__}"
        )


def read_summary(path: Path) -> dict:
    """A finished run's summary.json, every field of SUMMARY_FIELDS checked (DamagedRun names what is wrong)."""
    try:
        summary = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedRun(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise DamagedRun(f"{path}: holds a {type(summary).__name__}, not an object of fields")
    for key, kind in SUMMARY_FIELDS.items():
        if key not in summary:
            raise DamagedRun(f"{path}: the field {key!r} is missing")
        check_value(str(path), key, summary[key], kind)
    if not 0 <= summary["test_top1"] <= 1 or not 0 <= summary["test_top5"] <= 1:
        raise DamagedRun(f"{path}: test_top1 and test_top5 must be fractions between 0 and 1")
    return summary


def read_metrics(path: Path) -> list[dict]:
    """A run's metrics.csv rows, each METRIC_FIELDS value a finite number (DamagedRun names what is wrong)."""
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DamagedRun(f"{path}: unreadable ({e})") from None
    if not rows:
        raise DamagedRun(f"{path}: no epoch rows")
    for row in rows:
        for key in METRIC_FIELDS:
            try:
                value = float(row.get(key) or "nan")
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DamagedRun(f"{path}: epoch row {row.get('epoch', '?')} has {key}={row.get(key)!r}, not a number")
    return rows
