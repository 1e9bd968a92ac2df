"""How a data set is sliced and shaped for a run: the single home of these options' defaults (TrainConfig's
fields of the same names take theirs from here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataOptions:
    limit_train: int | None = None  # class-balanced slice of the training split (images)
    limit_test: int | None = None  # class-balanced slice of the test split (images)
    val_split: int = 0  # images held out of the training split for validation (class-balanced)
    pad_to: int | None = 32  # pad smaller images (MNIST's 28x28) with zeros to this size; None keeps them
    resize: int | None = None  # resize images (bilinear, antialiased) to this square size before padding
    test_split: float | None = None  # share of each class held out as the test split of a folder without one; None: 0.2
    download: bool = True  # let torchvision download a missing data set when online
    # a tuning trial: the validation images stand in for the test split, so the test images never reach the run
    # (what it records as "test" is validation; a study's tuning phase sets it, never a user)
    trial: bool = False
