"""A study's training time, estimated before it starts: a few timed training steps of each distinct model
configuration (`cnnbench profile --train`'s measurement), times the images each run will train on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..analysis.profile import ProfileConfig, profile_model
from ..config import TrainConfig
from ..data.loader import Dataset

STEP_SECONDS = 1.0  # timing budget per distinct model configuration (at least one step)


def training_rate(cfg: TrainConfig, data: Dataset) -> float:
    """Training images/s of ``cfg``'s model on this device and precision, at its batch size, from a few steps on
    random images of the data set's shape (no augmentation or evaluation: a lower bound on the time)."""
    record = profile_model(
        cfg.model,
        ProfileConfig(
            input_shape=(data.in_chans, data.image_size, data.image_size),
            num_classes=data.num_classes,
            batch_size=min(cfg.batch_size, len(data.train_y)),
            variant=cfg.variant,
            width=cfg.width,
            precision=cfg.precision,
            device=cfg.device,
            train=True,
            infer=False,
            warmup=0,  # profile's own first two steps (optimizer state, then memory) warm up
            repeats=5,
            seconds=STEP_SECONDS,
            channels_last=cfg.channels_last,
        ),
    )
    return float(record["train_images_per_s"])


def estimate_training_seconds(cells: Sequence[TrainConfig], datasets: Mapping[str, Dataset]) -> float:
    """Seconds of training steps the cells need, one after another; each distinct model configuration is timed
    once."""
    rates: dict[tuple, float] = {}
    total = 0.0
    for cfg in cells:
        data = datasets[cfg.dataset]
        key = (
            cfg.dataset,
            cfg.model,
            cfg.variant,
            cfg.width,
            cfg.batch_size,
            cfg.precision,
            cfg.device,
            cfg.channels_last,
        )
        if key not in rates:
            rates[key] = training_rate(cfg, data)
        total += cfg.epochs * len(data.train_y) / rates[key]
    return total
