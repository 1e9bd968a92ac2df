"""In-memory data: uint8 tensors on the training device, batches cut, augmented and normalised whole.

On a 2-core CPU, DataLoader workers and per-image PIL transforms steal the cores training needs;
a few tensor operations per batch cost almost nothing next to the model's step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .options import DataOptions
from .readers import resize_images
from .sources import RawDataset, load_raw


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    classes: list[str]
    natural: bool
    train_x: torch.Tensor  # uint8 N x C x H x W
    train_y: torch.Tensor  # int64 N
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    mean: torch.Tensor  # per channel, in [0, 1], from the training split
    std: torch.Tensor
    test_files: tuple[str, ...] = ()  # the test images' paths, where cnnbench held them out of a folder itself
    unpadded_size: tuple[int, int] | None = None  # H x W of the images before padding (after --resize)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def normalized_by(self, mean, std) -> Dataset:
        """The same images, normalised with other statistics (those pretrained weights were trained with)."""
        as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float32, device=self.mean.device)  # noqa: E731
        return dataclasses.replace(self, mean=as_tensor(mean), std=as_tensor(std))

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Dataset(
            self.name,
            self.source,
            self.classes,
            self.natural,
            move(self.train_x),
            move(self.train_y),
            move(self.test_x),
            move(self.test_y),
            move(self.val_x),
            move(self.val_y),
            move(self.mean),
            move(self.std),
            self.test_files,
            self.unpadded_size,
        )


def balanced_indices(labels: np.ndarray, n: int, order: np.ndarray | None = None) -> np.ndarray:
    """The first ``n`` indices of a round-robin over classes: as close to equal counts per class as the data allow.

    Deterministic (file order, or ``order`` when given), so every model in a comparison sees the same slice.
    """
    order = np.arange(len(labels)) if order is None else order
    lab = labels[order]
    rank = np.zeros(len(lab), dtype=np.int64)
    for c in np.unique(lab):
        mask = lab == c
        rank[mask] = np.arange(mask.sum())
    picked = order[np.lexsort((lab, rank))[:n]]
    return np.sort(picked)


def pad_images(x: np.ndarray, size: int | None) -> np.ndarray:
    h, w = x.shape[-2:]
    if size is None or (h >= size and w >= size):
        return x
    ph, pw = max(0, size - h), max(0, size - w)
    return np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def _limit(y, n, what) -> slice | np.ndarray:
    """What a class-balanced slice of ``n`` images keeps: indices, or every image (a slice: no copy)."""
    if n is None:
        return slice(None)
    if n <= 0:
        raise ConfigError(f"--limit-{what} must be a positive number of images (got {n}).")
    return slice(None) if n >= len(y) else balanced_indices(y, n)


def prepare(raw: RawDataset, options: DataOptions = DataOptions()) -> Dataset:
    # Slice first, so that resizing touches only the images that are used.
    keep_train, keep_test = (
        _limit(raw.train_y, options.limit_train, "train"),
        _limit(raw.test_y, options.limit_test, "test"),
    )
    train_x, train_y = raw.train_x[keep_train], raw.train_y[keep_train]
    test_x, test_y = raw.test_x[keep_test], raw.test_y[keep_test]
    test_files = tuple(np.asarray(raw.test_files)[keep_test]) if raw.test_files else ()
    train_x, test_x = (resize_images(x, options.resize) for x in (train_x, test_x))
    unpadded_size = tuple(int(v) for v in train_x.shape[-2:])
    train_x, test_x = (pad_images(x, options.pad_to) for x in (train_x, test_x))
    val_x = val_y = None
    if options.val_split:
        if not 0 < options.val_split < len(train_y):
            raise ConfigError(
                f"--val-split must be between 1 and the training set's size minus one ({len(train_y) - 1}); got "
                f"{options.val_split}."
            )
        # A fixed shuffle (not the run's seed) so every run of a comparison holds out the same images.
        order = np.random.default_rng(0).permutation(len(train_y))
        val_idx = balanced_indices(train_y, options.val_split, order)
        keep = np.setdiff1d(np.arange(len(train_y)), val_idx)
        val_x, val_y = torch.from_numpy(train_x[val_idx]), torch.from_numpy(train_y[val_idx])
        train_x, train_y = train_x[keep], train_y[keep]
    if options.trial:  # a tuning trial never holds a test image: whatever it measures, it measures on validation
        if val_x is None:
            raise ConfigError("A tuning trial is scored on validation images only: it needs --val-split N (N > 0).")
        test_x, test_y, test_files = val_x.numpy(), val_y.numpy(), ()
    tx = torch.from_numpy(np.ascontiguousarray(train_x))
    # Statistics in float64 over the (possibly limited) training split only: the test set stays unseen.
    flat = tx.transpose(0, 1).reshape(tx.shape[1], -1).double() / 255.0
    mean, std = flat.mean(1).float(), flat.std(1).clamp_min(1e-3).float()
    return Dataset(
        raw.name,
        raw.source,
        raw.classes,
        raw.natural,
        tx,
        torch.from_numpy(train_y),
        torch.from_numpy(np.ascontiguousarray(test_x)),
        torch.from_numpy(test_y),
        val_x,
        val_y,
        mean,
        std,
        test_files,
        unpadded_size,
    )


def load_dataset(name: str, data_dir=None, options: DataOptions = DataOptions()) -> Dataset:
    """Load a named data set (``mnist``, ``cifar10``, ``imagefolder:PATH``, ...) into memory, ready to train on."""
    return prepare(
        load_raw(name, data_dir, download=options.download, resize=options.resize, test_split=options.test_split),
        options,
    )


@dataclass(frozen=True)
class Augment:
    crop_padding: int = 4  # random crop of the original size from the image zero-padded by this many pixels
    flip: bool = True  # random horizontal flips (only applied to natural images)
    cutout: int = 0  # side of a square zeroed at a random place in every image (DeVries & Taylor 2017); 0: off


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (-mean / std).view(1, -1, 1, 1)
    out = torch.addcmul(shift, x.float(), scale)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crops of a whole batch by gather, without a Python loop over images."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size x size square (clipped at the borders) centred at a random pixel of every image of a normalised
    batch, so the square holds the mean colour. One mask for the whole batch, no loop over images."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n,), generator=generator).to(x.device)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    keep = ~(inside_rows[:, :, None] & inside_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def train_batches(
    data: Dataset,
    batch_size: int,
    generator: torch.Generator,
    augment: Augment | None,
    channels_last: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented, normalised training batches.

    Every rank draws the same permutation from ``generator`` and takes its own share, so the epoch is
    split across processes without communication.
    """
    n = len(data.train_y)
    # Every rank gets the same number of images (and so of steps): the last n % world_size of the permutation wait.
    perm = torch.randperm(n, generator=generator)[: n - n % world_size][rank::world_size].to(data.train_x.device)
    for start in range(0, len(perm), batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) < 2:  # batch norm cannot train on a single image
            continue
        x = data.train_x[idx]
        if augment is not None:
            x = random_crop(x, augment.crop_padding, generator)
            if augment.flip and data.natural:
                x = random_flip(x, generator)
        x = normalize(x, data.mean, data.std, channels_last)
        if augment is not None and augment.cutout:
            x = cutout(x, augment.cutout, generator)
        yield x, data.train_y[idx]


def eval_batches(x: torch.Tensor, y: torch.Tensor, data: Dataset, batch_size: int, channels_last: bool = True):
    for start in range(0, len(y), batch_size):
        yield (
            normalize(x[start : start + batch_size], data.mean, data.std, channels_last),
            y[start : start + batch_size],
        )
