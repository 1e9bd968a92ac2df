"""Adversarial attacks in pixel space: FGSM and PGD-Linf on a model that takes [0, 1] pixels.

The normalisation sits inside the attacked model (PixelModel), so eps is measured in pixel units as the
literature states it (Goodfellow et al., 2015; Madry et al., 2018), and the model is attacked in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class PixelModel(nn.Module):
    """``model`` behind its data set's normalisation: input pixels in [0, 1], (N, C, H, W)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = True):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.view(1, -1, 1, 1).float())
        self.register_buffer("std", std.view(1, -1, 1, 1).float())
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


Forward = Callable[[torch.Tensor], torch.Tensor]  # pixels in, float logits out (autocast and eval mode inside)


def _input_gradient(forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(forward(x).float(), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One step of size eps along the sign of the loss gradient (Goodfellow et al., 2015)."""
    if eps == 0:
        return x.clone()
    return (x + eps * _input_gradient(forward, x, y).sign()).clamp(0, 1).detach()


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent in the L-inf ball of radius eps, from a random start (Madry et al., 2018)."""
    if eps == 0:
        return x.clone()
    noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1
    adv = (x + eps * noise).clamp(0, 1)
    for _ in range(steps):
        adv = adv + step * _input_gradient(forward, adv, y).sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1).detach()
    return adv
