"""An exponential moving average of a model's weights (``--ema``), on torch.optim.swa_utils.AveragedModel.

The average is what gets evaluated, checkpointed as ``ema_model`` and used by predict/export: its batch-norm
buffers are averaged along with the weights, and precise batch norm (when on) recomputes them for the averaged
weights before each evaluation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel


def _warmed_up_ema(decay: float):
    """Update with decay min(decay, (1 + n) / (10 + n)) after n updates: early on, when the weights move fast,
    the average follows them closely instead of remembering the random initialisation for thousands of steps."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c.to(a.dtype), 1 - d)
            else:  # counters such as num_batches_tracked follow the model
                a.copy_(c)

    return update


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=_warmed_up_ema(decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)


def evaluated_weights(state: dict) -> dict:
    """The weights a checkpoint's results were measured with: the average where the run kept one."""
    return state.get("ema_model") or state["model"]
