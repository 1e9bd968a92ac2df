"""Loss-landscape slices (Li et al., 2018, "Visualizing the Loss Landscape of Neural Nets").

Along a random direction scaled filter by filter to the norm of the trained filter it perturbs (batch-norm and
bias parameters left out, as Li et al. do), and along the straight line from the initial to the final weights
(Goodfellow et al., 2015). The loss is the plain cross-entropy on a fixed set of training images. Along the random
direction batch-norm runs in eval mode (the trained running statistics, as in Li et al.'s code), so the value at
distance 0 is the trained model's loss; along the line it uses each batch's own statistics (running statistics
untouched), since the final model's statistics mean nothing for the weights near the start.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data.loader import eval_batches
from ...engine.runtime import eval_mode


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A Gaussian direction per parameter; each filter (row of a weight) rescaled to that filter's norm;
    1-D parameters (biases, batch-norm scales and shifts) get zero."""
    direction = {}
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        p_norm = p.detach().flatten(1).norm(dim=1)
        direction[name] = d * (p_norm / d_norm).view(-1, *[1] * (p.ndim - 1))
    return direction


@torch.inference_mode()
def dataset_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    data,
    batch_statistics: bool = False,
    batch_size: int = 500,
) -> float:
    """Mean cross-entropy of ``model`` (fp32, eval mode; batch-norm on batch statistics if ``batch_statistics``,
    its running statistics left as they are) on uint8 ``images`` and ``labels`` on the model's device, as ``data``'s
    statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if batch_statistics else []
    momenta = [m.momentum for m in norms]
    total = 0.0
    with eval_mode(model):
        for m in norms:
            m.train()
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: the running statistics stay as they are
        try:
            for x, y in eval_batches(images, labels, data, batch_size, channels_last=False):
                total += F.cross_entropy(model(x).float(), y, reduction="sum").item()
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
    return total / len(images)


@torch.no_grad()
def _set_params(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(values[name])


def loss_along(
    model: nn.Module,
    origin: dict[str, torch.Tensor],
    directions: list[dict[str, torch.Tensor]],
    coordinates: list[tuple[float, ...]],
    images: torch.Tensor,
    labels: torch.Tensor,
    data,
    batch_statistics: bool = False,
) -> list[float]:
    """The loss at ``origin + sum_i c_i * directions[i]`` for each coordinate tuple ``c``; the model's
    parameters are restored afterwards."""
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = []
    try:
        for coords in coordinates:
            _set_params(model, {n: origin[n] + sum(c * d[n] for c, d in zip(coords, directions)) for n in origin})
            losses.append(dataset_loss(model, images, labels, data, batch_statistics))
    finally:
        _set_params(model, saved)
    return losses


def trained_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
