"""Parameters and multiply-accumulates of one forward pass.

MACs are counted with ``torch.utils.flop_counter`` (convolutions and matrix products, the terms
published figures count); by its convention FLOPs = 2 x MACs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass for one image of shape C x H x W (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(1, *input_shape, device=device))
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    return count_flops(model, input_shape) // 2
