"""One training run as the loop and its callbacks see it: what does not change while it trains (``Run``), and the
typed state a checkpoint saves and restores (``TrainingState``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..config import TrainConfig
from ..data.loader import Dataset
from .averaging import WeightAverage
from .distributed import DistContext
from .interrupt import GracefulInterrupt
from .memory import PeakMemory


@dataclass
class PartialEpoch:
    """Progress inside an epoch that Ctrl-C or SIGTERM stopped, so that a resume replays it exactly."""

    step: int  # steps already taken
    generator: torch.Tensor  # the data generator's state when the epoch began (its batch order)
    loss_sum: float
    correct: int
    seen: int
    time_s: float

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class TrainingState:
    """Exactly what a checkpoint holds besides the state_dicts of the model, optimizer, scheduler, scaler,
    weight average and random generators (engine/state.py saves and restores both)."""

    epoch: int = 0  # epochs finished
    rows: list[dict] = field(default_factory=list)  # metrics.csv, one row per finished epoch
    start_time: str = ""
    partial: PartialEpoch | None = None


@dataclass
class RunNotes:
    """What a run learns about itself on the way, for its summary (not needed to resume)."""

    warnings: list[str] = field(default_factory=list)
    compile_s: float | None = None  # seconds torch.compile took before the first epoch (--compile)
    test_top1_tta: float | None = None  # the last epoch's top-1 with flip test-time augmentation (natural images)


@dataclass(frozen=True, kw_only=True)  # 19 fields: built by keyword only
class Run:
    """A run's settings, data, model and the objects that train it: none is replaced while it trains (their
    contents change; ``state`` and ``notes`` hold the rest)."""

    config: TrainConfig
    out: Path
    data: Dataset
    model: nn.Module
    variant: str
    device: torch.device
    precision: str
    device_name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # batch order and augmentation
    params: int
    flops: int
    memory: PeakMemory  # peak memory while the run trains (this process's part of it)
    state: TrainingState
    notes: RunNotes = field(default_factory=RunNotes)
    dist: DistContext = DistContext()
    pretrained: str | None = None  # where the starting weights came from (None: trained from scratch)
    average: WeightAverage | None = None  # the moving average of the weights (--ema), which is what gets evaluated
    stop: GracefulInterrupt = field(default_factory=GracefulInterrupt)

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights evaluations measure: the moving average where the run keeps one (--ema), else the model."""
        return self.average.module if self.average is not None else self.model
