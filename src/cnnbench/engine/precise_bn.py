"""Precise batch norm (pycls, fvcore): before an evaluation, replace the running statistics of every batch-norm
layer with their plain average over training batches, seen by the weights as they now are.

The running averages that training keeps (momentum 0.1) mix statistics of older weights: after a few hundred
steps at a high learning rate they can be far from the current ones, and an evaluation with them scores at
chance although the weights are fine. Only buffers change: the weights, and so the training that follows,
are the same with or without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from ..config import TrainConfig
from ..data.loader import Augment, Dataset, train_batches
from .distributed import DistContext
from .runtime import autocast

# At most this share of the training split: a forward pass costs about a third of a training step, so the
# recomputation stays near 3% of an epoch's time on any data set size (docs/BENCHMARKS.md measures it).
MAX_SHARE = 0.1


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def precise_bn_images(requested: int, n_train: int) -> int:
    """How many training images the recomputation reads: the requested number, capped at MAX_SHARE of them."""
    return min(requested, int(n_train * MAX_SHARE))


@torch.no_grad()
def recompute_bn_statistics(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    images: int,
    device: torch.device,
    precision: str,
    ctx: DistContext = DistContext(),
) -> int:
    """Set every batch-norm layer's running mean and variance to their average over the first ``images`` images
    of ``batches`` (each batch weighted equally, as pycls does); returns the images used (0: nothing changed).

    Under DDP every process averages over its own share, then the processes average their results."""
    layers = batch_norms(model)
    if not layers or images < 2:
        return 0
    momenta = [m.momentum for m in layers]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: batch k gets weight 1/k
    was_training = model.training
    model.train()
    used = 0
    try:
        for x, _ in batches:
            x = x[: images - used]
            if len(x) < 2:  # batch norm needs two images
                break
            with autocast(device, precision):
                model(x)
            used += len(x)
            if used >= images:
                break
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    if used == 0:  # no batch of two: keep the statistics training left
        for m, (mean, var, count) in zip(layers, saved):
            m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
    elif ctx.enabled:
        for m in layers:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf /= ctx.world_size
    return used


def precise_bn_pass(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    augment: Augment | None,
    epoch: int,
    device: torch.device,
    precision: str,
    ctx: DistContext = DistContext(),
) -> int:
    """Recompute the statistics on ``cfg.precise_bn`` training images (capped at MAX_SHARE), batched and augmented
    as in training. Its own random stream, seeded by the run's seed and ``epoch``: the run's generator, and so
    the training, is untouched. Returns the images used."""
    images = precise_bn_images(cfg.precise_bn, len(data.train_y))
    if not images:
        return 0
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    batches = train_batches(data, cfg.batch_size, generator, augment, cfg.channels_last, ctx.rank, ctx.world_size)
    return recompute_bn_statistics(model, batches, images // ctx.world_size, device, precision, ctx)
